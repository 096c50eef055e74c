// Assembles the kernel module (matmul + row/elementwise kernels) from the generators, and
// compiles it once per configuration. Every export has the (task, args) -> () signature.

import { emitModule, Func } from './emit.js';
import { gemmKernel, microKernel, packGroupKernel, packKernel, type MatmulShape } from './matmul-kernels.js';
import { rowKernels } from './row-kernels.js';
import { elementwiseKernels } from './elementwise-kernels.js';
import { convertKernels } from './convert-kernels.js';
import { nodeBuiltin } from './threads.js';

/**
 * The register/cache blocking, chosen with bench/wasm-tune.ts on the 2-core Zen 3 VM. What
 * decides it is V8's register allocation: it issues all of a k step's loads (NR/4 vectors of B,
 * MR broadcasts of A) before the step's multiply-adds, so loads + accumulators must fit the 16
 * xmm registers or accumulators spill to the stack each step. 4x8 (6 loads + 8 accumulators,
 * no unroll) fits: alone on L1-resident panels it runs at 48 GFLOP/s on one core (with FMA),
 * the core's measured peak, where 4x16 unroll 2 (32 live vectors) ran at 26. 1024^3 on 2
 * threads, one run: 72.7 GFLOP/s, against 43.0 for 4x16 unroll 2 and 52.4 for 4x8 with mul+add;
 * 3x12 and 2x16 (which also fit) were equal, 6x8, 4x12 and 4x8 unroll 2 spill (~41).
 * KC 512 (a 16 KB B micro-panel and an 8 KB A panel in L1) halves the C loads and stores and
 * the calls per product against 256: GPT 6/6/384 step on the 2-core Xeon, 5 interleaved pairs,
 * 2940 -> 2880 ms mean. The k order of every sum is the same for any KC (each slice resumes
 * from C as stored), so results do not change.
 */
export const DEFAULT_SHAPE: MatmulShape = { mr: 4, nr: 8, kc: 512, unroll: 1, fma: true };

let relaxed: boolean | null = null;
/**
 * Can the micro-kernels use relaxed SIMD's fused multiply-add? Newer engines (Node >= 22, Chrome
 * >= 114) have it on; Node 20's V8 ships it behind --experimental-wasm-relaxed-simd, which is set
 * here (process-wide, so worker threads see it too) before the first module is compiled.
 */
export function fmaAvailable(): boolean {
  if (relaxed !== null) return relaxed;
  relaxed = relaxedSimdAvailable();
  const v8 = relaxed ? null : nodeBuiltin<{ setFlagsFromString(flags: string): void }>('node:v8');
  if (v8) {
    v8.setFlagsFromString('--experimental-wasm-relaxed-simd');
    relaxed = relaxedSimdAvailable();
  }
  return relaxed;
}

/** The matmul shape a backend uses: DEFAULT_SHAPE, with FMA unless refused or the engine lacks it. */
export function matmulShape(fma: boolean): MatmulShape {
  return { ...DEFAULT_SHAPE, fma: fma && fmaAvailable() };
}

export interface KernelModule {
  module: WebAssembly.Module;
  /** Exported kernel names, in dispatch-index order. */
  names: string[];
  shape: MatmulShape;
}

/** Does this engine validate relaxed-simd's f32x4.relaxed_madd? */
export function relaxedSimdAvailable(): boolean {
  const f = new Func([], ['v128']);
  f.f32Const(1).f32x4Splat().f32Const(2).f32x4Splat().f32Const(3).f32x4Splat().f32x4RelaxedMadd();
  try {
    return WebAssembly.validate(emitModule({ memory: { initial: 1, maximum: 1, shared: false }, funcs: [{ name: 'f', func: f }] }) as BufferSource);
  } catch { return false; }
}

/** `shared`: import the memory as shared (threads) or not (one thread, no SharedArrayBuffer needed); the shape is the backend's by default. */
export function buildModule(shape: MatmulShape = matmulShape(true), shared = true): KernelModule {
  if (shape.nr % 4 !== 0) throw new Error(`wasm matmul: nr=${shape.nr} must be a multiple of 4`);
  const funcs: { name: string; func: Func }[] = [];
  // a function's index is its place in funcs: gemm calls the micro-kernel by it, the group
  // kernels call packA and packB
  const add = (name: string, func: Func): number => funcs.push({ name, func }) - 1;
  add('gemm', gemmKernel(shape, add('micro', microKernel(shape))));
  const packA = add('packA', packKernel(shape.mr)), packB = add('packB', packKernel(shape.nr));
  add('packA16', packKernel(shape.mr, true));
  add('packB16', packKernel(shape.nr, true));
  add('packAGroup', packGroupKernel(packA));
  add('packBGroup', packGroupKernel(packB));
  for (const [name, func] of Object.entries({ ...rowKernels(), ...elementwiseKernels() })) funcs.push({ name, func });
  for (const [name, func] of Object.entries(convertKernels())) funcs.push({ name, func });
  const bytes = emitModule({ memory: { initial: 256, maximum: 65536, shared }, funcs });
  const module = new WebAssembly.Module(bytes as BufferSource);
  return { module, names: funcs.map((x) => x.name), shape };
}
