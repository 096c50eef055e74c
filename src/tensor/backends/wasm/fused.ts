// The wasm backend's fused kernels on float32 storages: softmax family, cross-entropy (also fused
// with the linear layer before it, over row chunks), layerNorm, attention (flash-style, attention.ts), AdamW and sums of squares, each a row
// or element kernel of row-kernels.ts run on the worker pool, with its backward. defineOp only
// calls them on float32 storages (float64 runs the ops' composites).

import type { AdamWParams, CpuFusedKernels, Storage } from '../../backend.js';
import { roundToHalfInPlace } from '../../dtype.js';
import type { WasmKernelHost } from './kernel-host.js';
import { gemmHostB, packHostB, readC, zeroC } from './matmul.js';
import { dense } from './row-kernels.js';
import { flashAttention } from './attention.js';
import { WasmMemoryError } from './runtime.js';

/** Elements per task of elementwise kernels. Fixed: sumSquares' partial sums depend on it. */
export const CHUNK = 16384;
/**
 * Elements per trip through wasm memory of the elementwise kernels on host arrays (AdamW, sums
 * of squares, in-place add and scale): one CHUNK, a single task, so the main thread runs it
 * while the slab is still in L1/L2 from its copy in. Copying dominates these kernels; waking
 * the pool for larger slabs cost more than the second thread saved. 30M floats on the 2-core
 * Xeon: AdamW 135 -> 98 ms, add 54 -> 36, scale 34 -> 22 (slabs of 256 chunks on 2 threads).
 */
const SLAB = CHUNK;
/** Columns per task of column reductions (only scheduling, not the summation order). */
export const COL_BLOCK = 64;
/**
 * Floats of one chunk's logits in linearCrossEntropy (128 MB; its gradient is written over
 * them). Larger chunks hold more wasm memory (GPT-2 124M: ~750 MB at 2^25, with the weight
 * packed for both of its products) and pay less per chunk. GPT tiny's step (1024 rows x 50304
 * classes, bench/step.ts, when each chunk packed the weight itself): 926 ms in it at 2^24, 855
 * at 2^25, 825 in one chunk (peak RSS 1.06, 1.26, 1.47 GB).
 */
const LCE_CHUNK_FLOATS = 1 << 25;

type F32 = Float32Array;

/** Name the op and its shapes when its operands overflow the wasm32 memory. */
export function tooBig(e: unknown, op: string, shapes: string): never {
  if (e instanceof WasmMemoryError) {
    throw new Error(`${op} ${shapes}: needs ${(e.bytes / 2 ** 30).toFixed(1)} GiB of wasm memory, over the 4 GiB wasm32 limit; ` +
      'use a smaller batch or sequence length, or the js backend (--backend js)');
  }
  throw e;
}

