// Matmul as BLAS libraries do it (GotoBLAS / BLIS): pack A into MR-row panels and B into
// NR-column panels (zero padded, so the micro-kernel never tests edges), then a register-
// blocked MR x NR micro-kernel over KC-deep slices, looping panels so a B micro-panel stays
// in L1 and an A block stays in L2. All written as wasm SIMD (f32x4) through emit.ts.

import { Func, type Local } from './emit.js';

export interface MatmulShape {
  /** Micro-tile rows (A panel width). */
  mr: number;
  /** Micro-tile columns (B panel width), a multiple of 4. */
  nr: number;
  /** Depth of one packed slice: the summation is blocked at multiples of KC (fixed, so results are too). */
  kc: number;
  /** Unroll of the micro-kernel's k loop. */
  unroll: number;
  /** Use relaxed-simd f32x4.relaxed_madd (one rounding) instead of mul + add. */
  fma: boolean;
}

/**
 * pack(task, args): copy one W-wide panel of a strided matrix into contiguous [K][W] order.
 * Element (i, kk) of batch b sits at base + b*batchStride + i*s1 + kk*s2 (elements); the
 * panel covers i in [p*W, p*W + W), zero-filled past `len`, and lands at
 * dst + task*dstK*W floats: dstK > K packs depths [0, K) of panels dstK deep (a slab of them).
 * args (i32): src, len, K, s1, s2, batchStride, panelsPerBatch, dst, dstK
 * With `bf16` the source holds bfloat16 bits (2 bytes an element), widened to float32 as packed.
 * Full float32 panels take a SIMD path when one of the strides is 1: a panel row is W/4
 * vector copies (s1 = 1), or 4 x 4 blocks are transposed in registers (s2 = 1).
 */
