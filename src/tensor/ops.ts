// The differentiable ops: each op's forward (a kernel call) sits directly above its
// backward rule, written with other ops. Broadcasting gradients are reduced back to the
// input's shape once, centrally, by backward() (autograd.ts, via sumToShape below).
// Half-precision tensors (float16/bfloat16) are computed in float32 and stored back as half
// (kernel-io.ts); the same ops as Tensor methods are in methods.ts.

import type { BinaryOp, Storage, UnaryOp } from './backend.js';
import { isHalf, type DType } from './dtype.js';
import { broadcastShapes, normAxis, sameShape, shapeStr, sizeOf, stridesOf, type Shape } from './shape.js';
import { Tensor, fromOp } from './tensor.js';
import { cast } from './cast.js';
import { asTensor, computeStorage, narrowed, releaseCopy, resultDtype, sameBackend, scalarLike, storageAs } from './kernel-io.js';
import { autocastInputs, keptForBackward } from './autocast.js';

// ---- dtype cast: cast.ts (autocast.ts casts too) ----------------------------------------

export { cast } from './cast.js';

// ---- unary ---------------------------------------------------------------------------------

/** exp/log/sqrt/tanh/gelu and true division give floats for int32 inputs, as torch (not truncated ints). */
function floatInput(x: Tensor): Tensor {
  return x.dtype === 'int32' ? cast(x, 'float32') : x;
}

function unary(op: UnaryOp, x: Tensor): Storage {
  const xs = computeStorage(x);
  const s = x.backend.unary(op, xs);
  releaseCopy(x, xs);
  return narrowed(x, s, x.dtype);
}

export function neg(x: Tensor): Tensor {
  return fromOp('neg', unary('neg', x), x.shape, [x], (g) => [neg(g)]);
}
export function exp(x: Tensor): Tensor {
  [x] = autocastInputs('float32', [floatInput(x)]);
  const out: Tensor = fromOp('exp', unary('exp', x), x.shape, [x], (g) => [mul(g, out.detach())]); // d e^x = e^x
  return out;
}
export function log(x: Tensor): Tensor {
  [x] = autocastInputs('float32', [floatInput(x)]);
  return fromOp('log', unary('log', x), x.shape, [x], (g) => [div(g, x)]);
}
export function sqrt(x: Tensor): Tensor {
  x = floatInput(x);
  const out: Tensor = fromOp('sqrt', unary('sqrt', x), x.shape, [x], (g) => [div(g, mul(out.detach(), 2))]);
  return out;
}
export function tanh(x: Tensor): Tensor {
  x = floatInput(x);
  const out: Tensor = fromOp('tanh', unary('tanh', x), x.shape, [x], (g) => {
    const y = out.detach();
    return [mul(g, sub(1, mul(y, y)))]; // 1 - tanh^2
  });
  return out;
}
export function relu(x: Tensor): Tensor {
  return fromOp('relu', unary('relu', x), x.shape, [x], (g) => [mul(g, rawUnary('step', x))]);
}
/** GELU, tanh approximation (GPT-2's "gelu_new"). */
export function gelu(x: Tensor): Tensor { return geluOf(floatInput(x), null); }
/** gelu's node; `computed`: its value where a kernel has made it already (matmulT's GELU epilogue). */
function geluOf(x: Tensor, computed: Storage | null): Tensor {
  // a half input: in float32, rounded once; in one kernel where the backend has it (a GPU: not a
  // widening cast, the kernel and a narrowing cast)
  const half = !computed && isHalf(x.dtype) ? x.backend.fused.geluHalf?.(x.storage) ?? null : null;
  // a half input's gradient: gelu'(x) in float32, times g, rounded once (by backward(), to x's dtype)
  return fromOp('gelu', computed ?? half ?? unary('gelu', x), x.shape, [x], (g) => {
    // in one kernel where the backend has it (a GPU: one launch, not two; for halves, not four)
    const fused = x.dtype === 'float32' && g.dtype === 'float32' && sameShape(g.shape, x.shape) ? x.backend.fused.geluBackward : undefined;
    if (fused) return [new Tensor(fused(x.storage, g.storage), x.shape, x.backend)];
    const halfGrad = isHalf(x.dtype) && g.dtype === x.dtype && sameShape(g.shape, x.shape) ? x.backend.fused.geluBackwardHalf?.(x.storage, g.storage) ?? null : null;
    if (halfGrad) return [new Tensor(halfGrad, x.shape, x.backend)];
    return [mul(g, rawUnary('geluGrad', isHalf(x.dtype) ? cast(x, 'float32') : x))];
  });
}
export function abs(x: Tensor): Tensor {
  return fromOp('abs', unary('abs', x), x.shape, [x],
    (g) => [mul(g, sub(rawUnary('step', x), rawUnary('step', neg(x))))]); // sign(x)
}
/** A unary kernel with no gradient (used inside backward rules). */
function rawUnary(op: UnaryOp, x: Tensor): Tensor {
  return new Tensor(unary(op, x), x.shape, x.backend);
}

