// The WebGPU half of the gpu backend, checked without a GPU: Dawn's `null` device (from the
// `webgpu` package) compiles WGSL and validates pipelines, bind groups and dispatches but
// computes nothing. So this proves every gpu.js-translated kernel and the tiled matmul
// compile for WebGPU, and that a whole GPT training step dispatches without one validation
// error and reuses pooled buffers; the numbers are checked in cpu mode and on the GPU.

import { describe, expect, it } from 'vitest';
import type { Storage } from '../src/tensor/backend.js';
import { GPT, configureOptimizers, clipGradNorm, setBackend, tensor, type Backend } from '../src/index.js';
import { initGpuBackend, GpuBackend } from '../src/tensor/backends/gpu/index.js';
import { WebGpuRunner } from '../src/tensor/backends/gpu/webgpu-runner.js';
import { loadGpuJs } from '../src/tensor/backends/gpu/gpujs.js';

async function nullDevice(): Promise<{ b: Backend; runner: WebGpuRunner } | null> {
  try {
    // (allow_unsafe_apis: the null adapter then offers the experimental subgroup matrices)
    const b = await initGpuBackend({ name: 'gpu-null', dawnFlags: ['backend=null', 'enable-dawn-features=allow_unsafe_apis'] });
    return { b, runner: (b as GpuBackend).runner as WebGpuRunner };
  } catch (e) {
    console.log(`WebGPU validation skipped (Dawn's null device is unavailable here): ${(e as Error).message.slice(0, 200)}`);
    return null;
  }
}

/** Run fn inside validation and out-of-memory error scopes; resolve the errors it raised. */
async function errorsOf(runner: WebGpuRunner, fn: () => void): Promise<string[]> {
  const d = runner.device;
  d.pushErrorScope('validation');
  d.pushErrorScope('out-of-memory');
  fn();
  runner.flush();
  const found = [await d.popErrorScope(), await d.popErrorScope()].filter((e) => e !== null).map((e) => e!.message);
  return [...found, ...runner.errors.splice(0)];
}

