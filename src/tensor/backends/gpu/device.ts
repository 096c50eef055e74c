// The WebGPU device the gpu backend runs on, requested here rather than through gpu.js (which
// only translates our kernels): with every storage limit the adapter allows (a GPU's bindings
// are ~2-4 GiB, the spec's default 128 MiB) and the optional features the kernels can use where
// the adapter has them: timestamp-query (the profile), shader-f16 and subgroups (half and
// subgroup kernels), and Dawn's subgroup matrices (tensor cores).

import type { GpuDeviceLike } from './webgpu-types.js';

/** Optional features requested when the adapter offers them. */
export const OPTIONAL_FEATURES = ['timestamp-query', 'shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'] as const;
export type OptionalFeature = (typeof OPTIONAL_FEATURES)[number];

interface AdapterLike {
  readonly features: { has(name: string): boolean };
  readonly limits: Record<string, number>;
  readonly info?: { description?: string; vendor?: string; architecture?: string; device?: string };
  requestDevice(desc: { requiredFeatures: string[]; requiredLimits: Record<string, number> }): Promise<GpuDeviceLike>;
}

export interface AcquiredDevice {
  device: GpuDeviceLike;
  /** "NVIDIA H100 ...", "SwiftShader driver 5.0.0": what the adapter says it is. */
  adapter: string;
  /** The optional features this device was created with. */
  features: OptionalFeature[];
}

/** An adapter from navigator.gpu and a device with its full storage limits and the optional features it has. */
export async function acquireDevice(): Promise<AcquiredDevice> {
  const gpu = (globalThis as { navigator?: { gpu?: { requestAdapter(o?: object): Promise<AdapterLike | null> } } }).navigator?.gpu;
  if (!gpu) throw new Error('WebGPU is not supported here (navigator.gpu is missing)');
  const adapter = await gpu.requestAdapter({ powerPreference: 'high-performance' });
  if (!adapter) throw new Error('no adapter: navigator.gpu.requestAdapter() returned null');
  const features = OPTIONAL_FEATURES.filter((f) => adapter.features.has(f));
  const limits: Record<string, number> = {};
  for (const k of ['maxStorageBufferBindingSize', 'maxBufferSize', 'maxStorageBuffersPerShaderStage', 'maxComputeWorkgroupStorageSize']) {
    if (typeof adapter.limits[k] === 'number') limits[k] = adapter.limits[k]!;
  }
  const device = await adapter.requestDevice({ requiredFeatures: [...features], requiredLimits: limits });
  const info = adapter.info;
  const name = info ? info.description || [info.vendor, info.architecture, info.device].filter(Boolean).join(' ') || 'unknown adapter' : 'unknown adapter';
  return { device, adapter: name, features };
}
