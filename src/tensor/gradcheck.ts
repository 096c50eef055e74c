// gradcheck as torch.autograd.gradcheck: compare the tape's analytical gradient with
// central finite differences computed in float64, and report the worst element.

import { Tensor, noGrad } from './tensor.js';
import { tensor } from './creation.js';
import { Generator } from './random.js';
import * as ops from './ops.js';
import { backward } from './autograd.js';

export interface GradcheckOptions {
  /** Finite-difference step. */
  eps?: number;
  atol?: number;
  rtol?: number;
  /** Throw on failure (default true, like torch). */
  raiseException?: boolean;
  /** Seed of the random projection applied to non-scalar outputs. */
  seed?: number;
}

export interface GradcheckResult {
  ok: boolean;
  /** The worst element: which input, its flat index, both gradients and the error. */
  worst: { input: number; index: number; analytical: number; numerical: number; error: number } | null;
  message: string;
}

/**
 * Check d(sum(fn(...inputs) * w))/d(input) for every input that requires grad, where w is a
 * fixed random projection of the output (so every output element contributes).
 * Inputs must be float64 on a host backend.
 */
export function gradcheck(fn: (...xs: Tensor[]) => Tensor, inputs: readonly Tensor[], opts: GradcheckOptions = {}): GradcheckResult {
  const eps = opts.eps ?? 1e-6, atol = opts.atol ?? 1e-5, rtol = opts.rtol ?? 1e-3;
  for (const [i, x] of inputs.entries()) {
    if (x.requiresGrad && x.dtype !== 'float64') {
      throw new Error(`gradcheck: input ${i} is ${x.dtype}; finite differences need float64 inputs (use .double())`);
    }
  }
  const leaves = inputs.map((x) => {
    const t = new Tensor(x.storage, x.shape, x.backend);
    return x.requiresGrad ? t.requiresGrad_(true) : t;
  });
  const out0 = fn(...leaves);
  const gen = new Generator(opts.seed ?? 0);
  const wData = new Float64Array(out0.size).map(() => gen.randn());
  const w = tensor(wData, { shape: out0.shape, dtype: 'float64', backend: out0.backend });
  const objective = (out: Tensor): Tensor => ops.sum(ops.mul(out, w));
  const loss = objective(out0);
  if (!loss.requiresGrad) throw new Error('gradcheck: the output does not depend on any input that requires grad');
  backward(loss);

  let worst: GradcheckResult['worst'] = null;
  let ok = true;
  noGrad(() => {
    leaves.forEach((leaf, i) => {
      if (!leaf.requiresGrad) return;
      const base = Float64Array.from(leaf.dataSync() as Float64Array);
      const analytical = leaf.grad ? leaf.grad.dataSync() : new Float64Array(base.length);
      const evalAt = (j: number, v: number): number => {
        const d = base.slice();
        d[j] = v;
        const xs = leaves.map((l, k) => (k === i ? tensor(d, { shape: l.shape, dtype: 'float64', backend: l.backend }) : l.detach()));
        return objective(fn(...xs)).item();
      };
      for (let j = 0; j < base.length; j++) {
        const numerical = (evalAt(j, base[j]! + eps) - evalAt(j, base[j]! - eps)) / (2 * eps);
        const a = analytical[j]!;
        const error = Math.abs(a - numerical);
        const bad = !(error <= atol + rtol * Math.abs(numerical));
        if (bad) ok = false;
        if (!worst || error > worst.error || (error !== error)) worst = { input: i, index: j, analytical: a, numerical, error };
      }
    });
  });
  const w2 = worst as GradcheckResult['worst'];
  const message = w2
    ? `gradcheck ${ok ? 'passed' : 'FAILED'}: worst at input ${w2.input}, element ${w2.index}: analytical ${w2.analytical}, numerical ${w2.numerical} (|diff| ${w2.error.toExponential(3)}, atol ${atol}, rtol ${rtol})`
    : 'gradcheck: no input requires grad';
  if (!ok && (opts.raiseException ?? true)) throw new Error(message);
  return { ok, worst: w2, message };
}
