// Global-norm gradient clipping as torch.nn.utils.clip_grad_norm_: returns the pre-clip
// norm as a tensor, and scales gradients on the device (no host round trip), in place where
// backward() says a gradient is its parameter's alone.

import { Tensor, keep, noGrad, ops } from '../tensor/index.js';
import { fusedFloat32 } from '../tensor/define-op.js';
import { ownsGrad } from '../tensor/autograd.js';

/** The global L2 norm of all gradients (a 0-d float32 tensor). */
export function gradNorm(params: readonly Tensor[]): Tensor {
  const grads = params.map((p) => p.grad).filter((g): g is Tensor => g !== null);
  if (grads.length === 0) throw new Error('clipGradNorm: no parameter has a gradient; call loss.backward() first');
  return noGrad(() => {
    const sumSquares = fusedFloat32('sumSquares', grads);
    if (sumSquares) return ops.sqrt(new Tensor(sumSquares(grads.map((g) => g.storage)), [], grads[0]!.backend));
    let total: Tensor | null = null;
    for (const g of grads) {
      const g32 = g.dtype === 'float32' ? g : ops.cast(g, 'float32');
      const s = ops.sum(ops.mul(g32, g32));
      total = total ? ops.add(total, s) : s;
    }
    return ops.sqrt(total!);
  });
}

/**
 * grad *= factor[0] (a 0-d float32 tensor) in place, as torch's mul_, for the parameters whose
 * gradient is theirs alone (backward() made it), all in one fused call (a GPU: a launch per packed
 * span, not one per gradient). Returns the parameters it scaled: none where the backend has no
 * such kernel for these dtypes; the caller replaces the others' gradients by scaled copies.
 */
export function scaleOwnGradsInPlace(params: readonly Tensor[], factor: Tensor): Set<Tensor> {
  const owned = params.filter((p) => p.grad && ownsGrad(p));
  const scale = owned.length ? fusedFloat32('scaleInPlace', [...owned.map((p) => p.grad!), factor]) : null;
  if (!scale) return new Set();
  scale(owned.map((p) => p.grad!.storage), factor.storage);
  return new Set(owned);
}

/**
 * Scale gradients so their global norm is at most maxNorm; returns the norm before clipping.
 * As torch's clip_grad_norm_, the gradients backward() made are scaled in place (a tensor taken
 * from p.grad before sees the scaled values); one the caller passed to backward(gradient) or
 * assigned to .grad is replaced by a scaled copy instead, never written.
 */
export function clipGradNorm(params: readonly Tensor[], maxNorm: number): Tensor {
  const norm = gradNorm(params);
  noGrad(() => {
    // clip_coef = min(max_norm / (norm + 1e-6), 1), applied always (a no-op scale when < max)
    const coef = ops.minimum(ops.div(maxNorm, ops.add(norm, 1e-6)), 1);
    const scaled = scaleOwnGradsInPlace(params, coef);
    for (const p of params) {
      if (!p.grad || scaled.has(p)) continue;
      p.grad = keep(ops.mul(p.grad, ops.cast(coef, p.grad.dtype))); // (kept: a caller's scope must not free it)
    }
  });
  return norm;
}
