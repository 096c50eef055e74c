// Choosing the compute backend for a run: 'auto' (wasm SIMD where available, else js),
// 'js', 'wasm', or 'gpu' (loaded only when asked for, so CPU runs never import gpu.js);
// 'gpu-swiftshader' is the gpu backend on Chromium's software Vulkan driver, an explicit
// opt-in for machines without a GPU (slow; never chosen for you).

import { setBackend, type Backend } from '../tensor/backend.js';
import { createWasmBackend, wasmSimdAvailable } from '../tensor/backends/wasm/index.js';

export const BACKENDS = ['auto', 'js', 'wasm', 'gpu', 'gpu-swiftshader'] as const;

/** Select the backend `name`; `gpu`, for the gpu backends: use only that GPU of the machine (its index). */
export async function useBackend(name: string, threads?: number, gpu?: number): Promise<Backend> {
  switch (name) {
    case 'auto':
      if (!wasmSimdAvailable()) {
        console.warn('WebAssembly SIMD is missing here: using the (slow) js backend');
        return setBackend('js');
      }
      return setBackend(createWasmBackend({ threads }));
    case 'js':
      return setBackend('js');
    case 'wasm':
      return setBackend(createWasmBackend({ threads }));
    case 'gpu':
    case 'gpu-swiftshader': {
      const { initGpuBackend } = await import('../tensor/backends/gpu/index.js');
      return setBackend(await initGpuBackend({ adapter: name === 'gpu' ? 'system' : 'swiftshader', ...(gpu !== undefined ? { gpu } : {}) }));
    }
    default:
      throw new Error(`--backend ${name}: unknown backend; choose one of ${BACKENDS.join(', ')}`);
  }
}