// ---- binary (broadcasting) ---------------------------------------------------------------

function binary(op: BinaryOp, name: string, a: Tensor, b: Tensor): { storage: Storage; shape: number[] } {
  sameBackend(name, [a, b]);
  const shape = broadcastShapes(name, a.shape, b.shape);
  const dtype = resultDtype(a, b);
  const kernelDtype: DType = isHalf(dtype) ? 'float32' : dtype;
  const [as, bs] = [storageAs(a, kernelDtype), storageAs(b, kernelDtype)];
  const s = a.backend.binary(op, as, a.shape, bs, b.shape, shape);
  releaseCopy(a, as);
  releaseCopy(b, bs);
  return { storage: narrowed(a, s, dtype), shape };
}

export function add(a: Tensor | number, b: Tensor | number): Tensor {
  [a, b] = operands(a, b);
  const { storage, shape } = binary('add', 'add', a, b);
  return fromOp('add', storage, shape, [a, b], (g) => [g, g]);
}
export function sub(a: Tensor | number, b: Tensor | number): Tensor {
  [a, b] = operands(a, b);
  const { storage, shape } = binary('sub', 'sub', a, b);
  return fromOp('sub', storage, shape, [a, b], (g) => [g, neg(g)]);
}
export function mul(a: Tensor | number, b: Tensor | number): Tensor {
  [a, b] = operands(a, b);
  const [x, y] = [a, b];
  const { storage, shape } = binary('mul', 'mul', x, y);
  return fromOp('mul', storage, shape, [x, y], (g) => [
    x.requiresGrad ? mul(g, y.detach()) : null,
    y.requiresGrad ? mul(g, x.detach()) : null,
  ]);
}
export function div(a: Tensor | number, b: Tensor | number): Tensor {
  [a, b] = operands(a, b);
  if (a.dtype === 'int32' && b.dtype === 'int32') [a, b] = [floatInput(a), floatInput(b)]; // true division
  const [x, y] = [a, b];
  const { storage, shape } = binary('div', 'div', x, y);
  return fromOp('div', storage, shape, [x, y], (g) => [
    x.requiresGrad ? div(g, y) : null,
    y.requiresGrad ? neg(div(mul(g, x), mul(y, y))) : null, // d(x/y)/dy = -x / y^2
  ]);
}
/** x ** p for a number exponent. */
export function pow(x: Tensor, p: number): Tensor {
  [x] = autocastInputs('float32', [x]);
  const { storage, shape } = binary('pow', 'pow', x, scalarLike(x, p));
  // d x^p = p x^(p-1); for p = 0 the gradient is 0 everywhere (x^-1 at x = 0 would make 0 * inf = NaN)
  return fromOp('pow', storage, shape, [x], (g) => [p === 0 ? mul(g, 0) : mul(g, mul(pow(x, p - 1), p))]);
}
/** Elementwise max; at ties the gradient is split evenly, as torch.maximum. */
export function maximum(a: Tensor | number, b: Tensor | number): Tensor {
  [a, b] = operands(a, b);
  return minmax('max', a, b);
}
export function minimum(a: Tensor | number, b: Tensor | number): Tensor {
  [a, b] = operands(a, b);
  return minmax('min', a, b);
}
function minmax(op: 'max' | 'min', x: Tensor, y: Tensor): Tensor {
  const name = op === 'max' ? 'maximum' : 'minimum';
  const { storage, shape } = binary(op, name, x, y);
  return fromOp(name, storage, shape, [x, y], (g) => {
    const wins = op === 'max' ? gt(x, y) : lt(x, y);
    const share = add(wins, mul(eq(x, y), 0.5));
    return [mul(g, share), mul(g, sub(1, share))];
  });
}
/** Comparisons: 1 where true, 0 elsewhere, no gradient. */
export function gt(a: Tensor | number, b: Tensor | number): Tensor { return compare('gt', a, b); }
export function lt(a: Tensor | number, b: Tensor | number): Tensor { return compare('lt', a, b); }
export function eq(a: Tensor | number, b: Tensor | number): Tensor { return compare('eq', a, b); }
function compare(op: 'gt' | 'lt' | 'eq', a: Tensor | number, b: Tensor | number): Tensor {
  [a, b] = operands(a, b);
  const { storage, shape } = binary(op, op, a, b);
  return new Tensor(storage, shape, a.backend);
}

