// Device memory lifetimes on the gpu backend (src/tensor/scope.ts): a micro-step's temporaries
// go back to the pool when it ends and backward() frees what it consumed, so a step's memory does
// not grow with gradient accumulation; a tensor used after the engine freed it fails with a
// message saying why; the dry run (npm run train -- --dry-run) counts what a real adapter allocates.

import { afterEach, describe, expect, it } from 'vitest';
import { F, GPT, autocast, configureOptimizers, manualSeed, setBackend, tensor, type Tensor } from '../src/index.js';
import { GpuBackend, initGpuBackend } from '../src/tensor/backends/gpu/index.js';
import { recordingBackend } from '../src/tensor/backends/gpu/recording-device.js';
import { WebGpuRunner } from '../src/tensor/backends/gpu/webgpu-runner.js';
import { loadGpuJs } from '../src/tensor/backends/gpu/gpujs.js';
import { CpuRunner } from '../src/tensor/backends/gpu/cpu-runner.js';
import { keep, scope } from '../src/tensor/scope.js';
import { dryRun, type DryRunOptions } from '../src/train/dry-run.js';
import { accumulateGradients, clipGradients } from '../src/train/step.js';
import { getLr } from '../src/optim/index.js';
import { realWebGpu } from './helpers/webgpu.js';
import { gptFromFixture, loadTorchGpt, worstRel } from './helpers/torch-gpt.js';

afterEach(() => { setBackend('js'); });
const quiet = (): void => {};
const small: DryRunOptions = { model: 'tiny', nLayer: 2, nHead: 2, nEmbd: 32, blockSize: 64, vocabSize: 512, batchSize: 2, seqLen: 64,
  totalBatchSize: 128, seed: 0, weightDecay: 0.1, maxLr: 1e-3, gradClip: 1 };

describe('scopes free device memory (gpu.js cpu mode)', () => {
  it('a scope frees what it does not return; a later use says which scope freed it', async () => {
    const gpu = await initGpuBackend({ mode: 'cpu' });
    const x = tensor(Float32Array.of(1, 2, 3), { backend: gpu });
    let inner: Tensor | null = null;
    const y = scope(() => { inner = x.mul(2); return inner.add(1); });
    expect(Array.from(await y.data())).toEqual([3, 5, 7]);
    expect(() => inner!.exp()).toThrow(/used after the scope it was made in ended/);
    expect(Array.from(await x.data())).toEqual([1, 2, 3]); // made outside: untouched
  });

  it('backward() in a scope frees the activations it differentiated, not the loss, kept tensors or .grad', async () => {
    const gpu = await initGpuBackend({ mode: 'cpu' });
    const w = tensor(Float32Array.of(0.5, -1, 2), { backend: gpu, requiresGrad: true });
    let h: Tensor | null = null, kept: Tensor | null = null;
    const loss = scope(() => {
      h = w.mul(w);                   // an activation (the mul's output)
      kept = keep(w.exp());           // kept: survives backward and the scope
      const l = h.add(kept).sum();
      l.backward();
      return l;
    });
    expect(() => h!.neg()).toThrow(/backward\(\) differentiated the op that made it \('mul'\)/);
    expect((await loss.data())[0]).toBeCloseTo(0.25 + 1 + 4 + Math.exp(0.5) + Math.exp(-1) + Math.exp(2), 4);
    expect(Array.from(await kept!.data()).map((v) => +v.toFixed(4))).toEqual([0.5, -1, 2].map((v) => +Math.exp(v).toFixed(4)));
    expect(Array.from(await w.grad!.data()).map((v) => +v.toFixed(4))).toEqual([0.5, -1, 2].map((v) => +(2 * v + Math.exp(v)).toFixed(4)));
  });
});

