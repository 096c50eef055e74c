// Neural-network functions (the `F` namespace, like torch.nn.functional). Each is composed
// from primitive ops, so the tape differentiates it for free. Where a backend provides a
// fused kernel (backend.fused.*) the op runs that with the kernel's own backward instead:
// each op below is declared once with defineOp (define-op.ts), its composite math first and the
// fused kernel beside it; both compute the same math and are tested against each other.

import { normAxis, shapeStr, sizeOf } from './shape.js';
import { Tensor, fromOp, isGradEnabled, noGrad } from './tensor.js';
import { tensor } from './creation.js';
import { defaultGenerator, type Generator } from './random.js';
import type { Storage } from './backend.js';
import { defineOp } from './define-op.js';
import { autocast, autocastDtype, type AutocastDtype } from './autocast.js';
import * as ops from './ops.js';
import { computeStorage, narrowed, outStorage, releaseCopy } from './kernel-io.js';

export { gelu, relu, tanh } from './ops.js';

/** Indices must be int32 and in [0, limit); the backend checks the values where it holds them. */
function checkIndexDtype(op: string, idx: Tensor, what: string): void {
  if (idx.dtype !== 'int32') {
    throw new Error(`${op}: ${what} must be an int32 index tensor, got ${idx.dtype}; make it with tensor(Int32Array|Uint16Array) or .int()`);
  }
}

/** Rows and columns of x viewed as [rows, last dim]. */
function rowsOf(x: Tensor): { rows: number; cols: number } {
  const cols = x.shape[x.ndim - 1] ?? 1;
  return { rows: x.size / Math.max(cols, 1), cols };
}

// ---- softmax family (over the last dim; softmax(x, dim) moves dim last and back) -------------

const softmaxLast = defineOp({
  name: 'softmax', autocast: 'float32', halfInFloat32: true,
  compose(x: Tensor): Tensor {
    if (x.size === 0) return x; // nothing to normalise (rows of 0 classes, or 0 rows), as torch
    // subtracting the (detached) row max changes nothing mathematically but avoids overflow
    const m = ops.max(x, -1, true).detach();
    const e = ops.exp(ops.sub(x, m));
    return ops.div(e, ops.sum(e, -1, true));
  },
  fused(k, x: Tensor) {
    const { rows, cols } = rowsOf(x);
    if (!k.softmax || !k.softmaxBackward || cols === 0) return null;
    const [fwd, bwd] = [k.softmax, k.softmaxBackward];
    return { inputs: [x], shape: x.shape, readsInputs: false, readsOutput: true, forward: ([xs]) => {
      const y = fwd(xs!, rows, cols);
      return { out: y, backward: (g, _, yb) => [bwd(yb!, g, rows, cols)] };
    } };
  },
});

const logSoftmaxLast = defineOp({
  name: 'logSoftmax', autocast: 'float32', halfInFloat32: true,
  compose(x: Tensor): Tensor {
    if (x.size === 0) return x;
    const m = ops.max(x, -1, true).detach();
    const shifted = ops.sub(x, m);
    return ops.sub(shifted, ops.log(ops.sum(ops.exp(shifted), -1, true)));
  },
  fused(k, x: Tensor) {
    const { rows, cols } = rowsOf(x);
    if (!k.logSoftmax || !k.logSoftmaxBackward || cols === 0) return null;
    const [fwd, bwd] = [k.logSoftmax, k.logSoftmaxBackward];
    return { inputs: [x], shape: x.shape, readsInputs: false, readsOutput: true, forward: ([xs]) => {
      const y = fwd(xs!, rows, cols);
      return { out: y, backward: (g, _, yb) => [bwd(yb!, g, rows, cols)] };
    } };
  },
});

/** Apply a last-dim op over `dim`: move it last, apply, move it back. */
function overDim(op: string, x: Tensor, dim: number, f: (t: Tensor) => Tensor): Tensor {
  const d = normAxis(op, dim, x.ndim);
  if (d === x.ndim - 1) return f(x);
  return ops.transpose(f(ops.transpose(x, d, -1)), d, -1);
}

export function softmax(x: Tensor, dim = -1): Tensor { return overDim('softmax', x, dim, softmaxLast); }
export function logSoftmax(x: Tensor, dim = -1): Tensor { return overDim('logSoftmax', x, dim, logSoftmaxLast); }

