// optim: AdamW (and SGD, Adam), gradient clipping, the warmup + cosine schedule, and GPT-2's param groups.
import type { Module } from '../nn/module.js';
import { AdamW } from './adamw.js';

export { AdamW, type AdamWOptions, type ParamGroup } from './adamw.js';
export { SGD, Adam, type SGDOptions, type AdamOptions } from './classic.js';
export { clipGradNorm, gradNorm } from './clip.js';
export { GradScaler, type GradScalerOptions, type GradScalerState } from './grad-scaler.js';
export { getLr, type LrSchedule } from './schedule.js';

/**
 * configure_optimizers of train_gpt2.py: every 2-D+ parameter (matmul weights, embeddings)
 * is decayed, biases and LayerNorm gains are not; betas (0.9, 0.95), eps 1e-8.
 */
export function configureOptimizers(model: Module, weightDecay: number, learningRate: number): AdamW {
  const params = model.parameters();
  const decay = params.filter((p) => p.ndim >= 2);
  const noDecay = params.filter((p) => p.ndim < 2);
  return new AdamW([
    { params: decay, weightDecay },
    { params: noDecay, weightDecay: 0 },
  ], { lr: learningRate, betas: [0.9, 0.95], eps: 1e-8 });
}
