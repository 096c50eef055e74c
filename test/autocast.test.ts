// Autocast against PyTorch's own (fixtures by test/fixtures/make_autocast_fixtures.py, torch 1.13
// CPU bfloat16 autocast, with CUDA's float32 list written out where the CPU's differs): every op's
// output dtype and values, its gradients, the promotion rule and the parameter-cast cache; then a
// GPT's forward/backward and 10 training steps, on the js and wasm backends.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { F, Tensor, autocast, autocastDtype, clipGradNorm, configureOptimizers, getLr, setBackend, tensor, type Backend } from '../src/index.js';
import { ops } from '../src/tensor/index.js';
import { bfloat16BitsToFloat32, float16BitsToFloat32 } from '../src/tensor/dtype.js';
import { createWasmBackend, wasmSimdAvailable, type WasmBackend } from '../src/tensor/backends/wasm/index.js';
import { getBackendByName } from '../src/tensor/backend.js';
import { initGpuBackend } from '../src/tensor/backends/gpu/index.js';
import { realWebGpu } from './helpers/webgpu.js';
import { gptFromFixture, ids, loadTorchGpt, worstRel, type FixTensor } from './helpers/torch-gpt.js';

interface Case { name: string; inputs: Record<string, FixTensor>; output: FixTensor; G: FixTensor; grads: Record<string, FixTensor> }
interface F16Case { name: string; x: FixTensor; w: FixTensor; output: FixTensor }
interface StepLog { step: number; loss: number; norm: number; lr: number }
interface Fixture {
  cases: Case[]; float16: F16Case[];
  gpt: {
    parity: { idx: FixTensor; targets: FixTensor; logits: FixTensor; loss: number; grads: Record<string, FixTensor> };
    train: { B: number; T: number; grad_accum_steps: number; max_steps: number; max_lr: number; min_lr: number; warmup_steps: number;
      weight_decay: number; clip_grad_norm: number; token_stream: FixTensor; bfloat16: StepLog[]; float32: StepLog[] };
  };
}
const fx = JSON.parse(readFileSync(fileURLToPath(new URL('./fixtures/autocast_bf16.json', import.meta.url)), 'utf8')) as Fixture;
const tiny = loadTorchGpt();

/** A tensor's values as numbers (half types decoded). */
function values(t: Tensor): number[] {
  const d = t.dataSync();
  return Array.from(d, t.dtype === 'bfloat16' ? bfloat16BitsToFloat32 : t.dtype === 'float16' ? float16BitsToFloat32 : (v: number) => v);
}

const ops1: Record<string, (x: Record<string, Tensor>) => Tensor> = {
  linear: ({ x, w, b }) => F.linear(x!, w!, b!),
  matmul_batched_broadcast: ({ a, b }) => a!.matmul(b!),
  matmul_bmm: ({ a, b }) => a!.matmul(b!),
  residual_promotes: ({ x, w, b }) => x!.add(F.linear(x!, w!, b!)),
  weight_used_twice: ({ x1, x2, w }) => F.linear(x1!, w!).add(F.linear(x2!, w!)),
  cross_entropy_of_bf16_logits: ({ x, w, targets }) => F.crossEntropy(F.linear(x!, w!), targets!),
  softmax_of_bf16: ({ x, w }) => F.softmax(F.linear(x!, w!), -1),
  log_softmax_of_bf16: ({ x, w }) => F.logSoftmax(F.linear(x!, w!), -1),
  layer_norm_of_bf16: ({ x, w, g, b }) => F.layerNorm(F.linear(x!, w!), g!, b!, 1e-5),
  exp_of_bf16: ({ x, w }) => F.linear(x!, w!).exp(),
  pow_of_bf16: ({ x, w }) => F.linear(x!, w!).pow(2),
  sum_of_bf16: ({ x, w }) => F.linear(x!, w!).sum(-1),
  gelu_of_bf16: ({ x, w }) => F.linear(x!, w!).gelu(),
  mean_of_bf16: ({ x, w }) => F.linear(x!, w!).mean(-1),
  embedding_stays_float32: ({ w, idx }) => F.embedding(idx!, w!),
  attention_causal: ({ q, k, v }) => F.scaledDotProductAttention(q!, k!, v!, { isCausal: true }),
  disabled_inside_region: ({ x, w, b }) => autocast('bfloat16', () => F.linear(x!, w!, b!), { enabled: false }),
};