describe('gpu backend on WebGPU (Dawn null device: compile + validation only)', () => {
  it('initGpuBackend compiles every kernel (gpu.js WGSL and the tiled matmul) without errors', async (ctx) => {
    const nd = await nullDevice();
    if (!nd) { ctx.skip(); return; }
    expect(nd.b.name).toBe('gpu-null');
    expect(nd.b.hostMemory).toBe(false);
    // init checks every WGSL module and builds the gpu.js kernels' pipelines; the hand-written
    // kernels' are built at first launch: here all of them, validated now
    await expect(nd.runner.precompile([], { pipelines: true })).resolves.toBeUndefined();
  });

  it('every primitive and fused kernel dispatches without a validation error', async (ctx) => {
    const nd = await nullDevice();
    if (!nd) { ctx.skip(); return; }
    const { b, runner } = nd;
    const errs = await errorsOf(runner, () => {
      const x = b.fromHost(new Float32Array(24), 'float32');
      const y = b.fromHost(new Float32Array(6), 'float32');
      const i = b.fromHost(Int32Array.of(0, 2, 1, 2), 'int32');
      b.full(5, 'float32', 1);
      b.cast(x, 'float16'); b.cast(b.cast(x, 'bfloat16'), 'float32'); b.cast(x, 'int32');
      for (const op of ['neg', 'exp', 'gelu', 'geluGrad'] as const) b.unary(op, x);
      b.binary('add', x, [4, 6], y, [6], [4, 6]);
      b.binary('mul', x, [24], b.full(1, 'float32', 2), [1], [24]);
      b.binary('sub', x, [2, 1, 3, 1, 4], y, [1, 2, 1, 3, 1], [2, 2, 3, 3, 4]);
      b.where(b.full(6, 'float32', 1), [6], x, [4, 6], y, [6], [4, 6]);
      b.where(b.full(1, 'float32', 1), [1], x, [24], y, [1], [24]);
      b.reduce('sum', x, 2, 3, 4); b.reduce('max', x, 1, 24, 1);
      for (const transA of [false, true]) for (const transB of [false, true]) {
        b.matmul(x, x, { batch: 2, m: 3, n: 3, k: 4, transA, transB, aBatchStride: 12, bBatchStride: 0 });
      }
      b.strided(x, [6, 4], [1, 6], 0); b.strided(x, [2, 2, 2], [7, 3, 1], 1); b.strided(x, [2, 3, 2, 2], [12, 1, 6, 3], 0);
      b.pad(x, [4, 6], [1, 0], [0, 2]);
      b.gatherRows(x, 6, i, 4); b.scatterAddRows(x, 6, i, 4, 3); b.pickLast(x, 4, 6, i); b.scatterLast(y, 4, 6, i);
      const f = b.fused;
      const sm = f.softmax!(x, 4, 6); f.softmaxBackward!(sm, x, 4, 6);
      const ls = f.logSoftmax!(x, 4, 6); f.logSoftmaxBackward!(ls, x, 4, 6);
      const ln = f.layerNorm!(x, y, y, 4, 6, 1e-5); f.layerNormBackward!(x, y, ln.mean, ln.rstd, x, 4, 6);
      const ce = f.crossEntropy!(x, i, 4, 6); f.crossEntropyBackward!(x, i, ce.lse, ce.loss, 4, 6);
      // multi-tensor: packed (copies and clears outside the compute pass) and run a launch per span; then aliased (the portable kernels)
      const zeros = (): Storage[] => [b.full(24, 'float32', 0), b.full(6, 'float32', 0)];
      const h = { lr: 1e-3, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, step: 1 };
      const [ps, gs, ms, vs] = [zeros(), zeros(), zeros(), zeros()];
      f.adamw!(ps, gs, ms, vs, h);
      f.adamw!(ps, gs, ms, vs, { ...h, step: 2 });
      f.adamw!([x, y], [x, y], zeros(), zeros(), h);
      f.sumSquares!(gs);
      f.scaleInPlace!(gs, b.full(1, 'float32', 0.5));
      f.sumSquares!([x, y]);
      const at = f.attention!(x, x, x, 2, 3, 3, 4, 0.5, true);
      f.attentionBackward!(x, x, x, at.o, at.lse, at.o, 2, 3, 3, 4, 0.5, true);
    });
    expect(errs).toEqual([]);
  });

  it('a GPT training step dispatches cleanly, and later steps reuse pooled buffers', async (ctx) => {
    const nd = await nullDevice();
    if (!nd) { ctx.skip(); return; }
    const { b, runner } = nd;
    setBackend(b);
    try {
      const model = new GPT({ blockSize: 16, vocabSize: 64, nLayer: 2, nHead: 2, nEmbd: 32 });
      const opt = configureOptimizers(model, 0.1, 1e-3);
      const x = tensor(Int32Array.from({ length: 32 }, (_, k) => k % 64), { shape: [2, 16] });
      const step = (): void => {
        opt.zeroGrad();
        const { loss } = model.forward(x, x);
        loss!.backward();
        clipGradNorm(model.parameters(), 1);
        opt.step();
      };
      const created: number[] = [];
      for (let s = 0; s < 3; s++) {
        const before = runner.stats.buffersCreated;
        expect(await errorsOf(runner, step), `step ${s}`).toEqual([]);
        await (b as GpuBackend).collect(); // what a training loop on the gpu does each step
        created.push(runner.stats.buffersCreated - before);
      }
      // the first step fills the pool; later steps find their buffers there
      expect(created[0]!).toBeGreaterThan(50);
      expect(created[2]!).toBeLessThan(created[0]! / 10);
    } finally {
      setBackend('js');
    }
  });

  it('the float16 tensor-core matmul (subgroup matrices) compiles, validates and dispatches for 16x16x16 and 8x8x8 configs, every layout', async (ctx) => {
    const nd = await nullDevice();
    if (!nd) { ctx.skip(); return; }
    const { runner } = nd;
    expect(runner.features).toEqual(expect.arrayContaining(['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix']));
    // the null adapter lists no configs of its own: these are NVIDIA's (Vulkan cooperative matrix) and Apple's shapes
    for (const config of [{ M: 16, N: 16, K: 16 }, { M: 8, N: 8, K: 8 }]) {
      const tc = new WebGpuRunner(await loadGpuJs(), runner.device, { features: runner.features, tensorCores: { config, subgroupMaxSize: 128 }, adapter: 'null' });
      await tc.precompile([], { pipelines: true }); // throws, naming the kernel, on any WGSL or pipeline error
      const be = new GpuBackend(tc, { name: `gpu-null-tensor-${config.M}` });
      const errs = await errorsOf(tc, () => {
        const h = be.cast(be.full(64 * 96, 'float32', 0.5), 'float16');
        for (const transA of [false, true]) for (const transB of [false, true]) {
          const p = { batch: 2, m: 64, n: 32, k: 48, transA, transB, aBatchStride: 0, bBatchStride: 0 };
          expect(be.matmul(h, h, p).dtype).toBe('float32');
          // and a float16 result, with a float16 bias [32] and without
          for (const bias of [null, be.cast(be.full(32, 'float32', 1), 'float16')]) {
            expect(be.fused.matmulHalf!(h, h, p, bias)?.dtype).toBe('float16');
            // and GELU of it in the same launch (an MLP's c_fc)
            expect(be.fused.matmulHalfGelu!(h, h, p, bias)?.out.dtype).toBe('float16');
          }
        }
      });
      expect(errs, `config ${config.M}x${config.N}x${config.K}`).toEqual([]);
      expect(tc.workByKernel.get('matmul f16 tensor cores (WGSL)')?.launches).toBe(4);
      expect(tc.workByKernel.get('matmul f16 tensor cores f16 out (WGSL)')?.launches).toBe(16); // 8 with GELU
      // float16 linear cross-entropy: three tensor-core products per chunk, reading x's rows at a
      // word offset and writing gx's (64 rows of 64 classes a binding: two chunks)
      const small = new WebGpuRunner(await loadGpuJs(), runner.device, { features: runner.features, tensorCores: { config, subgroupMaxSize: 128 },
        adapter: 'null', maxBindingElements: 64 * 64 });
      const sb = new GpuBackend(small, { name: `gpu-null-tensor-lce-${config.M}` });
      const lceErrs = await errorsOf(small, () => {
        const t = sb.fromHost(Int32Array.from({ length: 128 }, (_, i) => i % 64), 'int32');
        const r = sb.fused.linearCrossEntropy!(sb.full(128 * 32, 'float32', 0.5), sb.full(64 * 32, 'float32', 0.25), t, 128, 32, 64, true, 'float16');
        expect(r?.gx?.dtype).toBe('float32');
        // and a float16 bias gradient: ones [32, 64] @ G [64, 32]
        expect(sb.fused.columnSums!(sb.cast(sb.full(64 * 32, 'float32', 1), 'float16'), 64, 32)?.dtype).toBe('float32');
      });
      expect(lceErrs, `linear cross-entropy and column sums, config ${config.M}x${config.N}x${config.K}`).toEqual([]);
      expect(small.workByKernel.get('matmul f16 tensor cores (WGSL)')?.launches).toBe(7);
    }
  });
});
