// Part of bench/gpu-check.ts: indexing past 2^24 elements, where an f32 index (what gpu.js
// gives named kernel variables) would silently read the wrong element. Returns mismatches.

import type { Backend, Storage } from '../src/tensor/backend.js';

/**
 * Indexing past 2^24 elements, where an f32 index would go wrong (kernels.ts): elementwise,
 * broadcast, slice, reduce, gather and pick on a 25M-element tensor, values checked at
 * sampled positions (mostly near the end) against the host.
 */
export async function largeIndexCheck(gpu: Backend): Promise<string[]> {
  const R = 8192, C = 3072, n = R * C;
  const a = Float32Array.from({ length: n }, (_, i) => i % 65521); // exact in f32, position-dependent
  const bias = Float32Array.from({ length: C }, (_, j) => j * 0.5);
  const A = gpu.fromHost(a, 'float32'), Bs = gpu.fromHost(bias, 'float32');
  const samples = [0, 1, C + 5, n - 1, n - C, n - 2 * C + 17, 2 ** 24 + 3, 2 ** 24 + 1, 2 ** 24 - 1, 20_000_011];
  const bad: string[] = [];
  const check = async (what: string, s: Storage, want: (i: number) => number, at: number[] = samples): Promise<void> => {
    const v = await gpu.read(s);
    for (const i of at) if (Math.abs(v[i]! - want(i)) > 1e-3 * Math.max(1, Math.abs(want(i)))) { bad.push(`${what} [${i}]: ${v[i]} != ${want(i)}`); break; }
    gpu.dispose(s);
  };
  await check('unary neg', gpu.unary('neg', A), (i) => -a[i]!);
  await check('bias add', gpu.binary('add', A, [R, C], Bs, [C], [R, C]), (i) => a[i]! + bias[i % C]!);
  const w = 1024;
  await check('column slice', gpu.strided(A, [R, w], [C, 1], 1024), (i) => a[Math.floor(i / w) * C + 1024 + (i % w)]!,
    [0, w * R - 1, w * (R - 3) + 7, 16_000_000 + 5].filter((i) => i < w * R));
  const cols = [0, 17, C - 1];
  const colSum = (c: number): number => { let t = 0; for (let r = 0; r < R; r++) t += a[r * C + c]!; return t; };
  await check('reduce over rows', gpu.reduce('sum', A, 1, R, C), colSum, cols);
  const idx = Int32Array.of(R - 1, 5000, 7, R - 2);
  await check('gatherRows', gpu.gatherRows(A, C, gpu.fromHost(idx, 'int32'), idx.length), (i) => a[idx[Math.floor(i / C)]! * C + (i % C)]!,
    [0, C - 1, C * 3 + 100, 4 * C - 1]);
  const pick = Int32Array.from({ length: R }, (_, r) => (r * 31) % C);
  await check('pickLast', gpu.pickLast(A, R, C, gpu.fromHost(pick, 'int32')), (r) => a[r * C + pick[r]!]!, [0, R - 1, R - 2, 6000]);
  gpu.dispose(A); gpu.dispose(Bs);
  return bad;
}

