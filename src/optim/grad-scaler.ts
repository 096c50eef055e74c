// Loss scaling for float16 training, as torch.amp.GradScaler: float16 gradients underflow to
// zero below 6e-8, so the loss is multiplied by a large scale before backward, the gradients
// divided by it before the optimizer sees them, and a step whose gradients overflowed (inf or
// NaN) is skipped while the scale backs off; after `growthInterval` good steps it grows again.
// bfloat16 has float32's range and needs none of this.

import { Tensor, noGrad, ops, tensor } from '../tensor/index.js';
import { gradNorm, scaleOwnGradsInPlace } from './clip.js';
import type { AdamW } from './adamw.js';

export interface GradScalerOptions {
  initScale?: number;
  growthFactor?: number;
  backoffFactor?: number;
  growthInterval?: number;
  /** false: every method is a pass-through (scale 1, nothing skipped), as torch's enabled=False. */
  enabled?: boolean;
}

/** What checkpoints keep (torch's state_dict keys). */
export interface GradScalerState {
  scale: number;
  growth_factor: number;
  backoff_factor: number;
  growth_interval: number;
  _growth_tracker: number;
}

export class GradScaler {
  readonly enabled: boolean;
  readonly growthFactor: number;
  readonly backoffFactor: number;
  readonly growthInterval: number;
  private scaleValue: number;
  private growthTracker = 0;
  /** The optimizer whose gradients are unscaled this iteration, and the check of them. */
  private unscaled: { optimizer: AdamW; check: Tensor } | null = null;
  /** Set by step(), consumed by update(): did this iteration's gradients overflow? */
  private foundInf: boolean | null = null;
  /** Steps skipped for overflow since this scaler was made (or restored). */
  skippedSteps = 0;

  constructor(opts: GradScalerOptions = {}) {
    this.enabled = opts.enabled ?? true;
    this.scaleValue = opts.initScale ?? 2 ** 16;
    this.growthFactor = opts.growthFactor ?? 2;
    this.backoffFactor = opts.backoffFactor ?? 0.5;
    this.growthInterval = opts.growthInterval ?? 2000;
    if (!(this.scaleValue > 0) || !(this.growthFactor > 1) || !(this.backoffFactor > 0 && this.backoffFactor < 1) ||
      !Number.isInteger(this.growthInterval) || this.growthInterval < 1) {
      throw new Error(`GradScaler: need initScale > 0, growthFactor > 1, 0 < backoffFactor < 1 and an integer growthInterval >= 1; got ${JSON.stringify(opts)}`);
    }
  }

  /** The current scale (1 when disabled). */
  getScale(): number { return this.enabled ? this.scaleValue : 1; }

  /** loss * scale, to call backward() on. */
  scale(loss: Tensor): Tensor {
    return this.enabled ? ops.mul(loss, this.scaleValue) : loss;
  }

  /**
   * Divide the optimizer's gradients by the scale, in place (their .grad tensors are replaced),
   * so clipping and logging see true gradients. At most once per step; step() does it if not done.
   */
  unscaleGrads(optimizer: AdamW): void {
    if (!this.enabled) return;
    if (this.unscaled) throw new Error('GradScaler.unscaleGrads: already called since the last update(); call it once per optimizer step');
    const params = optimizer.paramGroups.flatMap((g) => g.params).filter((p) => p.grad !== null);
    const inv = 1 / this.scaleValue; // a power of two: exact
    noGrad(() => {
      // in place, as torch's unscale_, where a gradient is backward()'s own, all in one call (a
      // GPU: a launch per packed span); clipping then still finds them its own to scale in place
      const done = params.length ? scaleOwnGradsInPlace(params, tensor(Float32Array.of(inv), { backend: params[0]!.backend })) : new Set<Tensor>();
      for (const p of params) if (!done.has(p)) p.grad = ops.mul(p.grad!, inv);
    });
    // any inf or NaN makes the sum of squares non-finite (one scalar, read back in step())
    this.unscaled = { optimizer, check: gradNorm(params) };
  }

  /**
   * optimizer.step() unless a gradient is inf or NaN (then the step is skipped: weights and
   * optimizer state stay exactly as they were). Returns whether it stepped.
   */
  async step(optimizer: AdamW): Promise<boolean> {
    if (!this.enabled) { optimizer.step(); return true; }
    if (!this.unscaled) this.unscaleGrads(optimizer);
    else if (this.unscaled.optimizer !== optimizer) throw new Error('GradScaler.step: the gradients were unscaled for another optimizer');
    const v = (await this.unscaled!.check.data())[0]!;
    this.foundInf = !Number.isFinite(v);
    if (this.foundInf) this.skippedSteps++;
    else optimizer.step();
    return !this.foundInf;
  }

  /** After step(): back off on overflow, grow after `growthInterval` clean steps in a row. */
  update(): void {
    if (!this.enabled) return;
    if (this.foundInf === null) throw new Error('GradScaler.update: call step(optimizer) first');
    if (this.foundInf) {
      this.scaleValue *= this.backoffFactor;
      this.growthTracker = 0;
    } else if (++this.growthTracker === this.growthInterval) {
      this.scaleValue *= this.growthFactor;
      this.growthTracker = 0;
    }
    this.foundInf = null;
    this.unscaled = null;
  }

  stateDict(): GradScalerState {
    return { scale: this.scaleValue, growth_factor: this.growthFactor, backoff_factor: this.backoffFactor,
      growth_interval: this.growthInterval, _growth_tracker: this.growthTracker };
  }

  loadStateDict(s: GradScalerState): void {
    const ok = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v);
    if (!ok(s.scale) || !(s.scale > 0) || !ok(s._growth_tracker) || s._growth_tracker < 0) {
      throw new Error(`GradScaler.loadStateDict: expected a positive finite scale and a growth tracker >= 0, got ${JSON.stringify(s)}`);
    }
    this.scaleValue = s.scale;
    this.growthTracker = s._growth_tracker;
  }
}