function operands(a: Tensor | number, b: Tensor | number): [Tensor, Tensor] {
  if (typeof a === 'number' && typeof b === 'number') throw new Error('binary op: at least one operand must be a Tensor');
  const ta = typeof a === 'number' ? scalarLike(b as Tensor, a) : a;
  return [ta, asTensor(ta, b)];
}

/** out = cond ? a : b (cond nonzero), broadcasting all three; differentiable in a and b. */
export function where(cond: Tensor, a: Tensor | number, b: Tensor | number): Tensor {
  [a, b] = operands(a, b);
  const [x, y] = [a, b];
  sameBackend('where', [cond, x, y]);
  const shape = broadcastShapes('where', broadcastShapes('where', cond.shape, x.shape), y.shape);
  const dtype = resultDtype(x, y);
  const kernelDtype: DType = isHalf(dtype) ? 'float32' : dtype;
  const [cs, xs, ys] = [storageAs(cond, kernelDtype), storageAs(x, kernelDtype), storageAs(y, kernelDtype)];
  const s = x.backend.where(cs, cond.shape, xs, x.shape, ys, y.shape, shape);
  releaseCopy(cond, cs);
  releaseCopy(x, xs);
  releaseCopy(y, ys);
  return fromOp('where', narrowed(x, s, dtype), shape, [x, y], (g) => [where(cond, g, 0), where(cond, 0, g)]);
}

/** x with `value` where mask is nonzero (mask broadcasts to x). */
export function maskedFill(x: Tensor, mask: Tensor, value: number): Tensor {
  const shape = broadcastShapes('maskedFill', x.shape, mask.shape);
  if (!sameShape(shape, x.shape)) {
    throw new Error(`maskedFill: mask of shape ${shapeStr(mask.shape)} must broadcast to the input's shape ${shapeStr(x.shape)}`);
  }
  return where(mask, value, x);
}

// ---- reductions ----------------------------------------------------------------------------

function reduceDims(op: string, x: Tensor, dims?: number | readonly number[]): number[] {
  if (dims === undefined) return x.shape.map((_, i) => i);
  const list = typeof dims === 'number' ? [dims] : [...dims];
  const out = [...new Set(list.map((d) => normAxis(op, d, x.ndim)))].sort((p, q) => p - q);
  return x.ndim === 0 ? [] : out;
}

function reducedShape(shape: Shape, dims: readonly number[], keepdim: boolean): number[] {
  const out: number[] = [];
  shape.forEach((d, i) => {
    if (!dims.includes(i)) out.push(d);
    else if (keepdim) out.push(1);
  });
  return out;
}

