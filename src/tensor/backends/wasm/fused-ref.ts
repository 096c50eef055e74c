// Plain-loop versions of the fused kernels, used by the wasm backend for float64 storages
// (gradchecks): the math of backend.ts's FusedKernels comments, one function each, and
// referenceKernels, the same as a FusedKernels table over host storages.

import type { AdamWParams, CpuFusedKernels, Storage } from '../../backend.js';
import { bfloat16BitsToFloat32, float16BitsToFloat32, float32ToBfloat16Bits, float32ToFloat16Bits, roundToHalfInPlace, type DType, type HostArray } from '../../dtype.js';

type Arr = HostArray;

function lse(x: Arr, r: number, cols: number): number {
  let m = -Infinity;
  for (let c = 0; c < cols; c++) m = Math.max(m, x[r * cols + c]!);
  let s = 0;
  for (let c = 0; c < cols; c++) s += Math.exp(x[r * cols + c]! - m);
  return m + Math.log(s);
}

export function softmaxRef(x: Arr, rows: number, cols: number, y: Arr): void {
  for (let r = 0; r < rows; r++) {
    const l = lse(x, r, cols);
    for (let c = 0; c < cols; c++) y[r * cols + c] = Math.exp(x[r * cols + c]! - l);
  }
}
export function softmaxBackwardRef(y: Arr, gy: Arr, rows: number, cols: number, gx: Arr): void {
  for (let r = 0; r < rows; r++) {
    let d = 0;
    for (let c = 0; c < cols; c++) d += gy[r * cols + c]! * y[r * cols + c]!;
    for (let c = 0; c < cols; c++) gx[r * cols + c] = y[r * cols + c]! * (gy[r * cols + c]! - d);
  }
}
export function logSoftmaxRef(x: Arr, rows: number, cols: number, y: Arr): void {
  for (let r = 0; r < rows; r++) {
    const l = lse(x, r, cols);
    for (let c = 0; c < cols; c++) y[r * cols + c] = x[r * cols + c]! - l;
  }
}
export function logSoftmaxBackwardRef(y: Arr, gy: Arr, rows: number, cols: number, gx: Arr): void {
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += gy[r * cols + c]!;
    for (let c = 0; c < cols; c++) gx[r * cols + c] = gy[r * cols + c]! - Math.exp(y[r * cols + c]!) * s;
  }
}
export function crossEntropyRef(x: Arr, t: Arr, rows: number, cols: number, loss: Arr, lseOut: Arr): void {
  for (let r = 0; r < rows; r++) {
    const l = lse(x, r, cols);
    lseOut[r] = l;
    loss[r] = l - x[r * cols + t[r]!]!;
  }
}
export function crossEntropyBackwardRef(x: Arr, t: Arr, l: Arr, gl: Arr, rows: number, cols: number, g: Arr): void {
  for (let r = 0; r < rows; r++) {
    for (let c = 0; c < cols; c++) g[r * cols + c] = gl[r]! * (Math.exp(x[r * cols + c]! - l[r]!) - (c === t[r] ? 1 : 0));
  }
}
export function layerNormRef(x: Arr, w: Arr, b: Arr, rows: number, cols: number, eps: number, y: Arr, mean: Arr, rstd: Arr): void {
  for (let r = 0; r < rows; r++) {
    let s = 0;
    for (let c = 0; c < cols; c++) s += x[r * cols + c]!;
    const mu = s / cols;
    let q = 0;
    for (let c = 0; c < cols; c++) q += (x[r * cols + c]! - mu) ** 2;
    const rs = 1 / Math.sqrt(q / cols + eps);
    mean[r] = mu; rstd[r] = rs;
    for (let c = 0; c < cols; c++) y[r * cols + c] = (x[r * cols + c]! - mu) * rs * w[c]! + b[c]!;
  }
}
export function layerNormBackwardRef(x: Arr, w: Arr, mean: Arr, rstd: Arr, gy: Arr, rows: number, cols: number,
  gx: Arr, gw: Arr, gb: Arr): void {
  gw.fill(0); gb.fill(0);
  for (let r = 0; r < rows; r++) {
    let a = 0, bsum = 0;
    for (let c = 0; c < cols; c++) {
      const xh = (x[r * cols + c]! - mean[r]!) * rstd[r]!, g = gy[r * cols + c]!;
      a += g * w[c]!; bsum += g * w[c]! * xh;
      gw[c]! += g * xh; gb[c]! += g;
    }
    for (let c = 0; c < cols; c++) {
      const xh = (x[r * cols + c]! - mean[r]!) * rstd[r]!;
      gx[r * cols + c] = rstd[r]! * (gy[r * cols + c]! * w[c]! - a / cols - xh * bsum / cols);
    }
  }
}
/** Causal: query i sees keys j <= i + s - t. */
export function attentionRef(q: Arr, k: Arr, v: Arr, bh: number, t: number, s: number, d: number, scale: number,
  causal: boolean, o: Arr, lseOut: Arr): void {
  const p = new Float64Array(s);
  for (let b = 0; b < bh; b++) {
    for (let i = 0; i < t; i++) {
      const lim = causal ? Math.max(0, Math.min(s, i + s - t + 1)) : s;
      let m = -Infinity;
      for (let j = 0; j < lim; j++) {
        let z = 0;
        for (let e = 0; e < d; e++) z += q[(b * t + i) * d + e]! * k[(b * s + j) * d + e]!;
        p[j] = z * scale; m = Math.max(m, p[j]!);
      }
      let sum = 0;
      for (let j = 0; j < lim; j++) { p[j] = Math.exp(p[j]! - m); sum += p[j]!; }
      lseOut[b * t + i] = m + Math.log(sum);
      for (let e = 0; e < d; e++) {
        let acc = 0;
        for (let j = 0; j < lim; j++) acc += p[j]! * v[(b * s + j) * d + e]!;
        o[(b * t + i) * d + e] = acc / sum;
      }
    }
  }
}
export function attentionBackwardRef(q: Arr, k: Arr, v: Arr, o: Arr, lseIn: Arr, go: Arr, bh: number, t: number, s: number,
  d: number, scale: number, causal: boolean, gq: Arr, gk: Arr, gv: Arr): void {
  gq.fill(0); gk.fill(0); gv.fill(0);
  for (let b = 0; b < bh; b++) {
    for (let i = 0; i < t; i++) {
      const lim = causal ? Math.max(0, Math.min(s, i + s - t + 1)) : s;
      const row = (b * t + i) * d;
      let D = 0;
      for (let e = 0; e < d; e++) D += go[row + e]! * o[row + e]!;
      for (let j = 0; j < lim; j++) {
        const col = (b * s + j) * d;
        let z = 0, dp = 0;
        for (let e = 0; e < d; e++) { z += q[row + e]! * k[col + e]!; dp += go[row + e]! * v[col + e]!; }
        const p = Math.exp(z * scale - lseIn[b * t + i]!);
        const ds = p * (dp - D) * scale;
        for (let e = 0; e < d; e++) {
          gv[col + e]! += p * go[row + e]!;
          gq[row + e]! += ds * k[col + e]!;
          gk[col + e]! += ds * q[row + e]!;
        }
      }
    }
  }
}
/**
 * Mean cross-entropy of x w^T against t, one row at a time; gx, gw (for an upstream 1) when given.
 * With `lower`, rounded where torch.autocast stores half values: x, w, the logits, their gradient,
 * gx, and gw once complete.
 */
