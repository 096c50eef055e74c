// One training step, train_gpt2.py's loop body, whole: zero the gradients, accumulate them over
// micro-batches, average them over the ranks, clip, set the learning rate, step. Each micro-step
// runs in a scope (src/tensor/scope.ts), so nothing it makes outlives it but the gradients (which
// backward() sums in place) and the running loss: a step's memory is one micro-step's, however
// many there are. Also the validation loss. The loop around them (logging, checkpoints, stopping)
// is train.ts's.

import type { GPT } from '../nn/gpt.js';
import { clipGradNorm, getLr, type AdamW, type GradScaler, type LrSchedule } from '../optim/index.js';
import { Tensor, noGrad, ops, tensor } from '../tensor/index.js';
import { keep, scope } from '../tensor/scope.js';
import type { DataLoaderLite } from '../data/loader.js';
import { ProgressBar } from '../data/progress.js';
import { allReduceGradients, type GradientReducer, type GradWireDtype } from './distributed/ddp.js';
import type { Job } from './distributed/init.js';
import { withDtype, type TrainDtype } from './precision.js';

/** What one optimisation step works with: the model, its optimizer, the data, the ranks. */
export interface StepContext {
  model: GPT;
  optimizer: AdamW;
  params: readonly Tensor[];
  nextBatch: () => Batch;
  B: number;
  T: number;
  /** Micro-batches per step: total batch size / (B * T * world size). */
  gradAccumSteps: number;
  dtype: TrainDtype;
  /** float16's loss scaling (torch.amp.GradScaler), else null. */
  scaler: GradScaler | null;
  gradClip: number;
  schedule: LrSchedule;
  job: Job;
  /** DDP on a device: bucket readbacks overlapped with the last backward; else null. */
  reducer: GradientReducer | null;
  ddpGradDtype: GradWireDtype;
}

export interface StepOutcome {
  /** The mean loss over the micro-batches (0-d float32, on the device: read it, then dispose it). */
  loss: Tensor;
  /** The gradient norm before clipping (0-d float32, likewise). */
  norm: Tensor;
  lr: number;
  /** false when a GradScaler skipped the update (float16 gradients overflowed). */
  stepped: boolean;
  /** DDP: ms waiting at the barrier for the slowest rank, then ms moving gradients. */
  waitMs: number;
  commMs: number;
}

/** One optimisation step at `step` (it sets the learning rate). Reads nothing back from the device. */
export async function optimizationStep(c: StepContext, step: number): Promise<StepOutcome> {
  const { model, optimizer, params, scaler, job } = c;
  model.train();
  optimizer.zeroGrad();
  const loss = accumulateGradients(model, c.nextBatch, c.B, c.T, c.gradAccumSteps, c.dtype, scaler, () => c.reducer?.arm());
  // DDP: gradients averaged over the ranks once per optimizer step, after the last micro-step
  // (a barrier first, so the log tells waiting for a slower rank apart from moving gradients)
  const c0 = performance.now();
  if (job.worldSize > 1) await job.group.barrier('the gradient all-reduce');
  const c1 = performance.now();
  if (c.reducer) await c.reducer.reduce(); else await allReduceGradients(job, params, c.ddpGradDtype);
  const [waitMs, commMs] = [c1 - c0, performance.now() - c1];
  scaler?.unscaleGrads(optimizer); // clipping sees the true gradients
  // (in the optimizer's order: a GPU packs the gradients side by side as clipping lists them, and
  // each param group's AdamW then finds its gradients as one run of that packing, not copied again)
  const norm = clipGradients(optimizer.paramGroups.flatMap((g) => g.params), c.gradClip);
  const lr = getLr(step, c.schedule);
  optimizer.setLr(lr);
  // float16: a step whose gradients overflowed is skipped (the same on every rank: they are all-reduced)
  let stepped = true;
  if (scaler) {
    stepped = await scaler.step(optimizer);
    scaler.update();
  } else optimizer.step();
  return { loss, norm, lr, stepped, waitMs, commMs };
}

export interface Batch { x: Int32Array; y: Int32Array }

/**
 * Forward and backward over `steps` micro-batches of B x T, each loss divided by `steps` so the
 * accumulated gradients are those of one big batch (mean, not sum). Returns the mean loss, a
 * 0-d float32 tensor (nothing is read back here). `beforeLastBackward` runs before the last
 * micro-step (train_gpt2.py's require_backward_grad_sync).
 */
export function accumulateGradients(model: GPT, nextBatch: () => Batch, B: number, T: number, steps: number, dtype: TrainDtype,
  scaler: GradScaler | null = null, beforeLastBackward?: () => void): Tensor {
  let lossAccum: Tensor | null = null;
  for (let micro = 0; micro < steps; micro++) {
    const { x, y } = nextBatch();
    if (micro === steps - 1) beforeLastBackward?.(); // DDP: only the last micro-step's gradients are exchanged
    const prev: Tensor | null = lossAccum;
    lossAccum = scope((): Tensor => {
      const xt = tensor(x, { shape: [B, T] }), yt = tensor(y, { shape: [B, T] });
      const loss = ops.div(withDtype(dtype, () => model.forward(xt, yt).loss!), steps); // float32: cross-entropy autocasts to it
      // kept: backward() frees the tape's outputs, and with a GradScaler `loss` is one of them
      const acc = keep(noGrad((): Tensor => (prev ? ops.add(prev, loss.detach()) : loss.detach())));
      (scaler ? scaler.scale(loss) : loss).backward(); // outside autocast, as torch's backward
      return acc;
    });
    if (prev) prev.backend.dispose(prev.storage); // the running sum replaced it
  }
  return lossAccum!;
}

/** clipGradNorm with its temporaries freed at once: the norm before clipping (0-d float32). */
export function clipGradients(params: readonly Tensor[], maxNorm: number): Tensor {
  return scope(() => clipGradNorm(params, maxNorm));
}

/** The mean loss over `steps` validation batches from the loader's start (no gradients). */
export async function validationLoss(model: GPT, loader: DataLoaderLite, steps: number, B: number, T: number, showProgress: boolean, dtype: TrainDtype): Promise<number> {
  model.eval();
  loader.reset();
  const bar = showProgress ? new ProgressBar({ label: 'val', total: steps, unit: 'steps' }) : null;
  let acc: Tensor | null = null;
  for (let i = 0; i < steps; i++) {
    const { x, y } = loader.nextBatch();
    const prev: Tensor | null = acc;
    acc = scope(() => noGrad(() => {
      const loss = withDtype(dtype, () => model.forward(tensor(x, { shape: [B, T] }), tensor(y, { shape: [B, T] })).loss!);
      return prev ? ops.add(prev, loss) : loss;
    }));
    if (prev) prev.backend.dispose(prev.storage);
    bar?.update(i + 1);
    await new Promise((r) => setImmediate(r)); // let finalizers of freed buffers run (see the train loop)
  }
  bar?.done();
  model.train();
  const sum = (await acc!.data())[0]!;
  acc!.backend.dispose(acc!.storage); // read: its buffer goes back now, not when collected
  return sum / steps;
}