/** Run the [outer, size, inner] reduce kernel once per run of adjacent reduced dims. */
function reduceKernel(op: 'sum' | 'max', x: Tensor, dims: readonly number[]): Storage {
  let s = computeStorage(x);
  const shape = [...x.shape];
  for (let r = dims.length - 1; r >= 0;) {
    let first = r;
    while (first > 0 && dims[first - 1] === dims[first]! - 1) first--;
    const lo = dims[first]!, hi = dims[r]!;
    const outer = sizeOf(shape.slice(0, lo));
    const size = sizeOf(shape.slice(lo, hi + 1));
    const inner = sizeOf(shape.slice(hi + 1));
    if (size === 0 && op === 'max') throw new Error(`max: cannot reduce over a zero-size dim of ${shapeStr(x.shape)} (no identity for max)`);
    const next = x.backend.reduce(op, s, outer, size, inner);
    releaseCopy(x, s); // a widened input or the previous run's partial result
    s = next;
    shape.splice(lo, hi - lo + 1, 1);
    r = first - 1;
  }
  return narrowed(x, s, x.dtype);
}

export function sum(x: Tensor, dims?: number | readonly number[], keepdim = false): Tensor {
  [x] = autocastInputs('float32', [x]);
  const d = reduceDims('sum', x, dims);
  const keptShape = reducedShape(x.shape, d, true);
  return fromOp('sum', reduceKernel('sum', x, d), reducedShape(x.shape, d, keepdim), [x],
    (g) => [expand(reshape(g, keptShape), x.shape)]);
}

export function mean(x: Tensor, dims?: number | readonly number[], keepdim = false): Tensor {
  // half: sum and divide in float32, round once (rounding the sum first is off by an ulp ~1/4 of the time)
  if (isHalf(x.dtype)) return cast(mean(cast(x, 'float32'), dims, keepdim), x.dtype);
  if (x.dtype === 'int32') throw new Error(`mean: int32 input of shape ${shapeStr(x.shape)} has no floating mean; cast first with .float()`);
  const d = reduceDims('mean', x, dims);
  const count = d.reduce((n, i) => n * x.shape[i]!, 1);
  return div(sum(x, d, keepdim), count);
}

/** Max over dims (torch.amax): the gradient is shared evenly among tied maxima. */
export function max(x: Tensor, dims?: number | readonly number[], keepdim = false): Tensor {
  const d = reduceDims('max', x, dims);
  const keptShape = reducedShape(x.shape, d, true);
  const out: Tensor = fromOp('max', reduceKernel('max', x, d), reducedShape(x.shape, d, keepdim), [x], (g) => {
    const isMax = eq(x, reshape(out.detach(), keptShape));
    const share = div(isMax, sum(isMax, d, true));
    return [mul(share, reshape(g, keptShape))];
  });
  return out;
}

/** Sum a gradient over the dims that broadcasting stretched, back to `shape`. */
export function sumToShape(g: Tensor, shape: Shape, op: string): Tensor {
  if (sameShape(g.shape, shape)) return g;
  const lead = g.ndim - shape.length;
  if (lead < 0) throw new Error(`${op} backward: gradient shape ${shapeStr(g.shape)} has fewer dims than the input ${shapeStr(shape)}`);
  const dims: number[] = [];
  for (let i = 0; i < g.ndim; i++) {
    if (i < lead) dims.push(i);
    else if (shape[i - lead] === 1 && g.shape[i] !== 1) dims.push(i);
    else if (shape[i - lead] !== g.shape[i]) {
      throw new Error(`${op} backward: gradient shape ${shapeStr(g.shape)} does not match the input ${shapeStr(shape)}`);
    }
  }
  return reshape(sum(g, dims, true), shape);
}

// ---- matmul --------------------------------------------------------------------------------

/** torch.matmul: 2-D or batched with broadcast batch dims; 1-D operands as in PyTorch. */
export function matmul(a: Tensor, b: Tensor): Tensor {
  if (a.ndim === 0 || b.ndim === 0) throw new Error(`matmul: both operands need at least 1 dim, got ${shapeStr(a.shape)} @ ${shapeStr(b.shape)}`);
  const av = a.ndim === 1 ? unsqueeze(a, 0) : a;
  const bv = b.ndim === 1 ? unsqueeze(b, -1) : b;
  let out = matmulT(av, bv, false, false);
  if (a.ndim === 1) out = squeeze(out, -2);
  if (b.ndim === 1) out = squeeze(out, -1);
  return out;
}