export function linearCrossEntropyRef(x: Arr, w: Arr, t: Arr, rows: number, cols: number, classes: number, gx: Arr | null, gw: Arr | null,
  lower: 'float16' | 'bfloat16' | null = null): number {
  const r1 = lower ? (a: Arr): Arr => roundToHalfInPlace(Float32Array.from(a), lower) : (a: Arr): Arr => a;
  const rn = lower === 'bfloat16' ? (v: number): number => bfloat16BitsToFloat32(float32ToBfloat16Bits(v))
    : lower === 'float16' ? (v: number): number => float16BitsToFloat32(float32ToFloat16Bits(v)) : (v: number): number => v;
  const xs = r1(x), ws = r1(w);
  const z = new Float64Array(classes), gr = new Float64Array(cols);
  let total = 0;
  for (let r = 0; r < rows; r++) {
    let mx = -Infinity;
    for (let j = 0; j < classes; j++) {
      let s = 0;
      for (let c = 0; c < cols; c++) s += xs[r * cols + c]! * ws[j * cols + c]!;
      z[j] = rn(s);
      if (z[j]! > mx) mx = z[j]!;
    }
    let se = 0;
    for (let j = 0; j < classes; j++) se += Math.exp(z[j]! - mx);
    const lse = mx + Math.log(se), tr = t[r]!;
    total += lse - z[tr]!;
    if (!gx || !gw) continue;
    gr.fill(0);
    for (let j = 0; j < classes; j++) {
      const g = rn((Math.exp(z[j]! - lse) - (j === tr ? 1 : 0)) / rows);
      for (let c = 0; c < cols; c++) {
        gr[c] = gr[c]! + g * ws[j * cols + c]!;
        gw[j * cols + c] = gw[j * cols + c]! + g * xs[r * cols + c]!;
      }
    }
    for (let c = 0; c < cols; c++) gx[r * cols + c] = rn(gr[c]!);
  }
  if (gw && lower) for (let i = 0; i < gw.length; i++) gw[i] = rn(gw[i]!);
  return total / rows;
}