describe('a step\'s device memory on the recording device (npm run train -- --dry-run)', () => {
  it('does not grow with micro-steps, and a warm step creates no buffer', async () => {
    const one = await dryRun({ ...small, totalBatchSize: 128 }, quiet);
    const four = await dryRun({ ...small, totalBatchSize: 4 * 128 }, quiet);
    expect(four.microSteps).toBe(4);
    // later micro-steps hold at most one incoming gradient per parameter besides .grad (summed in
    // place, then freed); a micro-step's temporaries surviving into the next would add all of its
    // activations again, several times the parameters here. (Each gradient's buffer is rounded up
    // to 256 bytes.)
    const c = small.nEmbd!, V = small.vocabSize!;
    const paramBytes = 4 * (V * c + small.blockSize! * c + small.nLayer! * (12 * c * c + 13 * c) + 2 * c);
    const tensors = 2 + 12 * small.nLayer! + 2;
    expect(four.peakBytes).toBeGreaterThanOrEqual(one.peakBytes);
    expect(four.peakBytes - one.peakBytes).toBeLessThanOrEqual(paramBytes + 256 * tensors);
    expect(one.buffersCreatedAfterWarmup).toBe(0);
    expect(four.buffersCreatedAfterWarmup).toBe(0);
  });

  it('the start-up self-test and building a GPT leave no device buffer for the garbage collector', async () => {
    // what waits for the collector comes back whenever it runs, so a run's peak memory would
    // depend on the collector's timing (it did: a CI run's peak differed from the same run's here)
    const tested = new GpuBackend(new CpuRunner(await loadGpuJs()));
    await tested.selfTest();
    expect(tested.liveStorages).toBe(0);
    const be = await recordingBackend();
    setBackend(be);
    manualSeed(0);
    const model = new GPT({ blockSize: 64, vocabSize: 512, nLayer: 2, nHead: 2, nEmbd: 32 });
    // (no await since: no finalizer can have run) the parameters, and nothing else
    expect(be.liveStorages).toBe(model.parameters().length);
  });

  it("attention's only [T, T] buffers are the backward's dS, one for all heads (flash-wgsl.ts), no scores or probabilities", async () => {
    const be = await recordingBackend();
    const runner = be.runner as WebGpuRunner;
    const sizes: number[] = [];
    const alloc = runner.alloc.bind(runner);
    runner.alloc = (n: number) => { sizes.push(n); return alloc(n); };
    await dryRun({ ...small, nEmbd: 8, nHead: 2, vocabSize: 40, batchSize: 1 }, quiet, be);
    const T = small.seqLen;
    // per position the widest tensors are 4C = 32 (the MLP) and the 40 logits: all below one head's T * T
    expect(sizes.filter((n) => n >= T * T)).toEqual(sizes.filter((n) => n === 2 * T * T));
    expect(Math.max(...sizes)).toBe(2 * T * T);
  });

  it('counts each launch\'s work for the roofline model: a matmul\'s 2mnk flops and its operands\' bytes, an add\'s three arrays', async () => {
    const be = await recordingBackend();
    const runner = be.runner as WebGpuRunner;
    const [m, n, k] = [96, 80, 72];
    const a = be.fromHost(new Float32Array(m * k), 'float32'), b = be.fromHost(new Float32Array(n * k), 'float32');
    be.matmul(a, b, { batch: 2, m, n, k, transA: false, transB: true, aBatchStride: m * k, bBatchStride: 0 }); // A·Bᵀ, B broadcast
    expect(runner.workByKernel.get('matmul128 (WGSL)')).toEqual({ launches: 1, flops: 2 * 2 * m * n * k, bytes: 4 * (2 * m * k + n * k + 2 * m * n) });
    be.binary('add', a, [m, k], a, [m, k], [m, k]);
    expect(runner.workByKernel.get('binary1')).toEqual({ launches: 1, flops: 0, bytes: 4 * 3 * m * k });
  });

  it('a float16 or bfloat16 tensor takes 2 bytes an element on the device, float32 4', async () => {
    const be = await recordingBackend();
    const runner = be.runner as WebGpuRunner;
    const n = 64 * 1024 + 1; // odd: the last word holds one element
    const bytes = (f: () => void): number => { runner.trim(); const before = runner.stats.bytesCreated; f(); return runner.stats.bytesCreated - before; };
    const x = be.fromHost(new Float32Array(n), 'float32');
    const round = (b: number): number => Math.ceil(b / 256) * 256;
    for (const dtype of ['float16', 'bfloat16'] as const) {
      expect(bytes(() => be.fromHost(new Uint16Array(n), dtype))).toBe(round(2 * (n + 1)));
      // a cast's float32 temporaries (none here) would show as 4n more
      expect(bytes(() => be.cast(x, dtype))).toBe(round(2 * (n + 1)));
    }
    expect(bytes(() => be.fromHost(new Float32Array(n), 'float32'))).toBe(round(4 * n));
  });

  it("a bfloat16 forward keeps what the CPU backends' does: about 0.65 of a float32 one (4 bytes a half would be ~1)", async () => {
    // what one GPT forward leaves for backward on the recording device (exact bytes: the pool's
    // buffers in use after it), the model and comparison of test/autocast.test.ts's wasm check
    const be = await recordingBackend();
    const runner = be.runner as WebGpuRunner;
    let live = 0;
    const alloc = runner.alloc.bind(runner), release = runner.release.bind(runner);
    runner.alloc = (n: number) => { const b = alloc(n); live += b.length * 4; return b; };
    runner.release = (b) => { live -= b.length * 4; release(b); };
    setBackend(be);
    manualSeed(0);
    const m = new GPT({ blockSize: 64, vocabSize: 4096, nLayer: 2, nHead: 2, nEmbd: 128 });
    const bytes: Record<string, number> = {};
    for (const dt of ['float32', 'bfloat16'] as const) {
      scope(() => {
        const x = tensor(Int32Array.from({ length: 4 * 64 }, (_, i) => (i * 37) % 4096), { shape: [4, 64] });
        const base = live;
        const loss = dt === 'float32' ? F.crossEntropy(m.forward(x).logits.reshape([4 * 64, 4096]), x.reshape([4 * 64]))
          : autocast(dt, () => m.forward(x, x).loss!);
        bytes[dt] = live - base;
        loss.backward();
        for (const p of m.parameters()) p.zeroGrad();
      });
    }
    expect(bytes.float32).toBeGreaterThan(8e6);
    expect(bytes.bfloat16! / bytes.float32!, JSON.stringify(bytes)).toBeLessThan(0.66);
  });

  it('no shape is refused for its size below the binding limit: u32 gathers and segment sums past 2^24 elements', async () => {
    const be = await recordingBackend();
    // a permute of four dims that does not nest into three (once refused above 2^24 elements)
    const [a, b, c, d] = [8, 512, 64, 1025]; // 2^28 + 2^22 elements, 1.1 GB
    const runner = be.runner as WebGpuRunner;
    const big = be.wrap(runner.alloc(a * b * c * d), a * b * c * d, 'float32'); // nothing computed: no values needed
    const st = [b * c * d, c * d, d, 1];
    const y = be.strided(big, [d, b, c, a], [st[3]!, st[1]!, st[2]!, st[0]!], 0);
    expect(y.size).toBe(a * b * c * d);
    // the embedding backward of 2^25 token positions into 50304 rows (u32 offsets)
    const n = 2 ** 25, ids = Int32Array.from({ length: n }, (_, i) => i % 50304);
    const g = be.wrap(runner.alloc(n * 8), n * 8, 'float32');
    expect(be.scatterAddRows(g, 8, be.fromHost(ids, 'int32'), n, 50304).size).toBe(50304 * 8);
  });

  it('counts what a real adapter allocates: the same bytes on SwiftShader (or a GPU)', async (ctx) => {
    const real = await realWebGpu();
    if (!real) { ctx.skip(); return; }
    const fresh = new GpuBackend(new WebGpuRunner(await loadGpuJs(), (real.runner as WebGpuRunner).device, { adapter: (real.runner as WebGpuRunner).adapter }), { name: 'gpu-memory-real' });
    const recorded = await dryRun(small, quiet);
    const measured = await dryRun(small, quiet, fresh);
    expect(measured.peakBytes).toBe(recorded.peakBytes);
    expect(measured.launchesPerStep).toBe(recorded.launchesPerStep);
    expect(measured.buffersCreatedAfterWarmup).toBe(0);
  });
});

