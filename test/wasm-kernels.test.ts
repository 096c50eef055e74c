// Backend parity: every kernel of the wasm backend against the js reference backend (and the
// fused kernels against the ops' composites in float64 on it), on generated shapes — odd sizes, size-1 dims,
// transposed and broadcast operands — with 1 and 2 threads; plus thread-count determinism.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import type { Storage } from '../src/tensor/backend.js';
import { JsBackend } from '../src/tensor/backends/js.js';
import { createWasmBackend, wasmSimdAvailable, type WasmBackend } from '../src/tensor/backends/wasm/index.js';
import { F, ops, tensor, type Tensor } from '../src/tensor/index.js';
import { wasmMatmul } from '../src/tensor/backends/wasm/matmul.js';
import { buildModule, fmaAvailable } from '../src/tensor/backends/wasm/module.js';
import { WasmRuntime } from '../src/tensor/backends/wasm/runtime.js';
import { bfloat16BitsToFloat32, float32ToBfloat16Bits } from '../src/tensor/dtype.js';

const available = wasmSimdAvailable();
const js = new JsBackend();
// the mul+add matmul micro-kernels, and the default: relaxed SIMD's fused multiply-add (where the engine has it)
const wasms: WasmBackend[] = available
  ? [createWasmBackend({ threads: 1, fma: false }), createWasmBackend({ threads: 2, fma: false }), createWasmBackend({ threads: 1 }), createWasmBackend({ threads: 2 })]
  : [];
afterAll(() => { for (const b of wasms) b.terminate(); });

const SEED = 4242;
const RUNS = 40;

/** Deterministic values in [-scale, scale] from a seed (fast-check gives the seed). */
function values(n: number, seed: number, scale = 1): Float32Array {
  let s = (seed * 2654435761) >>> 0 || 1;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    out[i] = ((s / 4294967296) * 2 - 1) * scale;
  }
  return out;
}
const f32 = (a: Float32Array): Storage => js.fromHost(a, 'float32');
const read = (s: Storage): Float32Array => js.readSync(s) as Float32Array;

/** Worst |got - want| / (atol + rtol |want|); <= 1 passes. NaN and infinities must match exactly. */
function expectClose(got: ArrayLike<number>, want: ArrayLike<number>, rtol: number, atol: number, what: string): void {
  expect(got.length, `${what}: length`).toBe(want.length);
  let worst = 0, at = -1;
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!, w = want[i]!;
    if (!Number.isFinite(w) || !Number.isFinite(g)) {
      if (!Object.is(g, w) && !(Number.isNaN(g) && Number.isNaN(w))) { worst = Infinity; at = i; break; }
      continue;
    }
    const e = Math.abs(g - w) / (atol + rtol * Math.abs(w));
    if (e > worst) { worst = e; at = i; }
  }
  expect(worst, `${what}: worst at ${at}: got ${got[at]}, want ${want[at]}`).toBeLessThanOrEqual(1);
}

const dim = fc.integer({ min: 1, max: 37 });

