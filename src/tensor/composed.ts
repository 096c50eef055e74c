// Ops written as compositions of the primitive ops (ops.ts), so each one's backward is the tape's
// chain rule through its definition: the PyTorch habits sigmoid, clamp, min, std, stack, clone,
// argmax, and max with indices.

import { Tensor, noGrad } from './tensor.js';
import { arange } from './creation.js';
import { normAxis, shapeStr } from './shape.js';
import * as ops from './ops.js';

/** 1 / (1 + exp(-x)); its gradient y (1 - y) comes through the composition. */
export function sigmoid(x: Tensor): Tensor {
  return ops.div(1, ops.add(1, ops.exp(ops.neg(x))));
}

/**
 * x limited to [min, max] (either may be omitted), as torch.clamp: the gradient flows where x is
 * inside the range, bounds included, and is 0 where x was clipped.
 */
export function clamp(x: Tensor, min?: number | null, max?: number | null): Tensor {
  if (min == null && max == null) throw new Error('clamp: give at least one of min and max');
  let y = x;
  if (min != null) y = ops.where(ops.lt(x, min), min, y);
  if (max != null) y = ops.where(ops.gt(x, max), max, y);
  return y;
}

/** Min over dims (torch.amin): the gradient is shared evenly among tied minima. */
export function min(x: Tensor, dims?: number | readonly number[], keepdim = false): Tensor {
  return ops.neg(ops.max(ops.neg(x), dims, keepdim));
}

/** Standard deviation over dims with Bessel's correction (torch.std's default `correction = 1`). */
export function std(x: Tensor, dims?: number | readonly number[], keepdim = false, correction = 1): Tensor {
  const all = dims === undefined ? x.shape.map((_, i) => i) : (typeof dims === 'number' ? [dims] : [...dims]).map((d) => normAxis('std', d, x.ndim));
  const n = all.reduce((p, d) => p * x.shape[d]!, 1);
  if (n - correction <= 0) throw new Error(`std: ${n} values over dims [${all.join(', ')}] of ${shapeStr(x.shape)} with correction ${correction} leave no degrees of freedom`);
  const centered = ops.sub(x, ops.mean(x, all, true));
  return ops.sqrt(ops.div(ops.sum(ops.mul(centered, centered), all, keepdim), n - correction));
}

/** Tensors of one shape joined along a new dim (torch.stack). */
export function stack(xs: readonly Tensor[], dim = 0): Tensor {
  if (xs.length === 0) throw new Error('stack: expected a non-empty list of tensors');
  const shape = xs[0]!.shape;
  xs.forEach((t, i) => {
    if (t.ndim !== shape.length || t.shape.some((d, k) => d !== shape[k])) {
      throw new Error(`stack: tensor ${i} has shape ${shapeStr(t.shape)} but tensor 0 has ${shapeStr(shape)}; stack needs equal shapes`);
    }
  });
  const d = normAxis('stack', dim, shape.length + 1);
  return ops.cat(xs.map((t) => ops.unsqueeze(t, d)), d);
}

/** A copy with its own storage; the gradient passes through unchanged (torch.clone). */
export function clone(x: Tensor): Tensor {
  return x.dtype === 'int32' ? ops.add(x, 0) : ops.mul(x, 1);
}

/**
 * The index of the largest value along `dim` (the first of tied maxima), as int32; over all
 * elements of the flattened tensor when `dim` is omitted. Not differentiable.
 */
export function argmax(x: Tensor, dim?: number, keepdim = false): Tensor {
  return noGrad(() => {
    if (dim === undefined) return argmax(ops.reshape(x, [-1]), 0); // over everything: one index
    const d = normAxis('argmax', dim, x.ndim);
    const n = x.shape[d]!;
    if (n === 0) throw new Error(`argmax: dim ${dim} of ${shapeStr(x.shape)} is empty`);
    const isMax = ops.eq(x, ops.max(x, d, true));
    // positions along d, n where not the max: the least is the first maximum
    const pos = ops.reshape(arange(0, n, 1, { backend: x.backend, dtype: x.dtype === 'int32' ? 'float32' : x.dtype }), x.shape.map((s, i) => (i === d ? s : 1)));
    const first = ops.neg(ops.max(ops.neg(ops.where(isMax, pos, n)), d, keepdim));
    return ops.cast(first, 'int32');
  });
}

/** The max along `dim` and where it is (torch.max(x, dim)): values differentiable, indices int32. */
export function maxWithIndices(x: Tensor, dim: number, keepdim = false): { values: Tensor; indices: Tensor } {
  return { values: ops.max(x, dim, keepdim), indices: argmax(x, dim, keepdim) };
}

// ---- as Tensor methods ----------------------------------------------------------------------

declare module './tensor.js' {
  interface Tensor {
    sigmoid(): Tensor;
    clamp(min?: number | null, max?: number | null): Tensor;
    min(dims?: number | readonly number[], keepdim?: boolean): Tensor;
    std(dims?: number | readonly number[], keepdim?: boolean, correction?: number): Tensor;
    clone(): Tensor;
    argmax(dim?: number, keepdim?: boolean): Tensor;
  }
}

Object.assign(Tensor.prototype, {
  sigmoid(this: Tensor) { return sigmoid(this); },
  clamp(this: Tensor, lo?: number | null, hi?: number | null) { return clamp(this, lo, hi); },
  min(this: Tensor, dims?: number | readonly number[], keepdim = false) { return min(this, dims, keepdim); },
  std(this: Tensor, dims?: number | readonly number[], keepdim = false, correction = 1) { return std(this, dims, keepdim, correction); },
  clone(this: Tensor) { return clone(this); },
  argmax(this: Tensor, dim?: number, keepdim = false) { return argmax(this, dim, keepdim); },
});