const made: WasmBackend[] = [];
afterAll(() => { setBackend('js'); for (const b of made) b.terminate(); });
const backends: { label: string; make: () => Backend; skip: boolean }[] = [
  { label: 'js', make: () => getBackendByName('js'), skip: false },
  { label: 'wasm', make: () => { const b = createWasmBackend({ threads: 2 }); made.push(b); return b; }, skip: !wasmSimdAvailable() },
];

/** One unit in the last place of `v` in a half dtype (the spacing of values around it). */
function ulp(v: number, dtype: string): number {
  const bits = dtype === 'bfloat16' ? 8 : 11; // significand bits, with the implicit one
  const minExp = dtype === 'bfloat16' ? -126 : -14;
  return 2 ** (Math.max(Math.floor(Math.log2(Math.abs(v) || 2 ** minExp)), minExp) - (bits - 1));
}

/** Half outputs: every element within one ulp of torch's and nearly all identical; float32 ones normwise. */
function expectClose(got: number[], want: FixTensor, what: string): void {
  if (want.dtype === 'float32') { expect(worstRel(got, want.data), what).toBeLessThan(1e-5); return; }
  let same = 0;
  got.forEach((v, i) => {
    const w = want.data[i]!;
    if (v === w) same++;
    else expect(Math.abs(v - w), `${what}[${i}]: ${v} vs ${w}`).toBeLessThanOrEqual(ulp(w, want.dtype));
  });
  expect(same / got.length, `${what}: share of elements identical to torch's`).toBeGreaterThanOrEqual(0.95);
}

function inputsOf(c: { inputs: Record<string, FixTensor> }): Record<string, Tensor> {
  const ins: Record<string, Tensor> = {};
  for (const [k, v] of Object.entries(c.inputs)) {
    ins[k] = v.dtype === 'int64' ? tensor(Int32Array.from(v.data), { shape: v.shape })
      : tensor(Float32Array.from(v.data), { shape: v.shape }).requiresGrad_();
  }
  return ins;
}

/** 10 steps as the fixture's loop (train_gpt2.py's), in bfloat16 autocast or float32; the losses. */
function trainTiny(dtype: 'bfloat16' | 'float32'): number[] {
  const tr = fx.gpt.train;
  const m = gptFromFixture(tiny);
  const opt = configureOptimizers(m, tr.weight_decay, tr.max_lr);
  const stream = Int32Array.from(tr.token_stream.data);
  const n = tr.B * tr.T, losses: number[] = [];
  let pos = 0;
  for (let step = 0; step < tr.max_steps; step++) {
    opt.zeroGrad();
    let acc = 0;
    for (let k = 0; k < tr.grad_accum_steps; k++, pos += n) {
      const x = tensor(stream.slice(pos, pos + n), { shape: [tr.B, tr.T] }), y = tensor(stream.slice(pos + 1, pos + n + 1), { shape: [tr.B, tr.T] });
      const fwd = (): Tensor => m.forward(x, y).loss!.div(tr.grad_accum_steps);
      const l = dtype === 'bfloat16' ? autocast('bfloat16', fwd) : fwd();
      expect(l.dtype).toBe('float32'); // cross-entropy is on the float32 list
      acc += l.item();
      l.backward();
    }
    clipGradNorm(m.parameters(), tr.clip_grad_norm);
    opt.setLr(getLr(step, { maxLr: tr.max_lr, minLr: tr.min_lr, warmupSteps: tr.warmup_steps, maxSteps: tr.max_steps }));
    opt.step();
    losses.push(acc);
  }
  return losses;
}

