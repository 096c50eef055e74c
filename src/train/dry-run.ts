// `npm run train -- --dry-run [flags]`: what a configuration needs from a GPU, found without one.
// The model trains on the recording device (src/tensor/backends/gpu/recording-device.ts: the gpu
// backend's real runner and buffer pool, nothing computed): two optimizer steps with all their
// micro-steps to warm the pool, then one more that is counted. The runner's peak of the bytes in
// its buffers (pooled ones included) is the run's peak device memory.

import { GPT } from '../nn/gpt.js';
import { GPT2_VOCAB_SIZE } from '../data/tokenizer.js';
import { GradScaler, configureOptimizers } from '../optim/index.js';
import { getBackend, setBackend } from '../tensor/backend.js';
import { recordingBackend } from '../tensor/backends/gpu/recording-device.js';
import type { GpuBackend } from '../tensor/backends/gpu/gpu-backend.js';
import type { WebGpuRunner } from '../tensor/backends/gpu/webgpu-runner.js';
import { manualSeed } from '../tensor/random.js';
import type { TrainDtype } from './precision.js';
import { presetConfig } from './start.js';
import { optimizationStep, type Batch, type StepContext } from './step.js';
import { singleJob } from './distributed/init.js';
import type { TrainOptions } from './train.js';

export interface DryRunResult {
  /** The most bytes in device buffers at once, warm-up included (pooled buffers count). */
  peakBytes: number;
  launchesPerStep: number;
  buffersCreatedAfterWarmup: number;
  microSteps: number;
}

export type DryRunOptions = Pick<TrainOptions, 'model' | 'nLayer' | 'nHead' | 'nEmbd' | 'blockSize' | 'vocabSize' | 'batchSize' | 'seqLen' |
  'totalBatchSize' | 'seed' | 'weightDecay' | 'maxLr' | 'gradClip'> & { dtype?: TrainDtype };

/**
 * Count the steps on `on` (default: a new recording backend). A real adapter's backend counts the
 * same way, which is how the tests check the recording against real allocations.
 */
export async function dryRun(o: DryRunOptions, print: (line: string) => void = console.log, on?: GpuBackend): Promise<DryRunResult> {
  const config = presetConfig(o);
  const B = o.batchSize, T = o.seqLen;
  if (T > config.blockSize) throw new Error(`--seq-len ${T} is longer than the model's block size ${config.blockSize}`);
  if (o.totalBatchSize % (B * T) !== 0) throw new Error(`--total-batch-size ${o.totalBatchSize} must be divisible by --batch-size * --seq-len = ${B * T}`);
  const micro = o.totalBatchSize / (B * T);
  const before = getBackend();
  const be = on ?? await recordingBackend();
  const runner = be.runner as WebGpuRunner;
  setBackend(be);
  try {
    manualSeed(o.seed);
    const model = new GPT(config);
    const optimizer = configureOptimizers(model, o.weightDecay, o.maxLr);
    const params = model.parameters();
    print(`dry run on ${runner.adapter}: ${config.nLayer} layers, ${config.nEmbd} embd, B=${B}, T=${T}, ${micro} micro-steps, ${o.dtype ?? 'float32'}`);
    let n = 0;
    const V = Math.min(config.vocabSize, GPT2_VOCAB_SIZE);
    const batch = (): Batch => {
      n++;
      return {
        x: Int32Array.from({ length: B * T }, (_, i) => (i * 7919 + n) % V),
        y: Int32Array.from({ length: B * T }, (_, i) => (i * 104729 + n + 1) % V),
      };
    };
    // train.ts's step, on one rank, with float16's loss scaling (its launches count; the recording
    // device reads back zeros, so the scaler always steps)
    const ctx: StepContext = { model, optimizer, params, nextBatch: batch, B, T, gradAccumSteps: micro, dtype: o.dtype ?? 'float32',
      scaler: o.dtype === 'float16' ? new GradScaler() : null,
      gradClip: o.gradClip, schedule: { maxLr: o.maxLr, minLr: o.maxLr, warmupSteps: 0, maxSteps: 1 }, // the rate changes no launch
      job: singleJob(), reducer: null, ddpGradDtype: 'float32' };
    let at = 0;
    const step = async (): Promise<void> => {
      const { loss, norm } = await optimizationStep(ctx, at++);
      await loss.data(); // the readbacks a training step makes
      await norm.data();
      for (const t of [loss, norm]) be.dispose(t.storage);
      await be.collect();
    };
    await step();
    await step(); // the first step makes AdamW's state from the pool: warm after two
    const warm = { ...runner.stats };
    await step();
    const r: DryRunResult = {
      peakBytes: runner.peakBytes,
      launchesPerStep: runner.stats.dispatches - warm.dispatches,
      buffersCreatedAfterWarmup: runner.stats.buffersCreated - warm.buffersCreated,
      microSteps: micro,
    };
    print(`peak device memory: ${(r.peakBytes / 1e9).toFixed(2)} GB`);
    print(`launches per optimizer step: ${r.launchesPerStep}`);
    print(`device buffers created after warm-up: ${r.buffersCreatedAfterWarmup}`);
    return r;
  } finally {
    setBackend(before);
  }
}
