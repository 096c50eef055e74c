// The gpu backend's kernels, checked primitive by primitive against the js reference backend
// and against float64 formulas written out here, on two targets: gpu.js's cpu mode (the same
// kernel functions, run as JavaScript) and a real WebGPU adapter (a GPU, or SwiftShader in CI;
// see test/helpers/webgpu.ts), with the same tolerances. Shapes are small: both are slow.

import { beforeAll, describe, expect, it, vi } from 'vitest';
import fc from 'fast-check';
import type { Backend, BinaryOp, MatmulParams, Storage, UnaryOp } from '../src/tensor/backend.js';
import { JsBackend } from '../src/tensor/backends/js.js';
import { GpuBackend, collapseBroadcast, collapseStrided } from '../src/tensor/backends/gpu/gpu-backend.js';
import type { BufferView, DeviceBuffer, MatmulDims, MatmulEpilogue, OperandView, Runner } from '../src/tensor/backends/gpu/runner.js';
import type { WebGpuRunner } from '../src/tensor/backends/gpu/webgpu-runner.js';
import { convertHost, type HostArray } from '../src/tensor/dtype.js';
import { sizeOf, stridesOf } from '../src/tensor/shape.js';
import { F, autocast, tensor, type Tensor } from '../src/index.js';
import { Generator } from '../src/tensor/random.js';
import { gpuTargets } from './helpers/webgpu.js';
import { expectAutocastLinearCrossEntropy } from './helpers/lce-autocast.js';

const js = new JsBackend();

function rand(n: number, seed: number, lo = -2, hi = 2): Float32Array {
  const g = new Generator(seed);
  return Float32Array.from({ length: n }, () => lo + (hi - lo) * g.random());
}
function close(got: ArrayLike<number>, want: ArrayLike<number>, rtol = 1e-5, atol = 1e-6): void {
  expect(got.length).toBe(want.length);
  for (let i = 0; i < want.length; i++) {
    const g = got[i]!, w = want[i]!;
    if (Number.isNaN(w)) { expect(Number.isNaN(g), `index ${i}: want NaN, got ${g}`).toBe(true); continue; }
    if (!Number.isFinite(w)) { expect(g, `index ${i}`).toBe(w); continue; }
    if (Math.abs(g - w) > atol + rtol * Math.abs(w)) expect.fail(`index ${i}: got ${g}, want ${w}`);
  }
}

/** op(A) @ op(B) per batch matrix in float64, written out from the MatmulParams contract (batch stride 0 broadcasts). */
function matmul64(A: Float32Array, B: Float32Array, p: MatmulParams): Float64Array {
  const { batch, m, n, k, transA, transB, aBatchStride, bBatchStride } = p;
  const out = new Float64Array(batch * m * n);
  for (let b = 0; b < batch; b++) for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
    let s = 0;
    for (let q = 0; q < k; q++) {
      s += (transA ? A[b * aBatchStride + q * m + i]! : A[b * aBatchStride + i * k + q]!) *
        (transB ? B[b * bBatchStride + j * k + q]! : B[b * bBatchStride + q * n + j]!);
    }
    out[(b * m + i) * n + j] = s;
  }
  return out;
}