describe('training with the loop\'s scopes matches PyTorch', () => {
  const fx = loadTorchGpt();
  for (const [label, make] of [['gpu.js cpu mode', () => initGpuBackend({ mode: 'cpu' })], ['WebGPU', realWebGpu]] as const) {
    it(`${label}: 5 steps of accumulation, clipping and AdamW (rel 1e-4)`, async (ctx) => {
      const b = await make();
      if (!b) { ctx.skip(); return; }
      setBackend(b);
      const tr = fx.train;
      const model = gptFromFixture(fx, b.name);
      const opt = configureOptimizers(model, tr.weight_decay, tr.max_lr);
      const params = model.parameters();
      const [B, T] = tr.micro_batches[0]!.x.shape as [number, number];
      for (const want of tr.steps) {
        opt.zeroGrad();
        const mbs = tr.micro_batches.filter((m) => m.step === want.step);
        let i = 0;
        const next = () => { const m = mbs[i++]!; return { x: Int32Array.from(m.x.data), y: Int32Array.from(m.y.data) }; };
        const loss = accumulateGradients(model, next, B, T, tr.grad_accum_steps, 'float32');
        const norm = clipGradients(params, tr.clip_grad_norm);
        opt.setLr(getLr(want.step, { maxLr: tr.max_lr, minLr: tr.min_lr, warmupSteps: tr.warmup_steps, maxSteps: tr.max_steps }));
        opt.step();
        expect(Math.abs((await loss.data())[0]! - want.loss) / want.loss, `loss at step ${want.step}`).toBeLessThan(1e-4);
        expect(Math.abs((await norm.data())[0]! - want.norm) / want.norm, `norm at step ${want.step}`).toBeLessThan(1e-4);
      }
      const named = new Map(model.namedParameters());
      for (const p of tr.final_params) {
        expect(worstRel(Float32Array.from(await named.get(p.name)!.data()), p.data), `final ${p.name}`).toBeLessThan(1e-3);
      }
    });
  }
});