describe.each(backends)('autocast (bfloat16) as torch.autocast on $label', ({ make, skip }) => {
  it.skipIf(skip)('every op: output dtype and values, and the float32 gradients of its inputs, equal PyTorch\'s', () => {
    setBackend(make());
    expect(Object.keys(ops1).sort()).toEqual(fx.cases.map((c) => c.name).sort());
    for (const c of fx.cases) {
      const ins = inputsOf(c);
      const out = autocast('bfloat16', () => ops1[c.name]!(ins));
      expect(autocastDtype()).toBeNull(); // the region ended
      expect(out.dtype, `${c.name}: output dtype`).toBe(c.output.dtype);
      expect(out.shape, c.name).toEqual(c.output.shape);
      expectClose(values(out), c.output, `${c.name} output`);
      out.backward(tensor(Float32Array.from(c.G.data), { shape: c.G.shape }).to(out.dtype));
      for (const [k, want] of Object.entries(c.grads)) {
        const g = ins[k]!.grad!;
        expect(g.dtype, `${c.name}: the gradient of ${k} is float32, as the leaf`).toBe('float32');
        expect(worstRel(values(g), want.data), `${c.name}: gradient of ${k}`).toBeLessThan(1e-4);
      }
    }
  });

  it.skipIf(skip)('float16: linear rounds once from float16 inputs (float64 reference), and overflows to inf above 65504', () => {
    setBackend(make());
    for (const c of fx.float16) {
      const x = tensor(Float32Array.from(c.x.data), { shape: c.x.shape }), w = tensor(Float32Array.from(c.w.data), { shape: c.w.shape });
      const y = autocast('float16', () => F.linear(x, w));
      expect(y.dtype).toBe('float16');
      expectClose(values(y), c.output, c.name);
    }
    expect(fx.float16.some((c) => c.output.data.some((v) => !Number.isFinite(v)))).toBe(false); // the fixture's values are finite
    const big = autocast('float16', () => F.linear(tensor([[300, 300]]), tensor([[300, 300]])));
    expect(values(big)[0]).toBe(Infinity); // 180000 > 65504
  });

  it.skipIf(skip)('a float32 parameter used twice in a region is cast once (one cast on the tape), its gradient summed', () => {
    setBackend(make());
    const w = tensor(Float32Array.from({ length: 48 }, (_, i) => Math.sin(i) * 0.3), { shape: [6, 8] }).requiresGrad_();
    const x1 = tensor(Float32Array.from({ length: 24 }, (_, i) => Math.cos(i)), { shape: [3, 8] });
    /** The tape node that made linear(x, w)'s weight operand: the cast of w. */
    const castOf = (y: Tensor): unknown => y.node!.inputs[1]!.node;
    const [a, b] = autocast('bfloat16', () => [F.linear(x1, w), F.linear(x1, w)]);
    expect(castOf(a!)).not.toBeNull();
    expect(castOf(a!)).toBe(castOf(b!));
    expect((castOf(a!) as { op: string }).op).toBe('cast');
    const c = autocast('bfloat16', () => F.linear(x1, w));
    expect(castOf(c)).not.toBe(castOf(a!)); // a new region, a new cast (the cache ends with its region)
    // torch caches only leaves that require grad: a computed tensor used twice is cast twice
    const h = w.mul(1);
    const [d, e] = autocast('bfloat16', () => [F.linear(x1, h), F.linear(x1, h)]);
    expect(castOf(d!)).not.toBe(castOf(e!));
  });

  it.skipIf(skip)('GPT forward/backward under bfloat16 autocast equal PyTorch\'s: bf16 logits, float32 loss and gradients', () => {
    setBackend(make());
    const model = gptFromFixture(tiny);
    const p = fx.gpt.parity;
    const { logits, loss } = autocast('bfloat16', () => model.forward(ids(p.idx), ids(p.targets)));
    expect(logits.dtype).toBe('bfloat16');
    expectClose(values(logits), p.logits, 'logits');
    expect(Math.abs(loss!.item() - p.loss)).toBeLessThan(1e-5);
    loss!.backward();
    for (const [name, prm] of model.namedParameters()) {
      expect(prm.grad!.dtype).toBe('float32');
      expect(worstRel(values(prm.grad!), p.grads[name]!.data), `grad of ${name}`).toBeLessThan(1e-4);
    }
  });

  it.skipIf(skip)('10 training steps in bfloat16 stay within 1e-3 of PyTorch\'s bf16 run, and nearer it than its float32 run', () => {
    setBackend(make());
    const tr = fx.gpt.train;
    const ours = trainTiny('bfloat16');
    const toBf16 = ours.map((l, i) => Math.abs(l - tr.bfloat16[i]!.loss)), toF32 = ours.map((l, i) => Math.abs(l - tr.float32[i]!.loss));
    for (let i = 0; i < ours.length; i++) expect(toBf16[i], `step ${i}`).toBeLessThan(1e-3);
    // the first steps round identically (rounding flips compound from step ~4 on)
    for (let i = 0; i < 3; i++) expect(toBf16[i], `step ${i}`).toBeLessThan(1e-5);
    const mean = (xs: number[]): number => xs.reduce((a, b) => a + b, 0) / xs.length;
    expect(mean(toBf16)).toBeLessThan(0.6 * mean(toF32));
    // and float32 training (no autocast) equals torch's float32 run
    const f32 = trainTiny('float32');
    f32.forEach((l, i) => expect(Math.abs(l - tr.float32[i]!.loss), `float32 step ${i}`).toBeLessThan(1e-5));
  });
});