/**
 * op(a) @ op(b) (+ bias, broadcast over the rows) where op transposes the last two dims when
 * the flag is set — without materialising the transpose (the kernel reads it). Backward uses
 * the same trick. For half inputs the product and the bias are summed in float32 and rounded
 * once, as cuBLAS's addmm does under autocast. With `withGelu`, GELU of that (an MLP's c_fc):
 * the tape of gelu(matmulT(...)), but a backend that can computes both in the product's epilogue.
 */
export function matmulT(a: Tensor, b: Tensor, transA: boolean, transB: boolean, bias: Tensor | null = null, withGelu = false): Tensor {
  sameBackend('matmul', bias ? [a, b, bias] : [a, b]);
  [a, b, bias] = autocastInputs('lower', [a, b, bias]);
  if (bias && bias.dtype !== a.dtype) { const y = add(matmulT(a, b, transA, transB), bias); return withGelu ? gelu(y) : y; } // promoted as any add
  if (a.ndim < 2 || b.ndim < 2) throw new Error(`matmul: expected >= 2-D operands, got ${shapeStr(a.shape)} and ${shapeStr(b.shape)}`);
  const [ar, ac] = [a.shape[a.ndim - 2]!, a.shape[a.ndim - 1]!];
  const [br, bc] = [b.shape[b.ndim - 2]!, b.shape[b.ndim - 1]!];
  const [m, k] = transA ? [ac, ar] : [ar, ac];
  const [k2, n] = transB ? [bc, br] : [br, bc];
  if (k !== k2) {
    const sa = transA ? `${shapeStr(a.shape)}^T` : shapeStr(a.shape);
    const sb = transB ? `${shapeStr(b.shape)}^T` : shapeStr(b.shape);
    throw new Error(`matmul: shapes cannot be multiplied (${sa} @ ${sb}): inner dims ${k} and ${k2} must match`);
  }
  if (a.dtype !== b.dtype) throw new Error(`matmul: dtypes differ (${a.dtype} and ${b.dtype}); cast one with .to()`);
  const aBatch = a.shape.slice(0, -2), bBatch = b.shape.slice(0, -2);
  let batchShape: number[];
  try { batchShape = broadcastShapes('matmul', aBatch, bBatch); } catch {
    throw new Error(`matmul: batch dims of ${shapeStr(a.shape)} and ${shapeStr(b.shape)} are not broadcastable ` +
      `(${shapeStr(aBatch)} vs ${shapeStr(bBatch)}); each batch dim must match or be 1`);
  }
  const batch = sizeOf(batchShape);
  let sa = a, sb = b, mm = m, bsz = batch;
  let aStride = m * k, bStride = k * n;
  if (bBatch.length === 0 && !transA && aBatch.length > 0) {
    // [..., m, k] @ [k, n]: fold the batch into rows, one big matmul (Linear layers)
    mm = m * batch; bsz = 1; aStride = 0; bStride = 0;
  } else {
    if (sizeOf(aBatch) !== batch) { if (sizeOf(aBatch) === 1) aStride = 0; else sa = expand(a, [...batchShape, ...a.shape.slice(-2)]); }
    if (sizeOf(bBatch) !== batch) { if (sizeOf(bBatch) === 1) bStride = 0; else sb = expand(b, [...batchShape, ...b.shape.slice(-2)]); }
    if (batch === 1) { aStride = 0; bStride = 0; }
  }
  const outShape = [...batchShape, m, n];
  const params = { batch: bsz, m: mm, n, k, transA, transB, aBatchStride: aStride, bBatchStride: bStride };
  // half operands (autocast): the product, bias and rounding to their type in one kernel where the
  // backend has it, and GELU after it too when asked (the rounded pre-activation kept for its backward)
  const halfOk = isHalf(a.dtype) && (!bias || (bias.ndim === 1 && bias.shape[0] === n && bias.dtype === a.dtype));
  const halfGelu = halfOk && withGelu ? a.backend.fused.matmulHalfGelu?.(sa.storage, sb.storage, params, bias?.storage ?? null) ?? null : null;
  const half = halfGelu?.pre ?? (halfOk ? a.backend.fused.matmulHalf?.(sa.storage, sb.storage, params, bias?.storage ?? null) ?? null : null);
  // a linear layer's bias in the product's epilogue where the backend has it (a GPU: one launch, not
  // two), and GELU after it too when asked (the pre-activation kept for GELU's backward)
  const f32Bias = !half && bias !== null && bias.ndim === 1 && bias.shape[0] === n && [a, b, bias].every((t) => t.dtype === 'float32');
  const geluFused = withGelu && bias && f32Bias ? a.backend.fused.matmulBiasGelu?.(sa.storage, sb.storage, params, bias.storage) ?? null : null;
  const fusedBias = geluFused?.pre ?? (bias && f32Bias ? a.backend.fused.matmulBias?.(sa.storage, sb.storage, params, bias.storage) ?? null : null);
  // half operands go to the kernel as they are (float32 out): a backend widens them where it reads them
  let s = half ?? fusedBias ?? a.backend.matmul(sa.storage, sb.storage, params);
  if (bias && !fusedBias && !half) {
    broadcastShapes('matmul (bias)', bias.shape, outShape);
    const bs = computeStorage(bias);
    const withBias = a.backend.binary('add', s, outShape, bs, bias.shape, outShape);
    a.backend.dispose(s); // the product before the bias: nothing else holds it
    releaseCopy(bias, bs);
    s = withBias;
  }
  // the rule reads the operands' values; a weight's half cast is recast then instead of kept
  const aNeedsGrad = a.requiresGrad, bNeedsGrad = b.requiresGrad, biasNeedsGrad = bias?.requiresGrad === true && bias.ndim === 1 && bias.shape[0] === n;
  const keptA = keptForBackward(a), keptB = keptForBackward(b);
  const out = fromOp('matmul', narrowed(a, s, a.dtype), outShape, bias ? [a, b, bias] : [a, b], (g) => {
    let ga: Tensor | null = null, gb: Tensor | null = null, gBias: Tensor | null = null;
    if (aNeedsGrad) {
      const b = keptB();
      ga = transA ? matmulT(b, g, transB, true) : matmulT(g, b, false, !transB);
    }
    if (bNeedsGrad) {
      const a = keptA();
      if (bBatch.length === 0 && aBatch.length > 0 && !transA) {
        // fold the batch: gb = A^T G with A [(batch m), k], G [(batch m), n]
        const a2 = reshape(a, [-1, k]), g2 = reshape(g, [-1, n]);
        // a linear layer (x W^T + bias): W's gradient G^T X and the bias's, G's column sums, from
        // one kernel where the backend has it
        const both = transB && biasNeedsGrad && g2.dtype === 'float32' && a2.dtype === 'float32'
          ? a.backend.fused.matmulRowSums?.(g2.storage, a2.storage, { batch: 1, m: n, n: k, k: g2.shape[0]!, transA: true, transB: false, aBatchStride: 0, bBatchStride: 0 }) ?? null : null;
        if (both) {
          gBias = new Tensor(both.rowSums, [n], a.backend);
          gb = new Tensor(both.out, [n, k], a.backend);
        } else gb = transB ? matmulT(g2, a2, true, false) : matmulT(a2, g2, true, false);
      } else {
        gb = transB ? matmulT(g, a, true, transA) : matmulT(a, g, !transA, false);
      }
    }
    if (biasNeedsGrad && !gBias && isHalf(g.dtype)) {
      // a half gradient's column sums where the backend has a faster way than backward()'s
      // widen-and-reduce (a GPU: on tensor cores), rounded once to the bias's dtype
      const g2 = reshape(g, [-1, n]);
      const sums = a.backend.fused.columnSums?.(g2.storage, g2.shape[0]!, n) ?? null;
      if (sums) gBias = new Tensor(narrowed(bias!, sums, bias!.dtype), [n], a.backend);
    }
    return [ga, gb, gBias ?? g]; // the bias's gradient: g, summed over the rows by backward() (unless summed above)
  });
  return withGelu ? geluOf(out, geluFused?.out ?? halfGelu?.out ?? null) : out;
}

