// Host side of matmul: copy operands into wasm memory, pack panels (parallel), run the tiled
// gemm (parallel), copy C back. Tile sizes only change scheduling, never the summation order.

import type { MatmulParams } from '../../backend.js';
import type { MatmulShape } from './matmul-kernels.js';
import type { WasmRuntime } from './pool.js';

export function wasmMatmul(rt: WasmRuntime, shape: MatmulShape, a: Float32Array, b: Float32Array,
  p: MatmulParams, out: Float32Array = new Float32Array(p.batch * p.m * p.n)): Float32Array {
  const { batch, m, n, k, transA, transB, aBatchStride, bBatchStride } = p;
  const { mr, nr } = shape;
  if (batch === 0 || m === 0 || n === 0) return out;
  if (k === 0) { out.fill(0); return out; }
  const mP = Math.ceil(m / mr), nP = Math.ceil(n / nr);
  const aBatches = aBatchStride === 0 ? 1 : batch, bBatches = bBatchStride === 0 ? 1 : batch;
  const mark = rt.mark();
  try {
    const aPtr = rt.alloc(a.length * 4); rt.f32(aPtr, a.length).set(a);
    const bPtr = rt.alloc(b.length * 4); rt.f32(bPtr, b.length).set(b);
    const aPanelBytes = mP * k * mr * 4, bPanelBytes = nP * k * nr * 4;
    const packA = rt.alloc(aBatches * aPanelBytes);
    const packB = rt.alloc(bBatches * bPanelBytes);
    const ldc = nP * nr, cBatch = mP * mr * ldc;
    const C = rt.alloc(batch * cBatch * 4);
    // A element (row i, depth kk): [m,k] -> i*k + kk ; transposed [k,m] -> kk*m + i
    rt.run('packA', aBatches * mP, rt.args([aPtr, m, k, transA ? 1 : k, transA ? m : 1, aBatchStride, mP, packA]));
    // B element (col j, depth kk): [k,n] -> kk*n + j ; transposed [n,k] -> j*k + kk
    rt.run('packB', bBatches * nP, rt.args([bPtr, n, k, transB ? k : 1, transB ? 1 : n, bBatchStride, nP, packB]));
    // tiles of ~128 x 256; halve the row tile while there are too few tasks to share
    let mcp = Math.max(1, Math.round(128 / mr)), ncp = Math.max(1, Math.round(256 / nr));
    const tasks = (): number => batch * Math.ceil(mP / mcp) * Math.ceil(nP / ncp);
    while (tasks() < 4 * rt.threads && (mcp > 1 || ncp > 1)) {
      if (mcp > 1) mcp = Math.ceil(mcp / 2); else ncp = Math.ceil(ncp / 2);
    }
    const tM = Math.ceil(mP / mcp), tN = Math.ceil(nP / ncp);
    rt.run('gemm', batch * tM * tN, rt.args([packA, packB, C, k, mP, nP, tM, tN,
      aBatches === 1 ? 0 : aPanelBytes, bBatches === 1 ? 0 : bPanelBytes, cBatch * 4, ldc * 4, mcp, ncp]));
    const c = rt.f32(C, batch * cBatch);
    for (let bi = 0; bi < batch; bi++) {
      if (ldc === n) out.set(c.subarray(bi * cBatch, bi * cBatch + m * n), bi * m * n);
      else for (let i = 0; i < m; i++) out.set(c.subarray(bi * cBatch + i * ldc, bi * cBatch + i * ldc + n), (bi * m + i) * n);
    }
    return out;
  } finally {
    rt.release(mark);
  }
}
