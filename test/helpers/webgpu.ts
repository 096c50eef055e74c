// The gpu backend's two test targets: gpu.js's cpu mode (always there) and a real WebGPU
// adapter (a GPU, or SwiftShader as test/setup.ts arranges). Without one the WebGPU tests skip
// with one line naming what to install; where SwiftShader is installed (CI) they must run, so
// a failing adapter fails the tests instead of skipping them.

import { initGpuBackend, GpuBackend } from '../../src/tensor/backends/gpu/index.js';
import { CpuRunner } from '../../src/tensor/backends/gpu/cpu-runner.js';
import { loadGpuJs } from '../../src/tensor/backends/gpu/gpujs.js';
import { WebGpuRunner } from '../../src/tensor/backends/gpu/webgpu-runner.js';
import type { Runner } from '../../src/tensor/backends/gpu/runner.js';
import { SWIFTSHADER_INSTALL, swiftShaderInstalled } from '../../src/tensor/backends/gpu/swiftshader.js';

let reported = false;

/** The real WebGPU backend ('gpu'), or null (printing one line why) where no adapter can be had. */
export async function realWebGpu(): Promise<GpuBackend | null> {
  try {
    return await initGpuBackend() as GpuBackend;
  } catch (e) {
    if (swiftShaderInstalled()) throw e; // an adapter should be there: a failure is a failure
    if (!reported) {
      reported = true;
      console.log(`real-WebGPU tests skipped: no GPU adapter and no SwiftShader here; install it with \`${SWIFTSHADER_INSTALL}\``);
    }
    return null;
  }
}

export interface GpuTarget {
  label: string;
  /** null: no adapter here (the suite is skipped). */
  backend: GpuBackend | null;
  /** A new runner of this kind (its own buffer pool), optionally with a storage-binding limit of `maxBindingElements` f32. */
  runner(maxBindingElements?: number): Runner;
  /** A backend whose bindings hold at most `elements` f32, so kernels run over chunks as past the device's limit. */
  smallBindings(elements: number): GpuBackend;
}

export async function gpuTargets(): Promise<GpuTarget[]> {
  const gpujs = await loadGpuJs();
  const cpu = await initGpuBackend({ mode: 'cpu' }) as GpuBackend;
  const real = await realWebGpu();
  const cpuRunner = (max?: number): Runner => new CpuRunner(gpujs, { maxBindingElements: max });
  const realRunner = (max?: number): Runner => {
    const r = real!.runner as WebGpuRunner;
    return new WebGpuRunner(gpujs, r.device, { maxBindingElements: max, adapter: r.adapter });
  };
  return [
    { label: 'gpu.js cpu mode', backend: cpu, runner: cpuRunner },
    { label: real ? `WebGPU: ${(real.runner as WebGpuRunner).adapter}` : 'WebGPU', backend: real, runner: realRunner },
  ].map((t) => ({ ...t, smallBindings: (elements: number) => new GpuBackend(t.runner(elements), { name: `${t.backend?.name}-small-${elements}` }) }));
}