/** The wasm kernels on float32 storages. */
export function wasmFused(w: WasmKernelHost): CpuFusedKernels {
  const f32 = (s: Storage): F32 => w.hostView(s) as F32;

  const rowsBwd = (kernel: string, y: Storage, gy: Storage, rows: number, cols: number): Storage => w.out(w.scoped(() => {
    const py = w.put(f32(y)), pg = w.put(f32(gy)), px = w.runtime.alloc(rows * cols * 4);
    w.rows(kernel, rows, cols, [...dense(py, cols), ...dense(pg, cols), ...dense(px, cols)]);
    return w.take(px, rows * cols);
  }));

  /** max and sum(exp(x - max)) per row in wasm, logsumexp finished here (wasm has no log). */
  const rowLse = (px: number, rows: number, cols: number): F32 => {
    const pm = w.runtime.alloc(rows * 4), ps = w.runtime.alloc(rows * 4);
    w.rows('rowStats', rows, cols, [...dense(px, cols), pm, ps]);
    const m = w.runtime.f32(pm, rows), s = w.runtime.f32(ps, rows);
    const lse = new Float32Array(rows);
    for (let r = 0; r < rows; r++) lse[r] = m[r]! + Math.log(s[r]!);
    return lse;
  };

  /**
   * An elementwise kernel over host arrays of one length, a slab at a time: each array's slab
   * copied into wasm memory, the kernel run on it, the first `written` copied back. The slabs
   * stay in cache between the copies and the kernel.
   */
  const slabs = (kernel: string, arrays: F32[], written: number, floats: number[]): void => {
    const n = arrays[0]!.length;
    for (let o = 0; o < n; o += SLAB) w.scoped(() => {
      const e = Math.min(n, o + SLAB), len = e - o;
      const ptrs = arrays.map((a) => w.put(a.subarray(o, e)));
      const first = 2 + arrays.length;
      w.runtime.run(kernel, Math.ceil(len / CHUNK), w.runtime.args([len, CHUNK, ...ptrs, ...floats],
        floats.map((_, i) => first + i)));
      for (let i = 0; i < written; i++) arrays[i]!.set(w.runtime.f32(ptrs[i]!, len), o);
    });
  };

  const attn = flashAttention(w);

  return {
    softmax: (x, rows, cols) => w.out(w.scoped(() => {
      const px = w.put(f32(x)), py = w.runtime.alloc(rows * cols * 4);
      w.rows('softmax', rows, cols, [...dense(px, cols), ...dense(py, cols)]);
      return w.take(py, rows * cols);
    })),
    softmaxBackward: (y, gy, rows, cols) => rowsBwd('softmaxBwd', y, gy, rows, cols),
    logSoftmax: (x, rows, cols) => w.out(w.scoped(() => {
      const px = w.put(f32(x)), py = w.runtime.alloc(rows * cols * 4);
      const pl = w.put(rowLse(px, rows, cols));
      w.rows('subRow', rows, cols, [...dense(px, cols), ...dense(py, cols), pl]);
      return w.take(py, rows * cols);
    })),
    logSoftmaxBackward: (y, gy, rows, cols) => rowsBwd('logSoftmaxBwd', y, gy, rows, cols),

    crossEntropy: (logits, targets, rows, cols) => {
      const X = f32(logits), T = w.hostView(targets);
      const lse = w.scoped(() => rowLse(w.put(X), rows, cols));
      const loss = new Float32Array(rows);
      for (let r = 0; r < rows; r++) loss[r] = lse[r]! - X[r * cols + T[r]!]!;
      return { loss: w.out(loss), lse: w.out(lse) };
    },
    crossEntropyBackward: (logits, targets, lse, gloss, rows, cols) => w.out(w.scoped(() => {
      const px = w.put(f32(logits)), pg = w.runtime.alloc(rows * cols * 4);
      const pl = w.put(f32(lse)), pgl = w.put(f32(gloss)), pt = w.put(w.hostView(targets) as Int32Array);
      w.rows('ceBwd', rows, cols, [...dense(px, cols), ...dense(pg, cols), pl, pgl, pt]);
      return w.take(pg, rows * cols);
    })),

    linearCrossEntropy: (x, wt, targets, rows, cols, classes, grad, lower) => w.scoped(() => {
      const rt = w.runtime, sh = w.kernels.shape;
      // under autocast: values rounded where torch.autocast stores them in the half type
      const round = (a: F32): F32 => (lower ? roundToHalfInPlace(a, lower) : a);
      const T = w.hostView(targets) as Int32Array;
      const X = lower ? round(Float32Array.from(f32(x))) : f32(x), W = lower ? round(Float32Array.from(f32(wt))) : f32(wt);
      const px = w.put(X), pt = w.put(T);
      // rows per chunk: at most ~128 MB of logits, in whole micro-tile rows, the chunks of
      // equal size (1024 rows: 2 x 512, not 664 + 360, whose products run slower)
      const most = Math.max(sh.mr, Math.floor(LCE_CHUNK_FLOATS / classes / sh.mr) * sh.mr);
      const R = Math.ceil(rows / Math.ceil(rows / most) / sh.mr) * sh.mr;
      // W is packed straight from the host (no raw copy of it in wasm memory) for each of its
      // two products; with several chunks, once for all of them (the packs held throughout)
      const many = rows > R;
      const wFwd = packHostB(rt, sh, W, classes, cols, true);
      const wBwd = grad && many ? packHostB(rt, sh, W, cols, classes, false) : W;
      const gx = grad ? w.raw(rows * cols, 'float32') as F32 : null;
      // dW = sum over chunks of g^T x, accumulated by the gemm itself in wasm memory
      const gw = grad ? zeroC(rt, sh, classes, cols) : null;
      const flat = (m: number, n: number, k: number, transA: boolean, transB: boolean) =>
        ({ batch: 1, m, n, k, transA, transB, aBatchStride: 0, bBatchStride: 0 });
      let total = 0;
      for (let r0 = 0; r0 < rows; r0 += R) {
        const n = Math.min(R, rows - r0), mark = rt.mark();
        // logits of these rows, z = x W^T, left in wasm memory (rows padded to MR, columns to NR)
        const z = gemmHostB(rt, sh, px + r0 * cols * 4, wFwd, flat(n, classes, cols, false, true));
        if (lower) round(rt.f32(z.c, n * z.ldc));
        const pm = rt.alloc(n * 4), ps = rt.alloc(n * 4), pz = rt.alloc(n * 4);
        if (gx && gw) {
          // statistics, and g = (softmax(z) - onehot(target)) / rows written over z (its padded
          // rows are g's); then dx = g W for these rows and dW += g^T x
          w.rows('ceStatsGrad', n, classes, [...dense(z.c, z.ldc), pm, ps, pz, pt + r0 * 4], [1 / rows]);
        } else {
          w.rows('rowStats', n, classes, [...dense(z.c, z.ldc), pm, ps]);
          const zv = rt.f32(z.c, n * z.ldc), zt = rt.f32(pz, n);
          for (let r = 0; r < n; r++) zt[r] = zv[r * z.ldc + T[r0 + r]!]!;
        }
        const m = rt.f32(pm, n), sm = rt.f32(ps, n), zt = rt.f32(pz, n);
        for (let r = 0; r < n; r++) total += m[r]! + Math.log(sm[r]!) - zt[r]!;
        if (gx && gw) {
          if (lower) round(rt.f32(z.c, n * z.ldc));
          round(readC(rt, gemmHostB(rt, sh, z.c, wBwd, flat(n, cols, classes, false, false), { lda: z.ldc }), 1, n, cols, gx.subarray(r0 * cols, (r0 + n) * cols)));
          gemmHostB(rt, sh, z.c, X.subarray(r0 * cols, (r0 + n) * cols), flat(classes, cols, n, true, false), { into: gw, lda: z.ldc });
        }
        rt.release(mark);
      }
      return { loss: w.out(Float32Array.of(total / rows)), gx: gx && w.out(gx),
        gw: gw && w.out(round(readC(rt, gw, 1, classes, cols, w.raw(classes * cols, 'float32') as F32))) };
    }),

    layerNorm: (x, wt, b, rows, cols, eps) => w.scoped(() => {
      const px = w.put(f32(x)), pw = w.put(f32(wt)), pb = w.put(f32(b));
      const py = w.runtime.alloc(rows * cols * 4), pm = w.runtime.alloc(rows * 4), pr = w.runtime.alloc(rows * 4);
      w.rows('lnFwd', rows, cols, [...dense(px, cols), ...dense(py, cols), pw, pb, pm, pr], [eps]);
      return { y: w.out(w.take(py, rows * cols)), mean: w.out(w.take(pm, rows)), rstd: w.out(w.take(pr, rows)) };
    }),
    layerNormBackward: (x, wt, mean, rstd, gy, rows, cols) => w.scoped(() => {
      const px = w.put(f32(x)), pw = w.put(f32(wt)), pm = w.put(f32(mean)), pr = w.put(f32(rstd)), pg = w.put(f32(gy));
      const pgx = w.runtime.alloc(rows * cols * 4), pgw = w.runtime.alloc(cols * 4), pgb = w.runtime.alloc(cols * 4);
      w.rows('lnBwdX', rows, cols, [...dense(px, cols), ...dense(pg, cols), ...dense(pgx, cols), pw, pm, pr]);
      w.runtime.run('lnBwdWB', Math.ceil(cols / COL_BLOCK), w.runtime.args([1, rows, cols, COL_BLOCK, px, pg, pm, pr, pgw, pgb]));
      return { gx: w.out(w.take(pgx, rows * cols)), gw: w.out(w.take(pgw, cols)), gb: w.out(w.take(pgb, cols)) };
    }),

    attention: (q, k, v, bh, t, s, d, scale, causal) => {
      try { return attn.attention(q, k, v, bh, t, s, d, scale, causal); } catch (e) {
        return tooBig(e, 'attention', `(batch*heads ${bh}, T ${t}, S ${s}, head dim ${d})`);
      }
    },
    attentionBackward: (q, k, v, o, lse, go, bh, t, s, d, scale, causal) => {
      try { return attn.attentionBackward(q, k, v, o, lse, go, bh, t, s, d, scale, causal); } catch (e) {
        return tooBig(e, 'attention backward', `(batch*heads ${bh}, T ${t}, S ${s}, head dim ${d})`);
      }
    },

    adamw: (ps: Storage[], gs: Storage[], ms: Storage[], vs: Storage[], h: AdamWParams) => {
      const bc1 = 1 - h.beta1 ** h.step, bc2 = 1 - h.beta2 ** h.step;
      ps.forEach((p, i) => slabs('adamw', [f32(p), f32(ms[i]!), f32(vs[i]!), f32(gs[i]!)], 3,
        [h.lr, h.beta1, h.beta2, 1 - h.beta1, 1 - h.beta2, h.eps, h.weightDecay, bc1, bc2]));
    },

    sumSquares: (xs) => {
      let total = 0;
      for (const x of xs) {
        const X = f32(x);
        // slabs of whole CHUNKs: the same partial sums, added in the same order
        for (let o = 0; o < X.length; o += SLAB) w.scoped(() => {
          const len = Math.min(X.length, o + SLAB) - o, chunks = Math.ceil(len / CHUNK);
          const px = w.put(X.subarray(o, o + len)), po = w.runtime.alloc(chunks * 4);
          w.runtime.run('sumsq', chunks, w.runtime.args([len, CHUNK, px, po]));
          const parts = w.runtime.f32(po, chunks);
          for (let i = 0; i < chunks; i++) total += parts[i]!; // in chunk order: thread-count independent
        });
      }
      return w.out(Float32Array.of(total));
    },

    addInPlace: (into, x) => slabs('addTo', [f32(into), f32(x)], 1, []),
    scaleInPlace: (xs, factor) => {
      const f = f32(factor)[0]!;
      // the usual factor (a loss's gradient, an unclipped norm): nothing to do
      if (f !== 1) for (const x of xs) slabs('scaleBy', [f32(x)], 1, [f]);
    },
  };
}