export function adamwRef(p: Arr, g: Arr, m: Arr, v: Arr, h: AdamWParams): void {
  const bc1 = 1 - h.beta1 ** h.step, bc2 = 1 - h.beta2 ** h.step;
  for (let i = 0; i < p.length; i++) {
    let x = p[i]! - h.lr * h.weightDecay * p[i]!;
    const mi = h.beta1 * m[i]! + (1 - h.beta1) * g[i]!;
    const vi = h.beta2 * v[i]! + (1 - h.beta2) * g[i]! * g[i]!;
    m[i] = mi; v[i] = vi;
    x -= h.lr * (mi / bc1) / (Math.sqrt(vi / bc2) + h.eps);
    p[i] = x;
  }
}

/** What the reference kernels need from a host backend: its arrays, new ones, and wrapping. */
export interface HostAccess {
  host(s: Storage): HostArray;
  /** A zeroed array. */
  alloc(size: number, dtype: DType): HostArray;
  wrap(data: HostArray, dtype: DType): Storage;
}

/** Every fused kernel as the plain loops above, in the operands' own dtype. */
export function referenceKernels(b: HostAccess): CpuFusedKernels {
  const h = (s: Storage): HostArray => b.host(s);
  const rowsOut = (x: Storage, n: number, f: (y: HostArray) => void): Storage => { const y = b.alloc(n, x.dtype); f(y); return b.wrap(y, x.dtype); };
  return {
    softmax: (x, rows, cols) => rowsOut(x, rows * cols, (y) => softmaxRef(h(x), rows, cols, y)),
    softmaxBackward: (y, gy, rows, cols) => rowsOut(y, rows * cols, (gx) => softmaxBackwardRef(h(y), h(gy), rows, cols, gx)),
    logSoftmax: (x, rows, cols) => rowsOut(x, rows * cols, (y) => logSoftmaxRef(h(x), rows, cols, y)),
    logSoftmaxBackward: (y, gy, rows, cols) => rowsOut(y, rows * cols, (gx) => logSoftmaxBackwardRef(h(y), h(gy), rows, cols, gx)),
    crossEntropy: (x, t, rows, cols) => {
      const loss = b.alloc(rows, x.dtype), lseOut = b.alloc(rows, x.dtype);
      crossEntropyRef(h(x), h(t), rows, cols, loss, lseOut);
      return { loss: b.wrap(loss, x.dtype), lse: b.wrap(lseOut, x.dtype) };
    },
    crossEntropyBackward: (x, t, l, gl, rows, cols) => rowsOut(x, rows * cols, (g) => crossEntropyBackwardRef(h(x), h(t), h(l), h(gl), rows, cols, g)),
    linearCrossEntropy: (x, w, t, rows, cols, classes, grad, lower) => {
      const dt = x.dtype, gx = grad ? b.alloc(rows * cols, dt) : null, gw = grad ? b.alloc(classes * cols, dt) : null;
      const loss = b.alloc(1, dt);
      loss[0] = linearCrossEntropyRef(h(x), h(w), h(t), rows, cols, classes, gx, gw, lower);
      return { loss: b.wrap(loss, dt), gx: gx && b.wrap(gx, dt), gw: gw && b.wrap(gw, dt) };
    },
    layerNorm: (x, w, bias, rows, cols, eps) => {
      const dt = x.dtype, y = b.alloc(rows * cols, dt), mean = b.alloc(rows, dt), rstd = b.alloc(rows, dt);
      layerNormRef(h(x), h(w), h(bias), rows, cols, eps, y, mean, rstd);
      return { y: b.wrap(y, dt), mean: b.wrap(mean, dt), rstd: b.wrap(rstd, dt) };
    },
    layerNormBackward: (x, w, mean, rstd, gy, rows, cols) => {
      const dt = x.dtype, gx = b.alloc(rows * cols, dt), gw = b.alloc(cols, dt), gb = b.alloc(cols, dt);
      layerNormBackwardRef(h(x), h(w), h(mean), h(rstd), h(gy), rows, cols, gx, gw, gb);
      return { gx: b.wrap(gx, dt), gw: b.wrap(gw, dt), gb: b.wrap(gb, dt) };
    },
    attention: (q, k, v, bh, t, s, d, scale, causal) => {
      const dt = q.dtype, o = b.alloc(bh * t * d, dt), lseOut = b.alloc(bh * t, dt);
      attentionRef(h(q), h(k), h(v), bh, t, s, d, scale, causal, o, lseOut);
      return { o: b.wrap(o, dt), lse: b.wrap(lseOut, dt) };
    },
    attentionBackward: (q, k, v, o, l, go, bh, t, s, d, scale, causal) => {
      const dt = q.dtype, gq = b.alloc(bh * t * d, dt), gk = b.alloc(bh * s * d, dt), gv = b.alloc(bh * s * d, dt);
      attentionBackwardRef(h(q), h(k), h(v), h(o), h(l), h(go), bh, t, s, d, scale, causal, gq, gk, gv);
      return { gq: b.wrap(gq, dt), gk: b.wrap(gk, dt), gv: b.wrap(gv, dt) };
    },
    adamw: (p, g, m, v, hp) => adamwRef(h(p), h(g), h(m), h(v), hp),
    sumSquares: (xs) => {
      let total = 0;
      for (const x of xs) { const a = h(x); for (let i = 0; i < a.length; i++) total += a[i]! * a[i]!; }
      return b.wrap(Float32Array.of(total), 'float32');
    },
    addInPlace: (into, x) => { const a = h(into), y = h(x); for (let i = 0; i < a.length; i++) a[i] = a[i]! + y[i]!; },
    scaleInPlace: (x, factor) => {
      const a = h(x), f = h(factor)[0]!;
      if (f === 1) return; // the usual factor (a loss's gradient, an unclipped norm): nothing to do
      for (let i = 0; i < a.length; i++) a[i] = a[i]! * f;
    },
  };
}
