// Entry point of the gpu backend: `await initGpuBackend()` loads gpu.js (and on Node the
// `webgpu` package) only when asked, finds a WebGPU adapter, compiles the kernels and
// registers the backend; `setBackend('gpu')` then selects it. Nothing here is imported by
// the engine's main path, so CPU users never load gpu.js.

import { registerBackend, type Backend } from '../../backend.js';
import { GpuBackend, type GpuBackendOptions } from './gpu-backend.js';
import { CpuRunner } from './cpu-runner.js';
import { loadGpuJs } from './gpujs.js';
import { KERNELS } from './kernels.js';
import { FUSED_KERNELS } from './fused-kernels.js';
import { WebGpuRunner } from './webgpu-runner.js';
import { acquireDevice, type AcquiredDevice } from './device.js';

function onNode(): boolean {
  return typeof process !== 'undefined' && !!process.versions?.node;
}

export { GpuBackend, GpuStorage } from './gpu-backend.js';
export type { GpuBackendOptions } from './gpu-backend.js';

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
  /**
   * 'system' (default): whatever adapter the platform offers (a real GPU must always win).
   * 'swiftshader': Node only, point Vulkan at Chromium's software driver first (see
   * swiftshader.ts) — a real adapter without a GPU, for people who have none.
   */
  adapter?: 'system' | 'swiftshader';
  /** Emulate a smaller storage-binding limit (f32 elements), so tests can make kernels chunk on a real device. */
  maxBindingElements?: number;
  /**
   * Node: use only this GPU, by its index among the machine's Vulkan devices (PCI order, as
   * nvidia-smi counts them), however many share its name (see gpu-select.ts). Chosen before
   * WebGPU is first used in the process.
   */
  gpu?: number;
}

const instances = new Map<string, Promise<GpuBackend>>();
let swiftShaderChosen = false;

/** Give Node a `navigator.gpu` from the `webgpu` package (Dawn) unless one exists (browsers). */
async function ensureNavigatorGpu(flags: string[], adapter: 'system' | 'swiftshader'): Promise<void> {
  const g = globalThis as { navigator?: { gpu?: unknown } };
  const isNode = onNode();
  if (adapter === 'swiftshader') {
    if (!isNode) throw new Error("initGpuBackend: adapter 'swiftshader' is for Node; a browser picks its own adapter");
    if (g.navigator?.gpu && !swiftShaderChosen) {
      throw new Error("initGpuBackend: adapter 'swiftshader' must be chosen before WebGPU is first used in this process");
    }
    (await import('./swiftshader.js')).useSwiftShader();
    swiftShaderChosen = true;
  }
  if (g.navigator?.gpu) return;
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
  // exact timestamps for the profile (Dawn rounds them to 100 us unless told otherwise), and
  // Dawn's experimental features, subgroup matrices (tensor cores) among them, which a browser
  // keeps behind a flag and Node has no reason to
  const dawn = [...flags];
  if (!flags.some((f) => f.startsWith('disable-dawn-features='))) dawn.push('disable-dawn-features=timestamp_quantization');
  if (!flags.some((f) => f.startsWith('enable-dawn-features='))) dawn.push('enable-dawn-features=allow_unsafe_apis');
  const nav = { ...(g.navigator ?? {}), gpu: webgpu.create(dawn) };
  Object.defineProperty(globalThis, 'navigator', { value: nav, configurable: true, writable: true });
}

/**
 * Create (once per mode) and register the gpu backend. Rejects with a clear message when no
 * WebGPU adapter answers; `mode: 'cpu'` needs no GPU. After the device is lost (`backend.lost`),
 * the next call creates a new device and backend (tensors of the old one are gone with it).
 */