/** out[r] = x[r, idx[r]] over the last dim; the gradient scatters back. */
export function pickLast(x: Tensor, idx: Tensor): Tensor {
  const { rows, cols } = rowsOf(x);
  if (idx.size !== rows) throw new Error(`pickLast: ${idx.size} indices for ${rows} rows of ${shapeStr(x.shape)}`);
  const b = x.backend;
  const xs = computeStorage(x);
  const picked = b.pickLast(xs, rows, cols, idx.storage);
  releaseCopy(x, xs);
  return fromOp('pickLast', narrowed(x, picked), x.shape.slice(0, -1), [x],
    (g) => [new Tensor(outStorage(x, b.scatterLast(computeStorage(g), rows, cols, idx.storage)), x.shape, b)]);
}

export interface CrossEntropyOptions {
  /** 'mean' (default) over rows, 'sum', or 'none' for the per-row losses. */
  reduction?: 'mean' | 'sum' | 'none';
}

/** Per-row losses logsumexp(x) - x[target] of logits [rows, V] against int32 targets [rows]. */
const crossEntropyRows = defineOp({
  name: 'crossEntropy', autocast: 'float32',
  compose(logits: Tensor, targets: Tensor): Tensor {
    return ops.neg(pickLast(logSoftmax(logits, -1), targets));
  },
  fused(k, logits: Tensor, targets: Tensor) {
    if (!k.crossEntropy || !k.crossEntropyBackward) return null;
    const { rows, cols } = rowsOf(logits);
    const [fwd, bwd] = [k.crossEntropy, k.crossEntropyBackward];
    return { inputs: [logits], shape: [rows], readsInputs: true, forward: ([x]) => {
      const { loss, lse } = fwd(x!, targets.storage, rows, cols);
      return { out: loss, backward: (g, [xb]) => [bwd(xb!, targets.storage, lse, g, rows, cols)] };
    } };
  },
});

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
  checkIndexDtype('crossEntropy', targets, 'target');
  targets.backend.checkIndices('crossEntropy', targets.storage, V, 'target', `targets ${shapeStr(targets.shape)}, logits ${shapeStr(logits.shape)}`);
  const perRow = crossEntropyRows(ops.reshape(logits, [rows, V]), targets);
  switch (opts.reduction ?? 'mean') {
    case 'none': return ops.reshape(perRow, logits.shape.slice(0, -1));
    case 'sum': return ops.sum(perRow);
    case 'mean': return ops.mean(perRow);
  }
}

/**
 * The negative log-likelihood of log-probabilities [..., C] (as logSoftmax gives) at int32 targets
 * [...] (torch's nll_loss with the class dim last): -logProbs[target], reduced.
 */
export function nllLoss(logProbs: Tensor, targets: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const C = logProbs.shape[logProbs.ndim - 1];
  if (C === undefined) throw new Error(`nllLoss: log-probabilities need a class dim, got ${shapeStr(logProbs.shape)}`);
  const rows = logProbs.size / C;
  if (targets.size !== rows) {
    throw new Error(`nllLoss: targets of shape ${shapeStr(targets.shape)} do not match log-probabilities ${shapeStr(logProbs.shape)} (expected ${rows} targets)`);
  }
  checkIndexDtype('nllLoss', targets, 'target');
  targets.backend.checkIndices('nllLoss', targets.storage, C, 'target', `targets ${shapeStr(targets.shape)}, log-probabilities ${shapeStr(logProbs.shape)}`);
  const perRow = ops.neg(pickLast(ops.reshape(logProbs, [rows, C]), ops.reshape(targets, [rows])));
  return reduce(perRow, logProbs.shape.slice(0, -1), opts.reduction ?? 'mean');
}

/** The mean (or summed, or per-element) squared error, as torch's mse_loss; shapes broadcast. */
export function mseLoss(input: Tensor, target: Tensor, opts: CrossEntropyOptions = {}): Tensor {
  const d = ops.sub(input, target);
  const sq = ops.mul(d, d);
  return reduce(sq, sq.shape, opts.reduction ?? 'mean');
}

function reduce(x: Tensor, shape: readonly number[], reduction: 'mean' | 'sum' | 'none'): Tensor {
  switch (reduction) {
    case 'none': return ops.reshape(x, shape);
    case 'sum': return ops.sum(x);
    case 'mean': return ops.mean(x);
  }
}

// ---- layer norm ------------------------------------------------------------------------------