export function packKernel(w: number, bf16 = false): Func {
  const f = new Func(['i32', 'i32'], []);
  const task = f.param(0), args = f.param(1);
  const L = (): Local => f.local('i32');
  const src = L(), len = L(), K = L(), s1 = L(), s2 = L(), bs = L(), ppb = L(), dst = L(), dstK = L();
  const b = L(), p = L(), valid = L(), kk = L(), k4 = L(), i = L(), rowSrc = L(), out = L();
  [src, len, K, s1, s2, bs, ppb, dst, dstK].forEach((l, j) => f.get(args).i32Load(4 * j).set(l));
  f.get(task).get(ppb).i32DivS().set(b);
  f.get(task).get(ppb).i32RemS().set(p);
  // this panel's rows/cols that exist: min(W, len - p*W)
  f.get(len).get(p).i32Const(w).i32Mul().i32Sub().set(valid);
  f.i32Const(w).get(valid).get(valid).i32Const(w).i32GtS().select().set(valid);
  // src of element (p*W, 0) in batch b, in bytes
  const eShift = bf16 ? 1 : 2; // log2 of the source element's bytes
  f.get(src).get(b).get(bs).i32Mul().get(p).i32Const(w).i32Mul().get(s1).i32Mul().i32Add()
    .i32Const(eShift).i32Shl().i32Add().set(src);
  // dst panel: (b * panelsPerBatch + p) * dstK * W floats
  f.get(dst).get(task).get(dstK).i32Mul().i32Const(w * 4).i32Mul().i32Add().set(out);
  f.get(s1).i32Const(eShift).i32Shl().set(s1);
  f.get(s2).i32Const(eShift).i32Shl().set(s2);
  f.i32Const(0).set(kk); // where the scalar loop starts: after what a SIMD path packed
  if (!bf16 && w % 4 === 0) {
    const full = (): void => { f.get(valid).i32Const(w).i32Eq(); };
    f.block(() => {
      full(); f.get(s1).i32Const(4).i32Eq().i32And().if(() => {
        // panel rows contiguous: W/4 vectors each depth step
        f.for(kk, () => f.i32Const(0), () => f.get(K), 1, () => {
          for (let c = 0; c < w / 4; c++) f.get(out).get(src).v128Load(16 * c).v128Store(16 * c);
          f.get(out).i32Const(4 * w).i32Add().set(out);
          f.get(src).get(s2).i32Add().set(src);
        });
        f.br(1);
      });
      full(); f.get(s2).i32Const(4).i32Eq().i32And().if(() => {
        // depth contiguous: 4 rows x 4 depths loaded, transposed in registers, stored as 4 depth steps
        const v = [0, 1, 2, 3].map(() => f.local('v128')), t = [0, 1, 2, 3].map(() => f.local('v128'));
        f.get(K).i32Const(-4).i32And().set(k4);
        f.for(kk, () => f.i32Const(0), () => f.get(k4), 4, () => {
          for (let g = 0; g < w / 4; g++) {
            f.get(src).get(s1).i32Const(4 * g).i32Mul().i32Add().set(rowSrc);
            for (let r = 0; r < 4; r++) { f.get(rowSrc).v128Load().set(v[r]!); if (r < 3) f.get(rowSrc).get(s1).i32Add().set(rowSrc); }
            f.get(v[0]!).get(v[1]!).i32x4Shuffle([0, 4, 1, 5]).set(t[0]!); // a0 b0 a1 b1
            f.get(v[0]!).get(v[1]!).i32x4Shuffle([2, 6, 3, 7]).set(t[1]!); // a2 b2 a3 b3
            f.get(v[2]!).get(v[3]!).i32x4Shuffle([0, 4, 1, 5]).set(t[2]!); // c0 d0 c1 d1
            f.get(v[2]!).get(v[3]!).i32x4Shuffle([2, 6, 3, 7]).set(t[3]!); // c2 d2 c3 d3
            for (let j = 0; j < 4; j++) {
              const lo = t[j >> 1]!, hi = t[2 + (j >> 1)]!;
              f.get(out).get(lo).get(hi).i32x4Shuffle(j % 2 === 0 ? [0, 1, 4, 5] : [2, 3, 6, 7]).v128Store(j * 4 * w + 16 * g);
            }
          }
          f.get(out).i32Const(16 * w).i32Add().set(out);
          f.get(src).i32Const(16).i32Add().set(src);
        });
      });
    });
  }
  f.for(kk, () => f.get(kk), () => f.get(K), 1, () => {
    f.get(src).set(rowSrc);
    f.for(i, () => f.i32Const(0), () => f.get(valid), 1, () => {
      if (bf16) f.get(out).get(rowSrc).i32Load16U().i32Const(16).i32Shl().f32ReinterpretI32().f32Store();
      else f.get(out).get(rowSrc).f32Load().f32Store();
      f.get(out).i32Const(4).i32Add().set(out);
      f.get(rowSrc).get(s1).i32Add().set(rowSrc);
    });
    f.for(i, () => f.get(valid), () => f.i32Const(w), 1, () => {
      f.get(out).f32Const(0).f32Store();
      f.get(out).i32Const(4).i32Add().set(out);
    });
    f.get(src).get(s2).i32Add().set(src);
  });
  return f;
}

/**
 * packGroup(task, args): tasks [task*G, task*G + G) of the pack kernel at function index
 * `packIndex` (args as its, then G and its task count at slots 9 and 10), one after another on
 * one thread. Adjacent panels of a matrix stored [K, len] share cache lines (a W = 4 panel
 * row is 16 bytes of a 64-byte line): one thread packing them in turn reads each line once,
 * where single-panel tasks alternating between threads made both cores fetch it.
 */
export function packGroupKernel(packIndex: number): Func {
  const f = new Func(['i32', 'i32'], []);
  const task = f.param(0), args = f.param(1);
  const g = f.local('i32'), total = f.local('i32'), i = f.local('i32'), end = f.local('i32');
  f.get(args).i32Load(36).set(g);
  f.get(args).i32Load(40).set(total);
  f.get(task).get(g).i32Mul().tee(i).get(g).i32Add().tee(end).get(total).get(end).get(total).i32LtS().select().set(end);
  f.for(i, () => f.get(i), () => f.get(end), 1, () => { f.get(i).get(args).call(packIndex); });
  return f;
}

/**
 * micro(ap, bp, kc, cp, ldcBytes, accumulate): C[MR x NR] (+)= Apanel[kc x MR] * Bpanel[kc x NR].
 * Accumulators live in MR*NR/4 v128 locals; each k step loads NR/4 vectors of B and
 * broadcasts MR scalars of A.
 */