// ---- movement ------------------------------------------------------------------------------

/** Same data, new shape (one dim may be -1). Shares storage: kernels never mutate inputs. */
export function reshape(x: Tensor, shape: readonly number[]): Tensor {
  const free = shape.indexOf(-1);
  const known = shape.reduce((n, d, i) => (i === free ? n : n * d), 1);
  const target = [...shape];
  if (free >= 0) {
    if (shape.lastIndexOf(-1) !== free) throw new Error(`reshape: only one dim can be -1, got ${shapeStr(shape)}`);
    if (known === 0 || x.size % known !== 0) {
      throw new Error(`reshape: shape ${shapeStr(shape)} is invalid for input of size ${x.size} (shape ${shapeStr(x.shape)})`);
    }
    target[free] = x.size / known;
  }
  if (target.some((d) => !Number.isInteger(d) || d < 0) || sizeOf(target) !== x.size) {
    throw new Error(`reshape: shape ${shapeStr(shape)} is invalid for input of size ${x.size} (shape ${shapeStr(x.shape)}); the number of elements must stay the same`);
  }
  if (sameShape(target, x.shape)) return x;
  return fromOp('reshape', x.storage, target, [x], (g) => [reshape(g, x.shape)]);
}

export function unsqueeze(x: Tensor, dim: number): Tensor {
  const d = normAxis('unsqueeze', dim, x.ndim + 1);
  const s = [...x.shape];
  s.splice(d, 0, 1);
  return reshape(x, s);
}