describe.skipIf(!available)('wasm backend parity with js', () => {
  it('matmul: batched, transposed, broadcast, odd sizes', () => {
    fc.assert(fc.property(
      fc.record({ batch: fc.integer({ min: 1, max: 3 }), m: dim, n: dim, k: dim, transA: fc.boolean(), transB: fc.boolean(),
        bcastA: fc.boolean(), bcastB: fc.boolean(), seed: fc.nat() }),
      (c) => {
        const aBatchStride = c.bcastA ? 0 : c.m * c.k, bBatchStride = c.bcastB ? 0 : c.k * c.n;
        const a = values(c.bcastA ? c.m * c.k : c.batch * c.m * c.k, c.seed);
        const b = values(c.bcastB ? c.k * c.n : c.batch * c.k * c.n, c.seed + 1);
        const p = { batch: c.batch, m: c.m, n: c.n, k: c.k, transA: c.transA, transB: c.transB, aBatchStride, bBatchStride };
        const want = read(js.matmul(f32(a), f32(b), p));
        for (const w of wasms) expectClose(read(w.matmul(f32(a), f32(b), p)), want, 1e-5, 1e-5 * Math.sqrt(c.k), `matmul ${JSON.stringify(c)}`);
      }), { seed: SEED, numRuns: RUNS });
  });

  it('matmul: sizes past the cache blocks (k > KC, several tiles) and degenerate dims', () => {
    for (const [m, n, k, tA, tB] of [[130, 300, 600, false, false], [67, 129, 257, true, true], [1, 513, 300, false, true], [9, 20, 1100, true, false],
      [300, 1, 5, true, false], [5, 7, 0, false, false]] as const) {
      const p = { batch: 1, m, n, k, transA: tA, transB: tB, aBatchStride: 0, bBatchStride: 0 };
      const a = values(m * k, m), b = values(k * n, n);
      const want = read(js.matmul(f32(a), f32(b), p));
      for (const w of wasms) expectClose(read(w.matmul(f32(a), f32(b), p)), want, 1e-5, 2e-5 * Math.sqrt(k + 1), `matmul ${m}x${n}x${k}`);
    }
  });

  it('matmul results are bit-identical for 1 and 2 threads, with FMA (the default, where the engine has it) and without', () => {
    expect(wasms.map((w) => w.kernels.shape.fma)).toEqual([false, false, fmaAvailable(), fmaAvailable()]);
    if (typeof process.versions.node === 'string') expect(fmaAvailable()).toBe(true); // Node 20 (behind a flag the backend sets) and newer
    const p = { batch: 2, m: 150, n: 260, k: 700, transA: false, transB: true, aBatchStride: 150 * 700, bBatchStride: 0 };
    const a = values(2 * 150 * 700, 3), b = values(260 * 700, 4);
    const out = wasms.map((w) => read(w.matmul(f32(a), f32(b), p)));
    const same = (x: Float32Array, y: Float32Array): boolean => Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(y.buffer, y.byteOffset, y.byteLength));
    expect(same(out[0]!, out[1]!)).toBe(true);
    expect(same(out[2]!, out[3]!)).toBe(true);
  });

  it('matmul packing through staging slabs (the path of operands over 64 MB), batched and broadcast', () => {
    const km = buildModule();
    const rt = new WasmRuntime(km.module, km.names, 2);
    try {
      fc.assert(fc.property(
        fc.record({ batch: fc.integer({ min: 1, max: 3 }), m: dim, n: dim, k: dim, transA: fc.boolean(), transB: fc.boolean(),
          bcastB: fc.boolean(), stage: fc.integer({ min: 1, max: 400 }), seed: fc.nat() }),
        (c) => {
          const bBatchStride = c.bcastB ? 0 : c.k * c.n;
          const a = values(c.batch * c.m * c.k, c.seed), b = values(c.bcastB ? c.k * c.n : c.batch * c.k * c.n, c.seed + 1);
          const p = { batch: c.batch, m: c.m, n: c.n, k: c.k, transA: c.transA, transB: c.transB, aBatchStride: c.m * c.k, bBatchStride };
          const want = read(js.matmul(f32(a), f32(b), p));
          const got = wasmMatmul(rt, km.shape, a, b, p, undefined, c.stage);
          expectClose(got, want, 1e-5, 1e-5 * Math.sqrt(c.k), `staged matmul ${JSON.stringify(c)}`);
        }), { seed: SEED, numRuns: RUNS });
    } finally { rt.terminate(); }
  });

  it('matmul of bfloat16 operands (widened while packing), direct and through staging slabs, equals float32 of the same values', () => {
    const km = buildModule();
    const rt = new WasmRuntime(km.module, km.names, 2);
    const bits = (v: Float32Array): Uint16Array => Uint16Array.from(v, float32ToBfloat16Bits);
    const widen = (u: Uint16Array): Float32Array => Float32Array.from(u, bfloat16BitsToFloat32);
    try {
      fc.assert(fc.property(
        fc.record({ batch: fc.integer({ min: 1, max: 3 }), m: dim, n: dim, k: dim, transA: fc.boolean(), transB: fc.boolean(),
          bcastB: fc.boolean(), stage: fc.oneof(fc.constant(1 << 24), fc.integer({ min: 1, max: 400 })), mixed: fc.boolean(), seed: fc.nat() }),
        (c) => {
          const bBatchStride = c.bcastB ? 0 : c.k * c.n;
          const a = bits(values(c.batch * c.m * c.k, c.seed)), b = bits(values(c.bcastB ? c.k * c.n : c.batch * c.k * c.n, c.seed + 1));
          const p = { batch: c.batch, m: c.m, n: c.n, k: c.k, transA: c.transA, transB: c.transB, aBatchStride: c.m * c.k, bBatchStride };
          const want = read(js.matmul(f32(widen(a)), f32(widen(b)), p)); // the reference sums in float64
          const got = wasmMatmul(rt, km.shape, a, c.mixed ? widen(b) : b, p, undefined, c.stage);
          expectClose(got, want, 1e-5, 1e-5 * Math.sqrt(c.k), `bf16 matmul ${JSON.stringify(c)}`);
        }), { seed: SEED, numRuns: RUNS });
    } finally { rt.terminate(); }
  });

  it('unary ops (incl. gelu, geluGrad, tanh, exp) over a wide range and special values', () => {
    const ops = ['neg', 'abs', 'sqrt', 'relu', 'step', 'exp', 'tanh', 'gelu', 'geluGrad', 'log'] as const;
    const x = new Float32Array([...values(4099, 7, 12), 0, -0, 1e-7, -1e-7, 0.29, 0.31, -0.3, 20, -20, 87, -87, -90, 89, NaN, Infinity, -Infinity]);
    for (const op of ops) {
      // gelu(-inf) is NaN in the reference (-inf * 0) but -inf here: infinities are no GELU inputs
      const xs = op === 'sqrt' || op === 'log' ? x.map(Math.abs) : op.startsWith('gelu') ? x.filter(Number.isFinite) : x;
      const want = read(js.unary(op, f32(xs)));
      // gelu far left: the reference's 1 + tanh(u) rounds to 0 where x * sigmoid(2u) keeps ~1e-16
      const atol = op.startsWith('gelu') ? 1e-7 : 1e-30;
      for (const w of wasms) expectClose(read(w.unary(op, f32(xs))), want, 2e-6, atol, `unary ${op}`);
    }
  });

  it('binary ops with broadcasting (full, row, scalar; either side)', () => {
    const ops = ['add', 'sub', 'mul', 'div', 'max', 'min', 'gt', 'lt', 'eq', 'pow'] as const;
    fc.assert(fc.property(
      fc.record({ lead: fc.array(fc.integer({ min: 1, max: 5 }), { minLength: 0, maxLength: 2 }), cols: dim,
        kind: fc.constantFrom('full', 'row', 'row1', 'scalar', 'col'), swap: fc.boolean(), op: fc.constantFrom(...ops), seed: fc.nat() }),
      (c) => {
        const outShape = [...c.lead, c.cols];
        const n = outShape.reduce((x, y) => x * y, 1);
        const bShape = c.kind === 'full' ? outShape : c.kind === 'row' ? [c.cols] : c.kind === 'row1' ? [1, c.cols]
          : c.kind === 'scalar' ? [1] : [...c.lead, 1];
        const a = values(n, c.seed), b = values(bShape.reduce((x, y) => x * y, 1), c.seed + 3);
        if (c.op === 'pow') a.forEach((v, i) => { a[i] = Math.abs(v); });
        if (c.op === 'eq') b.forEach((v, i) => { if (i % 2) b[i] = a[i % a.length]!; });
        const [x, xs, y, ys] = c.swap ? [b, bShape, a, outShape] : [a, outShape, b, bShape];
        const want = read(js.binary(c.op, f32(x), xs, f32(y), ys, outShape));
        for (const w of wasms) expectClose(read(w.binary(c.op, f32(x), xs, f32(y), ys, outShape)), want, 1e-6, 1e-30, `binary ${JSON.stringify(c)}`);
      }), { seed: SEED, numRuns: RUNS * 2 });
  });

  it('strided (permute, slice, expand) and pad, any dtype', () => {
    fc.assert(fc.property(
      fc.record({ shape: fc.array(fc.integer({ min: 1, max: 24 }), { minLength: 1, maxLength: 4 }), perm: fc.nat(), slice: fc.nat(),
        expand: fc.boolean(), pads: fc.array(fc.nat({ max: 3 }), { minLength: 8, maxLength: 8 }), dtype: fc.constantFrom('float32', 'int32', 'float64' as const), seed: fc.nat() }),
      (c) => {
        const nd = c.shape.length, n = c.shape.reduce((x, y) => x * y, 1);
        const base = values(n, c.seed, 100);
        const data = c.dtype === 'float32' ? base : c.dtype === 'int32' ? Int32Array.from(base, Math.trunc) : Float64Array.from(base);
        const inStrides = c.shape.map((_, d) => c.shape.slice(d + 1).reduce((x, y) => x * y, 1));
        // a permutation (rotation by perm), possibly a slice of the first output dim, possibly an expand of a new dim
        const order = c.shape.map((_, d) => (d + c.perm) % nd);
        let outShape = order.map((d) => c.shape[d]!), strides = order.map((d) => inStrides[d]!), offset = 0;
        if (outShape[0]! > 2 && c.slice % 2) { offset = strides[0]!; outShape = [outShape[0]! - 2, ...outShape.slice(1)]; }
        if (c.expand) { outShape = [3, ...outShape]; strides = [0, ...strides]; }
        const want = js.readSync(js.strided(js.fromHost(data, c.dtype), outShape, strides, offset));
        const before = c.shape.map((_, d) => c.pads[d]!), after = c.shape.map((_, d) => c.pads[4 + d]!);
        const wantPad = js.readSync(js.pad(js.fromHost(data, c.dtype), c.shape, before, after));
        for (const w of wasms) {
          expect(Array.from(w.readSync(w.strided(w.fromHost(data, c.dtype), outShape, strides, offset))), `strided ${JSON.stringify(c)}`).toEqual(Array.from(want));
          expect(Array.from(w.readSync(w.pad(w.fromHost(data, c.dtype), c.shape, before, after))), `pad ${JSON.stringify(c)}`).toEqual(Array.from(wantPad));
        }
      }), { seed: SEED, numRuns: RUNS * 2 });
  });

  it('reductions sum/max over [outer, size, inner]', () => {
    fc.assert(fc.property(
      fc.record({ outer: fc.integer({ min: 1, max: 6 }), size: dim, inner: fc.integer({ min: 1, max: 80 }), op: fc.constantFrom('sum', 'max' as const), seed: fc.nat() }),
      (c) => {
        const x = values(c.outer * c.size * c.inner, c.seed);
        const want = read(js.reduce(c.op, f32(x), c.outer, c.size, c.inner));
        for (const w of wasms) expectClose(read(w.reduce(c.op, f32(x), c.outer, c.size, c.inner)), want, 1e-5, 1e-5 * Math.sqrt(c.size), `reduce ${JSON.stringify(c)}`);
      }), { seed: SEED, numRuns: RUNS });
  });
});