for (const target of await gpuTargets()) {
const gpu: GpuBackend = target.backend!;
const label = target.label;
/** Launches of one kernel so far, where the runner counts them (WebGPU; gpu.js's cpu mode does not). */
const launchesOf = (kernel: string): number => (gpu.runner as { workByKernel?: Map<string, { launches: number }> }).workByKernel?.get(kernel)?.launches ?? 0;
/** The same values on both backends. */
const both = (data: Float32Array): [Storage, Storage] => [js.fromHost(data.slice(), 'float32'), gpu.fromHost(data.slice(), 'float32')];
const read = (s: Storage): Promise<HostArray> => gpu.read(s);
/** GPT-2's GELU (tanh approximation) in float64. */
const gelu64 = (v: number): number => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

describe.skipIf(!target.backend)(`gpu backend kernels (${label})`, () => {
describe('memory and errors', () => {
  it('a hand-written kernel whose pipeline fails to build at its first launch makes the next read throw, naming it', async (ctx) => {
    const r = target.runner() as unknown as { pipelineOf?(src: { key: string; code: () => string; bindings: readonly ('read' | 'write')[] }): unknown; flush(): void };
    if (!r.pipelineOf) { ctx.skip(); return; } // (cpu mode builds no pipelines)
    const be = new GpuBackend(target.runner() as Runner, { name: 'gpu-bad-pipeline' });
    const runner = be.runner as unknown as typeof r;
    const x = be.fromHost(Float32Array.of(1, 2, 3), 'float32');
    expect(Array.from(await be.read(x))).toEqual([1, 2, 3]);
    // valid WGSL, but 256 KiB of workgroup memory: no device allows that, which only the pipeline finds
    runner.pipelineOf!({ key: 'too much workgroup memory', bindings: [], code: () => `@group(0) @binding(0) var<uniform> u : vec4<u32>;
var<workgroup> big : array<f32, 65535>;
@compute @workgroup_size(1) fn main() { big[0] = f32(u.x); }` });
    await expect(be.read(x)).rejects.toThrow(/too much workgroup memory kernel failed to build/);
  });

  it('passes its own start-up self-test; a wrong fast matmul is switched off, not used', async () => {
    await gpu.selfTest();
    const inner = target.runner();
    const broken: Runner = Object.assign(Object.create(inner) as Runner, {
      matmul: (a: DeviceBuffer, _b: DeviceBuffer, p: MatmulDims) => inner.upload(new Float32Array(p.batch * p.m * p.n).fill(a.length)),
    });
    const be = new GpuBackend(broken, { name: 'gpu-broken-matmul' });
    const warn = vi.spyOn(console, 'warn').mockImplementation(() => {});
    await be.selfTest();
    expect(warn).toHaveBeenCalledWith(expect.stringMatching(/tiled WGSL matmul failed its self-test/));
    warn.mockRestore();
    const p = { batch: 1, m: 1, n: 1, k: 2, transA: false, transB: false, aBatchStride: 0, bBatchStride: 0 };
    expect(Array.from(await be.read(be.matmul(be.fromHost(Float32Array.of(1, 2), 'float32'), be.fromHost(Float32Array.of(3, 4), 'float32'), p)))).toEqual([11]);
    // a fast matmul whose epilogue is wrong (here: ignored) is switched off too, and with it the epilogues
    const noEpilogue = target.runner();
    if (noEpilogue.matmul) {
      const matmul = noEpilogue.matmul.bind(noEpilogue);
      noEpilogue.matmul = (a: OperandView, b: OperandView, q: MatmulDims, into?: BufferView) => matmul(a, b, q, into);
      const be2 = new GpuBackend(noEpilogue, { name: 'gpu-broken-epilogue' });
      const warn2 = vi.spyOn(console, 'warn').mockImplementation(() => {});
      await be2.selfTest();
      expect(warn2).toHaveBeenCalledWith(expect.stringMatching(/with bias/));
      warn2.mockRestore();
      expect(be2.fastMatmul).toBe(false);
      const q = { batch: 1, m: 4, n: 4, k: 4, transA: false, transB: true, aBatchStride: 0, bBatchStride: 0 };
      expect(be2.fused.matmulBias!(be2.full(16, 'float32', 1), be2.full(16, 'float32', 1), q, be2.full(4, 'float32', 1))).toBeNull();
    }
    // tensor cores (none here): a right stand-in (the half-widening kernel) is kept, a wrong one turned off
    for (const right of [true, false]) {
      const r = target.runner();
      if (!r.matmul) break;
      let off = 0;
      Object.assign(r, {
        tensorMatmul: () => true,
        tensorCoresOff: () => { off++; },
        matmulTensor: (a: OperandView, b: OperandView, q: MatmulDims, into?: BufferView, epi?: MatmulEpilogue) =>
          (right ? r.matmul!(a, b, q, into, epi, 'f16') : r.upload(new Float32Array(q.batch * q.m * q.n))),
      });
      const warn3 = vi.spyOn(console, 'warn').mockImplementation(() => {});
      await new GpuBackend(r, { name: `gpu-tensor-${right}` }).selfTest();
      expect(off, `a ${right ? 'right' : 'wrong'} tensor-core matmul`).toBe(right ? 0 : 1);
      if (!right) expect(warn3).toHaveBeenCalledWith(expect.stringMatching(/tensor-core matmul failed its self-test/));
      warn3.mockRestore();
    }
  });

  it('profile(): every launch timed on the device by timestamp queries, per kernel (WebGPU with timestamp-query)', async (ctx) => {
    const runner = gpu.runner as Partial<WebGpuRunner>;
    if (!runner.profile || !runner.features?.includes('timestamp-query')) { ctx.skip(); return; }
    const p = { batch: 1, m: 256, n: 256, k: 256, transA: false, transB: false, aBatchStride: 0, bBatchStride: 0 };
    const a = gpu.fromHost(rand(256 * 256, 1), 'float32'), b = gpu.fromHost(rand(256 * 256, 2), 'float32');
    const prof = runner.profile();
    const outs = [0, 1, 2].map(() => gpu.matmul(a, b, p));
    const e = gpu.unary('exp', outs[0]!);
    const times = await prof.stop();
    expect(times.get('matmul128 (WGSL)')?.launches).toBe(3);
    expect(times.get('unary')?.launches).toBe(1);
    // each launch took some time, and less than the whole wall-clock of the profiled work
    expect(times.get('matmul128 (WGSL)')!.seconds).toBeGreaterThan(0);
    // results are unchanged by the passes of their own
    close(await read(outs[2]!), matmul64(rand(256 * 256, 1), rand(256 * 256, 2), p), 1e-5, 1e-4);
    // profiling stopped: later launches are not timed
    gpu.dispose(gpu.matmul(a, b, p));
    expect((await prof.stop()).get('matmul128 (WGSL)')?.launches).toBe(3);
    for (const s of [a, b, e, ...outs]) gpu.dispose(s);
  });

  it('round-trips float32, int32 and half bits; full() fills', async () => {
    expect(Array.from(await read(gpu.fromHost(Float32Array.of(1.5, -2), 'float32')))).toEqual([1.5, -2]);
    const i = await read(gpu.fromHost(Int32Array.of(3, -7, 50303), 'int32'));
    expect(i).toBeInstanceOf(Int32Array);
    expect(Array.from(i)).toEqual([3, -7, 50303]);
    const h = await read(gpu.fromHost(Uint16Array.of(0x3c00, 0xfc00), 'float16'));
    expect(h).toBeInstanceOf(Uint16Array);
    expect(Array.from(h)).toEqual([0x3c00, 0xfc00]);
    expect(Array.from(await read(gpu.full(3, 'float32', -0.25)))).toEqual([-0.25, -0.25, -0.25]);
    expect(Array.from(await read(gpu.full(2, 'float16', 1)))).toEqual([0x3c00, 0x3c00]);
    expect(Array.from(await read(gpu.full(2, 'int32', 7)))).toEqual([7, 7]);
  });
  it('refuses float64 and synchronous reads with messages that say what to do', () => {
    expect(() => gpu.fromHost(new Float64Array(2), 'float64')).toThrow(/float64 is for checking on the js backend/);
    expect(() => gpu.readSync(gpu.full(1, 'float32', 0))).toThrow(/await t\.data\(\)/);
    expect(gpu.hostMemory).toBe(false);
  });
  it('dispose frees a storage; using it afterwards names the problem', () => {
    const s = gpu.full(4, 'float32', 1);
    gpu.dispose(s);
    gpu.dispose(s); // idempotent
    expect(() => gpu.unary('neg', s)).toThrow(/used after dispose\(\)/);
  });
});

describe('elementwise', () => {
  const unaryOps: UnaryOp[] = ['neg', 'exp', 'log', 'sqrt', 'tanh', 'relu', 'abs', 'step', 'gelu', 'geluGrad'];
  for (const op of unaryOps) {
    it(`unary ${op} matches the js backend`, async () => {
      const positive = op === 'log' || op === 'sqrt';
      const x = rand(37, 1, positive ? 0.01 : -6, 6);
      x[0] = 0; if (!positive) { x[1] = -20; x[2] = 20; } // tanh saturation, relu/step at 0
      const [a, b] = both(x);
      close(await read(gpu.unary(op, b)), js.readSync(js.unary(op, a)), 2e-6, 1e-6);
    });
  }

  const binaryOps: BinaryOp[] = ['add', 'sub', 'mul', 'div', 'pow', 'max', 'min', 'gt', 'lt', 'eq'];
  for (const op of binaryOps) {
    it(`binary ${op} with broadcasting matches the js backend (fast-check shapes)`, async () => {
      await fc.assert(fc.asyncProperty(
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 0, maxLength: 5 }),
        fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }), fc.array(fc.boolean(), { minLength: 5, maxLength: 5 }),
        fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 1000 }),
        async (out, onesA, onesB, dropA, dropB, seed) => {
          const aShape = out.map((d, i) => (onesA[i] ? 1 : d)).slice(Math.min(dropA, out.length));
          const bShape = out.map((d, i) => (onesB[i] ? 1 : d)).slice(Math.min(dropB, out.length));
          const pos = op === 'pow';
          const av = rand(sizeOf(aShape), seed, pos ? 0.1 : -3, 3), bv = rand(sizeOf(bShape), seed + 1, pos ? -2 : -3, 3);
          if (op === 'eq' && av.length && bv.length) av[0] = bv[0]!; // make equality happen
          const [ja, ga] = both(av), [jb, gb] = both(bv);
          close(await read(gpu.binary(op, ga, aShape, gb, bShape, out)), js.readSync(js.binary(op, ja, aShape, jb, bShape, out)), 3e-6);
        }), { seed: 42 + binaryOps.indexOf(op), numRuns: 12 });
    });
  }

  it('pow keeps JS semantics for negative bases with integer exponents', async () => {
    const [ja, ga] = both(Float32Array.of(-2, -2, -3, 0, -1.5));
    const [jb, gb] = both(Float32Array.of(2, 3, 0, 2, 0.5));
    close(await read(gpu.binary('pow', ga, [5], gb, [5], [5])), js.readSync(js.binary('pow', ja, [5], jb, [5], [5])));
  });

  it('broadcasts that do not collapse to 3 dims take the expand path', async () => {
    const aShape = [2, 1, 3, 1, 2], bShape = [1, 2, 1, 2, 1], out = [2, 2, 3, 2, 2];
    expect(collapseBroadcast(out, [aShape, bShape]).dims.length).toBe(5);
    const [ja, ga] = both(rand(12, 5)), [jb, gb] = both(rand(4, 6));
    close(await read(gpu.binary('sub', ga, aShape, gb, bShape, out)), js.readSync(js.binary('sub', ja, aShape, jb, bShape, out)));
  });

  it('where broadcasts all three operands like the js backend', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(fc.integer({ min: 1, max: 3 }), { minLength: 1, maxLength: 5 }),
      fc.array(fc.integer({ min: 0, max: 7 }), { minLength: 5, maxLength: 5 }), fc.integer({ min: 0, max: 1000 }),
      async (out, masks, seed) => {
        const shapes = [0, 1, 2].map((k) => out.map((d, i) => ((masks[i]! >> k) & 1 ? 1 : d)));
        const c = rand(sizeOf(shapes[0]!), seed).map((v) => (v > 0 ? 1 : 0));
        const [jc, gc] = both(c), [ja, ga] = both(rand(sizeOf(shapes[1]!), seed + 1)), [jb, gb] = both(rand(sizeOf(shapes[2]!), seed + 2));
        close(await read(gpu.where(gc, shapes[0]!, ga, shapes[1]!, gb, shapes[2]!, out)),
          js.readSync(js.where(jc, shapes[0]!, ja, shapes[1]!, jb, shapes[2]!, out)));
      }), { seed: 7, numRuns: 15 });
  });

  it('casts float16 / bfloat16 bits exactly as dtype.ts does (rounding, subnormals, inf, NaN, -0)', async () => {
    const vals = Float32Array.of(0, -0, 1, -1, 0.1, 65504, 65519.99, 65520, 1e6, -1e6, 6.1e-5, 5.96e-8, 2.98e-8, 2.99e-8, 1e-10,
      1.0009765625, 1.00048828125, 1.00146484375, 3.14159, -2.5e-6, 3.4e38, -3.4e38, 1e-39, Infinity, -Infinity, NaN, 1 + 2 ** -8, 1 + 3 * 2 ** -9);
    for (const to of ['float16', 'bfloat16'] as const) {
      const bits = await read(gpu.cast(gpu.fromHost(vals.slice(), 'float32'), to));
      const want = convertHost(vals, 'float32', to);
      for (let i = 0; i < vals.length; i++) {
        if (Number.isNaN(vals[i])) expect((bits[i]! & 0x7fff) > (to === 'float16' ? 0x7c00 : 0x7f80)).toBe(true);
        else expect(bits[i], `${to} bits of ${vals[i]}`).toBe(want[i]);
      }
      // and back: decoding the reference bits gives the reference values
      const back = await read(gpu.cast(gpu.fromHost(want as Uint16Array, to), 'float32'));
      close(back, convertHost(want, to, 'float32'), 0, 0);
    }
  });

  it('casts float32 -> int32 truncating toward zero; int32 work runs on the host copy', async () => {
    const i = await read(gpu.cast(gpu.fromHost(Float32Array.of(2.7, -2.7, 0.2, 5), 'float32'), 'int32'));
    expect(Array.from(i)).toEqual([2, -2, 0, 5]);
    const a = gpu.fromHost(Int32Array.of(1, 2, 3, 4), 'int32');
    const e = gpu.binary('eq', a, [4], gpu.fromHost(Int32Array.of(2), 'int32'), [1], [4]);
    expect(Array.from(await read(e))).toEqual([0, 1, 0, 0]);
    expect(Array.from(await read(gpu.strided(a, [2], [2], 1)))).toEqual([2, 4]);
    expect(Array.from(await read(gpu.cast(a, 'float32')))).toEqual([1, 2, 3, 4]);
  });
});