// the gpu backend: half tensors as packed bits on the device, widened and rounded by its cast
// kernels (bfloat16 by bit shifts with round-to-nearest-even, float16 by pack2x16float's rule)
const gpuTargets: { label: string; make: () => Promise<Backend | null> }[] = [
  { label: 'gpu.js cpu mode', make: () => initGpuBackend({ mode: 'cpu' }) },
  { label: 'WebGPU', make: realWebGpu },
];
async function deviceValues(t: Tensor): Promise<number[]> {
  const d = await t.data();
  return Array.from(d, t.dtype === 'bfloat16' ? bfloat16BitsToFloat32 : t.dtype === 'float16' ? float16BitsToFloat32 : (v: number) => v);
}
describe.each(gpuTargets)('autocast (bfloat16) on the gpu backend ($label)', ({ make }) => {
  it('every op and the GPT forward/backward equal PyTorch\'s as on the CPU backends', async (ctx) => {
    const b = await make();
    if (!b) { ctx.skip(); return; }
    setBackend(b);
    for (const c of fx.cases) {
      const ins = inputsOf(c);
      const out = autocast('bfloat16', () => ops1[c.name]!(ins));
      expect(out.dtype, `${c.name}: output dtype`).toBe(c.output.dtype);
      expectClose(await deviceValues(out), c.output, `${c.name} output`);
      out.backward(tensor(Float32Array.from(c.G.data), { shape: c.G.shape }).to(out.dtype));
      for (const [k, want] of Object.entries(c.grads)) {
        expect(worstRel(await deviceValues(ins[k]!.grad!), want.data), `${c.name}: gradient of ${k}`).toBeLessThan(1e-4);
      }
    }
    for (const c of fx.float16) {
      const y = autocast('float16', () => F.linear(tensor(Float32Array.from(c.x.data), { shape: c.x.shape }), tensor(Float32Array.from(c.w.data), { shape: c.w.shape })));
      expectClose(await deviceValues(y), c.output, c.name);
    }
    const model = gptFromFixture(tiny, b.name);
    const p = fx.gpt.parity;
    const { logits, loss } = autocast('bfloat16', () => model.forward(ids(p.idx, b.name), ids(p.targets, b.name)));
    expectClose(await deviceValues(logits), p.logits, 'logits');
    expect(Math.abs((await deviceValues(loss!))[0]! - p.loss)).toBeLessThan(1e-5);
    loss!.backward();
    for (const [name, prm] of model.namedParameters()) {
      expect(worstRel(await deviceValues(prm.grad!), p.grads[name]!.data), `grad of ${name}`).toBeLessThan(1e-4);
    }
  }, 300_000);
});

describe('autocast regions', () => {
  it('nest, end on throw and when a returned promise settles, and refuse other dtypes', async () => {
    setBackend('js');
    expect(autocastDtype()).toBeNull();
    autocast('bfloat16', () => {
      expect(autocastDtype()).toBe('bfloat16');
      autocast('float16', () => expect(autocastDtype()).toBe('float16'));
      autocast('float16', () => expect(autocastDtype()).toBeNull(), { enabled: false });
      expect(autocastDtype()).toBe('bfloat16');
    });
    expect(() => autocast('bfloat16', () => { throw new Error('boom'); })).toThrow('boom');
    expect(autocastDtype()).toBeNull();
    const p = autocast('bfloat16', async () => { await new Promise((r) => setTimeout(r, 5)); return autocastDtype(); });
    expect(await p).toBe('bfloat16');
    expect(autocastDtype()).toBeNull();
    expect(() => autocast('float32' as 'bfloat16', () => 0)).toThrow(/dtype must be 'bfloat16' or 'float16', got "float32"/);
  });

  it('backward rules never autocast, even when backward() runs inside a region', () => {
    setBackend('js');
    const w = tensor([[0.1, 0.2]]).requiresGrad_();
    const x = tensor([[1.2345678], [2.3456789]]);
    const y = w.matmul(x).sum(); // float32, outside any region
    autocast('bfloat16', () => y.backward());
    // dL/dw = x^T exactly: a bfloat16 matmul in the backward would round it to 1.234375, 2.34375
    expect(Array.from(w.grad!.dataSync())).toEqual([Math.fround(1.2345678), Math.fround(2.3456789)]);
    expect(ops.matmul(w, x).dtype).toBe('float32');
  });
});