/** Run a float64 reference on float32 inputs widened to float64. */
const f64 = (a: Float32Array): Float64Array => Float64Array.from(a);

/**
 * The independent reference: an op's composite (the ops it is defined by, differentiated by the
 * tape) in float64 on the js backend, which has no fused kernels. Returns the outputs `fn` gives
 * and the gradients of sum(outputs[0] * gy) with respect to each input.
 */
function composite64(inputs: { data: Float32Array; shape: number[] }[], fn: (...xs: Tensor[]) => Tensor[], gy: Float32Array):
  { outs: Float64Array[]; grads: Float64Array[] } {
  const xs = inputs.map((x) => tensor(f64(x.data), { shape: x.shape, dtype: 'float64', backend: js, requiresGrad: true }));
  const outs = fn(...xs);
  ops.sum(ops.mul(outs[0]!, tensor(f64(gy), { shape: outs[0]!.shape, dtype: 'float64', backend: js }))).backward();
  return { outs: outs.map((o) => js.readSync(o.storage) as Float64Array), grads: xs.map((x) => js.readSync(x.grad!.storage) as Float64Array) };
}

/** torch.optim.AdamW's update (its documented algorithm) in float64: decoupled decay, bias-corrected moments. */
function adamwStep(p: Float64Array, g: Float64Array, m: Float64Array, v: Float64Array,
  h: { lr: number; beta1: number; beta2: number; eps: number; weightDecay: number; step: number }): void {
  const bc1 = 1 - h.beta1 ** h.step, bc2 = 1 - h.beta2 ** h.step;
  for (let i = 0; i < p.length; i++) {
    p[i] = p[i]! * (1 - h.lr * h.weightDecay);
    m[i] = h.beta1 * m[i]! + (1 - h.beta1) * g[i]!;
    v[i] = h.beta2 * v[i]! + (1 - h.beta2) * g[i]! * g[i]!;
    p[i] = p[i]! - h.lr * (m[i]! / bc1) / (Math.sqrt(v[i]! / bc2) + h.eps);
  }
}

