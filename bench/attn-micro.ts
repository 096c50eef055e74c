// Times the fused attention kernels against a plain matmul of the same shape: where does
// attention's time go? Run: npx vite-node bench/attn-micro.ts
import { createWasmBackend } from '../src/tensor/backends/wasm/index.js';

const w = createWasmBackend({ threads: 2 });
const [bh, t, d] = [Number(process.env.BH ?? 12), Number(process.env.T ?? 1024), 64];
const rnd = (n: number): Float32Array => Float32Array.from({ length: n }, () => Math.random() - 0.5);
const q = w.fromHost(rnd(bh * t * d), 'float32'), k = w.fromHost(rnd(bh * t * d), 'float32'), v = w.fromHost(rnd(bh * t * d), 'float32');
const time = (name: string, flops: number, f: () => void): void => {
  f();
  let best = Infinity;
  for (let i = 0; i < 3; i++) { const t0 = performance.now(); f(); best = Math.min(best, performance.now() - t0); }
  console.log(`${name.padEnd(28)} ${best.toFixed(1)} ms  ${(flops / best / 1e6).toFixed(1)} GFLOP/s`);
};
const qk = 2 * bh * t * t * d;
time('matmul 1024^3', 2 * 1024 ** 3, () => w.matmul(w.fromHost(rnd(1024 * 1024), 'float32'), w.fromHost(rnd(1024 * 1024), 'float32'),
  { batch: 1, m: 1024, n: 1024, k: 1024, transA: false, transB: false, aBatchStride: 0, bBatchStride: 0 }));
time('q k^T (batched matmul)', qk, () => w.matmul(q, k, { batch: bh, m: t, n: t, k: d, transA: false, transB: true, aBatchStride: t * d, bBatchStride: t * d }));
const { o, lse } = w.fused.attention!(q, k, v, bh, t, t, d, 0.125, true);
time('attention fwd', 2 * qk, () => w.fused.attention!(q, k, v, bh, t, t, d, 0.125, true));
time('attention bwd', 4 * qk, () => w.fused.attentionBackward!(q, k, v, o, lse, o, bh, t, t, d, 0.125, true));
w.terminate();
