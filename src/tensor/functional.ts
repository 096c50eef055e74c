// Neural-network functions (the `F` namespace, like torch.nn.functional). Each is composed
// from primitive ops, so the tape differentiates it for free; where a backend provides a
// fused kernel (backend.fused.*) the op uses it together with the fused backward instead.
// Both paths compute the same math and are tested against each other.

import type { Storage } from './backend.js';
import { isHalf } from './dtype.js';
import { defaultGenerator, type Generator } from './random.js';
import { normAxis, shapeStr, sizeOf } from './shape.js';
import { Tensor, fromOp, full, tensor } from './tensor.js';
import * as ops from './ops.js';

export { gelu, relu, tanh } from './ops.js';

// fused kernels see no half types: widen inputs, narrow results back to the tensor's dtype
const f32 = ops.computeStorage;
const back = (like: Tensor, s: Storage): Storage => ops.outStorage(like, s);
function wrap(like: Tensor, s: Storage, shape: readonly number[]): Tensor {
  return new Tensor(back(like, s), shape, like.backend);
}

/** Indices must be int32 and in [0, limit). Checked on host backends (values are there). */
function checkIndices(op: string, idx: Tensor, limit: number, what: string, shapes: string): void {
  if (idx.dtype !== 'int32') {
    throw new Error(`${op}: ${what} must be an int32 index tensor, got ${idx.dtype}; make it with tensor(Int32Array|Uint16Array) or .int()`);
  }
  if (!idx.backend.hostMemory) return;
  const d = idx.dataSync();
  for (let i = 0; i < d.length; i++) {
    const v = d[i]!;
    if (v < 0 || v >= limit) {
      throw new Error(`${op}: ${what} out of range: ${v} at flat position ${i} (${shapes}); valid values are 0..${limit - 1}`);
    }
  }
}

// ---- softmax family (over one dim) ---------------------------------------------------------

/** Move `dim` last so row kernels apply; returns the tensor and how to undo it. */
function lastDim(x: Tensor, dim: number): { t: Tensor; undo: (y: Tensor) => Tensor } {
  const d = normAxis('softmax', dim, x.ndim);
  if (d === x.ndim - 1) return { t: x, undo: (y) => y };
  return { t: ops.transpose(x, d, -1), undo: (y) => ops.transpose(y, d, -1) };
}

export function softmax(x: Tensor, dim = -1): Tensor {
  const { t, undo } = lastDim(x, dim);
  const k = t.backend.fused;
  const cols = t.shape[t.ndim - 1] ?? 1, rows = t.size / Math.max(cols, 1);
  if (k.softmax && k.softmaxBackward && cols > 0) {
    const y: Tensor = fromOp('softmax', back(t, k.softmax(f32(t), rows, cols)), t.shape, [t],
      (g) => [wrap(t, k.softmaxBackward!(f32(y), f32(g), rows, cols), t.shape)]);
    return undo(y);
  }
  // half inputs: float32 inside and one rounding at the end, as the fused kernels do
  if (t.size === 0) return undo(t); // nothing to normalise (rows of 0 classes, or 0 rows), as torch
  if (isHalf(t.dtype)) return undo(ops.cast(softmax(ops.cast(t, 'float32'), -1), t.dtype));
  // subtracting the (detached) row max changes nothing mathematically but avoids overflow
  const m = ops.max(t, -1, true).detach();
  const e = ops.exp(ops.sub(t, m));
  return undo(ops.div(e, ops.sum(e, -1, true)));
}

export function logSoftmax(x: Tensor, dim = -1): Tensor {
  const { t, undo } = lastDim(x, dim);
  const k = t.backend.fused;
  const cols = t.shape[t.ndim - 1] ?? 1, rows = t.size / Math.max(cols, 1);
  if (k.logSoftmax && k.logSoftmaxBackward && cols > 0) {
    const y: Tensor = fromOp('logSoftmax', back(t, k.logSoftmax(f32(t), rows, cols)), t.shape, [t],
      (g) => [wrap(t, k.logSoftmaxBackward!(f32(y), f32(g), rows, cols), t.shape)]);
    return undo(y);
  }
  if (t.size === 0) return undo(t); // nothing to normalise (rows of 0 classes, or 0 rows), as torch
  if (isHalf(t.dtype)) return undo(ops.cast(logSoftmax(ops.cast(t, 'float32'), -1), t.dtype));
  const m = ops.max(t, -1, true).detach();
  const shifted = ops.sub(t, m);
  return undo(ops.sub(shifted, ops.log(ops.sum(ops.exp(shifted), -1, true))));
}