/** Each row's logsumexp, max + log(sum(exp(x - max))), flattened: what the kernels return beside their outputs. */
const rowLogsumexp = (z: Tensor): Tensor => {
  const m = ops.max(z, -1, true);
  return ops.reshape(ops.add(ops.log(ops.sum(ops.exp(ops.sub(z, m)), -1, true)), m), [-1]);
};

describe.skipIf(!available)('wasm fused kernels against the float64 composites', () => {
  const rowsCols = fc.record({ rows: fc.integer({ min: 1, max: 9 }), cols: fc.integer({ min: 1, max: 300 }), seed: fc.nat() });

  it('softmax, logSoftmax and their backwards', () => {
    fc.assert(fc.property(rowsCols, ({ rows, cols, seed }) => {
      const x = values(rows * cols, seed, 8), gy = values(rows * cols, seed + 1);
      const sm = composite64([{ data: x, shape: [rows, cols] }], (t) => [F.softmax(t)], gy);
      const ls = composite64([{ data: x, shape: [rows, cols] }], (t) => [F.logSoftmax(t)], gy);
      for (const w of wasms) {
        const k = w.fused;
        const y = k.softmax!(f32(x), rows, cols), l = k.logSoftmax!(f32(x), rows, cols);
        expectClose(read(y), sm.outs[0]!, 1e-5, 1e-7, 'softmax');
        expectClose(read(l), ls.outs[0]!, 1e-5, 1e-5, 'logSoftmax');
        expectClose(read(k.softmaxBackward!(y, f32(gy), rows, cols)), sm.grads[0]!, 1e-4, 1e-6, 'softmaxBackward');
        expectClose(read(k.logSoftmaxBackward!(l, f32(gy), rows, cols)), ls.grads[0]!, 1e-4, 1e-5, 'logSoftmaxBackward');
      }
    }), { seed: SEED, numRuns: RUNS });
  });

  it('cross-entropy forward/backward (incl. a GPT-size vocabulary row)', () => {
    const cases = [{ rows: 3, cols: 50304, seed: 1 }, ...fc.sample(rowsCols, { seed: SEED, numRuns: RUNS })];
    for (const { rows, cols, seed } of cases) {
      const x = values(rows * cols, seed, 6), gl = values(rows, seed + 2);
      const t = Int32Array.from({ length: rows }, (_, r) => (r * 7919 + seed) % cols);
      const targets = tensor(t, { backend: js });
      // per-row losses (reduction 'none'), and each row's logsumexp: max + log(sum(exp(x - max)))
      const ref = composite64([{ data: x, shape: [rows, cols] }], (z) => [F.crossEntropy(z, targets, { reduction: 'none' }), rowLogsumexp(z)], gl);
      for (const w of wasms) {
        const { loss, lse } = w.fused.crossEntropy!(f32(x), js.fromHost(t, 'int32'), rows, cols);
        expectClose(read(loss), ref.outs[0]!, 1e-5, 1e-5, 'crossEntropy loss');
        expectClose(read(lse), ref.outs[1]!, 1e-6, 1e-6, 'crossEntropy lse');
        expectClose(read(w.fused.crossEntropyBackward!(f32(x), js.fromHost(t, 'int32'), lse, f32(gl), rows, cols)), ref.grads[0]!, 1e-4, 1e-7, 'crossEntropyBackward');
      }
    }
  });

  it('layerNorm forward/backward', () => {
    fc.assert(fc.property(rowsCols, ({ rows, cols, seed }) => {
      const x = values(rows * cols, seed, 3), wt = values(cols, seed + 1), b = values(cols, seed + 2), gy = values(rows * cols, seed + 3);
      // the statistics as layerNorm's composite defines them: the mean and 1/sqrt(biased variance + eps)
      const ref = composite64([{ data: x, shape: [rows, cols] }, { data: wt, shape: [cols] }, { data: b, shape: [cols] }], (xt, wt2, bt) => {
        const mu = ops.mean(xt, -1, true), d = ops.sub(xt, mu);
        const rstd = ops.div(1, ops.sqrt(ops.add(ops.mean(ops.mul(d, d), -1, true), 1e-5)));
        return [F.layerNorm(xt, wt2, bt, 1e-5), ops.reshape(mu, [rows]), ops.reshape(rstd, [rows])];
      }, gy);
      for (const w of wasms) {
        const { y, mean, rstd } = w.fused.layerNorm!(f32(x), f32(wt), f32(b), rows, cols, 1e-5);
        expectClose(read(y), ref.outs[0]!, 1e-4, 1e-5, 'layerNorm y');
        expectClose(read(mean), ref.outs[1]!, 1e-5, 1e-6, 'layerNorm mean');
        expectClose(read(rstd), ref.outs[2]!, 1e-4, 1e-6, 'layerNorm rstd');
        const g = w.fused.layerNormBackward!(f32(x), f32(wt), mean, rstd, f32(gy), rows, cols);
        expectClose(read(g.gx), ref.grads[0]!, 1e-3, 1e-4, 'layerNorm gx');
        expectClose(read(g.gw), ref.grads[1]!, 1e-4, 1e-5 * rows, 'layerNorm gw');
        expectClose(read(g.gb), ref.grads[2]!, 1e-5, 1e-6 * rows, 'layerNorm gb');
      }
    }), { seed: SEED, numRuns: RUNS });
  });

  /** Attention's composite in float64: the output, each query row's logsumexp of its scores, and the gradients. */
  const attentionRef = (q: Float32Array, k: Float32Array, v: Float32Array, go: Float32Array, bh: number, t: number, s: number, d: number,
    scale: number, causal: boolean): { outs: Float64Array[]; grads: Float64Array[] } =>
    composite64([{ data: q, shape: [bh, t, d] }, { data: k, shape: [bh, s, d] }, { data: v, shape: [bh, s, d] }], (qt, kt, vt) => {
      let z = ops.mul(ops.matmulT(qt, kt, false, true), scale);
      if (causal) z = ops.maskedFill(z, tensor(Float64Array.from({ length: t * s }, (_, i) => (i % s > Math.floor(i / s) + s - t ? 1 : 0)), { shape: [t, s], dtype: 'float64', backend: js }), -Infinity);
      return [F.scaledDotProductAttention(qt, kt, vt, { scale, isCausal: causal }), rowLogsumexp(z)];
    }, go);

  it('attention forward/backward, causal and full, T != S', () => {
    fc.assert(fc.property(
      fc.record({ bh: fc.integer({ min: 1, max: 3 }), t: fc.integer({ min: 1, max: 20 }), extra: fc.integer({ min: 0, max: 6 }),
        d: fc.integer({ min: 1, max: 19 }), causal: fc.boolean(), seed: fc.nat() }),
      ({ bh, t, extra, d, causal, seed }) => {
        const s = t + extra, scale = 1 / Math.sqrt(d);
        const q = values(bh * t * d, seed), k = values(bh * s * d, seed + 1), v = values(bh * s * d, seed + 2), go = values(bh * t * d, seed + 3);
        const ref = attentionRef(q, k, v, go, bh, t, s, d, scale, causal);
        for (const w of wasms) {
          const { o, lse } = w.fused.attention!(f32(q), f32(k), f32(v), bh, t, s, d, scale, causal);
          expectClose(read(o), ref.outs[0]!, 1e-4, 1e-5, 'attention o');
          expectClose(read(lse), ref.outs[1]!, 1e-5, 1e-5, 'attention lse');
          const g = w.fused.attentionBackward!(f32(q), f32(k), f32(v), o, lse, f32(go), bh, t, s, d, scale, causal);
          expectClose(read(g.gq), ref.grads[0]!, 1e-3, 1e-5, 'attention gq');
          expectClose(read(g.gk), ref.grads[1]!, 1e-3, 1e-5, 'attention gk');
          expectClose(read(g.gv), ref.grads[2]!, 1e-3, 1e-5, 'attention gv');
        }
      }), { seed: SEED, numRuns: RUNS });
  });

  it('attention past the matmul blocks (t, s > KC = 512): causal tile skipping', () => {
    // s >= t: with s < t the first queries would see no key at all (NaN in the reference)
    for (const [bh, t, s, d] of [[2, 290, 300, 7], [1, 260, 260, 33], [1, 257, 520, 5], [1, 600, 610, 4]] as const) {
      const scale = 0.3, causal = true;
      const q = values(bh * t * d, t), k = values(bh * s * d, s), v = values(bh * s * d, d), go = values(bh * t * d, 1);
      const ref = attentionRef(q, k, v, go, bh, t, s, d, scale, causal);
      for (const w of wasms) {
        const { o, lse } = w.fused.attention!(f32(q), f32(k), f32(v), bh, t, s, d, scale, causal);
        expectClose(read(o), ref.outs[0]!, 1e-4, 1e-5, `attention o ${t}x${s}`);
        expectClose(read(lse), ref.outs[1]!, 1e-5, 1e-5, 'attention lse');
        const g = w.fused.attentionBackward!(f32(q), f32(k), f32(v), o, lse, f32(go), bh, t, s, d, scale, causal);
        expectClose(read(g.gq), ref.grads[0]!, 1e-3, 1e-5, `attention gq ${t}x${s}`);
        expectClose(read(g.gk), ref.grads[1]!, 1e-3, 1e-5, `attention gk ${t}x${s}`);
        expectClose(read(g.gv), ref.grads[2]!, 1e-3, 1e-5, `attention gv ${t}x${s}`);
      }
    }
  });

  it('adamw, add and scale in place, and sumSquares (over many slabs through wasm memory)', () => {
    for (const n of [1, 5, 16384, 16391, 40000, (1 << 22) + 16384 * 3 + 7]) {
      const p = values(n, n), g = values(n, n + 1), m = values(n, n + 2, 0.1), v = values(n, n + 3, 0.1).map(Math.abs);
      const h = { lr: 3e-4, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 3 };
      const [p64, m64, v64] = [f64(p), f64(m), f64(v)];
      adamwStep(p64, f64(g), m64, v64, h);
      for (const w of wasms) {
        const [P, M, V] = [p.slice(), m.slice(), v.slice()];
        w.fused.adamw!([f32(P)], [f32(g)], [f32(M)], [f32(V)], h);
        expectClose(P, p64, 1e-6, 1e-7, `adamw p (n=${n})`);
        // b1 m + (1 - b1) g cancels in float32, as in any float32 optimizer: its error is up to
        // ~eps32 (|b1 m| + |(1 - b1) g|) <= 6e-8 * 0.19, hence atol 2e-8 (1e-8 failed at n = 4M)
        expectClose(M, m64, 1e-5, 2e-8, 'adamw m');
        expectClose(V, v64, 1e-5, 1e-9, 'adamw v');
      }
      // x += y and x *= f round once per element, so float32 results are exact: Math.fround
      const sum = p.map((x, i) => Math.fround(x + g[i]!)), scaled = p.map((x) => Math.fround(x * Math.fround(-0.37)));
      for (const w of wasms) {
        const [A, S, U] = [p.slice(), p.slice(), p.slice()];
        w.fused.addInPlace!(f32(A), f32(g));
        w.fused.scaleInPlace!([f32(S)], f32(Float32Array.of(-0.37)));
        w.fused.scaleInPlace!([f32(U)], f32(Float32Array.of(1)));
        // the first element that differs (-1: none); toEqual on 4M elements takes minutes
        const differs = (x: Float32Array, y: Float32Array): number => x.findIndex((a, i) => !Object.is(a, y[i]));
        expect(differs(A, sum), `addInPlace (n=${n})`).toBe(-1);
        expect(differs(S, scaled), `scaleInPlace (n=${n})`).toBe(-1);
        expect(differs(U, p), 'scaleInPlace by 1').toBe(-1);
      }
      let ss = 0;
      for (const a of [p, g]) for (const x of a) ss += x * x;
      for (const w of wasms) expectClose(read(w.fused.sumSquares!([f32(p), f32(g)])), [ss], 1e-6, 0, 'sumSquares');
    }
  });

  it('float64 runs the composites, matching PyTorch float64 (gradchecks keep working)', () => {
    // independent values: torch_ops.json (made by test/fixtures/make_torch_fixtures.py)
    const fx = JSON.parse(readFileSync(new URL('./fixtures/torch_ops.json', import.meta.url), 'utf8')) as
      { cases: { name: string; inputs: { shape: number[]; data: number[] }[]; outputs: { data: number[] }[] }[] };
    const fcase = (name: string) => fx.cases.find((c) => c.name === name)!;
    const sm = fcase('softmax_lastdim_2x3x5'), mm = fcase('matmul_2d_3x5_5x4');
    for (const w of wasms) {
      const y = F.softmax(tensor(Float64Array.from(sm.inputs[0]!.data), { shape: sm.inputs[0]!.shape, dtype: 'float64', backend: w }));
      expect(y.dtype).toBe('float64');
      expectClose(w.readSync(y.storage), sm.outputs[0]!.data, 1e-12, 1e-15, 'softmax float64');
      const [a, b] = mm.inputs.map((t) => w.fromHost(Float64Array.from(t.data), 'float64')) as [Storage, Storage];
      expectClose(w.readSync(w.matmul(a, b, { batch: 1, m: 3, n: 4, k: 5, transA: false, transB: false, aBatchStride: 0, bBatchStride: 0 })),
        mm.outputs[0]!.data, 1e-12, 1e-15, 'matmul float64');
    }
  });
});