export async function initGpuBackend(opts: InitGpuOptions = {}): Promise<Backend> {
  const mode = opts.mode ?? 'webgpu';
  const name = opts.name ?? (mode === 'cpu' ? 'gpu-cpu' : 'gpu');
  const cached = instances.get(name);
  if (cached) {
    const b = await cached.catch(() => null);
    if (b && !b.lost) return b;
    if (instances.get(name) === cached) instances.delete(name);
  }
  let p = instances.get(name); // (another caller may have started the new one meanwhile)
  if (!p) {
    p = create(mode, name, opts);
    instances.set(name, p);
    p.catch(() => { if (instances.get(name) === p) instances.delete(name); }); // a failed init can be retried
  }
  return p;
}

async function create(mode: 'webgpu' | 'cpu', name: string, opts: InitGpuOptions): Promise<GpuBackend> {
  const gpujs = await loadGpuJs();
  let backend: GpuBackend;
  if (mode === 'cpu') {
    backend = new GpuBackend(new CpuRunner(gpujs), { ...opts, name, reduceThreads: opts.reduceThreads ?? 64 });
  } else {
    if (opts.gpu !== undefined) {
      if (!onNode()) throw new Error('initGpuBackend: gpu (an index) is for Node; a browser picks its own adapter');
      const g = globalThis as { navigator?: { gpu?: unknown } };
      if (g.navigator?.gpu && process.env['TAPEGRAD_VK_GPU'] !== String(opts.gpu)) {
        throw new Error(`initGpuBackend: gpu ${opts.gpu} must be chosen before WebGPU is first used in this process`);
      }
      (await import('./gpu-select.js')).selectGpu(opts.gpu);
    }
    await ensureNavigatorGpu(opts.dawnFlags ?? [], opts.adapter ?? 'system');
    let acquired: AcquiredDevice;
    try {
      acquired = await acquireDevice();
    } catch (e) {
      const msg = (e as Error).message;
      const why = /no adapter/.test(msg) ? 'navigator.gpu.requestAdapter() returned null' : msg;
      if (!onNode()) throw new Error(`initGpuBackend: this browser has WebGPU but gave no adapter (${why}); use the wasm or js backends`);
      // (swiftshader.ts needs node:fs, so it is loaded only here, on Node, never in a browser)
      const { SWIFTSHADER_INSTALL } = await import('./swiftshader.js');
      throw new Error(`initGpuBackend: no WebGPU adapter answered (${why}). ` +
        'On Node this needs a GPU with a Vulkan driver (and the Vulkan loader, libvulkan1). Without a GPU: ' +
        `--backend gpu-swiftshader (initGpuBackend({ adapter: 'swiftshader' })) runs the same WGSL on Chromium's software ` +
        `driver (Debian: ${SWIFTSHADER_INSTALL}), slowly; or use the js or wasm backends`);
    }
    let adapter = acquired.adapter;
    if (opts.gpu !== undefined) {
      const count = (await import('./gpu-select.js')).gpuCount();
      if (count !== null && opts.gpu >= count) {
        acquired.device.destroy?.();
        throw new Error(`initGpuBackend: there is no GPU ${opts.gpu}: the Vulkan loader lists ${count} device${count === 1 ? '' : 's'} here (indices 0-${count - 1}); ` +
          'npm run train gives rank LOCAL_RANK GPU LOCAL_RANK: fewer ranks (--nproc-per-node), or --gpus to choose (--gpus 0,0 puts two ranks on GPU 0)');
      }
      adapter = `GPU ${opts.gpu} of ${count ?? '?'}: ${adapter}`;
    }
    const runner = new WebGpuRunner(gpujs, acquired.device, { maxBindingElements: opts.maxBindingElements, adapter, features: acquired.features, tensorCores: acquired.tensorCores });
    await runner.precompile([...Object.values(KERNELS), ...Object.values(FUSED_KERNELS)]);
    backend = new GpuBackend(runner, { ...opts, name });
    // (the null device computes nothing, so there is nothing to test there)
    if (opts.selfTest !== false && !(opts.dawnFlags ?? []).includes('backend=null')) await backend.selfTest();
  }
  registerBackend(name, () => backend);
  return backend;
}