describe('reductions and matmul', () => {
  it('reduce sum/max over [outer, size, inner], one- and two-pass', async () => {
    for (const [outer, size, inner] of [[1, 1, 1], [3, 5, 2], [1, 300, 1], [2, 129, 3], [4, 1, 5]] as const) {
      const [ja, ga] = both(rand(outer * size * inner, outer + size + inner));
      for (const op of ['sum', 'max'] as const) {
        close(await read(gpu.reduce(op, ga, outer, size, inner)), js.readSync(js.reduce(op, ja, outer, size, inner)), 1e-5, 1e-5);
      }
    }
  });

  it('matmul with transposes and batch strides matches float64 math', async () => {
    for (const transA of [false, true]) for (const transB of [false, true]) for (const [fa, fb] of [[1, 1], [0, 1], [1, 0]] as const) {
      const batch = 3, m = 5, n = 4, k = 7;
      const A = rand((fa ? batch : 1) * m * k, 11), B = rand((fb ? batch : 1) * k * n, 12);
      const p = { batch, m, n, k, transA, transB, aBatchStride: fa * m * k, bBatchStride: fb * k * n };
      close(await read(gpu.matmul(gpu.fromHost(A, 'float32'), gpu.fromHost(B, 'float32'), p)), matmul64(A, B, p), 1e-5, 1e-5);
    }
  });

  it('matmul at aligned sizes (the 128x128 vec4 kernel on WebGPU): every layout, partial tiles in m, n and k, batched and broadcast', async () => {
    const wideLaunches = (): number => launchesOf('matmul128 (WGSL)');
    const before = wideLaunches();
    let calls = 0;
    // 136 x 132: a full 128 tile and an edge in each of m and n; k = 44: five k tiles of 8, the last half full
    for (const [batch, m, n, k] of [[2, 136, 132, 44], [1, 4, 8, 4], [3, 20, 12, 260]] as const) {
      for (const transA of [false, true]) for (const transB of [false, true]) for (const [fa, fb] of [[1, 1], [0, 1], [1, 0]] as const) {
        const A = rand((fa ? batch : 1) * m * k, m + k), B = rand((fb ? batch : 1) * k * n, n + k);
        const p = { batch, m, n, k, transA, transB, aBatchStride: fa * m * k, bBatchStride: fb * k * n };
        close(await read(gpu.matmul(gpu.fromHost(A, 'float32'), gpu.fromHost(B, 'float32'), p)), matmul64(A, B, p), 1e-5, 1e-5 * Math.sqrt(k));
        calls++;
      }
    }
    // on a WebGPU adapter every one of these ran the wide kernel (gpu.js's cpu mode has no WGSL)
    if (gpu.runner.mode === 'webgpu') expect(wideLaunches() - before).toBe(calls);
  });

  it('matmul of two bfloat16 or float16 operands (WebGPU: widened in the wide kernel\'s tile loads, no cast launches), every layout, as float64', async () => {
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const casts = launchesOf('cast (WGSL)'), halves = launchesOf(`matmul128 ${dtype === 'bfloat16' ? 'bf16' : 'f16'} (WGSL)`);
      let calls = 0;
      for (const [batch, m, n, k] of [[2, 136, 132, 44], [1, 4, 8, 4]] as const) {
        for (const transA of [false, true]) for (const transB of [false, true]) for (const [fa, fb] of [[1, 1], [0, 1]] as const) {
          // the operands' values are the half values; the product of those, in float64, is the reference
          const A = convertHost(convertHost(rand((fa ? batch : 1) * m * k, m + k + 1), 'float32', dtype), dtype, 'float32') as Float32Array;
          const B = convertHost(convertHost(rand((fb ? batch : 1) * k * n, n + k + 1), 'float32', dtype), dtype, 'float32') as Float32Array;
          A[0] = dtype === 'float16' ? 2 ** -20 : A[0]!; // a subnormal float16 widens exactly
          const p = { batch, m, n, k, transA, transB, aBatchStride: fa * m * k, bBatchStride: fb * k * n };
          const out = gpu.matmul(gpu.cast(gpu.fromHost(A, 'float32'), dtype), gpu.cast(gpu.fromHost(B, 'float32'), dtype), p);
          expect(out.dtype).toBe('float32');
          close(await read(out), matmul64(A, B, p), 1e-5, 1e-5 * Math.sqrt(k));
          calls++;
        }
      }
      if (gpu.runner.mode === 'webgpu') {
        expect(launchesOf(`matmul128 ${dtype === 'bfloat16' ? 'bf16' : 'f16'} (WGSL)`) - halves, `${dtype} products`).toBe(calls);
        expect(launchesOf('cast (WGSL)') - casts, 'only the test\'s own casts to the half type').toBe(2 * calls);
      }
    }
  });

  it("a linear layer's epilogues: x W^T + bias, and G^T X with G's column sums (the bias gradient), in one launch each", async () => {
    const f = gpu.fused;
    if (gpu.runner.mode !== 'webgpu') { expect(f.matmulBias?.(gpu.full(16, 'float32', 1), gpu.full(16, 'float32', 1), { batch: 1, m: 4, n: 4, k: 4, transA: false, transB: true, aBatchStride: 0, bBatchStride: 0 }, gpu.full(4, 'float32', 1)) ?? null).toBeNull(); return; }
    // rows 300 (three 128-row tiles, the last partial), 136 outputs (a partial column tile), 44 inputs
    const rows = 300, fin = 44, fout = 136;
    const x = rand(rows * fin, 51), w = rand(fout * fin, 52), bias = rand(fout, 53), g = rand(rows * fout, 54);
    const fwd = { batch: 1, m: rows, n: fout, k: fin, transA: false, transB: true, aBatchStride: 0, bBatchStride: 0 };
    const want = matmul64(x, w, fwd).map((v, i) => v + bias[i % fout]!);
    const launches = launchesOf('matmul128 (WGSL)');
    const y = f.matmulBias!(gpu.fromHost(x.slice(), 'float32'), gpu.fromHost(w.slice(), 'float32'), fwd, gpu.fromHost(bias.slice(), 'float32'));
    close(await read(y!), want, 1e-5, 1e-5 * Math.sqrt(fin));
    // dW = G^T X [fout, fin] and db = G's column sums [fout]
    const bwd = { batch: 1, m: fout, n: fin, k: rows, transA: true, transB: false, aBatchStride: 0, bBatchStride: 0 };
    const r = f.matmulRowSums!(gpu.fromHost(g.slice(), 'float32'), gpu.fromHost(x.slice(), 'float32'), bwd);
    close(await read(r!.out), matmul64(g, x, bwd), 1e-5, 1e-5 * Math.sqrt(rows));
    const colSums = Array.from({ length: fout }, (_, j) => { let s = 0; for (let i = 0; i < rows; i++) s += g[i * fout + j]!; return s; });
    close(await read(r!.rowSums), colSums, 1e-5, 1e-5 * Math.sqrt(rows));
    expect(launchesOf('matmul128 (WGSL)') - launches, 'one launch each').toBe(2);
    // layouts without the wide kernel (an odd dimension) are declined, for the caller's two-launch path
    expect(f.matmulBias!(gpu.full(15, 'float32', 1), gpu.full(15, 'float32', 1), { ...fwd, m: 5, n: 3, k: 3 }, gpu.full(3, 'float32', 1))).toBeNull();
  });

  it('half operands with a half result: the product and bias rounded to bfloat16 or float16 as stored, bit for bit the float32 result cast, every layout', async () => {
    const f = gpu.fused;
    if (gpu.runner.mode !== 'webgpu') { expect(f.matmulHalf?.(gpu.full(16, 'float16', 1), gpu.full(16, 'float16', 1), { batch: 1, m: 4, n: 4, k: 4, transA: false, transB: true, aBatchStride: 0, bBatchStride: 0 }, null) ?? null).toBeNull(); return; }
    // multiples of 1/8 (exact in both half types; every product and sum exact in float32), so the
    // one rounding is the only difference from the float64 product; 132 outputs: a partial column tile
    const vals = (n: number, seed: number): Float32Array => Float32Array.from({ length: n }, (_, i) => (((i * seed) % 13) - 6) / 8);
    const [m, n, k] = [36, 132, 20];
    for (const dtype of ['bfloat16', 'float16'] as const) for (const transA of [false, true]) for (const transB of [false, true]) {
      const p = { batch: 2, m, n, k, transA, transB, aBatchStride: m * k, bBatchStride: 0 };
      const A = vals(2 * m * k, 3), B = vals(k * n, 5), bias = vals(n, 7);
      const half = (d: Float32Array): Storage => gpu.cast(gpu.fromHost(d.slice(), 'float32'), dtype);
      const launches = launchesOf(`matmul128 ${dtype === 'bfloat16' ? 'bf16' : 'f16'} out (WGSL)`);
      for (const withBias of [false, true]) {
        const y = f.matmulHalf!(half(A), half(B), p, withBias ? half(bias) : null);
        expect(y?.dtype).toBe(dtype);
        const want = convertHost(Float32Array.from(matmul64(A, B, p), (v, i) => v + (withBias ? bias[i % n]! : 0)), 'float32', dtype);
        expect(Array.from(await read(y!)), `${dtype} bits, transA=${transA} transB=${transB} bias=${withBias}`).toEqual(Array.from(want));
      }
      expect(launchesOf(`matmul128 ${dtype === 'bfloat16' ? 'bf16' : 'f16'} out (WGSL)`) - launches, 'one launch each').toBe(2);
    }
  });

  it("GELU and its backward on half tensors, one launch each: float64's values rounded to the half type, to within one of its ulps", async () => {
    const f = gpu.fused;
    if (gpu.runner.mode !== 'webgpu') { expect(f.geluHalf?.(gpu.full(4, 'float16', 1)) ?? null).toBeNull(); return; }
    const n = 1001; // odd: the last word holds one element
    const dgelu = (x: number): number => (gelu64(x + 1e-6) - gelu64(x - 1e-6)) / 2e-6;
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const asHalf = (d: Float32Array): Float32Array => Float32Array.from(convertHost(convertHost(d, 'float32', dtype), dtype, 'float32'));
      const x = asHalf(Float32Array.from({ length: n }, (_, i) => -7 + (14 * i) / (n - 1)));
      const g = asHalf(Float32Array.from({ length: n }, (_, i) => Math.cos(i)));
      const [hx, hg] = [x, g].map((d) => gpu.cast(gpu.fromHost(d.slice(), 'float32'), dtype));
      const before = [launchesOf('gelu half (WGSL)'), launchesOf('gelu backward half (WGSL)')];
      const y = f.geluHalf!(hx!), gx = f.geluBackwardHalf!(hx!, hg!);
      expect([y?.dtype, gx?.dtype]).toEqual([dtype, dtype]);
      expect([launchesOf('gelu half (WGSL)') - before[0]!, launchesOf('gelu backward half (WGSL)') - before[1]!]).toEqual([1, 1]);
      const ulp = dtype === 'bfloat16' ? 2 ** -8 : 2 ** -11; // half the spacing, relative
      for (const [got, want, what] of [[y!, Array.from(x, gelu64), 'gelu'], [gx!, Array.from(x, (v, i) => g[i]! * dgelu(v)), "g * gelu'"]] as const) {
        const vals = convertHost(await read(got), dtype, 'float32');
        want.forEach((w, i) => expect(Math.abs(vals[i]! - w), `${dtype} ${what}(${x[i]})`).toBeLessThanOrEqual(2 * ulp * Math.abs(w) + 1e-5));
      }
    }
  });

  it('a Linear layer on the GPU (bias in the epilogue, its gradient from the weight gradient pass) matches the js backend', async () => {
    const rows = 70, fin = 12, fout = 20;
    const x = rand(rows * fin, 55), w = rand(fout * fin, 56), bias = rand(fout, 57), up = rand(rows * fout, 58);
    const run = async (be: Backend): Promise<Float32Array[]> => {
      const xt = tensor(x.slice(), { shape: [2, rows / 2, fin], backend: be, requiresGrad: true });
      const wt = tensor(w.slice(), { shape: [fout, fin], backend: be, requiresGrad: true });
      const bt = tensor(bias.slice(), { shape: [fout], backend: be, requiresGrad: true });
      const y = F.linear(xt, wt, bt);
      y.backward(tensor(up.slice(), { shape: [2, rows / 2, fout], backend: be }));
      return Promise.all([y, xt.grad!, wt.grad!, bt.grad!].map(async (v) => Float32Array.from(await v.data())));
    };
    const want = await run(js);
    const launches = launchesOf('matmul128 (WGSL)');
    (await run(gpu)).forEach((got, i) => close(got, want[i]!, 1e-5, 1e-5 * Math.sqrt(rows)));
    if (gpu.runner.mode === 'webgpu') expect(launchesOf('matmul128 (WGSL)') - launches, 'forward, dX, dW with db').toBe(3);
  });
});

