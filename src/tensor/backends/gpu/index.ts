// Entry point of the gpu backend: `await initGpuBackend()` loads gpu.js (and on Node the
// `webgpu` package) only when asked, finds a WebGPU adapter, compiles the kernels and
// registers the backend; `setBackend('gpu')` then selects it. Nothing here is imported by
// the engine's main path, so CPU users never load gpu.js.

import { registerBackend, type Backend } from '../../backend.js';
import { GpuBackend, type GpuBackendOptions } from './backend.js';
import { CpuRunner } from './cpu-runner.js';
import { loadGpuJs } from './gpujs.js';
import { KERNELS } from './kernels.js';
import { WebGpuRunner } from './webgpu-runner.js';

export { GpuBackend, GpuStorage } from './backend.js';
export type { GpuBackendOptions } from './backend.js';

export interface InitGpuOptions extends GpuBackendOptions {
  /**
   * 'webgpu' (default): kernels run on the GPU through WebGPU. 'cpu': the same kernels run
   * by gpu.js on the CPU, for testing without a GPU (registered as 'gpu-cpu').
   */
  mode?: 'webgpu' | 'cpu';
  /** Flags for Dawn's `create()` on Node (e.g. ['backend=null'] for validation-only tests). */
  dawnFlags?: string[];
  /** Check the device's answers on small problems at start-up (default true; see GpuBackend.selfTest). */
  selfTest?: boolean;
}

const instances = new Map<string, Promise<GpuBackend>>();

/** Give Node a `navigator.gpu` from the `webgpu` package (Dawn) unless one exists (browsers). */
async function ensureNavigatorGpu(flags: string[]): Promise<void> {
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (g.navigator?.gpu) return;
  const isNode = typeof process !== 'undefined' && !!process.versions?.node;
  if (!isNode) {
    throw new Error('initGpuBackend: this browser has no navigator.gpu (WebGPU); use a WebGPU-enabled browser or the js/wasm backends');
  }
  let webgpu: { create(flags: string[]): unknown; globals: object };
  try {
    webgpu = (await import('webgpu')) as unknown as typeof webgpu;
  } catch (e) {
    throw new Error(`initGpuBackend: could not load the 'webgpu' package (Dawn for Node): ${(e as Error).message}`);
  }
  Object.assign(globalThis, webgpu.globals);
  const nav = { ...(g.navigator ?? {}), gpu: webgpu.create(flags) };
  Object.defineProperty(globalThis, 'navigator', { value: nav, configurable: true, writable: true });
}

/**
 * Create (once per mode) and register the gpu backend. Rejects with a clear message when no
 * WebGPU adapter answers; `mode: 'cpu'` needs no GPU.
 */
export function initGpuBackend(opts: InitGpuOptions = {}): Promise<Backend> {
  const mode = opts.mode ?? 'webgpu';
  const name = opts.name ?? (mode === 'cpu' ? 'gpu-cpu' : 'gpu');
  let p = instances.get(name);
  if (!p) {
    p = create(mode, name, opts);
    instances.set(name, p);
    p.catch(() => instances.delete(name)); // a failed init can be retried
  }
  return p;
}

async function create(mode: 'webgpu' | 'cpu', name: string, opts: InitGpuOptions): Promise<GpuBackend> {
  const gpujs = await loadGpuJs();
  let backend: GpuBackend;
  if (mode === 'cpu') {
    backend = new GpuBackend(new CpuRunner(gpujs), { ...opts, name, reduceThreads: opts.reduceThreads ?? 64 });
  } else {
    await ensureNavigatorGpu(opts.dawnFlags ?? []);
    let ctx;
    try {
      ctx = await gpujs.WebGPUContext.acquire();
    } catch (e) {
      const msg = (e as Error).message;
      const why = /no adapter/.test(msg) ? 'navigator.gpu.requestAdapter() returned null' : msg;
      throw new Error(`initGpuBackend: no WebGPU adapter answered (${why}). ` +
        `On Node this needs a GPU with a Vulkan driver (see shared/gpu-kit); without one, use the js or wasm backends, ` +
        `or initGpuBackend({ mode: 'cpu' }) to run the gpu kernels on the CPU for testing`);
    }
    const runner = new WebGpuRunner(gpujs, ctx.device);
    await runner.precompile(Object.values(KERNELS));
    backend = new GpuBackend(runner, { ...opts, name });
    // (the null device computes nothing, so there is nothing to test there)
    if (opts.selfTest !== false && !(opts.dawnFlags ?? []).includes('backend=null')) await backend.selfTest();
  }
  registerBackend(name, () => backend);
  return backend;
}