describe('autocast activation memory (wasm)', () => {
  // What one GPT forward leaves on the tape for backward, measured in a child with --expose-gc
  // (host memory in use after the forward minus before).
  // Half storage must really halve it: the tape keeps the half tensors (q/k/v inside attention),
  // never a float32 copy the kernels widened, and no half copy of the weights either (backward
  // recasts them). lm_head and the loss are the fused op under autocast too (no logits; it holds
  // the float32 gradient of the [4096, 128] weight, 2 MiB). Here: 58% of the unfused float32 forward
  // (9.3 MiB, its [256, 4096] logits 4 MiB of it); keeping the weights' casts would add 1.8 MiB
  // (77%), the widened inputs of fused kernels (once kept by a closure) 4.6 MiB (107%).
  it.skipIf(!wasmSimdAvailable())('a bfloat16 or float16 forward keeps under 62% of what a float32 one does', async () => {
    const { spawnSync } = await import('node:child_process');
    const dist = fileURLToPath(new URL('../dist/', import.meta.url));
    const script = `
      const { GPT, F, autocast, setBackend, tensor, manualSeed } = await import(${JSON.stringify(dist + 'index.js')});
      const { createWasmBackend } = await import(${JSON.stringify(dist + 'tensor/backends/wasm/index.js')});
      setBackend(createWasmBackend({ threads: 1 }));
      manualSeed(0);
      const m = new GPT({ blockSize: 64, vocabSize: 4096, nLayer: 2, nHead: 2, nEmbd: 128 });
      const x = tensor(Int32Array.from({ length: 4 * 64 }, (_, i) => (i * 37) % 4096), { shape: [4, 64] });
      const settle = async () => { for (let i = 0; i < 4; i++) { globalThis.gc(); await new Promise((r) => setTimeout(r, 10)); } };
      const out = {};
      // float32: the same computation as under autocast (logits, then the loss); fused: the float32
      // default, lm_head and the loss as one op (no logits kept)
      const unfused = () => F.crossEntropy(m.forward(x).logits.reshape([4 * 64, 4096]), x.reshape([4 * 64]));
      for (const dt of ['float32', 'fused', 'bfloat16', 'float16']) {
        const fwd = () => (dt === 'float32' ? unfused() : dt === 'fused' ? m.forward(x, x).loss : autocast(dt, () => m.forward(x, x).loss));
        // the least of three (a first forward can allocate what persists, or meet a late collection)
        for (let k = 0; k < 3; k++) {
          await settle();
          const base = process.memoryUsage().arrayBuffers;
          const loss = fwd(); await settle();
          out[dt] = Math.min(out[dt] ?? Infinity, process.memoryUsage().arrayBuffers - base);
          loss.backward();
        }
      }
      console.log(JSON.stringify(out));`;
    const r = spawnSync(process.execPath, ['--expose-gc', '--input-type=module', '-e', script], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    const bytes = JSON.parse(r.stdout.trim().split('\n').pop()!) as Record<'float32' | 'fused' | 'bfloat16' | 'float16', number>;
    // float32: ~9 MiB here (the [256, 4096] logits alone are 4 MiB); a widened copy kept anywhere breaks the bound
    expect(bytes.float32).toBeGreaterThan(4 * 2 ** 20);
    for (const dt of ['bfloat16', 'float16'] as const) expect(bytes[dt] / bytes.float32, `${dt}: ${JSON.stringify(bytes)}`).toBeLessThan(0.62);
    // the fused float32 lm_head + loss keeps no logits (4 MiB) but its weight's gradient (2 MiB)
    expect(bytes.fused, JSON.stringify(bytes)).toBeLessThan(bytes.float32 - 1.5 * 2 ** 20);
  });
});