describe('an MLP\'s c_fc and its GELU (F.linearGelu)', () => {
  it('the epilogue: GELU(x W^T + bias) and the pre-activation from one launch, against float64', async () => {
    const f = gpu.fused;
    if (gpu.runner.mode !== 'webgpu') { expect(f.matmulBiasGelu?.(gpu.full(16, 'float32', 1), gpu.full(16, 'float32', 1), { batch: 1, m: 4, n: 4, k: 4, transA: false, transB: true, aBatchStride: 0, bBatchStride: 0 }, gpu.full(4, 'float32', 1)) ?? null).toBeNull(); return; }
    // 300 rows (the last 128-row tile partial), 136 outputs (a partial column tile), 44 inputs
    const rows = 300, fin = 44, fout = 136;
    const x = rand(rows * fin, 81), w = rand(fout * fin, 82), bias = rand(fout, 83);
    const p = { batch: 1, m: rows, n: fout, k: fin, transA: false, transB: true, aBatchStride: 0, bBatchStride: 0 };
    const pre = matmul64(x, w, p).map((v, i) => v + bias[i % fout]!);
    const launches = launchesOf('matmul128 (WGSL)');
    const r = f.matmulBiasGelu!(gpu.fromHost(x.slice(), 'float32'), gpu.fromHost(w.slice(), 'float32'), p, gpu.fromHost(bias.slice(), 'float32'));
    close(await read(r!.pre), pre, 1e-5, 1e-5 * Math.sqrt(fin));
    close(await read(r!.out), pre.map(gelu64), 1e-5, 1e-5 * Math.sqrt(fin));
    expect(launchesOf('matmul128 (WGSL)') - launches, 'one launch').toBe(1);
  });

  it('with half operands and results: the pre-activation rounded as stored (bit for bit), GELU of it rounded again, from one launch', async () => {
    const f = gpu.fused;
    if (gpu.runner.mode !== 'webgpu') { expect(f.matmulHalfGelu?.(gpu.full(16, 'float16', 1), gpu.full(16, 'float16', 1), { batch: 1, m: 4, n: 4, k: 4, transA: false, transB: true, aBatchStride: 0, bBatchStride: 0 }, null) ?? null).toBeNull(); return; }
    // multiples of 1/8 (every product and sum exact), 132 outputs (a partial column tile)
    const vals = (n: number, seed: number): Float32Array => Float32Array.from({ length: n }, (_, i) => (((i * seed) % 13) - 6) / 8);
    const [m, n, k] = [36, 132, 20];
    const p = { batch: 1, m, n, k, transA: false, transB: true, aBatchStride: 0, bBatchStride: 0 };
    const A = vals(m * k, 3), B = vals(n * k, 5), bias = vals(n, 7);
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const half = (d: Float32Array): Storage => gpu.cast(gpu.fromHost(d.slice(), 'float32'), dtype);
      const kernel = `matmul128 ${dtype === 'bfloat16' ? 'bf16' : 'f16'} out (WGSL)`, launches = launchesOf(kernel);
      const r = f.matmulHalfGelu!(half(A), half(B), p, half(bias));
      expect([r?.out.dtype, r?.pre.dtype]).toEqual([dtype, dtype]);
      const pre = convertHost(Float32Array.from(matmul64(A, B, p), (v, i) => v + bias[i % n]!), 'float32', dtype);
      expect(Array.from(await read(r!.pre)), `${dtype} pre-activation bits`).toEqual(Array.from(pre));
      const h = convertHost(pre, dtype, 'float32'), got = convertHost(await read(r!.out), dtype, 'float32');
      const ulp = dtype === 'bfloat16' ? 2 ** -8 : 2 ** -11; // half the spacing, relative
      h.forEach((v, i) => expect(Math.abs(got[i]! - gelu64(v)), `${dtype} gelu(${v})`).toBeLessThanOrEqual(2 * ulp * Math.abs(gelu64(v)) + 1e-6));
      expect(launchesOf(kernel) - launches, 'one launch').toBe(1);
    }
  });

  it('forward and every gradient match gelu(linear) on the js backend; on WebGPU the forward is one launch, no GELU kernel', async () => {
    const rows = 70, fin = 12, fout = 20;
    const x = rand(rows * fin, 84), w = rand(fout * fin, 85), bias = rand(fout, 86), up = rand(rows * fout, 87);
    const run = async (be: Backend, fused: boolean): Promise<Float32Array[]> => {
      const xt = tensor(x.slice(), { shape: [2, rows / 2, fin], backend: be, requiresGrad: true });
      const wt = tensor(w.slice(), { shape: [fout, fin], backend: be, requiresGrad: true });
      const bt = tensor(bias.slice(), { shape: [fout], backend: be, requiresGrad: true });
      const y = fused ? F.linearGelu(xt, wt, bt) : F.gelu(F.linear(xt, wt, bt));
      y.backward(tensor(up.slice(), { shape: [2, rows / 2, fout], backend: be }));
      return Promise.all([y, xt.grad!, wt.grad!, bt.grad!].map(async (v) => Float32Array.from(await v.data())));
    };
    const want = await run(js, false);
    const before = ['matmul128 (WGSL)', 'unary'].map(launchesOf);
    (await run(gpu, true)).forEach((got, i) => close(got, want[i]!, 1e-5, 1e-5 * Math.sqrt(rows)));
    if (gpu.runner.mode === 'webgpu') expect(['matmul128 (WGSL)', 'unary'].map((k, i) => launchesOf(k) - before[i]!), 'forward, dX, dW with db; no unary GELU').toEqual([3, 0]);
  });
});

