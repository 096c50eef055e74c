// Flash-style attention on the wasm backend: keys in blocks of KEY_BLOCK (128), the softmax kept
// online (running max m and sum l per query, as in FlashAttention), so no [T, S] score matrix
// exists at once: the forward holds scores and probabilities of one key block, the backward
// also dP and dS of one block, and nothing but the output and one logsumexp per query is saved.
//
// Block [c0, c0 + n) of the keys, forward:     S = q k_blk^T * scale
//   m' = max(m, rowmax S)   P = exp(S - m')   l = l e^(m - m') + rowsum P   O = O e^(m - m') + P v_blk
// and at the end O /= l, lse = m + log l. Backward, per block (P again from lse, D = rowsum(dO O)):
//   dV_blk = P^T dO   dP = dO v_blk^T   dS = P (dP - D) * scale   dK_blk = dS^T q   dQ += dS k_blk
// so dK and dV of a block are finished in it and only dQ is summed across blocks.
//
// Causal attention aligns the last query with the last key (query i sees keys j <= i + S - T,
// as a KV cache needs). A block is computed only for the queries that see some of it
// (from row c0 - (S - T) on), and the gemms skip micro-tiles that the mask zeroes.

import type { Storage } from '../../backend.js';
import type { WasmKernelHost } from './kernel-host.js';
import { gemmPtr, type Causal, type GemmOut } from './matmul.js';
import { dense } from './row-kernels.js';

type F32 = Float32Array;

/**
 * Keys per block. GPT-2's causal attention (12 heads, T = 1024, bench/attn-micro.ts, one run):
 * 128 keys a block took 48.6 ms forward, 101.5 backward, 55 MB of wasm memory; 256 keys
 * 51.8 / 107.0 ms, 86 MB; one block of all 1024 keys (the [T, T] scores at once) 56.4 / 113.0 ms
 * and 270 MB.
 */
export const KEY_BLOCK = 128;

/** One key block and the query rows that see it: [r0, t), block-relative causal offset `off`. */
interface Block { c0: number; n: number; r0: number; tb: number; off: number }

/** The key blocks of a [t, s] attention. */
export function keyBlocks(t: number, s: number, causal: boolean, size = KEY_BLOCK): Block[] {
  const off = s - t, out: Block[] = [];
  for (let c0 = 0; c0 < s; c0 += size) {
    // query i sees key c0 iff i >= c0 - off; from there every query sees at least key c0
    const r0 = causal ? Math.max(0, c0 - off) : 0;
    if (r0 >= t) break;
    out.push({ c0, n: Math.min(size, s - c0), r0, tb: t - r0, off: off + r0 - c0 });
  }
  return out;
}

export interface AttentionKernels {
  attention(q: Storage, k: Storage, v: Storage, bh: number, t: number, s: number, d: number, scale: number, causal: boolean):
    { o: Storage; lse: Storage };
  attentionBackward(q: Storage, k: Storage, v: Storage, o: Storage, lse: Storage, go: Storage,
    bh: number, t: number, s: number, d: number, scale: number, causal: boolean): { gq: Storage; gk: Storage; gv: Storage };
}

