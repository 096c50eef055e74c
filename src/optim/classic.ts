// SGD and Adam as torch.optim's (coupled L2 weight decay: the gradient gets wd * p added first).
// The state lives here, float32, on the parameter's backend; updates are ops (no fused kernel).

import { Tensor, noGrad, ops } from '../tensor/index.js';
import { paramGroups, type ParamGroup as Group, type Params } from './adamw.js';

/** Each parameter with a gradient: its float32 value and gradient (wd * p added), and how to store the update. */
function eachParam(gs: Group[], f: (p: Tensor, p32: Tensor, g: Tensor, group: Group) => Tensor): void {
  noGrad(() => {
    for (const group of gs) {
      for (const p of group.params) {
        if (!p.grad) continue;
        const p32 = p.dtype === 'float32' ? p : ops.cast(p, 'float32');
        let g = p.grad.dtype === 'float32' ? p.grad : ops.cast(p.grad, 'float32');
        if (group.weightDecay !== 0) g = ops.add(g, ops.mul(p32, group.weightDecay));
        const updated = f(p, p32, g, group);
        p.storage = (p.dtype === 'float32' ? updated : ops.cast(updated, p.dtype)).storage;
      }
    }
  });
}

export interface SGDOptions { lr?: number; momentum?: number; dampening?: number; nesterov?: boolean; weightDecay?: number }

/** torch.optim.SGD: p -= lr * (momentum buffer, or the gradient), Nesterov optional. */
export class SGD {
  readonly paramGroups: Group[];
  private readonly momentumBuffers = new Map<Tensor, Tensor>();
  constructor(params: Params, readonly opts: SGDOptions = {}) {
    this.paramGroups = paramGroups(params, opts.lr ?? 1e-3, opts.weightDecay ?? 0);
    if ((opts.nesterov ?? false) && (!(opts.momentum! > 0) || (opts.dampening ?? 0) !== 0)) {
      throw new Error('SGD: Nesterov momentum needs momentum > 0 and dampening 0 (as torch)');
    }
  }
  setLr(lr: number): void { for (const g of this.paramGroups) g.lr = lr; }
  step(): void {
    const momentum = this.opts.momentum ?? 0, dampening = this.opts.dampening ?? 0;
    eachParam(this.paramGroups, (p, p32, g, group) => {
      let d = g;
      if (momentum !== 0) {
        const prev = this.momentumBuffers.get(p);
        const buf = prev ? ops.add(ops.mul(prev, momentum), ops.mul(g, 1 - dampening)) : g;
        this.momentumBuffers.set(p, buf);
        d = this.opts.nesterov ? ops.add(g, ops.mul(buf, momentum)) : buf;
      }
      return ops.sub(p32, ops.mul(d, group.lr));
    });
  }
  zeroGrad(): void { for (const g of this.paramGroups) for (const p of g.params) p.zeroGrad(); }
}

export interface AdamOptions { lr?: number; betas?: [number, number]; eps?: number; weightDecay?: number }

/** torch.optim.Adam: bias-corrected moments, L2 weight decay added to the gradient (AdamW decouples it). */
export class Adam {
  readonly paramGroups: Group[];
  readonly betas: [number, number];
  readonly eps: number;
  private readonly state = new Map<Tensor, { step: number; expAvg: Tensor; expAvgSq: Tensor }>();
  constructor(params: Params, opts: AdamOptions = {}) {
    this.paramGroups = paramGroups(params, opts.lr ?? 1e-3, opts.weightDecay ?? 0);
    this.betas = opts.betas ?? [0.9, 0.999];
    this.eps = opts.eps ?? 1e-8;
  }
  setLr(lr: number): void { for (const g of this.paramGroups) g.lr = lr; }
  step(): void {
    const [b1, b2] = this.betas;
    eachParam(this.paramGroups, (p, p32, g, group) => {
      const prev = this.state.get(p);
      const st = { step: (prev?.step ?? 0) + 1,
        expAvg: prev ? ops.add(ops.mul(prev.expAvg, b1), ops.mul(g, 1 - b1)) : ops.mul(g, 1 - b1),
        expAvgSq: prev ? ops.add(ops.mul(prev.expAvgSq, b2), ops.mul(ops.mul(g, g), 1 - b2)) : ops.mul(ops.mul(g, g), 1 - b2) };
      this.state.set(p, st);
      const denom = ops.add(ops.div(ops.sqrt(st.expAvgSq), Math.sqrt(1 - b2 ** st.step)), this.eps);
      return ops.sub(p32, ops.mul(ops.div(st.expAvg, denom), group.lr / (1 - b1 ** st.step)));
    });
  }
  zeroGrad(): void { for (const g of this.paramGroups) for (const p of g.params) p.zeroGrad(); }
}