describe('movement and indexing', () => {
  it('strided views (permute / slice / expand) match the js backend (fast-check)', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 1, maxLength: 5 }), fc.integer({ min: 0, max: 10_000 }),
      async (shape, seed) => {
        const g = new Generator(seed);
        const base = stridesOf(shape);
        const perm = shape.map((_, i) => i).sort(() => g.random() - 0.5);
        // slice: start and length per dim, some dims expanded (stride 0)
        const starts = shape.map((d) => Math.floor(g.random() * d));
        const outShape = perm.map((p) => Math.max(1, shape[p]! - starts[p]!));
        const strides = perm.map((p) => (g.random() < 0.2 ? 0 : base[p]!));
        const offset = starts.reduce((s, v, i) => s + v * base[i]!, 0);
        const expanded = outShape.map((d, i) => (strides[i] === 0 ? d + 1 : d));
        const [ja, ga] = both(rand(sizeOf(shape), seed));
        close(await read(gpu.strided(ga, expanded, strides, offset)), js.readSync(js.strided(ja, expanded, strides, offset)), 0, 0);
      }), { seed: 3, numRuns: 40 });
  });

  it('strided views that do not nest go through the general kernel', async () => {
    expect(collapseStrided([2, 2, 2], [7, 3, 1]).dims.length).toBe(3);
    const [ja, ga] = both(rand(20, 9));
    close(await read(gpu.strided(ga, [2, 2, 2], [7, 3, 1], 2)), js.readSync(js.strided(ja, [2, 2, 2], [7, 3, 1], 2)), 0, 0);
    const [jb, gb] = both(rand(120, 10));
    close(await read(gpu.strided(gb, [2, 4, 3, 5], [60, 5, 20, 1], 0)), js.readSync(js.strided(jb, [2, 4, 3, 5], [60, 5, 20, 1], 0)), 0, 0);
  });

  it('pad matches the js backend (fast-check)', async () => {
    await fc.assert(fc.asyncProperty(
      fc.array(fc.tuple(fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 2 }), fc.integer({ min: 0, max: 2 })), { minLength: 1, maxLength: 4 }),
      fc.integer({ min: 0, max: 1000 }),
      async (dims, seed) => {
        const shape = dims.map((d) => d[0]), before = dims.map((d) => d[1]), after = dims.map((d) => d[2]);
        const [ja, ga] = both(rand(sizeOf(shape), seed));
        close(await read(gpu.pad(ga, shape, before, after)), js.readSync(js.pad(ja, shape, before, after)), 0, 0);
      }), { seed: 11, numRuns: 25 });
  });

  it('gatherRows / scatterAddRows (repeated and missing rows) / pickLast / scatterLast', async () => {
    const rows = 7, cols = 3, n = 9;
    const idx = Int32Array.of(2, 0, 2, 6, 2, 5, 0, 1, 6);
    const [jt, gt] = both(rand(rows * cols, 1));
    const ji = js.fromHost(idx.slice(), 'int32'), gi = gpu.fromHost(idx.slice(), 'int32');
    close(await read(gpu.gatherRows(gt, cols, gi, n)), js.readSync(js.gatherRows(jt, cols, ji, n)), 0, 0);
    const [js2, gs2] = both(rand(n * cols, 2));
    close(await read(gpu.scatterAddRows(gs2, cols, gi, n, rows)), js.readSync(js.scatterAddRows(js2, cols, ji, n, rows)), 1e-6, 1e-6);
    const [jx, gx] = both(rand(n * rows, 3));
    close(await read(gpu.pickLast(gx, n, rows, gi)), js.readSync(js.pickLast(jx, n, rows, ji)), 0, 0);
    const [jg, gg] = both(rand(n, 4));
    close(await read(gpu.scatterLast(gg, n, rows, gi)), js.readSync(js.scatterLast(jg, n, rows, ji)), 0, 0);
    expect(() => gpu.gatherRows(gt, cols, gpu.fromHost(Int32Array.of(7), 'int32'), 1)).toThrow(/out of range: 7/);
  });

  it('half tensors (packed two per word) move bit for bit: strided, pad, gatherRows, odd sizes, NaN payloads', async () => {
    // every 16-bit pattern class: random bits (signalling and quiet NaNs, infinities, subnormals included)
    const g = new Generator(5);
    const bits = (n: number): Uint16Array => Uint16Array.from({ length: n }, (_, i) => (i === 0 ? 0x7c01 : i === 1 ? 0xff81 : Math.floor(g.random() * 65536)));
    for (const dtype of ['float16', 'bfloat16'] as const) {
      const h = bits(3 * 5 * 7); // odd: the last word holds one element
      const jh = js.fromHost(h.slice(), dtype), gh = gpu.fromHost(h.slice(), dtype);
      expect(Array.from(await read(gh))).toEqual(Array.from(h));
      const same = async (got: Storage, want: Storage): Promise<void> => {
        expect(got.dtype).toBe(dtype);
        expect(Array.from(await read(got))).toEqual(Array.from(js.readSync(want)));
      };
      await same(gpu.strided(gh, [7, 5, 3], [1, 7, 35], 0), js.strided(jh, [7, 5, 3], [1, 7, 35], 0));
      await same(gpu.strided(gh, [2, 3], [0, 5], 1), js.strided(jh, [2, 3], [0, 5], 1));
      await same(gpu.pad(gh, [3, 5, 7], [0, 1, 0], [1, 0, 2]), js.pad(jh, [3, 5, 7], [0, 1, 0], [1, 0, 2]));
      const ix = Int32Array.of(4, 0, 4, 2);
      await same(gpu.gatherRows(gh, 21, gpu.fromHost(ix.slice(), 'int32'), 4), js.gatherRows(jh, 21, js.fromHost(ix.slice(), 'int32'), 4));
      await same(gpu.full(5, dtype, -1.5), js.full(5, dtype, -1.5));
      // float16 <-> bfloat16 goes through float32, as on the js backend
      const other = dtype === 'float16' ? 'bfloat16' : 'float16';
      const got = await read(gpu.cast(gh, other)), want = js.readSync(js.cast(jh, other)), wide = convertHost(h, dtype, 'float32');
      const nan = other === 'float16' ? 0x7c00 : 0x7f80;
      for (let i = 0; i < h.length; i++) {
        if (Number.isNaN(wide[i])) expect((got[i]! & 0x7fff) > nan, `NaN at ${i}`).toBe(true);
        else expect(got[i], `${dtype} ${h[i]} -> ${other}`).toBe(want[i]);
      }
    }
  });
});

