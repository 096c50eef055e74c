// Times the flash-style attention kernels (attention.ts) against a plain matmul of the same
// shape, for several key-block sizes, with the wasm memory each needs: where does attention's
// time go, and which block size pays? Run: npx vite-node bench/attn-micro.ts
import { createWasmBackend } from '../src/tensor/backends/wasm/index.js';
import { flashAttention, KEY_BLOCK } from '../src/tensor/backends/wasm/attention.js';

const [bh, t, d] = [Number(process.env.BH ?? 12), Number(process.env.T ?? 1024), 64];
const rnd = (n: number): Float32Array => Float32Array.from({ length: n }, () => Math.random() - 0.5);
const time = (name: string, flops: number, f: () => void): void => {
  f();
  let best = Infinity;
  for (let i = 0; i < 3; i++) { const t0 = performance.now(); f(); best = Math.min(best, performance.now() - t0); }
  console.log(`${name.padEnd(34)} ${best.toFixed(1).padStart(7)} ms  ${(flops / best / 1e6).toFixed(1)} GFLOP/s (causal work counted in full)`);
};
const qk = 2 * bh * t * t * d;
const base = createWasmBackend({ threads: 2 });
const q = base.fromHost(rnd(bh * t * d), 'float32'), k = base.fromHost(rnd(bh * t * d), 'float32'), v = base.fromHost(rnd(bh * t * d), 'float32');
time('q k^T (one batched matmul)', qk, () => base.matmul(q, k, { batch: bh, m: t, n: t, k: d, transA: false, transB: true, aBatchStride: t * d, bBatchStride: t * d }));
base.terminate();
for (const kb of [128, 256, 512, t]) {
  // a fresh backend each, so its wasm memory high-water mark is this block size's alone
  const w = createWasmBackend({ threads: 2 });
  const [Q, K, V] = [q, k, v].map((x) => w.fromHost(base.readSync(x) as Float32Array, 'float32')) as [typeof q, typeof q, typeof q];
  const attn = flashAttention(w, kb);
  const { o, lse } = attn.attention(Q, K, V, bh, t, t, d, 0.125, true);
  const tag = `keys/block ${kb}${kb === KEY_BLOCK ? ' (default)' : ''}`;
  time(`attention fwd, ${tag}`, 2 * qk, () => attn.attention(Q, K, V, bh, t, t, d, 0.125, true));
  time(`attention bwd, ${tag}`, 4 * qk, () => attn.attentionBackward(Q, K, V, o, lse, o, bh, t, t, d, 0.125, true));
  console.log(`  wasm memory high-water ${(w.memoryStats().wasmBytes / 2 ** 20).toFixed(0)} MB`);
  w.terminate();
}