export function microKernel(s: MatmulShape): Func {
  const { mr, nr, unroll, fma } = s;
  const nv = nr / 4;
  const f = new Func(['i32', 'i32', 'i32', 'i32', 'i32', 'i32'], []);
  const ap = f.param(0), bp = f.param(1), kc = f.param(2), cp = f.param(3), ldc = f.param(4), accum = f.param(5);
  const acc: Local[][] = [];
  for (let r = 0; r < mr; r++) { acc.push([]); for (let c = 0; c < nv; c++) acc[r]!.push(f.local('v128')); }
  const bv: Local[] = [];
  for (let c = 0; c < nv; c++) bv.push(f.local('v128'));
  const av = f.local('v128');
  const row = f.local('i32');

  f.get(accum).if(() => {
    f.get(cp).set(row);
    for (let r = 0; r < mr; r++) {
      for (let c = 0; c < nv; c++) f.get(row).v128Load(16 * c).set(acc[r]![c]!);
      f.get(row).get(ldc).i32Add().set(row);
    }
  }, () => {
    f.f32Const(0).f32x4Splat().set(acc[0]![0]!);
    for (let r = 0; r < mr; r++) for (let c = 0; c < nv; c++) if (r || c) f.get(acc[0]![0]!).set(acc[r]![c]!);
  });

  const step = (u: number): void => {
    for (let c = 0; c < nv; c++) f.get(bp).v128Load(16 * (c + u * nv)).set(bv[c]!);
    for (let r = 0; r < mr; r++) {
      f.get(ap).v128Load32Splat(4 * (r + u * mr)).set(av);
      for (let c = 0; c < nv; c++) {
        if (fma) f.get(av).get(bv[c]!).get(acc[r]![c]!).f32x4RelaxedMadd();
        else f.get(av).get(bv[c]!).f32x4Mul().get(acc[r]![c]!).f32x4Add();
        f.set(acc[r]![c]!);
      }
    }
  };
  // unrolled main loop while kc >= unroll, then the remainder one step at a time
  f.block(() => f.loop(() => {
    f.get(kc).i32Const(unroll).i32LtS().brIf(1);
    for (let u = 0; u < unroll; u++) step(u);
    f.get(ap).i32Const(4 * mr * unroll).i32Add().set(ap);
    f.get(bp).i32Const(4 * nr * unroll).i32Add().set(bp);
    f.get(kc).i32Const(unroll).i32Sub().set(kc);
    f.br(0);
  }));
  f.block(() => f.loop(() => {
    f.get(kc).i32Eqz().brIf(1);
    step(0);
    f.get(ap).i32Const(4 * mr).i32Add().set(ap);
    f.get(bp).i32Const(4 * nr).i32Add().set(bp);
    f.get(kc).i32Const(1).i32Sub().set(kc);
    f.br(0);
  }));

  f.get(cp).set(row);
  for (let r = 0; r < mr; r++) {
    for (let c = 0; c < nv; c++) f.get(row).get(acc[r]![c]!).v128Store(16 * c);
    f.get(row).get(ldc).i32Add().set(row);
  }
  return f;
}

/**
 * gemm(task, args): one (batch, tile row, tile col) task of C = packedA * packedB, where a tile
 * is MCP A-panels by NCP B-panels. k runs in KC slices, so each element of C is summed in the
 * same order whichever thread runs its tile.
 * args (i32): packA, packB, C, K, mPanels, nPanels, tilesM, tilesN, aBatchBytes, bBatchBytes,
 *             cBatchBytes, ldcBytes, mcp, ncp, mode, off, accumulate
 * With `accumulate` (mode 0 only) C += A B: the first slice adds to what C holds.
 *
 * `mode` skips work that causal attention masks (row i sees columns / depth j <= i + off):
 *   0 everything;
 *   1 skip micro-tiles whose columns are all masked (C there is left unwritten: S = q k^T);
 *   2 stop the depth at i + off (A is zero beyond: O = P v, dQ = dS k);
 *   3 start the depth at i - off (A is zero before: dV = P^T dO, dK = dS^T q).
 * Skipped products are exact zeros, so results equal mode 0's (bit for bit on kept elements).
 */
