// A WebGPU device that records and computes nothing: the gpu backend's real runner
// (webgpu-runner.ts: its pools, batching and bindings) runs against it, so a GPT-2 124M
// training step's launches, submits, buffer creations, transfers and device memory can be counted
// on any machine in seconds (`npm run train -- --dry-run`, and the benchmarks). Dawn's null device
// cannot stand in: its 128 MiB binding limit is below GPT-2's embedding (154 MB). The limits here are a large GPU's (2 GiB bindings, as the H200
// gives through Dawn/Vulkan), so nothing is chunked that would not be chunked there.

import type { GpuBufferLike, GpuDeviceLike } from './webgpu-types.js';
import { GpuBackend } from './gpu-backend.js';
import { loadGpuJs } from './gpujs.js';
import { WebGpuRunner } from './webgpu-runner.js';

export function countingDevice(limits = { maxStorageBufferBindingSize: 2 ** 31 - 4, maxBufferSize: 2 ** 31 - 4, maxComputeWorkgroupsPerDimension: 65535 }): GpuDeviceLike {
  const buffer = (size: number): GpuBufferLike => ({
    size,
    destroy() {},
    mapAsync: async () => {},
    getMappedRange: (_o?: number, s?: number) => new ArrayBuffer(s ?? size),
    unmap() {},
  });
  return {
    limits,
    queue: { writeBuffer() {}, submit() {}, onSubmittedWorkDone: async () => {} },
    createBuffer: (d) => buffer(d.size),
    createShaderModule: () => ({ getCompilationInfo: async () => ({ messages: [] }) }),
    createBindGroupLayout: () => ({}),
    createPipelineLayout: () => ({}),
    createComputePipeline: () => ({}),
    createBindGroup: () => ({}),
    createQuerySet: () => ({ destroy() {} }),
    createCommandEncoder: () => ({
      beginComputePass: () => ({ setPipeline() {}, setBindGroup() {}, dispatchWorkgroups() {}, end() {} }),
      copyBufferToBuffer() {},
      clearBuffer() {},
      resolveQuerySet() {},
      finish: () => ({}),
    }),
    pushErrorScope() {},
    popErrorScope: async () => null,
  };
}

/** The gpu backend on the recording device: the real runner and pools, nothing computed. */
export async function recordingBackend(name = 'gpu-recording'): Promise<GpuBackend> {
  const gpujs = await loadGpuJs();
  return new GpuBackend(new WebGpuRunner(gpujs, countingDevice(), { adapter: 'the recording device (nothing computed)' }), { name });
}