export function flashAttention(w: WasmKernelHost, keyBlock = KEY_BLOCK): AttentionKernels {
  const rt = w.runtime;
  const f32 = (s: Storage): F32 => w.hostView(s) as F32;
  /** A gemm product of one block: [bh] matrices, rows padded; a grouped matrix argument for row kernels. */
  const grouped = (g: GemmOut, rows: number): number[] => [g.c, g.ldc, rows, g.cBatch];
  /** Rows [r0, t) of each of bh [t, cols] matrices at ptr, as one grouped matrix argument. */
  const rowsFrom = (ptr: number, cols: number, r0: number, t: number): number[] => [ptr + r0 * cols * 4, cols, t - r0, t * cols];
  const limits = (b: Block, causal: boolean): number[] => [b.tb, b.off, causal ? 1 : 0];
  const mask = (b: Block, causal: boolean, mode: 1 | 2 | 3): Causal | undefined => (causal ? { mode, off: b.off } : undefined);
  /** Copy a block's [bh][n, d] product into rows [c0, c0 + n) of a dense [bh, s, d] host array. */
  const placeRows = (g: GemmOut, out: F32, bh: number, b: Block, s: number, d: number): void => {
    const c = rt.f32(g.c, bh * g.cBatch);
    for (let h = 0; h < bh; h++) {
      for (let i = 0; i < b.n; i++) out.set(c.subarray(h * g.cBatch + i * g.ldc, h * g.cBatch + i * g.ldc + d), (h * s + b.c0 + i) * d);
    }
  };
  /** S = q[r0:] k_blk^T of every head (masked tiles skipped, left unwritten). */
  const scores = (pq: number, pk: number, b: Block, bh: number, t: number, s: number, d: number, causal: boolean): GemmOut =>
    gemmPtr(rt, w.kernels.shape, pq + b.r0 * d * 4, pk + b.c0 * d * 4,
      { batch: bh, m: b.tb, n: b.n, k: d, transA: false, transB: true, aBatchStride: t * d, bBatchStride: s * d }, mask(b, causal, 1));

  return {
    attention: (q, k, v, bh, t, s, d, scale, causal) => w.scoped(() => {
      const pq = w.put(f32(q)), pk = w.put(f32(k)), pv = w.put(f32(v));
      const po = rt.alloc(bh * t * d * 4), pm = rt.alloc(bh * t * 4), pl = rt.alloc(bh * t * 4), pa = rt.alloc(bh * t * 4);
      rt.f32(po, bh * t * d).fill(0); rt.f32(pm, bh * t).fill(-Infinity); rt.f32(pl, bh * t).fill(0);
      for (const b of keyBlocks(t, s, causal, keyBlock)) {
        const mark = rt.mark();
        const sc = scores(pq, pk, b, bh, t, s, d, causal);
        const pp = rt.alloc(bh * b.tb * b.n * 4);
        w.rows('flashBlock', bh * b.tb, b.n, [...grouped(sc, b.tb), ...dense(pp, b.n),
          ...rowsFrom(pm, 1, b.r0, t), ...rowsFrom(pl, 1, b.r0, t), ...rowsFrom(pa, 1, b.r0, t), ...limits(b, causal)], [scale]);
        const ob = gemmPtr(rt, w.kernels.shape, pp, pv + b.c0 * d * 4,
          { batch: bh, m: b.tb, n: d, k: b.n, transA: false, transB: false, aBatchStride: b.tb * b.n, bBatchStride: s * d }, mask(b, causal, 2));
        w.rows('flashAccum', bh * b.tb, d, [...rowsFrom(po, d, b.r0, t), ...grouped(ob, b.tb), ...rowsFrom(pa, 1, b.r0, t)]);
        rt.release(mark);
      }
      w.rows('flashFinish', bh * t, d, [...dense(po, d), ...dense(pl, 1)]);
      const m = rt.f32(pm, bh * t), l = rt.f32(pl, bh * t), lse = w.raw(bh * t, 'float32') as F32;
      for (let r = 0; r < bh * t; r++) lse[r] = m[r]! + Math.log(l[r]!);
      return { o: w.out(w.take(po, bh * t * d)), lse: w.out(lse) };
    }),

    attentionBackward: (q, k, v, o, lse, go, bh, t, s, d, scale, causal) => w.scoped(() => {
      const sh = w.kernels.shape;
      const pq = w.put(f32(q)), pk = w.put(f32(k)), pv = w.put(f32(v)), po = w.put(f32(o)), pl = w.put(f32(lse)), pgo = w.put(f32(go));
      const pD = rt.alloc(bh * t * 4);
      w.rows('rowDot', bh * t, d, [...dense(pgo, d), ...dense(po, d), pD]);
      const pgq = rt.alloc(bh * t * d * 4);
      rt.f32(pgq, bh * t * d).fill(0);
      // not zeroed: the key blocks cover [0, s), and each block writes its rows of both
      const gk = w.raw(bh * s * d, 'float32') as F32, gv = w.raw(bh * s * d, 'float32') as F32;
      for (const b of keyBlocks(t, s, causal, keyBlock)) {
        const mark = rt.mark(), lim = limits(b, causal);
        const sc = scores(pq, pk, b, bh, t, s, d, causal);
        const pp = rt.alloc(bh * b.tb * b.n * 4);
        w.rows('attnProbs', bh * b.tb, b.n, [...grouped(sc, b.tb), ...dense(pp, b.n), ...rowsFrom(pl, 1, b.r0, t), ...lim], [scale]);
        // dV_blk = P^T dO
        placeRows(gemmPtr(rt, sh, pp, pgo + b.r0 * d * 4,
          { batch: bh, m: b.n, n: d, k: b.tb, transA: true, transB: false, aBatchStride: b.tb * b.n, bBatchStride: t * d }, mask(b, causal, 3)), gv, bh, b, s, d);
        // dP = dO v_blk^T, then dS = P (dP - D) * scale
        const dp = gemmPtr(rt, sh, pgo + b.r0 * d * 4, pv + b.c0 * d * 4,
          { batch: bh, m: b.tb, n: b.n, k: d, transA: false, transB: true, aBatchStride: t * d, bBatchStride: s * d }, mask(b, causal, 1));
        const pds = rt.alloc(bh * b.tb * b.n * 4);
        w.rows('attnDs', bh * b.tb, b.n, [...dense(pp, b.n), ...grouped(dp, b.tb), ...dense(pds, b.n), ...rowsFrom(pD, 1, b.r0, t), ...lim], [scale]);
        // dQ[r0:] += dS k_blk
        const gq = gemmPtr(rt, sh, pds, pk + b.c0 * d * 4,
          { batch: bh, m: b.tb, n: d, k: b.n, transA: false, transB: false, aBatchStride: b.tb * b.n, bBatchStride: s * d }, mask(b, causal, 2));
        w.rows('b_add', bh * b.tb, d, [...rowsFrom(pgq, d, b.r0, t), ...grouped(gq, b.tb), ...rowsFrom(pgq, d, b.r0, t)]);
        // dK_blk = dS^T q
        placeRows(gemmPtr(rt, sh, pds, pq + b.r0 * d * 4,
          { batch: bh, m: b.n, n: d, k: b.tb, transA: true, transB: false, aBatchStride: b.tb * b.n, bBatchStride: t * d }, mask(b, causal, 3)), gk, bh, b, s, d);
        rt.release(mark);
      }
      return { gq: w.out(w.take(pgq, bh * t * d)), gk: w.out(gk), gv: w.out(gv) };
    }),
  };
}