export function gemmKernel(s: MatmulShape, microIndex: number): Func {
  const { mr, nr, kc: KC } = s;
  const f = new Func(['i32', 'i32'], []);
  const task = f.param(0), args = f.param(1);
  const L = (): Local => f.local('i32');
  const pa = L(), pb = L(), C = L(), K = L(), mP = L(), nP = L(), tM = L(), tN = L(),
    aBB = L(), bBB = L(), cBB = L(), ldc = L(), mcp = L(), ncp = L(), mode = L(), off = L();
  const addC = L();
  [pa, pb, C, K, mP, nP, tM, tN, aBB, bBB, cBB, ldc, mcp, ncp, mode, off, addC].forEach((l, j) => f.get(args).i32Load(4 * j).set(l));
  const kcu = L(), accf = L(), t2 = L();
  const b = L(), t = L(), i0 = L(), i1 = L(), j0 = L(), j1 = L(), pc = L(), kc = L(), ir = L(), jr = L(), bp = L();
  // task -> (batch, tile i, tile j)
  f.get(tM).get(tN).i32Mul().set(t);
  f.get(task).get(t).i32DivS().set(b);
  f.get(task).get(t).i32RemS().set(t);
  f.get(t).get(tN).i32DivS().get(mcp).i32Mul().set(i0);
  f.get(t).get(tN).i32RemS().get(ncp).i32Mul().set(j0);
  f.get(i0).get(mcp).i32Add().tee(i1).get(mP).get(i1).get(mP).i32LtS().select().set(i1);
  f.get(j0).get(ncp).i32Add().tee(j1).get(nP).get(j1).get(nP).i32LtS().select().set(j1);
  f.get(pa).get(b).get(aBB).i32Mul().i32Add().set(pa);
  f.get(pb).get(b).get(bBB).i32Mul().i32Add().set(pb);
  f.get(C).get(b).get(cBB).i32Mul().i32Add().set(C);
  f.for(pc, () => f.i32Const(0), () => f.get(K), KC, () => {
    f.get(K).get(pc).i32Sub().tee(kc).i32Const(KC).get(kc).i32Const(KC).i32LtS().select().set(kc);
    f.for(jr, () => f.get(j0), () => f.get(j1), 1, () => {
      // B micro-panel jr, slice pc: pb + (jr*K + pc) * NR floats
      f.get(pb).get(jr).get(K).i32Mul().get(pc).i32Add().i32Const(nr * 4).i32Mul().i32Add().set(bp);
      f.for(ir, () => f.get(i0), () => f.get(i1), 1, () => f.block(() => { // br 0 / brIf(1) in an if: skip this micro-tile
        f.get(kc).set(kcu);
        f.get(pc).get(addC).i32Or().set(accf); // accumulate unless this is the first slice (of a fresh C)
        f.get(mode).i32Const(1).i32Eq().if(() => {
          // first column > last row + off: all masked
          f.get(jr).i32Const(nr).i32Mul().get(ir).i32Const(mr).i32Mul().i32Const(mr - 1).i32Add().get(off).i32Add().i32GtS().brIf(1);
        });
        f.get(mode).i32Const(2).i32Eq().if(() => {
          // depth limit of this row panel: last row + off + 1
          f.get(ir).i32Const(mr).i32Mul().i32Const(mr).i32Add().get(off).i32Add().get(pc).i32Sub().tee(t2).i32Const(0).i32LeS().brIf(1);
          f.get(t2).get(kcu).get(t2).get(kcu).i32LtS().select().set(kcu);
        });
        f.get(mode).i32Const(3).i32Eq().if(() => {
          // depth start of this row panel: first row - off; slices wholly before it are zero
          f.get(ir).i32Const(mr).i32Mul().get(off).i32Sub().set(t2);
          f.get(pc).get(kc).i32Add().get(t2).i32LeS().brIf(1);
          f.get(t2).i32Const(0).get(t2).i32Const(0).i32GtS().select().tee(t2).get(t2).i32Const(KC).i32RemS().i32Sub().set(t2);
          f.get(pc).get(t2).i32GtS().set(accf); // the first executed slice stores
        });
        f.get(pa).get(ir).get(K).i32Mul().get(pc).i32Add().i32Const(mr * 4).i32Mul().i32Add(); // ap
        f.get(bp);
        f.get(kcu);
        f.get(C).get(ir).i32Const(mr).i32Mul().get(ldc).i32Mul().i32Add()
          .get(jr).i32Const(nr * 4).i32Mul().i32Add(); // cp
        f.get(ldc);
        f.get(accf);
        f.call(microIndex);
      }));
    });
  });
  return f;
}
