// Tunes the wasm matmul register blocking: GFLOP/s of 1024^3 (and a check against float64)
// for several MR x NR / unroll / KC choices. Run: npx vite-node bench/wasm-tune.ts
import { buildModule, fmaAvailable } from '../src/tensor/backends/wasm/module.js';
import { WasmRuntime } from '../src/tensor/backends/wasm/runtime.js';
import { wasmMatmul } from '../src/tensor/backends/wasm/matmul.js';
import type { MatmulShape } from '../src/tensor/backends/wasm/matmul-kernels.js';

const n = Number(process.env.N ?? 1024);
const threads = Number(process.env.T ?? 1);
const a = new Float32Array(n * n).map(() => Math.random() - 0.5);
const b = new Float32Array(n * n).map(() => Math.random() - 0.5);
console.log('relaxed simd (fma):', fmaAvailable());
const shapes: MatmulShape[] = (process.env.SHAPES ?? '4x8u1f,4x8u1,3x12u1f,2x16u1f,6x8u1f,4x12u1f,4x8u2f,4x16u2f,4x16u2')
  .split(',').map((s) => {
    // 4x16u2 (mul + add) or 4x16u2f (relaxed SIMD's fused multiply-add)
    const [mr, nr, u] = s.replace(/f$/, '').split(/[xu]/).map(Number);
    return { mr: mr!, nr: nr!, unroll: u!, kc: Number(process.env.KC ?? 256), fma: s.endsWith('f') };
  });
// every shape compiled first, then timed in interleaved rounds (best of all), so a noisy
// neighbour on a shared machine slows each shape alike rather than whichever ran then
const runs = shapes.map((shape) => {
  const km = buildModule(shape);
  const rt = new WasmRuntime(km.module, km.names, threads);
  const p = { batch: 1, m: n, n, k: n, transA: false, transB: false, aBatchStride: 0, bBatchStride: 0 };
  const out = wasmMatmul(rt, shape, a, b, p);
  // spot-check a few entries in float64
  let maxErr = 0;
  for (let t = 0; t < 20; t++) {
    const i = (t * 7919) % n, j = (t * 104729) % n;
    let s = 0; for (let kk = 0; kk < n; kk++) s += a[i * n + kk]! * b[kk * n + j]!;
    maxErr = Math.max(maxErr, Math.abs(s - out[i * n + j]!));
  }
  return { shape, rt, p, out, maxErr, best: Infinity };
});
for (let round = 0; round < Number(process.env.ROUNDS ?? 5); round++) {
  for (const r of runs) {
    for (let i = 0; i < 3; i++) {
      const t0 = performance.now(); wasmMatmul(r.rt, r.shape, a, b, r.p, r.out); r.best = Math.min(r.best, performance.now() - t0);
    }
  }
}
for (const { shape, rt, best, maxErr } of runs) {
  console.log(`${shape.mr}x${shape.nr} u${shape.unroll}${shape.fma ? ' fma' : ''} kc${shape.kc} threads ${threads}: ${(2 * n ** 3 / best / 1e6).toFixed(1)} GFLOP/s (${best.toFixed(1)} ms), max err ${maxErr.toExponential(2)}`);
  rt.terminate();
}
