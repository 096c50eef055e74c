// The gpu backend's fused kernels as gpu.js kernel functions, written as kernels.ts explains
// (plain functions, large indices inline): row statistics, the softmax family, cross-entropy,
// layerNorm, AdamW's moments and update, and attention's score rows. gpu/fused.ts launches them.

import { F, I, N, spec, type A1, type A2, type KernelThis } from './kernels.js';

// ---- row statistics, softmax family, cross-entropy, layernorm, AdamW -------------
/**
 * Per-row max (mode 0) or logsumexp (mode 1) of x [rows, cols] (declared [cols, rows]);
 * one thread per row, max subtracted before exp so large logits cannot overflow.
 */
function rowStatK(this: KernelThis, x: A2, cols: number, mode: number): number {
  let mx = x[this.thread.x]![0]!;
  for (let j = 1; j < cols; j++) mx = Math.max(mx, x[this.thread.x]![j]!);
  if (mode === 0) return mx;
  let s = 0.0;
  for (let j2 = 0; j2 < cols; j2++) s = s + Math.exp(x[this.thread.x]![j2]! - mx);
  return mx + Math.log(s);
}

/** exp(x - lse[row]) (mode 0: softmax) or x - lse[row] (mode 1: logSoftmax); out [cols, rows]. */
function softmaxApplyK(this: KernelThis, x: A2, lse: A1, mode: number): number {
  const d = x[this.thread.y]![this.thread.x]! - lse[this.thread.y]!;
  if (mode === 0) return Math.exp(d);
  return d;
}

/** Per row: sum(gy * y) (mode 0, softmax backward) or sum(gy) (mode 1, logSoftmax backward). */
function rowDotK(this: KernelThis, y: A2, gy: A2, cols: number, mode: number): number {
  let s = 0.0;
  for (let j = 0; j < cols; j++) {
    if (mode === 0) s = s + gy[this.thread.x]![j]! * y[this.thread.x]![j]!;
    else s = s + gy[this.thread.x]![j]!;
  }
  return s;
}

/** softmax: y * (gy - dot); logSoftmax: gy - exp(y) * dot. out [cols, rows]. */
function softmaxBackK(this: KernelThis, y: A2, gy: A2, dot: A1, mode: number): number {
  const yv = y[this.thread.y]![this.thread.x]!;
  const g = gy[this.thread.y]![this.thread.x]!;
  if (mode === 0) return yv * (g - dot[this.thread.y]!);
  return g - Math.exp(yv) * dot[this.thread.y]!;
}

/** Cross-entropy per row: lse[r] - x[r][target[r]]. */
function ceLossK(this: KernelThis, x: A2, lse: A1, tgt: A1): number {
  return lse[this.thread.x]! - x[this.thread.x]![tgt[this.thread.x]!]!;
}

/** glogits [cols, rows] = gloss[r] * (exp(x - lse[r]) - (c == target[r])). */
function ceBackK(this: KernelThis, x: A2, lse: A1, tgt: A1, gl: A1): number {
  let p = Math.exp(x[this.thread.y]![this.thread.x]! - lse[this.thread.y]!);
  if (this.thread.x === tgt[this.thread.y]!) p = p - 1.0;
  return gl[this.thread.y]! * p;
}

/** Per-row mean (mode 0) or rstd = 1/sqrt(var + eps) given the mean (mode 1), two-pass. */
function lnStatK(this: KernelThis, x: A2, mean: A1, cols: number, eps: number, mode: number): number {
  let s = 0.0;
  if (mode === 0) {
    for (let j = 0; j < cols; j++) s = s + x[this.thread.x]![j]!;
    return s / cols;
  }
  const mu = mean[this.thread.x]!;
  for (let j2 = 0; j2 < cols; j2++) {
    const d = x[this.thread.x]![j2]! - mu;
    s = s + d * d;
  }
  return 1.0 / Math.sqrt(s / cols + eps);
}

