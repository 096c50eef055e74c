// Choosing the compute backend for a run: 'auto' (wasm SIMD where available, else js),
// 'js', 'wasm', or 'gpu' (loaded only when asked for, so CPU runs never import gpu.js).

import { setBackend, type Backend } from '../tensor/backend.js';
import { createWasmBackend, wasmSimdAvailable } from '../tensor/backends/wasm/index.js';

export const BACKENDS = ['auto', 'js', 'wasm', 'gpu'] as const;

export async function useBackend(name: string, threads?: number): Promise<Backend> {
  switch (name) {
    case 'auto':
      if (!wasmSimdAvailable()) {
        console.warn('WebAssembly SIMD or SharedArrayBuffer is missing here: using the (slow) js backend');
        return setBackend('js');
      }
      return setBackend(createWasmBackend({ threads }));
    case 'js':
      return setBackend('js');
    case 'wasm':
      return setBackend(createWasmBackend({ threads }));
    case 'gpu': {
      const { initGpuBackend } = await import('../tensor/backends/gpu/index.js');
      return setBackend(await initGpuBackend());
    }
    default:
      throw new Error(`--backend ${name}: unknown backend; choose one of ${BACKENDS.join(', ')}`);
  }
}
