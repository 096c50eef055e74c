// The wasm backend under the engine's op layer: each F function that the wasm backend fuses
// (softmax, logSoftmax, crossEntropy, layerNorm, attention) and the primitive-heavy ops,
// forward and gradients, against the js backend, which composes the same math from primitives;
// and the gradients it sums and clips in place (its addInPlace / scaleInPlace kernels).
import { afterAll, describe, expect, it, vi } from 'vitest';
import { F, clipGradNorm, getBackendByName, tensor, type Backend, type Tensor } from '../src/index.js';
import * as ops from '../src/tensor/ops.js';
import { createWasmBackend, wasmSimdAvailable, type WasmBackend } from '../src/tensor/backends/wasm/index.js';
import type { FusedKernels } from '../src/tensor/backend.js';
import { KEY_BLOCK } from '../src/tensor/backends/wasm/attention.js';
import { expectAutocastLinearCrossEntropy } from './helpers/lce-autocast.js';

const available = wasmSimdAvailable();
const js = getBackendByName('js');
const wasm: WasmBackend | null = available ? createWasmBackend({ threads: 2 }) : null;
afterAll(() => wasm?.terminate());

function values(n: number, seed: number, scale = 1): Float32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  return Float32Array.from({ length: n }, () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return ((s / 4294967296) * 2 - 1) * scale; });
}

/** Run f on both backends with the same leaves; compare output and every leaf gradient. */
function parity(shapes: number[][], f: (xs: Tensor[]) => Tensor, rtol: number, what: string): void {
  const run = (b: Backend): { out: Float32Array; grads: Float32Array[] } => {
    const xs = shapes.map((s, i) => tensor(values(s.reduce((a, c) => a * c, 1), 11 + i, 2), { shape: s, backend: b, requiresGrad: true }));
    const y = f(xs);
    const g = tensor(values(y.size, 99), { shape: y.shape, backend: b });
    ops.sum(ops.mul(y, g)).backward();
    return { out: Float32Array.from(y.dataSync() as Float32Array), grads: xs.map((x) => Float32Array.from(x.grad!.dataSync() as Float32Array)) };
  };
  const want = run(js), got = run(wasm!);
  const close = (a: Float32Array, b: Float32Array, name: string): void => {
    let scale = 0, diff = 0;
    for (let i = 0; i < b.length; i++) { scale = Math.max(scale, Math.abs(b[i]!)); diff = Math.max(diff, Math.abs(a[i]! - b[i]!)); }
    expect(diff / (scale || 1), `${what}: ${name}`).toBeLessThan(rtol);
  };
  close(got.out, want.out, 'forward');
  got.grads.forEach((g, i) => close(g, want.grads[i]!, `grad ${i}`));
}