/** y [cols, rows] = (x - mean) * rstd * w + b. */
function lnApplyK(this: KernelThis, x: A2, mean: A1, rstd: A1, w: A1, b: A1): number {
  return (x[this.thread.y]![this.thread.x]! - mean[this.thread.y]!) * rstd[this.thread.y]! * w[this.thread.x]! + b[this.thread.x]!;
}

/**
 * Per-row sums for the layernorm backward: mode 0: sum(gy * w), mode 1: sum(gy * w * xhat).
 */
function lnBackStatK(this: KernelThis, x: A2, mean: A1, rstd: A1, w: A1, gy: A2, cols: number, mode: number): number {
  let s = 0.0;
  const mu = mean[this.thread.x]!;
  const rs = rstd[this.thread.x]!;
  for (let j = 0; j < cols; j++) {
    const g = gy[this.thread.x]![j]! * w[j]!;
    if (mode === 0) s = s + g;
    else s = s + g * (x[this.thread.x]![j]! - mu) * rs;
  }
  return s;
}

/** gx [cols, rows] = rstd * (gy*w - mean(gy*w) - xhat * mean(gy*w*xhat)). */
function lnBackApplyK(this: KernelThis, x: A2, mean: A1, rstd: A1, w: A1, gy: A2, s1: A1, s2: A1, cols: number): number {
  const rs = rstd[this.thread.y]!;
  const xhat = (x[this.thread.y]![this.thread.x]! - mean[this.thread.y]!) * rs;
  const g = gy[this.thread.y]![this.thread.x]! * w[this.thread.x]!;
  return rs * (g - s1[this.thread.y]! / cols - xhat * s2[this.thread.y]! / cols);
}

/** gy * xhat [cols, rows], summed over rows by the (parallel, chunked) reduce kernel for gw. */
function lnGyXhatK(this: KernelThis, x: A2, mean: A1, rstd: A1, gy: A2): number {
  return gy[this.thread.y]![this.thread.x]! * (x[this.thread.y]![this.thread.x]! - mean[this.thread.y]!) * rstd[this.thread.y]!;
}

/** AdamW moments: mode 0: m = b1 m + (1-b1) g; mode 1: v = b2 v + (1-b2) g^2. */
function adamMomentK(this: KernelThis, mv: A1, g: A1, beta: number, mode: number): number {
  const gv = g[this.thread.x]!;
  if (mode === 0) return beta * mv[this.thread.x]! + (1.0 - beta) * gv;
  return beta * mv[this.thread.x]! + (1.0 - beta) * gv * gv;
}

/** AdamW step as torch.optim.AdamW: decoupled decay, then the bias-corrected Adam update. */
function adamParamK(this: KernelThis, p: A1, m: A1, v: A1, lr: number, wd: number, bc1: number, bc2: number, eps: number): number {
  const pv = p[this.thread.x]! * (1.0 - lr * wd);
  const mhat = m[this.thread.x]! / bc1;
  const vhat = v[this.thread.x]! / bc2;
  return pv - lr * mhat / (Math.sqrt(vhat) + eps);
}

// ---- fused attention: the [bh, t, s] score matrices live only inside one op ------------
/**
 * Row logsumexp of the scaled, causally masked scores S [rows = bh*t, s] (declared [s, rows]):
 * key j is visible to query i (= row mod t) when j <= i + s - t.
 */
function attnStatK(this: KernelThis, S: A2, t: number, s: number, scale: number, causal: number): number {
  // query index = row mod t, corrected because WGSL's f32 division is not correctly rounded
  let i = this.thread.x - Math.floor((this.thread.x + 0.5) / t) * t;
  if (i < 0) i = i + t;
  if (i >= t) i = i - t;
  let last = s - 1;
  if (causal === 1) last = Math.min(s - 1, i + s - t);
  let mx = -3.4028234663852886e38;
  for (let j = 0; j < s; j++) {
    if (j <= last) mx = Math.max(mx, S[this.thread.x]![j]! * scale);
  }
  let sum = 0.0;
  for (let j2 = 0; j2 < s; j2++) {
    if (j2 <= last) sum = sum + Math.exp(S[this.thread.x]![j2]! * scale - mx);
  }
  return mx + Math.log(sum);
}