/** out[r] = x[r, idx[r]] over the last dim; the gradient scatters back. */
export function pickLast(x: Tensor, idx: Tensor): Tensor {
  const cols = x.shape[x.ndim - 1]!, rows = x.size / cols;
  if (idx.size !== rows) throw new Error(`pickLast: ${idx.size} indices for ${rows} rows of ${shapeStr(x.shape)}`);
  const outShape = x.shape.slice(0, -1);
  return fromOp('pickLast', back(x, x.backend.pickLast(f32(x), rows, cols, idx.storage)), outShape, [x],
    (g) => [wrap(x, x.backend.scatterLast(f32(g), rows, cols, idx.storage), x.shape)]);
}

export interface CrossEntropyOptions {
  /** 'mean' (default) over rows, 'sum', or 'none' for the per-row losses. */
  reduction?: 'mean' | 'sum' | 'none';
}

/**
 * Cross-entropy of logits [..., V] against int32 targets [...] (F.cross_entropy on
 * logits.view(-1, V), targets.view(-1)). Row losses are logsumexp(x) - x[target].
 */
export function crossEntropy(logits: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const V = logits.shape[logits.ndim - 1];
  if (V === undefined || logits.ndim < 1) throw new Error(`crossEntropy: logits need a class dim, got ${shapeStr(logits.shape)}`);
  const rows = logits.size / V;
  if (targets.size !== rows || (targets.ndim !== logits.ndim - 1 && targets.ndim !== 1)) {
    throw new Error(`crossEntropy: targets of shape ${shapeStr(targets.shape)} do not match logits ${shapeStr(logits.shape)} ` +
      `(expected ${rows} targets, one per row of ${V} classes)`);
  }
  checkIndices('crossEntropy', targets, V, 'target', `targets ${shapeStr(targets.shape)}, logits ${shapeStr(logits.shape)}`);
  const k = logits.backend.fused;
  let perRow: Tensor;
  if (k.crossEntropy && k.crossEntropyBackward) {
    const x = f32(logits);
    const { loss, lse } = k.crossEntropy(x, targets.storage, rows, V);
    perRow = fromOp('crossEntropy', back(logits, loss), [rows], [logits],
      (g) => [wrap(logits, k.crossEntropyBackward!(x, targets.storage, lse, f32(g), rows, V), logits.shape)]);
  } else {
    const flat = ops.reshape(logits, [rows, V]);
    perRow = ops.neg(pickLast(logSoftmax(flat, -1), targets));
  }
  switch (opts.reduction ?? 'mean') {
    case 'none': return ops.reshape(perRow, logits.shape.slice(0, -1));
    case 'sum': return ops.sum(perRow);
    case 'mean': return ops.mean(perRow);
  }
}

// ---- layer norm ------------------------------------------------------------------------------

/** LayerNorm over the last dim: (x - mean) / sqrt(var + eps) * weight + bias (biased var, as PyTorch). */
export function layerNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps = 1e-5): Tensor {
  const C = x.shape[x.ndim - 1]!;
  for (const [name, p] of [['weight', weight], ['bias', bias]] as const) {
    if (p && (p.ndim !== 1 || p.shape[0] !== C)) {
      throw new Error(`layerNorm: ${name} of shape ${shapeStr(p.shape)} must be [${C}] to match the last dim of ${shapeStr(x.shape)}`);
    }
  }
  const k = x.backend.fused;
  if (k.layerNorm && k.layerNormBackward && weight && bias && C > 0) {
    const rows = x.size / C;
    const xs = f32(x), ws = f32(weight);
    const { y, mean, rstd } = k.layerNorm(xs, ws, f32(bias), rows, C, eps);
    return fromOp('layerNorm', back(x, y), x.shape, [x, weight, bias], (g) => {
      const r = k.layerNormBackward!(xs, ws, mean, rstd, f32(g), rows, C);
      return [wrap(x, r.gx, x.shape), wrap(weight, r.gw, [C]), wrap(bias, r.gb, [C])];
    });
  }
  if (isHalf(x.dtype)) {
    const up = (p: Tensor | null): Tensor | null => (p ? ops.cast(p, 'float32') : null);
    return ops.cast(layerNorm(ops.cast(x, 'float32'), up(weight), up(bias), eps), x.dtype);
  }
  const mu = ops.mean(x, -1, true);
  const xc = ops.sub(x, mu);
  const variance = ops.mean(ops.mul(xc, xc), -1, true);
  let y = ops.mul(xc, ops.pow(ops.add(variance, eps), -0.5));
  if (weight) y = ops.mul(y, weight);
  if (bias) y = ops.add(y, bias);
  return y;
}

// ---- embedding / linear ----------------------------------------------------------------------