const layerNormLast = defineOp({
  name: 'layerNorm', autocast: 'float32', halfInFloat32: true,
  compose(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps: number): Tensor {
    const mu = ops.mean(x, -1, true);
    const xc = ops.sub(x, mu);
    const variance = ops.mean(ops.mul(xc, xc), -1, true);
    let y = ops.mul(xc, ops.pow(ops.add(variance, eps), -0.5));
    if (weight) y = ops.mul(y, weight);
    if (bias) y = ops.add(y, bias);
    return y;
  },
  fused(k, x: Tensor, weight: Tensor | null, bias: Tensor | null, eps: number) {
    const { rows, cols } = rowsOf(x);
    if (!k.layerNorm || !k.layerNormBackward || !weight || !bias || cols === 0) return null;
    const [fwd, bwd] = [k.layerNorm, k.layerNormBackward];
    return { inputs: [x, weight, bias], shape: x.shape, readsInputs: true, forward: ([xs, ws, bs]) => {
      const { y, mean, rstd } = fwd(xs!, ws!, bs!, rows, cols, eps);
      return { out: y, backward: (g, [xb, wb]) => { const r = bwd(xb!, wb!, mean, rstd, g, rows, cols); return [r.gx, r.gw, r.gb]; } };
    } };
  },
});

/** LayerNorm over the last dim: (x - mean) / sqrt(var + eps) * weight + bias (biased var, as PyTorch). */
export function layerNorm(x: Tensor, weight: Tensor | null, bias: Tensor | null, eps = 1e-5): Tensor {
  const C = x.shape[x.ndim - 1]!;
  for (const [name, p] of [['weight', weight], ['bias', bias]] as const) {
    if (p && (p.ndim !== 1 || p.shape[0] !== C)) {
      throw new Error(`layerNorm: ${name} of shape ${shapeStr(p.shape)} must be [${C}] to match the last dim of ${shapeStr(x.shape)}`);
    }
  }
  return layerNormLast(x, weight, bias, eps);
}

// ---- embedding / linear ----------------------------------------------------------------------

/** Rows of `weight` [V, C] picked by int32 `idx` (any shape) -> [...idx.shape, C]; backward scatter-adds. */
export function embedding(idx: Tensor, weight: Tensor): Tensor {
  if (weight.ndim !== 2) throw new Error(`embedding: weight must be [num_embeddings, dim], got ${shapeStr(weight.shape)}`);
  const [V, C] = weight.shape as [number, number];
  checkIndexDtype('embedding', idx, 'index');
  idx.backend.checkIndices('embedding', idx.storage, V, 'index', `indices ${shapeStr(idx.shape)}, weight ${shapeStr(weight.shape)}`);
  const n = idx.size, b = weight.backend;
  // half gradients add up as numbers, in float32, and are rounded once
  return fromOp('embedding', b.gatherRows(weight.storage, C, idx.storage, n), [...idx.shape, C], [weight],
    (g) => [new Tensor(outStorage(weight, b.scatterAddRows(computeStorage(g), C, idx.storage, n, V)), [V, C], b)]);
}

/** x @ weight^T + bias with weight [out, in] as torch.nn.Linear stores it. */
export function linear(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  const fin = x.shape[x.ndim - 1];
  if (weight.ndim !== 2 || fin !== weight.shape[1]) {
    throw new Error(`linear: input ${shapeStr(x.shape)} has ${fin} features but weight ${shapeStr(weight.shape)} must be [out, ${fin}]`);
  }
  // under autocast matmulT casts x, weight and the bias (as torch's linear) and adds the bias before rounding
  // a 1-D input [in] is one row, as in torch: [in] -> [out]
  return x.ndim === 1 ? ops.squeeze(ops.matmulT(ops.unsqueeze(x, 0), weight, false, true, bias), 0) : ops.matmulT(x, weight, false, true, bias ?? null);
}

/**
 * gelu(linear(x, weight, bias)): an MLP's first layer and its activation. The same ops on the
 * tape (a matmul, then a GELU that keeps the pre-activation for its backward), but a backend that
 * can (a GPU, in float32) computes both in one kernel, the product's epilogue.
 */
export function linearGelu(x: Tensor, weight: Tensor, bias?: Tensor | null): Tensor {
  if (x.ndim < 2 || weight.ndim !== 2 || x.shape[x.ndim - 1] !== weight.shape[1]) return ops.gelu(linear(x, weight, bias)); // (linear says what is wrong)
  return ops.matmulT(x, weight, false, true, bias ?? null, true);
}