describe.skipIf(!available)('wasm backend under the op layer vs js composites', () => {
  it('is registered by name', () => {
    expect(getBackendByName('wasm').name).toBe('wasm');
  });
  it('softmax / logSoftmax over the last and a middle dim', () => {
    parity([[3, 5, 37]], ([x]) => F.softmax(x!, -1), 1e-5, 'softmax');
    parity([[3, 5, 37]], ([x]) => F.logSoftmax(x!, -1), 1e-5, 'logSoftmax');
    parity([[3, 5, 37]], ([x]) => F.softmax(x!, 1), 1e-5, 'softmax dim 1');
  });
  it('crossEntropy (mean) over a 1000-class vocabulary', () => {
    const t = (b: Backend): Tensor => tensor(Int32Array.from({ length: 12 }, (_, i) => (i * 137) % 1000), { backend: b });
    const run = (b: Backend): number[] => {
      const x = tensor(values(12 * 1000, 5, 4), { shape: [12, 1000], backend: b, requiresGrad: true });
      const loss = F.crossEntropy(x, t(b));
      loss.backward();
      return [loss.item(), ...Array.from(x.grad!.dataSync() as Float32Array)];
    };
    const want = run(js), got = run(wasm!);
    want.forEach((w, i) => expect(Math.abs(got[i]! - w), `element ${i}`).toBeLessThan(1e-6 + 1e-5 * Math.abs(w)));
  });
  it('linearCrossEntropy (lm_head + loss, fused over row chunks) equals crossEntropy(linear()) composed on js: loss and both gradients', () => {
    const spy = vi.spyOn(wasm!.fused as { linearCrossEntropy: NonNullable<FusedKernels['linearCrossEntropy']> }, 'linearCrossEntropy');
    // 50304 classes make chunks of at most 664 rows: 1400 rows are three, of 468, 468 and 464
    const targets = (b: Backend): Tensor => tensor(Int32Array.from({ length: 1400 }, (_, i) => (i * 7919) % 50304), { backend: b });
    parity([[1400, 4], [50304, 4]], ([x, w]) => F.linearCrossEntropy(x!, w!, targets(x!.backend)), 1e-4, 'linearCrossEntropy');
    expect(spy).toHaveBeenCalled();
    // [B, T, C] inputs and [B, T] targets, as GPT passes them; without gradients only the loss is made
    const x = tensor(values(2 * 3 * 8, 1), { shape: [2, 3, 8], backend: wasm! }), w = tensor(values(40 * 8, 2), { shape: [40, 8], backend: wasm! });
    const t = tensor(Int32Array.from([1, 5, 39, 0, 7, 7]), { shape: [2, 3], backend: wasm! });
    const want = F.crossEntropy(F.linear(x, w), t).item();
    expect(Math.abs(F.linearCrossEntropy(x, w, t).item() - want)).toBeLessThan(1e-6);
    expect(() => F.linearCrossEntropy(x, w, tensor(Int32Array.from([1, 2, 3, 4, 5, 40]), { shape: [2, 3], backend: wasm! }))).toThrow(/linearCrossEntropy.*target/);
    spy.mockRestore();
  });
  it('linearCrossEntropy under autocast rounds as torch.autocast (the fused kernel, several chunks)', async () => {
    const spy = vi.spyOn(wasm!.fused as { linearCrossEntropy: NonNullable<FusedKernels['linearCrossEntropy']> }, 'linearCrossEntropy');
    await expectAutocastLinearCrossEntropy(wasm!, 1400, 4, 50304, ['bfloat16']);
    await expectAutocastLinearCrossEntropy(wasm!);
    expect(spy).toHaveBeenCalled();
    spy.mockRestore();
  });
  it('exp over the whole float range against Math.exp; softmax, cross-entropy and max of a row with a NaN are NaN', () => {
    // a sweep of [-90, 90] (scalar tail included: 20003 is not a multiple of 4) and the edges
    const xs = [...Array.from({ length: 20003 }, (_, i) => -90 + (180 * i) / 20002), -87.33, -87, -86.99, 88, 88.3, 88.5, 88.72, 88.7228, 88.73, -Infinity, Infinity, -0, 0];
    const got = ops.exp(tensor(Float32Array.from(xs), { backend: wasm! })).dataSync() as Float32Array;
    const x32 = Float32Array.from(xs);
    x32.forEach((x, i) => {
      const want = Math.exp(x), g = got[i]!;
      if (want > 3.4028e38) expect(g, `exp(${x})`).toBe(Infinity); // past the largest float
      else if (want < 2 ** -125) expect(g, `exp(${x})`).toBeLessThan(2 ** -125); // flushed to 0 or tiny
      else expect(Math.abs(g - want) / want, `exp(${x}) = ${g}, want ${want}`).toBeLessThan(4e-7);
    });
    expect(Number.isNaN((ops.exp(tensor(Float32Array.of(NaN, 1, NaN, 2, NaN), { backend: wasm! })).dataSync() as Float32Array)[4])).toBe(true);
    // a NaN in a row makes the whole softmax row NaN (torch), other rows untouched; max of it is NaN
    const row = Float32Array.from({ length: 2 * 37 }, (_, i) => (i === 21 ? NaN : Math.sin(i)));
    const x = tensor(row, { shape: [2, 37], backend: wasm! });
    const sm = F.softmax(x, -1).dataSync() as Float32Array, ls = F.logSoftmax(x, -1).dataSync() as Float32Array;
    for (let j = 0; j < 37; j++) {
      expect(Number.isNaN(sm[j]!) && Number.isNaN(ls[j]!), `column ${j}`).toBe(true);
      expect(Number.isFinite(sm[37 + j]!) && Number.isFinite(ls[37 + j]!)).toBe(true);
    }
    const maxes = ops.max(x, -1).dataSync() as Float32Array;
    expect(Number.isNaN(maxes[0]!)).toBe(true);
    expect(maxes[1]).toBe(Math.max(...Array.from(row.subarray(37)).map((v) => Math.fround(v))));
    expect(Number.isNaN(F.crossEntropy(x, tensor(Int32Array.of(3, 4), { backend: wasm! })).item())).toBe(true);
  });
  it('layerNorm with weight and bias', () => {
    parity([[4, 6, 50], [50], [50]], ([x, w, b]) => F.layerNorm(x!, w!, b!), 1e-4, 'layerNorm');
  });
  it('causal and full attention (flash-style over key blocks), heads split by transpose as GPT does', () => {
    for (const isCausal of [true, false]) {
      parity([[2, 3, 17, 8], [2, 3, 17, 8], [2, 3, 17, 8]], ([q, k, v]) => F.scaledDotProductAttention(q!, k!, v!, { isCausal }), 1e-4, `attention causal=${isCausal}`);
    }
    // several key blocks (attention.ts: 128 keys each, the last one short): the online softmax
    // across blocks, causal rows that start past a block, and fewer queries than keys (KV cache)
    expect(KEY_BLOCK).toBe(128);
    for (const isCausal of [true, false]) {
      parity([[1, 2, 600, 8], [1, 2, 600, 8], [1, 2, 600, 8]], ([q, k, v]) => F.scaledDotProductAttention(q!, k!, v!, { isCausal }), 1e-4, `attention T=S=600 causal=${isCausal}`);
      parity([[2, 1, 7, 12], [2, 1, 530, 12], [2, 1, 530, 12]], ([q, k, v]) => F.scaledDotProductAttention(q!, k!, v!, { isCausal }), 1e-4, `attention T=7 S=530 causal=${isCausal}`);
    }
    parity([[2, 9, 72]], ([x]) => {
      const h = (t: Tensor): Tensor => ops.transpose(ops.reshape(t, [2, 9, 3, 8]), 1, 2); // (B, nh, T, hs)
      const [q, k, v] = ops.split(x!, 24, 2).map(h) as [Tensor, Tensor, Tensor];
      return ops.reshape(ops.transpose(F.scaledDotProductAttention(q, k, v, { isCausal: true }), 1, 2), [2, 9, 24]);
    }, 1e-4, 'attention with head split');
  });
  it('gradients summed and clipped in place never write a storage that another tensor holds', () => {
    const run = (b: Backend): { grads: number[][]; g: number[]; norm: number } => {
      const leaf = (n: number, seed: number, shape: number[]): Tensor => tensor(values(n, seed), { shape, backend: b, requiresGrad: true });
      const a = leaf(6, 1, [2, 3]), c = leaf(6, 2, [2, 3]), r = leaf(6, 3, [2, 3]);
      const w = tensor(values(6, 4), { shape: [2, 3], backend: b });
      // (a + c) + a: the add rules hand one storage to a twice and to c once
      ops.sum(ops.mul(ops.add(ops.add(a, c), a), w)).backward();
      // a reshape passes the caller's gradient through: r.grad is G's storage
      const G = tensor(values(6, 5), { shape: [3, 2], backend: b });
      ops.reshape(r, [3, 2]).backward(G);
      // a weight used twice, as GPT's tied embedding and lm_head: its two gradients are summed
      const e = leaf(40 * 3, 6, [40, 3]);
      const idx = tensor(Int32Array.from([3, 7, 3, 0, 39, 12]), { backend: b });
      F.linearCrossEntropy(F.embedding(idx, e), e, tensor(Int32Array.from([1, 2, 3, 4, 5, 6]), { backend: b })).backward();
      const norm = clipGradNorm([a, c, r, e], 0.5).item();
      return { grads: [a, c, r, e].map((t) => Array.from(t.grad!.dataSync() as Float32Array)), g: Array.from(G.dataSync() as Float32Array), norm };
    };
    const want = run(js), got = run(wasm!);
    // by hand: a.grad = 2w, c.grad = w, r.grad = G, each scaled once by 0.5 / norm
    const w = values(6, 4), G = values(6, 5);
    const coef = 0.5 / (got.norm + 1e-6);
    got.grads[0]!.forEach((v, i) => expect(v).toBeCloseTo(2 * w[i]! * coef, 6));
    got.grads[1]!.forEach((v, i) => expect(v).toBeCloseTo(w[i]! * coef, 6));
    got.grads[2]!.forEach((v, i) => expect(v).toBeCloseTo(G[i]! * coef, 6));
    expect(got.g).toEqual(Array.from(G)); // the caller's gradient is not scaled
    expect(got.norm).toBeCloseTo(want.norm, 5);
    want.grads[3]!.forEach((v, i) => expect(got.grads[3]![i]!, `tied grad ${i}`).toBeCloseTo(v, 6));
  });
  it('linear + gelu + residual (matmul, broadcasting add, unary, reductions)', () => {
    parity([[5, 7, 33], [19, 33], [19], [5, 7, 19]], ([x, w, b, r]) => ops.add(F.gelu(F.linear(x!, w!, b!)), r!), 1e-5, 'mlp block');
    parity([[6, 40]], ([x]) => ops.div(ops.sum(ops.mul(F.tanh(x!), ops.exp(x!)), 0, true), ops.maximum(ops.max(x!, -1, true), 0.5)), 1e-5, 'reductions');
  });
});