export function squeeze(x: Tensor, dim?: number): Tensor {
  if (dim === undefined) return reshape(x, x.shape.filter((d) => d !== 1));
  const d = normAxis('squeeze', dim, x.ndim);
  if (x.shape[d] !== 1) return x;
  return reshape(x, x.shape.filter((_, i) => i !== d));
}

export function permute(x: Tensor, dims: readonly number[]): Tensor {
  const perm = dims.map((d) => normAxis('permute', d, x.ndim));
  if (perm.length !== x.ndim || new Set(perm).size !== x.ndim) {
    throw new Error(`permute: dims ${shapeStr(dims)} must be a permutation of the ${x.ndim} dims of ${shapeStr(x.shape)}`);
  }
  if (perm.every((p, i) => p === i)) return x;
  const st = stridesOf(x.shape);
  const outShape = perm.map((p) => x.shape[p]!);
  const inverse = new Array<number>(perm.length);
  perm.forEach((p, i) => { inverse[p] = i; });
  return fromOp('permute', x.backend.strided(x.storage, outShape, perm.map((p) => st[p]!), 0), outShape, [x],
    (g) => [permute(g, inverse)]);
}

export function transpose(x: Tensor, dim0: number, dim1: number): Tensor {
  const a = normAxis('transpose', dim0, x.ndim), b = normAxis('transpose', dim1, x.ndim);
  const perm = x.shape.map((_, i) => i);
  perm[a] = b; perm[b] = a;
  return permute(x, perm);
}

/** Broadcast to a larger shape (materialised; -1 keeps a dim). */
export function expand(x: Tensor, shape: readonly number[]): Tensor {
  const target = shape.map((d, i) => (d === -1 ? x.shape[i - (shape.length - x.ndim)]! : d));
  const bshape = broadcastShapes('expand', x.shape, target);
  if (!sameShape(bshape, target)) {
    throw new Error(`expand: cannot expand ${shapeStr(x.shape)} to ${shapeStr(shape)}; only dims of size 1 can grow`);
  }
  if (sameShape(target, x.shape)) return x;
  const st = stridesOf(x.shape);
  const off = target.length - x.ndim;
  const strides = target.map((d, i) => (i < off || x.shape[i - off] === 1 ? 0 : st[i - off]!));
  // the gradient of a broadcast is summed back to x's shape by the tape (sumToShape)
  return fromOp('expand', x.backend.strided(x.storage, target, strides, 0), target, [x], (g) => [g]);
}

