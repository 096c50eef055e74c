// Feature detection: WebAssembly SIMD, probed by compiling and running a two-lane add (the wasm
// backend needs it; threads also need shared memory, see threads.ts).

import { emitModule, Func } from './emit.js';

/** Synchronous check: WebAssembly SIMD works here. */
export function wasmSimdAvailable(): boolean {
  try {
    const f = new Func([], ['f32']);
    f.f32Const(1).f32x4Splat().f32Const(2).f32x4Splat().f32x4Add().f32x4ExtractLane(0);
    const bytes = emitModule({ memory: { initial: 1, maximum: 1, shared: false }, funcs: [{ name: 'f', func: f }] });
    const mod = new WebAssembly.Module(bytes as BufferSource);
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 1 });
    const inst = new WebAssembly.Instance(mod, { env: { memory } });
    return (inst.exports.f as () => number)() === 3;
  } catch {
    return false;
  }
}