/** Rows of `weight` [V, C] picked by int32 `idx` (any shape) -> [...idx.shape, C]; backward scatter-adds. */
export function embedding(idx: Tensor, weight: Tensor): Tensor {
  if (weight.ndim !== 2) throw new Error(`embedding: weight must be [num_embeddings, dim], got ${shapeStr(weight.shape)}`);
  const [V, C] = weight.shape as [number, number];
  checkIndices('embedding', idx, V, 'index', `indices ${shapeStr(idx.shape)}, weight ${shapeStr(weight.shape)}`);
  const n = idx.size;
  return fromOp('embedding', weight.backend.gatherRows(weight.storage, C, idx.storage, n), [...idx.shape, C], [weight],
    (g) => [wrap(weight, weight.backend.scatterAddRows(f32(g), C, idx.storage, n, V), [V, C])]); // half grads add as numbers, in float32
}

/** x @ weight^T + bias with weight [out, in] as torch.nn.Linear stores it. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  const fin = x.shape[x.ndim - 1];
  if (weight.ndim !== 2 || fin !== weight.shape[1]) {
    throw new Error(`linear: input ${shapeStr(x.shape)} has ${fin} features but weight ${shapeStr(weight.shape)} must be [out, ${fin}]`);
  }
  // a 1-D input [in] is one row, as in torch: [in] -> [out]
  const y = x.ndim === 1 ? ops.squeeze(ops.matmulT(ops.unsqueeze(x, 0), weight, false, true), 0) : ops.matmulT(x, weight, false, true);
  return bias ? ops.add(y, bias) : y;
}

// ---- dropout -------------------------------------------------------------------------------

/** Zero each element with probability p and scale the rest by 1/(1-p); identity when not training. */
export function dropout(x: Tensor, p: number, training = true, generator: Generator = defaultGenerator): Tensor {
  if (p < 0 || p > 1) throw new Error(`dropout: probability must be in [0, 1], got ${p}`);
  if (!training || p === 0) return x;
  if (p === 1) return ops.mul(x, 0);
  const keep = x.dtype === 'float64' ? new Float64Array(x.size) : new Float32Array(x.size); // float64 keeps the exact 1/(1-p)
  for (let i = 0; i < keep.length; i++) keep[i] = generator.random() >= p ? 1 / (1 - p) : 0;
  const mask = tensor(keep, { shape: x.shape, dtype: x.dtype === 'float64' ? 'float64' : 'float32', backend: x.backend });
  const y = ops.mul(x, mask); // half inputs: scaled in float32, rounded once back to x's dtype
  return y.dtype === x.dtype ? y : ops.cast(y, x.dtype);
}

// ---- attention -------------------------------------------------------------------------------

export interface AttentionOptions {
  /** Mask out keys after each query's position (GPT). */
  isCausal?: boolean;
  /** Defaults to 1/sqrt(head dim). */
  scale?: number;
}

/**
 * softmax(q k^T * scale [+ causal mask]) v for q [..., T, D], k and v [..., S, D].
 * With isCausal, query i sees keys j <= i + (S - T) (so a KV cache works).
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const D = q.shape[q.ndim - 1]!, T = q.shape[q.ndim - 2]!, S = k.shape[k.ndim - 2]!;
  if (k.shape[k.ndim - 1] !== D || v.shape[v.ndim - 2] !== S || q.ndim !== k.ndim || k.ndim !== v.ndim) {
    throw new Error(`scaledDotProductAttention: q ${shapeStr(q.shape)}, k ${shapeStr(k.shape)}, v ${shapeStr(v.shape)} ` +
      'must be [..., T, D], [..., S, D], [..., S, Dv] with equal batch dims');
  }
  const scale = opts.scale ?? 1 / Math.sqrt(D);
  const causal = opts.isCausal ?? false;
  const fk = q.backend.fused;
  const Dv = v.shape[v.ndim - 1]!;
  const batchShape = q.shape.slice(0, -2);
  const bh = sizeOf(batchShape);
  if (fk.attention && fk.attentionBackward && Dv === D && T > 0 && S > 0) {
    const [qs, ks, vs] = [f32(q), f32(k), f32(v)];
    const { o, lse } = fk.attention(qs, ks, vs, bh, T, S, D, scale, causal);
    return fromOp('attention', back(q, o), [...batchShape, T, D], [q, k, v], (g) => {
      const r = fk.attentionBackward!(qs, ks, vs, o, lse, f32(g), bh, T, S, D, scale, causal);
      return [wrap(q, r.gq, q.shape), wrap(k, r.gk, k.shape), wrap(v, r.gv, v.shape)];
    });
  }
  let att = ops.mul(ops.matmulT(q, k, false, true), scale); // (..., T, S)
  if (causal) att = ops.maskedFill(att, causalMask(T, S, q), -Infinity);
  return ops.matmul(softmax(att, -1), v);
}

/** 1 where key j is in the future of query i (j > i + S - T), as a [T, S] tensor. */
function causalMask(T: number, S: number, like: Tensor): Tensor {
  const m = new Float32Array(T * S);
  for (let i = 0; i < T; i++) for (let j = i + S - T + 1; j < S; j++) m[i * S + j] = 1;
  return tensor(m, { shape: [T, S], backend: like.backend });
}

export { full };