describe('fused kernels against float64 formulas', () => {
  const rows = 5, cols = 7;
  const x = rand(rows * cols, 21, -4, 4);
  const rowsOf = (a: ArrayLike<number>, r: number): number[] => Array.from({ length: cols }, (_, c) => a[r * cols + c]!);

  it('softmax / logSoftmax and their backwards', async () => {
    const f = gpu.fused;
    const gy = rand(rows * cols, 22);
    const sm = new Float64Array(rows * cols), ls = new Float64Array(rows * cols), gsm = new Float64Array(rows * cols), gls = new Float64Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      const v = rowsOf(x, r), mx = Math.max(...v);
      const lse = mx + Math.log(v.reduce((s, a) => s + Math.exp(a - mx), 0));
      let dot = 0, gsum = 0;
      for (let c = 0; c < cols; c++) { sm[r * cols + c] = Math.exp(v[c]! - lse); ls[r * cols + c] = v[c]! - lse; }
      for (let c = 0; c < cols; c++) { dot += gy[r * cols + c]! * sm[r * cols + c]!; gsum += gy[r * cols + c]!; }
      for (let c = 0; c < cols; c++) {
        gsm[r * cols + c] = sm[r * cols + c]! * (gy[r * cols + c]! - dot);
        gls[r * cols + c] = gy[r * cols + c]! - sm[r * cols + c]! * gsum;
      }
    }
    const X = gpu.fromHost(x.slice(), 'float32'), G = gpu.fromHost(gy.slice(), 'float32');
    const y = f.softmax!(X, rows, cols), l = f.logSoftmax!(X, rows, cols);
    close(await read(y), sm, 1e-5, 1e-6);
    close(await read(l), ls, 1e-5, 1e-5);
    close(await read(f.softmaxBackward!(y, G, rows, cols)), gsm, 1e-4, 1e-6);
    close(await read(f.logSoftmaxBackward!(l, G, rows, cols)), gls, 1e-4, 1e-5);
  });

  it('layerNorm forward and backward (a workgroup per row on WebGPU: rows wider than 256 threads, and blocks of rows)', async () => {
    const count = (): number[] => [launchesOf('layerNorm (WGSL)'), launchesOf('layerNormBackward (WGSL)'), launchesOf('layerNormSums (WGSL)')];
    const before = count();
    // 5 x 7; 3 x 770 (4 columns a thread, the last partial); 600 x 300 (two rows per block of the backward's sums)
    for (const [R, C, seed] of [[rows, cols, 21], [3, 770, 27], [600, 300, 28]] as const) {
      const X0 = R === rows ? x : rand(R * C, seed, -4, 4);
      const w = rand(C, 23, 0.5, 1.5), b = rand(C, 24), gy = rand(R * C, 25), eps = 1e-5;
      const y = new Float64Array(R * C), gx = new Float64Array(R * C), gw = new Float64Array(C), gb = new Float64Array(C);
      const means: number[] = [], rstds: number[] = [];
      for (let r = 0; r < R; r++) {
        const v = Array.from({ length: C }, (_, c) => X0[r * C + c]!), mu = v.reduce((s, a) => s + a, 0) / C;
        const rs = 1 / Math.sqrt(v.reduce((s, a) => s + (a - mu) ** 2, 0) / C + eps);
        means.push(mu); rstds.push(rs);
        const xh = v.map((a) => (a - mu) * rs), g = v.map((_, c) => gy[r * C + c]! * w[c]!);
        const m1 = g.reduce((s, a) => s + a, 0) / C, m2 = g.reduce((s, a, c) => s + a * xh[c]!, 0) / C;
        for (let c = 0; c < C; c++) {
          y[r * C + c] = xh[c]! * w[c]! + b[c]!;
          gx[r * C + c] = rs * (g[c]! - m1 - xh[c]! * m2);
          gw[c]! += gy[r * C + c]! * xh[c]!;
          gb[c]! += gy[r * C + c]!;
        }
      }
      const X = gpu.fromHost(X0.slice(), 'float32');
      const out = gpu.fused.layerNorm!(X, gpu.fromHost(w.slice(), 'float32'), gpu.fromHost(b.slice(), 'float32'), R, C, eps);
      close(await read(out.y), y, 1e-5, 1e-5);
      close(await read(out.mean), means, 1e-5, 1e-6);
      close(await read(out.rstd), rstds, 1e-5, 1e-6);
      const bw = gpu.fused.layerNormBackward!(X, gpu.fromHost(w.slice(), 'float32'), out.mean, out.rstd, gpu.fromHost(gy.slice(), 'float32'), R, C);
      close(await read(bw.gx), gx, 1e-4, 1e-5);
      close(await read(bw.gw), gw, 1e-4, 1e-5 * Math.sqrt(R));
      close(await read(bw.gb), gb, 1e-5, 1e-5 * Math.sqrt(R));
    }
    // on WebGPU, one launch forward per shape, two backward (gx with the blocks' partial sums, then gw and gb)
    if (gpu.runner.mode === 'webgpu') expect(count().map((n, i) => n - before[i]!)).toEqual([3, 3, 3]);
  });

  it("geluBackward: g * gelu'(x) (tanh approximation) in one kernel, as float64", async () => {
    const n = 1000, xs = rand(n, 29, -4, 4), g = rand(n, 30); // (past ~5 a device's float32 tanh rounds to -1: gelu' is then 0 against ~1e-6)
    xs[0] = 0; xs[1] = 40; xs[2] = -40; // tanh saturated both ways
    const want = Array.from(xs, (v, i) => {
      const c = Math.sqrt(2 / Math.PI), u = c * (v + 0.044715 * v ** 3), t = Math.tanh(u);
      return g[i]! * (0.5 * (1 + t) + 0.5 * v * (1 - t * t) * c * (1 + 3 * 0.044715 * v * v));
    });
    // for negative x gelu' is a difference of terms up to ~10 (x (1 - t^2) du): float32 leaves ~10 eps32 |g| absolute
    close(await read(gpu.fused.geluBackward!(gpu.fromHost(xs.slice(), 'float32'), gpu.fromHost(g.slice(), 'float32'))), want, 1e-5, 4e-6);
  });

  it('crossEntropy forward and backward', async () => {
    const t = Int32Array.of(0, 6, 3, 3, 1), gl = rand(rows, 26);
    const loss: number[] = [], lses: number[] = [], g = new Float64Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      const v = rowsOf(x, r), mx = Math.max(...v), lse = mx + Math.log(v.reduce((s, a) => s + Math.exp(a - mx), 0));
      lses.push(lse); loss.push(lse - v[t[r]!]!);
      for (let c = 0; c < cols; c++) g[r * cols + c] = gl[r]! * (Math.exp(v[c]! - lse) - (c === t[r] ? 1 : 0));
    }
    const X = gpu.fromHost(x.slice(), 'float32'), T = gpu.fromHost(t.slice(), 'int32');
    const out = gpu.fused.crossEntropy!(X, T, rows, cols);
    close(await read(out.loss), loss, 1e-5, 1e-5);
    close(await read(out.lse), lses, 1e-5, 1e-5);
    close(await read(gpu.fused.crossEntropyBackward!(X, T, out.lse, gpu.fromHost(gl.slice(), 'float32'), rows, cols)), g, 1e-4, 1e-6);
  });

  it('crossEntropy over GPT-2-wide rows (50304 classes: a workgroup per row on WebGPU), huge and -inf logits, as float64', async () => {
    const rows = 3, cols = 50304;
    const x = rand(rows * cols, 27, -8, 8);
    x[5] = 80; x[cols + 17] = -Infinity; x[2 * cols + cols - 1] = 30; // a dominant logit, a masked one, the last column
    const t = Int32Array.of(5, 50303, cols - 1);
    const loss: number[] = [], lses: number[] = [];
    for (let r = 0; r < rows; r++) {
      const v = x.subarray(r * cols, (r + 1) * cols);
      let mx = -Infinity;
      for (const a of v) if (a > mx) mx = a;
      let se = 0;
      for (const a of v) se += Math.exp(a - mx);
      lses.push(mx + Math.log(se)); loss.push(mx + Math.log(se) - v[t[r]!]!);
    }
    const out = gpu.fused.crossEntropy!(gpu.fromHost(x.slice(), 'float32'), gpu.fromHost(t.slice(), 'int32'), rows, cols);
    close(await read(out.lse), lses, 1e-6, 1e-5);
    close(await read(out.loss), loss, 1e-5, 1e-5);
    if (target.backend && launchesOf('crossEntropy (WGSL)') === 0 && (gpu.runner as { workByKernel?: unknown }).workByKernel) expect.fail('WebGPU: the workgroup-per-row kernel did not run');
  });

  it('adamw updates p, m, v in place as torch.optim.AdamW; sumSquares sums every storage', async () => {
    const n = 11, p = rand(n, 31), g = rand(n, 32), m = rand(n, 33), v = rand(n, 34, 0, 1);
    const h = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 3 };
    const P = gpu.fromHost(p.slice(), 'float32'), M = gpu.fromHost(m.slice(), 'float32'), V = gpu.fromHost(v.slice(), 'float32');
    gpu.fused.adamw!([P], [gpu.fromHost(g.slice(), 'float32')], [M], [V], h);
    const wp: number[] = [], wm: number[] = [], wv: number[] = [];
    for (let i = 0; i < n; i++) {
      const mi = h.beta1 * m[i]! + (1 - h.beta1) * g[i]!, vi = h.beta2 * v[i]! + (1 - h.beta2) * g[i]! ** 2;
      const denom = Math.sqrt(vi) / Math.sqrt(1 - h.beta2 ** h.step) + h.eps;
      wm.push(mi); wv.push(vi);
      wp.push(p[i]! * (1 - h.lr * h.weightDecay) - (h.lr / (1 - h.beta1 ** h.step)) * mi / denom);
    }
    close(await read(M), wm, 1e-6, 1e-7);
    close(await read(V), wv, 1e-6, 1e-7);
    close(await read(P), wp, 1e-5, 1e-6);
    const xs = [rand(5000, 35), rand(3, 36), rand(1, 37)];
    const want = xs.reduce((s, a) => s + a.reduce((t, q) => t + q * q, 0), 0);
    const got = await read(gpu.fused.sumSquares!(xs.map((a) => gpu.fromHost(a.slice(), 'float32'))));
    close(got, [want], 1e-5, 0);
  });
});

describe('fused attention against the composite on the js backend', () => {
  for (const [t, sLen, causal] of [[5, 5, true], [2, 6, true], [4, 3, false]] as const) {
    it(`t=${t} s=${sLen} causal=${causal}: output and q/k/v gradients`, async () => {
      const run = async (be: Backend): Promise<Float32Array[]> => {
        const mk = (shape: number[], seed: number): Tensor => tensor(rand(shape.reduce((p, q) => p * q, 1), seed), { shape, backend: be, requiresGrad: true });
        const q = mk([2, 3, t, 4], 51), k = mk([2, 3, sLen, 4], 52), v = mk([2, 3, sLen, 4], 53);
        const o = F.scaledDotProductAttention(q, k, v, { isCausal: causal });
        o.mul(tensor(rand(o.size, 54), { shape: o.shape, backend: be })).sum().backward();
        return Promise.all([o, q.grad!, k.grad!, v.grad!].map(async (x) => Float32Array.from(await x.data())));
      };
      expect(gpu.fused.attention).toBeDefined();
      const [want, got] = [await run(js), await run(gpu)];
      want.forEach((w, i) => close(got[i]!, w, 1e-4, 1e-5));
    });
  }
});

describe('packed causal self-attention (flash on WebGPU) against the composite on the js backend', () => {
  // T = 70 crosses a 64-row workgroup and several key tiles; hs = 40 makes tiles of 48 rows; hs = 6 rows of scalars (not vec4s)
  for (const [B, T, nh, hs] of [[2, 70, 3, 8], [1, 5, 2, 40], [1, 1, 1, 4], [1, 33, 2, 6]] as const) {
    it(`B=${B} T=${T} nh=${nh} hs=${hs}: output and qkv gradient`, async () => {
      const run = async (be: Backend): Promise<Float32Array[]> => {
        const qkv = tensor(rand(B * T * 3 * nh * hs, 61), { shape: [B, T, 3 * nh * hs], backend: be, requiresGrad: true });
        const o = F.causalSelfAttention(qkv, nh);
        o.mul(tensor(rand(o.size, 62), { shape: o.shape, backend: be })).sum().backward();
        return Promise.all([o, qkv.grad!].map(async (x) => Float32Array.from(await x.data())));
      };
      const [want, got] = [await run(js), await run(gpu)];
      want.forEach((w, i) => close(got[i]!, w, 1e-4, 1e-5));
    });
  }
  it('the WebGPU forward allocates no [T, T] buffer; the backward holds dS for all heads, or one chunk of them', async () => {
    const runner = gpu.runner as { flash?: unknown; alloc(n: number): DeviceBuffer };
    if (!runner.flash) return; // cpu mode composes attention from the matmul kernels
    const B = 2, T = 96, nh = 2, hs = 8, forward: number[] = [], backward: number[] = [];
    let sizes: number[] = [];
    const alloc = runner.alloc.bind(runner);
    runner.alloc = (n: number) => { sizes.push(n); return alloc(n); };
    try {
      const qkv = tensor(rand(B * T * 3 * nh * hs, 63), { shape: [B, T, 3 * nh * hs], backend: gpu, requiresGrad: true });
      sizes = forward;
      const o = F.causalSelfAttention(qkv, nh);
      sizes = backward;
      o.sum().backward();
      await qkv.grad!.data();
    } finally { delete (runner as { alloc?: unknown }).alloc; }
    expect(Math.max(...forward)).toBeLessThan(T * T);
    expect(Math.max(...backward)).toBe(B * nh * T * T);
  });

  it('the backward over chunks of batch entries, and of one entry\'s queries (dK, dV summed across them), gives the same gradients', async () => {
    if (!(target.runner() as { flash?: unknown }).flash) return; // cpu mode composes attention from the matmul kernels
    const B = 2, T = 70, nh = 3, hs = 8; // dS: 14,700 floats an entry
    const run = async (be: Backend, flat: boolean): Promise<Float32Array[]> => {
      const mk = (shape: number[], seed: number): Tensor => tensor(rand(shape.reduce((p, q) => p * q, 1), seed), { shape, backend: be, requiresGrad: true });
      const inputs = flat ? [0, 1, 2].map((j) => mk([B, nh, T, hs], 66 + j)) : [mk([B, T, 3 * nh * hs], 64)];
      const o = flat ? F.scaledDotProductAttention(inputs[0]!, inputs[1]!, inputs[2]!, { isCausal: true }) : F.causalSelfAttention(inputs[0]!, nh);
      o.mul(tensor(rand(o.size, 65), { shape: o.shape, backend: be })).sum().backward();
      return Promise.all([o, ...inputs.map((x) => x.grad!)].map(async (x) => Float32Array.from(await x.data())));
    };
    // packed: one entry a chunk (20,000 floats a binding), then one entry's queries in ranges of 57 and 13 (12,000);
    // flat ([6 heads, 70, 8], 4,900 floats an entry): two entries a chunk (12,000), then ranges of 57 and 13 (4,000)
    for (const [flat, limits] of [[false, [[20000, 2], [12000, 4]]], [true, [[12000, 3], [4000, 12]]]] as const) {
      const want = await run(js, flat);
      for (const [limit, chunks] of limits) {
        const be = target.smallBindings(limit);
        (await run(be, flat)).forEach((g, i) => close(g, want[i]!, 1e-4, 1e-5));
        expect((be.runner as { workByKernel?: Map<string, { launches: number }> }).workByKernel?.get('flashBwdQ (WGSL)')?.launches).toBe(chunks);
      }
    }
  });
});

