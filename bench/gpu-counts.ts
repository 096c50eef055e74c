// What decides a training step's speed on a GPU, counted: kernel launches, queue submits,
// buffers (and bytes) created, uniform buffers created, host->device and device->host traffic
// per step of the real training loop's work (forward, backward, clip, AdamW, the loss and norm
// readbacks, collect). Shared by bench/gpu-check.ts (the H200 check) and `npm run bench -- --gpu`.
// Counting needs no arithmetic, so Dawn's null device (compiles, validates, computes nothing)
// counts GPT-2 124M in seconds where SwiftShader would take minutes; the counts are the same.

import { GPT, type GPTConfig } from '../src/nn/gpt.js';
import { GradScaler, clipGradNorm, configureOptimizers, type AdamW } from '../src/optim/index.js';
import { autocast } from '../src/tensor/autocast.js';
import type { Tensor } from '../src/tensor/tensor.js';
import { setBackend, getBackendByName } from '../src/tensor/backend.js';
import { tensor } from '../src/tensor/creation.js';
import { manualSeed } from '../src/tensor/random.js';
import { GpuBackend } from '../src/tensor/backends/gpu/gpu-backend.js';
import { loadGpuJs } from '../src/tensor/backends/gpu/gpujs.js';
import { WebGpuRunner, type KernelWork, type RunnerStats } from '../src/tensor/backends/gpu/webgpu-runner.js';
import { workDelta } from './roofline.js';
import { countingDevice } from '../src/tensor/backends/gpu/recording-device.js';

export interface StepCounts extends RunnerStats {
  step: number;
  ms: number;
  /** Launches of each kernel in this step. */
  byKernel: Record<string, number>;
  /** The work of each kernel in this step (for bench/roofline.ts). */
  work: Map<string, KernelWork>;
}

export const GPT2_124M: GPTConfig = { blockSize: 1024, vocabSize: 50304, nLayer: 12, nHead: 12, nEmbd: 768 };

/** A GPT for the benchmarks: seed 0, nanoGPT's AdamW groups, and its parameters in the optimizer's order. */
export interface BenchModel { model: GPT; opt: AdamW; params: Tensor[]; scaler?: GradScaler }
export function benchModel(cfg: GPTConfig): BenchModel {
  manualSeed(0);
  const model = new GPT(cfg);
  const opt = configureOptimizers(model, 0.1, 6e-4);
  return { model, opt, params: opt.paramGroups.flatMap((g) => g.params) }; // clipped in the optimizer's order, as optimizationStep does
}

export type BenchDtype = 'float32' | 'bfloat16' | 'float16';

/**
 * One training step as src/train/step.ts's optimizationStep takes it, without the loop around it:
 * zeroGrad, forward (under autocast for a half dtype), backward (float16: of the loss scaled by a
 * GradScaler, its gradients unscaled), clip, AdamW, then the step's only readbacks (the logged loss
 * and norm; float16's overflow check) and the collect the loop does.
 */
export async function benchStep(gpu: GpuBackend, m: BenchModel, x: Tensor, y: Tensor, dtype: BenchDtype = 'float32'): Promise<void> {
  m.opt.zeroGrad();
  const { loss } = dtype === 'float32' ? m.model.forward(x, y) : autocast(dtype, () => m.model.forward(x, y));
  const scaler = dtype === 'float16' ? (m.scaler ??= new GradScaler()) : null;
  (scaler ? scaler.scale(loss!) : loss!).backward();
  scaler?.unscaleGrads(m.opt);
  const norm = clipGradNorm(m.params, 1.0);
  if (scaler) { await scaler.step(m.opt); scaler.update(); } else m.opt.step();
  await loss!.data();
  await norm.data();
  await gpu.collect();
}

/** Train `steps` steps of `cfg` at B x T on the gpu backend; the counts of each step. */
export async function countSteps(gpu: GpuBackend, cfg: GPTConfig, B: number, T: number, steps = 3, dtype: BenchDtype = 'float32'): Promise<StepCounts[]> {
  const runner = gpu.runner as WebGpuRunner;
  setBackend(gpu);
  try {
    const m = benchModel(cfg);
    const out: StepCounts[] = [];
    for (let s = 0; s < steps; s++) {
      const before = { ...runner.stats };
      const wBefore = new Map(runner.workByKernel);
      const t0 = performance.now();
      const V = Math.min(cfg.vocabSize, 50257);
      const x = tensor(Int32Array.from({ length: B * T }, (_, i) => (i * 7919 + s) % V), { shape: [B, T] });
      const y = tensor(Int32Array.from({ length: B * T }, (_, i) => (i * 104729 + s + 1) % V), { shape: [B, T] });
      await benchStep(gpu, m, x, y, dtype);
      const d = Object.fromEntries(Object.entries(runner.stats).map(([k, v]) => [k, v - before[k as keyof RunnerStats]])) as unknown as RunnerStats;
      const work = workDelta(runner.workByKernel, wBefore);
      const byKernel = Object.fromEntries([...work].map(([k, w]) => [k, w.launches]));
      out.push({ ...d, step: s, ms: performance.now() - t0, byKernel, work });
    }
    return out;
  } finally {
    setBackend(getBackendByName('js'));
  }
}

/**
 * One steady GPT-2 124M step (B=1, T=1024; the third of three) counted on the recording device
 * (src/tensor/backends/gpu/recording-device.ts): the runner and the pools are the real ones, nothing
 * is computed. float16 is counted as on a GPU with tensor cores (an NVIDIA adapter's 16x16x16 f16
 * subgroup matrices, subgroups of 32), so its products take the tensor-core kernel.
 */
export async function countedStep(cfg: GPTConfig = GPT2_124M, B = 1, T = 1024, dtype: BenchDtype = 'float32'): Promise<StepCounts> {
  const gpujs = await loadGpuJs();
  const tensorCores = dtype === 'float16' ? { config: { M: 16, N: 16, K: 16 }, subgroupMaxSize: 32 } : null;
  const runner = new WebGpuRunner(gpujs, countingDevice(), { adapter: 'recording device', tensorCores,
    features: tensorCores ? ['shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'] : [] });
  const b = new GpuBackend(runner, { name: 'gpu-counting' });
  const steps = await countSteps(b, cfg, B, T, 3, dtype);
  return steps[steps.length - 1]!;
}

const mb = (b: number): string => (b >= 1e6 ? `${(b / 1e6).toFixed(1)} MB` : b >= 1e3 ? `${(b / 1e3).toFixed(1)} kB` : `${b} B`);

/** One line per step: launches, submits, buffers created (bytes), uniforms, uploads, readbacks. */
export function formatCounts(c: StepCounts): string {
  return `step ${c.step}: ${c.dispatches} launches, ${c.submits} submits, ${c.buffersCreated} buffers created (${mb(c.bytesCreated)}), ` +
    `${c.uniformsCreated} uniforms created, parameters ${c.uniformWrites} writes (${mb(c.uniformBytes)}), host->device ${c.uploads} writes (${mb(c.uploadBytes)}), device->host ${c.reads} reads (${mb(c.readBytes)})`;
}