/** The mean cross-entropy of x w^T against targets, as one op (see linearCrossEntropy). */
const linearCrossEntropyMean = defineOp({
  name: 'linearCrossEntropy', autocast: 'float32',
  compose(x: Tensor, weight: Tensor, targets: Tensor, lower: AutocastDtype | null): Tensor {
    // under autocast, what torch.autocast runs: the linear in the half type, the loss in float32
    // from the half logits (which are what the tape keeps)
    return lower ? autocast(lower, () => crossEntropy(linear(x, weight), targets)) : crossEntropy(linear(x, weight), targets);
  },
  fused(k, x: Tensor, weight: Tensor, targets: Tensor, lower: AutocastDtype | null) {
    if (!k.linearCrossEntropy) return null;
    const [rows, cols] = x.shape as [number, number], classes = weight.shape[0]!;
    const f = k.linearCrossEntropy, b = x.backend;
    return { inputs: [x, weight], shape: [], readsInputs: false, forward: ([xs, ws]) => {
      // the gradients come out of the same pass over the logits, so they are made only when asked for
      const grad = isGradEnabled() && (x.requiresGrad || weight.requiresGrad);
      const { loss, gx, gw } = f(xs!, ws!, targets.storage, rows, cols, classes, grad, lower);
      // scaled by the upstream gradient in place where the backend can (the storages are this
      // call's own): no copy of the [classes, cols] weight gradient
      const scale = k.scaleInPlace;
      const times = (s: Storage | null, shape: number[], g: Storage): Storage | null =>
        (!s ? null : scale ? (scale([s], g), s) : noGrad(() => ops.mul(new Tensor(s, shape, b), new Tensor(g, [], b))).storage);
      return { out: loss, backward: (g) => [times(gx, [rows, cols], g), times(gw, [classes, cols], g)] };
    } };
  },
});

/**
 * crossEntropy(linear(x, weight), targets) (mean over rows) as one op: GPT's lm_head and its loss.
 * A backend with the fused kernel (wasm) computes it over chunks of rows and never holds the
 * [rows, classes] logits, nor their gradient (at 50304 classes they are most of a small model's
 * activation memory). Under autocast it rounds as torch.autocast's linear and float32 loss do
 * (x, the weight, the logits and the gradients stored in the half type), still chunk by chunk.
 */
