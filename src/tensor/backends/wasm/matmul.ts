// Host side of matmul: copy operands into wasm memory, pack panels (parallel), run the tiled
// gemm (parallel), copy C back. Tile sizes only change scheduling, never the summation order.

import type { MatmulParams } from '../../backend.js';
import type { MatmulShape } from './matmul-kernels.js';
import type { WasmRuntime } from './pool.js';

/** Where gemmPtr left C: batch matrices of (row-padded) height `rows`, row stride `ldc` elements. */
export interface GemmOut { c: number; ldc: number; cBatch: number }

/**
 * C = op(A) op(B) on operands already in wasm memory (element offsets via the batch strides);
 * C is allocated in the arena, rows padded to MR and columns to NR.
 */
export function gemmPtr(rt: WasmRuntime, shape: MatmulShape, aPtr: number, bPtr: number, p: MatmulParams): GemmOut {
  const { batch, m, n, k, transA, transB, aBatchStride, bBatchStride } = p;
  const { mr, nr } = shape;
  const mP = Math.ceil(m / mr), nP = Math.ceil(n / nr);
  const ldc = nP * nr, cBatch = mP * mr * ldc;
  const C = rt.alloc(batch * cBatch * 4);
  if (batch === 0 || m === 0 || n === 0) return { c: C, ldc, cBatch };
  if (k === 0) { rt.f32(C, batch * cBatch).fill(0); return { c: C, ldc, cBatch }; }
  const aBatches = aBatchStride === 0 ? 1 : batch, bBatches = bBatchStride === 0 ? 1 : batch;
  const aPanelBytes = mP * k * mr * 4, bPanelBytes = nP * k * nr * 4;
  const mark = rt.mark();
  const packA = rt.alloc(aBatches * aPanelBytes);
  const packB = rt.alloc(bBatches * bPanelBytes);
  // A element (row i, depth kk): [m,k] -> i*k + kk ; transposed [k,m] -> kk*m + i
  rt.run('packA', aBatches * mP, rt.args([aPtr, m, k, transA ? 1 : k, transA ? m : 1, aBatchStride, mP, packA]));
  // B element (col j, depth kk): [k,n] -> kk*n + j ; transposed [n,k] -> j*k + kk
  rt.run('packB', bBatches * nP, rt.args([bPtr, n, k, transB ? k : 1, transB ? 1 : n, bBatchStride, nP, packB]));
  // tiles of ~128 x 256; halve the tile while there are too few tasks to share
  let mcp = Math.max(1, Math.round(128 / mr)), ncp = Math.max(1, Math.round(256 / nr));
  const tasks = (): number => batch * Math.ceil(mP / mcp) * Math.ceil(nP / ncp);
  while (tasks() < 4 * rt.threads && (mcp > 1 || ncp > 1)) {
    if (mcp > 1) mcp = Math.ceil(mcp / 2); else ncp = Math.ceil(ncp / 2);
  }
  const tM = Math.ceil(mP / mcp), tN = Math.ceil(nP / ncp);
  rt.run('gemm', batch * tM * tN, rt.args([packA, packB, C, k, mP, nP, tM, tN,
    aBatches === 1 ? 0 : aPanelBytes, bBatches === 1 ? 0 : bPanelBytes, cBatch * 4, ldc * 4, mcp, ncp]));
  rt.release(mark); // the packed panels; C stays
  return { c: C, ldc, cBatch };
}

/** Copy a padded C into a dense [batch, m, n] host array. */
export function readC(rt: WasmRuntime, g: GemmOut, batch: number, m: number, n: number,
  out: Float32Array = new Float32Array(batch * m * n)): Float32Array {
  const c = rt.f32(g.c, batch * g.cBatch);
  for (let bi = 0; bi < batch; bi++) {
    const base = bi * g.cBatch;
    if (g.ldc === n) out.set(c.subarray(base, base + m * n), bi * m * n);
    else for (let i = 0; i < m; i++) out.set(c.subarray(base + i * g.ldc, base + i * g.ldc + n), (bi * m + i) * n);
  }
  return out;
}

/** out = op(a) op(b) for host arrays: copy in, gemm, copy out. */
export function wasmMatmul(rt: WasmRuntime, shape: MatmulShape, a: Float32Array, b: Float32Array,
  p: MatmulParams, out: Float32Array = new Float32Array(p.batch * p.m * p.n)): Float32Array {
  const mark = rt.mark();
  try {
    const aPtr = rt.alloc(a.length * 4); rt.f32(aPtr, a.length).set(a);
    const bPtr = rt.alloc(b.length * 4); rt.f32(bPtr, b.length).set(b);
    return readC(rt, gemmPtr(rt, shape, aPtr, bPtr, p), p.batch, p.m, p.n, out);
  } finally {
    rt.release(mark);
  }
}
