// The wasm backend's entry: createWasmBackend, the SIMD probe, and registration as 'wasm'.

import { registerBackend } from '../../backend.js';
import { WasmBackend, type WasmBackendOptions } from './wasm-backend.js';

export { WasmBackend, type WasmBackendOptions } from './wasm-backend.js';
export { wasmSimdAvailable } from './simd.js';

export function createWasmBackend(opts: WasmBackendOptions = {}): WasmBackend {
  return new WasmBackend(opts);
}

// importing this module makes getBackendByName('wasm') work (default threads); where SIMD or
// shared memory is missing the factory throws with the fallback advice
registerBackend('wasm', () => createWasmBackend());