export function linearCrossEntropy(x: Tensor, weight: Tensor, targets: Tensor): Tensor {
  const C = x.shape[x.ndim - 1];
  if (weight.ndim !== 2 || C !== weight.shape[1]) {
    throw new Error(`linearCrossEntropy: input ${shapeStr(x.shape)} has ${C} features but weight ${shapeStr(weight.shape)} must be [classes, ${C}]`);
  }
  const rows = x.size / C!, V = weight.shape[0]!;
  if (targets.size !== rows) throw new Error(`linearCrossEntropy: targets of shape ${shapeStr(targets.shape)} do not match input ${shapeStr(x.shape)} (expected ${rows} targets)`);
  checkIndexDtype('linearCrossEntropy', targets, 'target');
  targets.backend.checkIndices('linearCrossEntropy', targets.storage, V, 'target', `targets ${shapeStr(targets.shape)}, weight ${shapeStr(weight.shape)}`);
  return linearCrossEntropyMean(ops.reshape(x, [rows, C!]), weight, ops.reshape(targets, [rows]), autocastDtype());
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

const attention = defineOp({
  // under autocast: q, k, v in the half dtype, the scores and softmax in float32 inside, the
  // output rounded once to half (as flash attention computes it)
  name: 'attention', autocast: 'lower', halfInFloat32: true,
  compose(q: Tensor, k: Tensor, v: Tensor, scale: number, causal: boolean): Tensor {
    const T = q.shape[q.ndim - 2]!, S = k.shape[k.ndim - 2]!;
    let att = ops.mul(ops.matmulT(q, k, false, true), scale); // (..., T, S)
    if (causal) att = ops.maskedFill(att, causalMask(T, S, q), -Infinity);
    return ops.matmul(softmax(att, -1), v);
  },
  fused(kernels, q: Tensor, k: Tensor, v: Tensor, scale: number, causal: boolean) {
    const D = q.shape[q.ndim - 1]!, T = q.shape[q.ndim - 2]!, S = k.shape[k.ndim - 2]!, Dv = v.shape[v.ndim - 1]!;
    if (!kernels.attention || !kernels.attentionBackward || Dv !== D || T === 0 || S === 0) return null;
    const bh = sizeOf(q.shape.slice(0, -2));
    const [fwd, bwd] = [kernels.attention, kernels.attentionBackward];
    return { inputs: [q, k, v], shape: q.shape, readsInputs: true, forward: ([qs, ks, vs]) => {
      const { o, lse } = fwd(qs!, ks!, vs!, bh, T, S, D, scale, causal);
      return { out: o, keepsOutput: true, backward: (g, [qb, kb, vb]) => { const r = bwd(qb!, kb!, vb!, o, lse, g, bh, T, S, D, scale, causal); return [r.gq, r.gk, r.gv]; } };
    } };
  },
});

/**
 * softmax(q k^T * scale [+ causal mask]) v for q [..., T, D], k and v [..., S, D].
 * With isCausal, query i sees keys j <= i + (S - T) (so a KV cache works).
 */
export function scaledDotProductAttention(q: Tensor, k: Tensor, v: Tensor, opts: AttentionOptions = {}): Tensor {
  const D = q.shape[q.ndim - 1]!, S = k.shape[k.ndim - 2]!;
  if (k.shape[k.ndim - 1] !== D || v.shape[v.ndim - 2] !== S || q.ndim !== k.ndim || k.ndim !== v.ndim) {
    throw new Error(`scaledDotProductAttention: q ${shapeStr(q.shape)}, k ${shapeStr(k.shape)}, v ${shapeStr(v.shape)} ` +
      'must be [..., T, D], [..., S, D], [..., S, Dv] with equal batch dims');
  }
  return attention(q, k, v, opts.scale ?? 1 / Math.sqrt(D), opts.isCausal ?? false);
}

const packedAttention = defineOp({
  // under autocast the split and transposes move half values (exact), and attention keeps the
  // half q, k, v on the tape, as the unfused model did: widening first would hold float32 copies
  name: 'causalSelfAttention', autocast: 'lower',
  compose(qkv: Tensor, nHead: number): Tensor {
    const [B, T, C3] = qkv.shape as [number, number, number];
    const C = C3 / 3, hs = C / nHead;
    const heads = (t: Tensor): Tensor => ops.transpose(ops.reshape(t, [B, T, nHead, hs]), 1, 2); // (B, nh, T, hs)
    const [q, k, v] = ops.split(qkv, C, 2).map(heads) as [Tensor, Tensor, Tensor];
    const y = attention(q, k, v, 1 / Math.sqrt(hs), true); // (B, nh, T, hs)
    return ops.reshape(ops.transpose(y, 1, 2), [B, T, C]); // heads side by side again
  },
  fused(kernels, qkv: Tensor, nHead: number) {
    const [fwd, bwd] = [kernels.attentionPacked, kernels.attentionPackedBackward];
    if (!fwd || !bwd || qkv.size === 0) return null;
    const [B, T, C3] = qkv.shape as [number, number, number];
    const hs = C3 / 3 / nHead, scale = 1 / Math.sqrt(hs);
    return { inputs: [qkv], shape: [B, T, C3 / 3], readsInputs: true, forward: ([x]) => {
      const { o, lse } = fwd(x!, B, T, nHead, hs, scale);
      return { out: o, keepsOutput: true, backward: (g, [xb]) => [bwd(xb!, o, lse, g, B, T, nHead, hs, scale)] };
    } };
  },
});

/**
 * Causal self-attention of packed projections, as GPT's c_attn makes them: qkv (B, T, 3C) holds
 * q, k and v side by side, each nHead heads of C / nHead; returns (B, T, C), the heads side by
 * side again. The same as splitting, transposing to (B, nh, T, hs) and scaledDotProductAttention
 * with isCausal; a backend with the packed kernel (gpu) reads the heads where they lie, with no
 * split or transpose copies.
 */
export function causalSelfAttention(qkv: Tensor, nHead: number): Tensor {
  const C3 = qkv.shape[2]!;
  if (qkv.ndim !== 3 || C3 % 3 !== 0 || (C3 / 3) % nHead !== 0) {
    throw new Error(`causalSelfAttention: qkv ${shapeStr(qkv.shape)} must be (B, T, 3C) with C divisible by nHead ${nHead}`);
  }
  return packedAttention(qkv, nHead);
}

/** 1 where key j is in the future of query i (j > i + S - T), as a [T, S] tensor. */
function causalMask(T: number, S: number, like: Tensor): Tensor {
  const m = new Float32Array(T * S);
  for (let i = 0; i < T; i++) for (let j = i + S - T + 1; j < S; j++) m[i * S + j] = 1;
  return tensor(m, { shape: [T, S], backend: like.backend });
}

// ---- methods ---------------------------------------------------------------------------------

declare module './tensor.js' {
  interface Tensor {
    softmax(dim?: number): Tensor;
    logSoftmax(dim?: number): Tensor;
  }
}
Tensor.prototype.softmax = function (this: Tensor, dim = -1): Tensor { return softmax(this, dim); };
Tensor.prototype.logSoftmax = function (this: Tensor, dim = -1): Tensor { return logSoftmax(this, dim); };
