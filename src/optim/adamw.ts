// AdamW exactly as torch.optim.AdamW (decoupled weight decay: p *= 1 - lr*wd before the
// Adam step; bias-corrected moments). State (step, exp_avg, exp_avg_sq) lives here in
// float32 on the parameter's backend, not on the tensors.

import { Tensor, noGrad, zeros, ops } from '../tensor/index.js';
import { fusedFloat32 } from '../tensor/define-op.js';


export interface ParamGroup {
  params: Tensor[];
  lr: number;
  weightDecay: number;
}

export interface AdamWOptions {
  lr?: number;
  betas?: [number, number];
  eps?: number;
  weightDecay?: number;
}

interface ParamState { step: number; expAvg: Tensor; expAvgSq: Tensor }

/** What an optimizer takes: a list of tensors, or groups with their own lr and weightDecay. */
export type Params = Tensor[] | { params: Tensor[]; lr?: number; weightDecay?: number }[];

/** Params as groups, each with its lr and weightDecay (the optimizer's defaults where a group has none). */
export function paramGroups(params: Params, lr: number, weightDecay: number): ParamGroup[] {
  const gs = params.length && params[0] instanceof Tensor ? [{ params: params as Tensor[] }] : params as { params: Tensor[]; lr?: number; weightDecay?: number }[];
  return gs.map((g) => ({ params: g.params, lr: g.lr ?? lr, weightDecay: g.weightDecay ?? weightDecay }));
}

export class AdamW {
  readonly paramGroups: ParamGroup[];
  readonly betas: [number, number];
  readonly eps: number;
  private state = new Map<Tensor, ParamState>();

  /** `params` is a list of tensors or of groups with their own weightDecay (and lr). */
  constructor(params: Params, opts: AdamWOptions = {}) {
    this.paramGroups = paramGroups(params, opts.lr ?? 1e-3, opts.weightDecay ?? 0.01); // torch's default decay
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
  }

  /** Set the learning rate of every group (what train_gpt2.py does each step). */
  setLr(lr: number): void {
    for (const g of this.paramGroups) g.lr = lr;
  }

  step(): void {
    const [beta1, beta2] = this.betas;
    noGrad(() => {
      for (const group of this.paramGroups) {
        const fusedBatch: { p: Tensor; st: ParamState }[] = [];
        for (const p of group.params) {
          if (!p.grad) continue;
          let st = this.state.get(p);
          if (!st) {
            st = { step: 0, expAvg: zeros(p.shape, { backend: p.backend }), expAvgSq: zeros(p.shape, { backend: p.backend }) };
            this.state.set(p, st);
          }
          st.step++;
          if (fusedFloat32('adamw', [p, p.grad])) { fusedBatch.push({ p, st }); continue; }
          const g = p.grad.dtype === 'float32' ? p.grad : ops.cast(p.grad, 'float32');
          const p32 = p.dtype === 'float32' ? p : ops.cast(p, 'float32');
          // decoupled weight decay
          const decayed = group.weightDecay !== 0 ? ops.mul(p32, 1 - group.lr * group.weightDecay) : p32;
          // exp_avg.lerp_(grad, 1 - beta1); exp_avg_sq.mul_(beta2).addcmul_(grad, grad, 1 - beta2)
          st.expAvg = ops.add(st.expAvg, ops.mul(ops.sub(g, st.expAvg), 1 - beta1));
          st.expAvgSq = ops.add(ops.mul(st.expAvgSq, beta2), ops.mul(ops.mul(g, g), 1 - beta2));
          const bc1 = 1 - beta1 ** st.step;
          const bc2 = 1 - beta2 ** st.step;
          const denom = ops.add(ops.div(ops.sqrt(st.expAvgSq), Math.sqrt(bc2)), this.eps);
          const updated = ops.sub(decayed, ops.mul(ops.div(st.expAvg, denom), group.lr / bc1));
          p.storage = (p.dtype === 'float32' ? updated : ops.cast(updated, p.dtype)).storage;
        }
        // the fused kernel takes the group at once (a GPU: a launch or two for all of it), per
        // backend and step count (the same for the whole group unless parameters joined late)
        const batches = new Map<string, { p: Tensor; st: ParamState }[]>();
        for (const e of fusedBatch) {
          const key = `${e.p.backend.name} ${e.st.step}`;
          const b = batches.get(key);
          if (b) b.push(e); else batches.set(key, [e]);
        }
        for (const batch of batches.values()) {
          const adamw = fusedFloat32('adamw', [batch[0]!.p, batch[0]!.p.grad!])!;
          adamw(batch.map((e) => e.p.storage), batch.map((e) => e.p.grad!.storage), batch.map((e) => e.st.expAvg.storage),
            batch.map((e) => e.st.expAvgSq.storage), { lr: group.lr, beta1, beta2, eps: this.eps, weightDecay: group.weightDecay, step: batch[0]!.st.step });
        }
      }
    });
  }

  zeroGrad(): void {
    for (const g of this.paramGroups) for (const p of g.params) p.zeroGrad();
  }

  /** The state of one parameter (undefined before its first step), for checkpoints. */
  getState(p: Tensor): { step: number; expAvg: Tensor; expAvgSq: Tensor } | undefined {
    return this.state.get(p);
  }

  /** Restore the state of one parameter (shapes must match). */
  setState(p: Tensor, st: { step: number; expAvg: Tensor; expAvgSq: Tensor }): void {
    if (!this.paramGroups.some((g) => g.params.includes(p))) throw new Error('AdamW.setState: the tensor is not one of this optimizer\'s parameters');
    for (const [name, t] of [['expAvg', st.expAvg], ['expAvgSq', st.expAvgSq]] as const) {
      if (t.size !== p.size) throw new Error(`AdamW.setState: ${name} has ${t.size} elements, the parameter ${p.size}`);
    }
    this.state.set(p, { step: st.step, expAvg: ops.reshape(st.expAvg, p.shape), expAvgSq: ops.reshape(st.expAvgSq, p.shape) });
  }
}
