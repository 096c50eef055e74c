// What one core can do in WebAssembly SIMD here, and how near the matmul micro-kernels get:
// (1) the register-only peak: independent f32x4 multiply-adds with no memory operands;
// (2) each micro-kernel shape alone on L1-resident packed panels (no packing, no cache misses).
// (2) far below (1) means the shape spills registers (see module.ts's DEFAULT_SHAPE).
// Run: npx vite-node bench/wasm-peak.ts   (SHAPES=4x8u1f,4x16u2 to choose; f = fused multiply-add)
import { emitModule, Func } from '../src/tensor/backends/wasm/emit.js';
import { buildModule, fmaAvailable } from '../src/tensor/backends/wasm/module.js';

const fma = fmaAvailable();
const instance = (bytes: Uint8Array | number[], memory: WebAssembly.Memory): WebAssembly.Instance =>
  new WebAssembly.Instance(new WebAssembly.Module(Uint8Array.from(bytes) as BufferSource), { env: { memory } });

for (const useFma of fma ? [false, true] : [false]) {
  const f = new Func(['i32'], ['f32']);
  const n = f.param(0);
  const acc = Array.from({ length: 12 }, () => f.local('v128'));
  const x = f.local('v128'), y = f.local('v128');
  f.f32Const(1.0000001).f32x4Splat().set(x); f.f32Const(0.9999999).f32x4Splat().set(y);
  for (const a of acc) f.f32Const(0).f32x4Splat().set(a);
  f.block(() => f.loop(() => {
    f.get(n).i32Eqz().brIf(1);
    for (let u = 0; u < 4; u++) {
      for (const a of acc) {
        if (useFma) f.get(x).get(y).get(a).f32x4RelaxedMadd(); else f.get(x).get(y).f32x4Mul().get(a).f32x4Add();
        f.set(a);
      }
    }
    f.get(n).i32Const(1).i32Sub().set(n).br(0);
  }));
  f.get(acc[0]!); for (const a of acc.slice(1)) f.get(a).f32x4Add();
  f.f32x4ExtractLane(0);
  const memory = new WebAssembly.Memory({ initial: 1, maximum: 1 });
  const run = instance(emitModule({ memory: { initial: 1, maximum: 1, shared: false }, funcs: [{ name: 'f', func: f }] }), memory).exports.f as (n: number) => number;
  run(1000);
  const iters = 2e6;
  let best = Infinity;
  for (let r = 0; r < 7; r++) { const t0 = performance.now(); run(iters); best = Math.min(best, performance.now() - t0); }
  console.log(`register-only peak, ${useFma ? 'fma' : 'mul+add'}, 12 accumulators: ${(iters * 4 * 12 * 8 / best / 1e6).toFixed(1)} GFLOP/s on one core`);
}

const shapes = (process.env.SHAPES ?? '4x8u1f,3x12u1f,2x16u1f,4x8u1,6x8u1f,4x12u1f,4x16u2f,4x16u2').split(',');
for (const s of shapes) {
  const [mr, nr, u] = s.replace(/f$/, '').split(/[xu]/).map(Number) as [number, number, number];
  const shape = { mr, nr, unroll: u, kc: 256, fma: s.endsWith('f') && fma };
  const memory = new WebAssembly.Memory({ initial: 256, maximum: 65536 });
  const km = buildModule(shape, false);
  const inst = new WebAssembly.Instance(km.module, { env: { memory } });
  new Float32Array(memory.buffer, 0, 200_000).forEach((_, i, a) => { a[i] = Math.random(); });
  const micro = inst.exports.micro as (ap: number, bp: number, kc: number, cp: number, ldc: number, acc: number) => void;
  const calls = 20_000;
  let best = Infinity;
  for (let r = 0; r < 5; r++) {
    const t0 = performance.now();
    for (let i = 0; i < calls; i++) micro(0, 65536, 256, 524288, 256, 1);
    best = Math.min(best, performance.now() - t0);
  }
  console.log(`micro-kernel ${s.padEnd(7)} alone on L1-resident panels: ${(2 * mr * nr * 256 * calls / best / 1e6).toFixed(1)} GFLOP/s on one core`);
}