/**
 * No adapter here has tensor cores: a stand-in takes the tensor-core matmul's place on runner r,
 * the half-widening 128x128 kernel on the same packed float16 views (the same product, to float32
 * rounding), where the shape tiles as the real kernel's (16x16x16). Returns the products it ran.
 */
function tensorStandIn(r: Runner): string[] {
  const calls: string[] = [];
  Object.assign(r, {
    tensorMatmul: (q: MatmulDims) => q.m % 32 === 0 && q.n % 32 === 0 && q.k % 16 === 0,
    matmulTensor: (a: OperandView, b: OperandView, q: MatmulDims, into?: BufferView, epi?: MatmulEpilogue) => {
      calls.push(`[${q.m}, ${q.n}, ${q.k}]${q.transA ? ' transA' : ''}${q.transB ? ' transB' : ''} at ${a.offset ?? 0}${epi?.halfOut ? ' f16 out' : ''}${epi?.bias ? ' bias' : ''}${epi?.preGelu ? ' gelu' : ''}`);
      return r.matmul!(a, b, q, into, epi, 'f16');
    },
  });
  return calls;
}

describe('a float16 linear layer on tensor cores', () => {
  /** layer(x [64, 32], w [96, 32], b [96]) under float16 autocast on `be`, backward through a weighted sum: its output and the gradients of b, w, x. */
  const run = async (be: Backend, layer: (x: Tensor, w: Tensor, b: Tensor) => Tensor): Promise<number[][]> => {
    // multiples of 1/8: every product and sum here is exact, in any order
    const vals = (n: number, seed: number): Float32Array => Float32Array.from({ length: n }, (_, i) => (((i * seed) % 13) - 6) / 8);
    const x = tensor(vals(64 * 32, 5), { shape: [64, 32], backend: be, requiresGrad: true });
    const w = tensor(vals(96 * 32, 7), { shape: [96, 32], backend: be, requiresGrad: true });
    const b = tensor(vals(96, 3), { shape: [96], backend: be, requiresGrad: true });
    const y = autocast('float16', () => layer(x, w, b));
    expect(y.dtype).toBe('float16');
    y.mul(tensor(vals(64 * 96, 11), { shape: [64, 96], backend: be })).sum().backward(); // (float32: the product promotes)
    return Promise.all([y, b.grad!, w.grad!, x.grad!].map(async (t) => Array.from(await t.data())));
  };

  it("its bias gradient is ones^T G on the tensor-core matmul, as the js backend's widen-and-sum", async (ctx) => {
    const r = target.runner();
    if (!r.matmul) { ctx.skip(); return; } // (gpu.js's cpu mode has no WGSL matmul)
    const calls = tensorStandIn(r);
    const want = await run(js, F.linear);
    const got = await run(new GpuBackend(r, { name: 'gpu-tensor-bias' }), F.linear);
    // the forward x W^T + b rounded to float16 in the product; the bias gradient ones [32, 64] @ G [64, 96]
    expect(calls).toEqual(expect.arrayContaining(['[64, 96, 32] transB at 0 f16 out bias', '[32, 96, 64] at 0']));
    expect(got).toEqual(want);
  });

  it('an MLP\'s c_fc and its GELU (F.linearGelu) are one tensor-core launch; values and gradients as the js backend', async (ctx) => {
    const r = target.runner();
    if (!r.matmul) { ctx.skip(); return; }
    const calls = tensorStandIn(r);
    const want = await run(js, F.linearGelu);
    const got = await run(new GpuBackend(r, { name: 'gpu-tensor-gelu' }), F.linearGelu);
    expect(calls).toContain('[64, 96, 32] transB at 0 f16 out bias gelu');
    // GELU's tanh on the device and in JavaScript may round to neighbouring halves
    got.forEach((g, i) => close(Float32Array.from(g), want[i]!, 2 ** -9, 1e-3));
  });
});

describe('fused linear cross-entropy (lm_head and loss without the logits)', () => {
  it('matches crossEntropy(linear) on the js backend, whole and over 64-row chunks', async () => {
    const rows = 150, cols = 6, classes = 11;
    const x = rand(rows * cols, 71), w = rand(classes * cols, 72), t = Int32Array.from({ length: rows }, (_, i) => (i * 5) % classes);
    const run = async (be: Backend): Promise<Float32Array[]> => {
      const xt = tensor(x.slice(), { shape: [rows, cols], backend: be, requiresGrad: true });
      const wt = tensor(w.slice(), { shape: [classes, cols], backend: be, requiresGrad: true });
      const loss = F.linearCrossEntropy(xt, wt, tensor(t.slice(), { backend: be }));
      loss.mul(0.5).backward();
      return Promise.all([loss, xt.grad!, wt.grad!].map(async (v) => Float32Array.from(await v.data())));
    };
    const want = await run(js);
    expect(gpu.fused.linearCrossEntropy).toBeDefined();
    // 1024 floats a binding: 64 rows of 11 classes per chunk, three chunks
    for (const be of [gpu, target.smallBindings(1024)]) (await run(be)).forEach((g, i) => close(g, want[i]!, 1e-4, 1e-5));
  });
  it('with rows wider than a workgroup (300 classes; 640 threads of work per row) and over chunks', async () => {
    const rows = 130, cols = 4, classes = 300;
    const x = rand(rows * cols, 73), w = rand(classes * cols, 74, -3, 3), t = Int32Array.from({ length: rows }, (_, i) => (i * 37) % classes);
    const run = async (be: Backend): Promise<Float32Array[]> => {
      const xt = tensor(x.slice(), { shape: [rows, cols], backend: be, requiresGrad: true });
      const wt = tensor(w.slice(), { shape: [classes, cols], backend: be, requiresGrad: true });
      const loss = F.linearCrossEntropy(xt, wt, tensor(t.slice(), { backend: be }));
      loss.backward();
      return Promise.all([loss, xt.grad!, wt.grad!].map(async (v) => Float32Array.from(await v.data())));
    };
    const want = await run(js);
    for (const be of [gpu, target.smallBindings(64 * 300)]) (await run(be)).forEach((g, i) => close(g, want[i]!, 1e-4, 1e-5));
  });
  it('under autocast rounds as torch.autocast (linear in the half type, float32 loss), over chunks too', async () => {
    await expectAutocastLinearCrossEntropy(gpu);
    await expectAutocastLinearCrossEntropy(target.smallBindings(1024));
  });
  it('under float16 autocast on tensor cores: its three products per chunk on the tensor-core matmul, on row views, rounding as torch.autocast', async (ctx) => {
    // no adapter here has tensor cores: a stand-in takes matmulTensor's place, the half-widening
    // 128x128 kernel on the same packed float16 views (the product each is, to float32 rounding)
    const r = target.runner(64 * 64); // 64 rows of 64 classes a chunk: two chunks
    if (!r.matmul || !r.crossEntropyRows) { ctx.skip(); return; } // (gpu.js's cpu mode has neither)
    const calls = tensorStandIn(r);
    await expectAutocastLinearCrossEntropy(new GpuBackend(r, { name: 'gpu-tensor-lce' }), 128, 32, 64, ['float16']);
    // per chunk: the logits x w^T (x's rows from 32-bit word 64 * 32 / 2 on), g w into gx's rows, and g^T x
    expect(calls).toEqual(['[64, 64, 32] transB at 0', '[64, 32, 64] at 0', '[64, 32, 64] transA at 0',
      '[64, 64, 32] transB at 1024', '[64, 32, 64] at 0', '[64, 32, 64] transA at 0']);
  });
});