describe.skipIf(!available)('wasm determinism: 1 and 2 threads give identical bits', () => {
  it('matmul, softmax, layerNorm backward, attention, sumSquares', () => {
    const [one, two] = wasms as [WasmBackend, WasmBackend];
    const same = (f: (w: WasmBackend) => Storage[], what: string): void => {
      const a = f(one).map(read), b = f(two).map(read);
      a.forEach((x, i) => expect(Buffer.from(x.buffer).equals(Buffer.from(b[i]!.buffer)), `${what} #${i}`).toBe(true));
    };
    const A = values(300 * 517, 1), B = values(517 * 260, 2);
    same((w) => [w.matmul(f32(A), f32(B), { batch: 1, m: 300, n: 260, k: 517, transA: false, transB: false, aBatchStride: 0, bBatchStride: 0 })], 'matmul');
    same((w) => [w.fused.softmax!(f32(A), 300, 517)], 'softmax');
    const wt = values(517, 3), mean = values(300, 4), rstd = values(300, 5).map(Math.abs);
    same((w) => Object.values(w.fused.layerNormBackward!(f32(A), f32(wt), f32(mean), f32(rstd), f32(A), 300, 517)), 'layerNormBackward');
    const q = values(2 * 70 * 16, 6);
    same((w) => { const r = w.fused.attention!(f32(q), f32(q), f32(q), 2, 70, 70, 16, 0.25, true); return [r.o, r.lse]; }, 'attention');
    same((w) => [w.fused.sumSquares!([f32(A), f32(B)])], 'sumSquares');
  });
});