/** `length` entries of `dim` starting at `start` (torch.narrow). */
export function narrow(x: Tensor, dim: number, start: number, length: number): Tensor {
  const d = normAxis('narrow', dim, x.ndim);
  const n = x.shape[d]!;
  if (start < 0) start += n;
  if (!Number.isInteger(start) || !Number.isInteger(length) || start < 0 || length < 0 || start + length > n) {
    throw new Error(`narrow: start ${start} + length ${length} exceeds dim ${dim} of size ${n} (shape ${shapeStr(x.shape)})`);
  }
  if (start === 0 && length === n) return x;
  const st = stridesOf(x.shape);
  const outShape = [...x.shape];
  outShape[d] = length;
  const before = x.shape.map(() => 0), after = x.shape.map(() => 0);
  before[d] = start; after[d] = n - start - length;
  return fromOp('narrow', x.backend.strided(x.storage, outShape, st, start * st[d]!), outShape, [x],
    (g) => [pad(g, before, after)]);
}

/** Python-style slice along one dim: x[..., start:end] (negative and out-of-range bounds clamp). */
export function slice(x: Tensor, dim: number, start = 0, end?: number): Tensor {
  const d = normAxis('slice', dim, x.ndim);
  const n = x.shape[d]!;
  const clamp = (v: number): number => Math.min(Math.max(v < 0 ? v + n : v, 0), n);
  const s = clamp(start), e = clamp(end ?? n);
  return narrow(x, d, s, Math.max(0, e - s));
}

/** Zero-pad each dim by before[i] / after[i] entries. */
export function pad(x: Tensor, before: readonly number[], after: readonly number[]): Tensor {
  const outShape = x.shape.map((d, i) => d + before[i]! + after[i]!);
  return fromOp('pad', x.backend.pad(x.storage, x.shape, before, after), outShape, [x],
    (g) => [x.shape.reduce<Tensor>((t, len, i) => narrow(t, i, before[i]!, len), g)]);
}

/** Join along an existing dim (torch.cat): each piece is zero-padded into place and summed. */
export function cat(xs: readonly Tensor[], dim = 0): Tensor {
  if (xs.length === 0) throw new Error('cat: expected a non-empty list of tensors');
  const first = xs[0]!;
  const d = normAxis('cat', dim, first.ndim);
  for (const t of xs) {
    if (t.ndim !== first.ndim || t.shape.some((s, i) => i !== d && s !== first.shape[i])) {
      throw new Error(`cat: shapes ${xs.map((u) => shapeStr(u.shape)).join(', ')} must match except in dim ${dim}`);
    }
  }
  const total = xs.reduce((n, t) => n + t.shape[d]!, 0);
  let offset = 0;
  let out: Tensor | null = null;
  for (const t of xs) {
    const before = t.shape.map(() => 0), after = t.shape.map(() => 0);
    before[d] = offset; after[d] = total - offset - t.shape[d]!;
    offset += t.shape[d]!;
    const p = pad(t, before, after);
    out = out ? add(out, p) : p;
  }
  return out!;
}

/** Split into chunks of `sizes` (a number: equal chunks, the last may be smaller). */
export function split(x: Tensor, sizes: number | readonly number[], dim = 0): Tensor[] {
  const d = normAxis('split', dim, x.ndim);
  const n = x.shape[d]!;
  let list: number[];
  if (typeof sizes === 'number') {
    if (sizes <= 0) throw new Error(`split: chunk size must be positive, got ${sizes}`);
    list = [];
    for (let s = 0; s < n; s += sizes) list.push(Math.min(sizes, n - s));
    if (n === 0) list.push(0); // torch: a size-0 dim splits into one empty chunk
  } else {
    list = [...sizes];
    if (list.reduce((p, q) => p + q, 0) !== n) {
      throw new Error(`split: sizes ${shapeStr(list)} must sum to ${n}, the size of dim ${dim} of ${shapeStr(x.shape)}`);
    }
  }
  let start = 0;
  return list.map((len) => { const t = narrow(x, d, start, len); start += len; return t; });
}