describe('kernels over row chunks past the storage binding limit', () => {
  // a 640-float binding limit makes small tensors behave like GPT-2's 3.3 GB logits on the GPU
  let small: GpuBackend;
  beforeAll(() => { small = target.smallBindings(640); });
  const on = (be: Backend, d: Float32Array): Storage => be.fromHost(d.slice(), 'float32');

  it('matmul splits rows (A and C too large) and the reduction (A^T too large), matching float64', async () => {
    const cases = [
      { m: 300, n: 5, k: 3, transA: false, transB: false },
      { m: 300, n: 5, k: 3, transA: false, transB: true },  // logits = x @ W^T
      { m: 4, n: 5, k: 300, transA: true, transB: false },  // dW = g^T @ x
    ];
    for (const c of cases) {
      const p = { batch: 1, ...c, aBatchStride: 0, bBatchStride: 0 };
      const A = rand(c.m * c.k, 41), B = rand(c.k * c.n, 42);
      close(await small.read(small.matmul(on(small, A), on(small, B), p)), js.readSync(js.matmul(on(js, A), on(js, B), p)), 1e-5, 1e-5);
    }
    // and refuses, naming the limit, what it cannot split
    const p = { batch: 1, m: 4, n: 300, k: 3, transA: false, transB: true, aBatchStride: 0, bBatchStride: 0 };
    expect(() => small.matmul(on(small, rand(12, 1)), on(small, rand(900, 2)), p)).toThrow(/storage binding limit/);
  });

  it('multi-tensor AdamW, clipping and sums of squares: a launch per packed span, every value as torch.optim.AdamW', async () => {
    // slots of 320, 64, 192, 64 words fill one 640-float span; 64 and 320 a second (WebGPU packs; cpu mode runs each)
    const sizes = [300, 5, 130, 64, 1, 257];
    const h = { lr: 0.01, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 3 };
    const host = sizes.map((n, i) => ({ p: rand(n, 60 + i), g: rand(n, 70 + i), m: rand(n, 80 + i), v: rand(n, 90 + i, 0, 1) }));
    const [P, G, M, V] = (['p', 'g', 'm', 'v'] as const).map((k) => host.map((x) => on(small, x[k])));
    const runner = small.runner as { stats?: { copies: number }; workByKernel?: Map<string, { launches: number }> };
    const adamwLaunches = (): number => runner.workByKernel?.get('adamw (WGSL)')?.launches ?? 0;
    const want = host.map(({ p, g, m, v }) => {
      const out = { p: [] as number[], m: [] as number[], v: [] as number[] };
      for (let i = 0; i < p.length; i++) {
        const mi = h.beta1 * m[i]! + (1 - h.beta1) * g[i]!, vi = h.beta2 * v[i]! + (1 - h.beta2) * g[i]! ** 2;
        out.m.push(mi); out.v.push(vi);
        out.p.push(p[i]! * (1 - h.lr * h.weightDecay) - (h.lr / (1 - h.beta1 ** h.step)) * mi / (Math.sqrt(vi) / Math.sqrt(1 - h.beta2 ** h.step) + h.eps));
      }
      return out;
    });
    const before = adamwLaunches();
    small.fused.adamw!(P, G, M, V, h);
    if (runner.workByKernel) expect(adamwLaunches() - before, 'adamw launches: one per span').toBe(2);
    for (let i = 0; i < sizes.length; i++) {
      close(await small.read(M[i]!), want[i]!.m, 1e-6, 1e-7);
      close(await small.read(V[i]!), want[i]!.v, 1e-6, 1e-7);
      close(await small.read(P[i]!), want[i]!.p, 1e-5, 1e-6);
    }
    // already packed: sums, scaling and a second step copy nothing; the zero gaps between slots add nothing
    const copies = runner.stats?.copies ?? 0;
    const ss = host.reduce((s, x) => s + x.g.reduce((t, q) => t + q * q, 0), 0);
    close(await small.read(small.fused.sumSquares!(G)), [ss], 1e-5, 0);
    small.fused.scaleInPlace!(G, on(small, Float32Array.of(-0.5)));
    for (let i = 0; i < sizes.length; i++) close(await small.read(G[i]!), Array.from(host[i]!.g, (x) => x * -0.5), 0, 0);
    close(await small.read(small.fused.sumSquares!(G)), [ss / 4], 1e-5, 0);
    small.fused.adamw!(P, G, M, V, { ...h, step: 4 });
    expect(runner.stats?.copies ?? 0, 'nothing copied once packed').toBe(copies);
    // a group's gradients inside a larger packing (clipping packs all, AdamW takes a group) are a run of its slots
    small.fused.adamw!(P.slice(0, 3), G.slice(0, 3), M.slice(0, 3), V.slice(0, 3), { ...h, step: 5 });
    expect(runner.stats?.copies ?? 0, 'a run of slots is laid out').toBe(copies);
    // the same storages as parameters and gradients (aliased) take the portable kernels, still right
    const a = on(small, host[0]!.p), mm = on(small, host[0]!.m), vv = on(small, host[0]!.v);
    const b = on(small, host[1]!.p), mb = on(small, host[1]!.m), vb = on(small, host[1]!.v);
    small.fused.adamw!([a, b], [a, b], [mm, mb], [vv, vb], h);
    const p0 = host[0]!.p, m0 = host[0]!.m;
    const mi = h.beta1 * m0[0]! + (1 - h.beta1) * p0[0]!;
    expect((await small.read(mm))[0]).toBeCloseTo(mi, 6);
    for (const s of [...P, ...G, ...M, ...V]) small.dispose(s);
  });

  it('fused cross-entropy forward and backward run over row chunks', async () => {
    const rows = 300, cols = 5;
    const x = rand(rows * cols, 43, -3, 3), t = Int32Array.from({ length: rows }, (_, i) => (i * 7) % cols), gl = rand(rows, 44);
    const ref = gpu.fused, f = small.fused;
    const want = ref.crossEntropy!(gpu.fromHost(x.slice(), 'float32'), gpu.fromHost(t.slice(), 'int32'), rows, cols);
    const got = f.crossEntropy!(on(small, x), small.fromHost(t.slice(), 'int32'), rows, cols);
    close(await small.read(got.loss), await gpu.read(want.loss), 1e-6, 1e-6);
    close(await small.read(got.lse), await gpu.read(want.lse), 1e-6, 1e-6);
    const gw = ref.crossEntropyBackward!(gpu.fromHost(x.slice(), 'float32'), gpu.fromHost(t.slice(), 'int32'), want.lse, gpu.fromHost(gl.slice(), 'float32'), rows, cols);
    const gg = f.crossEntropyBackward!(on(small, x), small.fromHost(t.slice(), 'int32'), got.lse, on(small, gl), rows, cols);
    close(await small.read(gg), await gpu.read(gw), 1e-6, 1e-6);
  });

  it('elementwise kernels and casts run over output chunks: unary, binary (a broadcast scalar bound whole), where, fill, half casts', async () => {
    const n = 1000, a = rand(n, 3), b = rand(n, 4), c = Float32Array.from(rand(n, 5), (v) => (v > 0 ? 1 : 0));
    close(await small.read(small.unary('exp', on(small, a))), js.readSync(js.unary('exp', on(js, a))), 1e-6, 1e-6);
    close(await small.read(small.binary('mul', on(small, a), [n], on(small, b), [n], [n])), js.readSync(js.binary('mul', on(js, a), [n], on(js, b), [n], [n])), 0, 0);
    const s = Float32Array.of(2.5);
    close(await small.read(small.binary('add', on(small, a), [n], on(small, s), [1], [n])), js.readSync(js.binary('add', on(js, a), [n], on(js, s), [1], [n])), 0, 0);
    close(await small.read(small.where(on(small, c), [n], on(small, a), [n], on(small, b), [n], [n])), js.readSync(js.where(on(js, c), [n], on(js, a), [n], on(js, b), [n], [n])), 0, 0);
    close(await small.read(small.full(n, 'float32', -3)), new Float32Array(n).fill(-3), 0, 0);
    for (const dtype of ['bfloat16', 'float16'] as const) {
      const h = small.cast(on(small, a), dtype);
      expect(Array.from(await small.read(h))).toEqual(Array.from(convertHost(a, 'float32', dtype)));
      close(await small.read(small.cast(h, 'float32')), convertHost(convertHost(a, 'float32', dtype), dtype, 'float32'), 0, 0);
    }
  });

  it('the u32 gather (views that do not nest) and the embedding\'s segment sum run over output chunks', async () => {
    // a permute of four dims, expanded 8 times (stride 0): 960 outputs from 120 values
    const x = rand(120, 6), shape = [8, 2, 4, 3, 5], strides = [0, 60, 5, 20, 1];
    close(await small.read(small.strided(on(small, x), shape, strides, 0)), js.readSync(js.strided(on(js, x), shape, strides, 0)), 0, 0);
    // 100 rows of 8 (800 outputs) from 64 source rows (512 values): chunks of 64 rows
    const rows = 100, cols = 8, n = 64, idx = Int32Array.from({ length: n }, (_, i) => (i * 37) % rows), src = rand(n * cols, 7);
    close(await small.read(small.scatterAddRows(on(small, src), cols, small.fromHost(idx.slice(), 'int32'), n, rows)),
      js.readSync(js.scatterAddRows(on(js, src), cols, js.fromHost(idx.slice(), 'int32'), n, rows)), 1e-6, 1e-6);
  });

  it('a kernel whose input is larger than one binding (only an emulated limit allows such a buffer) says so', () => {
    expect(() => small.reduce('sum', on(small, rand(700, 3)), 1, 700, 1)).toThrow(/storage binding limit/);
  });
});
});
}