/** P [s, rows] = exp(S * scale - lse[row]) where visible, else 0. */
function attnProbK(this: KernelThis, S: A2, lse: A1, t: number, s: number, scale: number, causal: number): number {
  let i = this.thread.y - Math.floor((this.thread.y + 0.5) / t) * t;
  if (i < 0) i = i + t;
  if (i >= t) i = i - t;
  if (causal === 1 && this.thread.x > i + s - t) return 0.0;
  return Math.exp(S[this.thread.y]![this.thread.x]! * scale - lse[this.thread.y]!);
}

/** dS [s, rows] = P * (dP - D[row]) * scale, the softmax backward folded with the scale. */
function attnGradK(this: KernelThis, P: A2, dP: A2, D: A1, scale: number): number {
  return P[this.thread.y]![this.thread.x]! * (dP[this.thread.y]![this.thread.x]! - D[this.thread.y]!) * scale;
}

/** GELU's backward in one pass: g * gelu'(x), gelu' as unaryK's geluGrad (tanh approximation). */
function geluBackK(this: KernelThis, g: A1, x: A1): number {
  const v = x[this.thread.x]!;
  const u = 0.7978845608028654 * (v + 0.044715 * v * v * v);
  const t = Math.tanh(Math.min(Math.max(u, -15.0), 15.0));
  const du = 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * v * v);
  return g[this.thread.x]! * (0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * du);
}

export const FUSED_KERNELS = {
  geluBack: spec('geluBack', geluBackK, [I, I], [1, 1], 1),
  rowStat: spec('rowStat', rowStatK, [I, N, N], [2, 0, 0], 1),
  softmaxApply: spec('softmaxApply', softmaxApplyK, [I, I, N], [2, 1, 0], 3),
  rowDot: spec('rowDot', rowDotK, [I, I, N, N], [2, 2, 0, 0], 1),
  softmaxBack: spec('softmaxBack', softmaxBackK, [I, I, I, N], [2, 2, 1, 0], 3),
  ceLoss: spec('ceLoss', ceLossK, [I, I, I], [2, 1, 1], 1),
  ceBack: spec('ceBack', ceBackK, [I, I, I, I], [2, 1, 1, 1], 3),
  lnStat: spec('lnStat', lnStatK, [I, I, N, F, N], [2, 1, 0, 0, 0], 1),
  lnApply: spec('lnApply', lnApplyK, [I, I, I, I, I], [2, 1, 1, 1, 1], 3),
  lnBackStat: spec('lnBackStat', lnBackStatK, [I, I, I, I, I, N, N], [2, 1, 1, 1, 2, 0, 0], 1),
  lnBackApply: spec('lnBackApply', lnBackApplyK, [I, I, I, I, I, I, I, N], [2, 1, 1, 1, 2, 1, 1, 0], 3),
  lnGyXhat: spec('lnGyXhat', lnGyXhatK, [I, I, I, I], [2, 1, 1, 2], 3),
  adamMoment: spec('adamMoment', adamMomentK, [I, I, F, N], [1, 1, 0, 0], 1),
  adamParam: spec('adamParam', adamParamK, [I, I, I, F, F, F, F, F], [1, 1, 1, 0, 0, 0, 0, 0], 1),
  attnStat: spec('attnStat', attnStatK, [I, N, N, F, N], [2, 0, 0, 0, 0], 1),
  attnProb: spec('attnProb', attnProbK, [I, I, N, N, F, N], [2, 1, 0, 0, 0, 0], 3),
  attnGrad: spec('attnGrad', attnGradK, [I, I, I, F], [2, 2, 1, 0], 3),
} as const;
