// Choosing the compute backend for a run: 'auto' (wasm SIMD where available, else js),
// 'js', 'wasm', or 'gpu' (loaded only when asked for, so CPU runs never import gpu.js);
// 'gpu-swiftshader' is the gpu backend on Chromium's software Vulkan driver, an explicit
// opt-in for machines without a GPU (slow; never chosen for you). And which GPU a rank opens.

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

/**
 * The GPU of this machine a rank uses: number LOCAL_RANK of the visible ones (--gpus, else
 * $TAPEGRAD_VISIBLE_GPUS, as CUDA_VISIBLE_DEVICES, which Vulkan ignores; else all). One process
 * alone keeps the system's choice unless GPUs are named.
 */
export function rankGpu(gpus: readonly number[] | undefined, localRank: number, localWorldSize: number): number | undefined {
  const env = process.env['TAPEGRAD_VISIBLE_GPUS'];
  let visible = gpus;
  if (!visible && env) {
    visible = env.split(',').map((x) => x.trim()).filter(Boolean).map(Number);
    if (visible.some((g) => !Number.isInteger(g) || g < 0)) throw new Error(`TAPEGRAD_VISIBLE_GPUS=${env}: expected GPU indices like 0,2,3`);
  }
  if (!visible) return localWorldSize > 1 ? localRank : undefined;
  const g = visible[localRank];
  if (g === undefined) {
    throw new Error(`${gpus ? `--gpus ${gpus.join(',')}` : `TAPEGRAD_VISIBLE_GPUS=${env}`} names ${visible.length} GPU${visible.length === 1 ? '' : 's'} ` +
      `for ${localWorldSize} rank${localWorldSize === 1 ? '' : 's'} on this machine: name one per rank (or fewer ranks with --nproc-per-node)`);
  }
  return g;
}
