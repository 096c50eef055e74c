// The learning-rate schedule of build-nanogpt's get_lr: linear warmup, cosine decay to
// min_lr, then constant. A pure function of the step.

export interface LrSchedule {
  maxLr: number;
  minLr: number;
  warmupSteps: number;
  maxSteps: number;
}

export function getLr(it: number, s: LrSchedule): number {
  // 1) linear warmup for warmup_iters steps
  if (it < s.warmupSteps) return (s.maxLr * (it + 1)) / s.warmupSteps;
  // 2) after max_steps, min learning rate
  if (it > s.maxSteps) return s.minLr;
  // 3) in between, cosine decay down to min learning rate
  const decayRatio = (it - s.warmupSteps) / Math.max(1, s.maxSteps - s.warmupSteps);
  const coeff = 0.5 * (1 + Math.cos(Math.PI * decayRatio)); // starts at 1, goes to 0
  return s.minLr + coeff * (s.maxLr - s.minLr);
}
