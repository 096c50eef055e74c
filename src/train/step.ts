// The work of one optimizer step that owns device memory, shared by training and its dry run:
// gradient accumulation over micro-batches and the clipping. Each micro-step runs in a scope
// (src/tensor/scope.ts), so nothing it makes outlives it but the gradients (which backward()
// sums in place) and the running loss: a step's memory is one micro-step's, however many there are.

import type { GPT } from '../nn/gpt.js';
import { clipGradNorm, type GradScaler } from '../optim/index.js';
import { Tensor, noGrad, ops, tensor } from '../tensor/index.js';
import { keep, scope } from '../tensor/scope.js';
import { withDtype, type TrainDtype } from './precision.js';

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
