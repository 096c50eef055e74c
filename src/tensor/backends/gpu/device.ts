// The WebGPU device the gpu backend runs on, requested here rather than through gpu.js (which
// only translates our kernels): with every storage limit the adapter allows (a GPU's bindings
// are ~2-4 GiB, the spec's default 128 MiB) and the optional features the kernels can use where
// the adapter has them: timestamp-query (the profile), shader-f16 and subgroups (half and
// subgroup kernels), and Dawn's subgroup matrices (tensor cores).

import type { GpuDeviceLike } from './webgpu-types.js';
import { TENSOR_TILE, type MatrixConfig } from './tensor-core-wgsl.js';

/** Optional features requested when the adapter offers them. */
export const OPTIONAL_FEATURES = ['timestamp-query', 'shader-f16', 'subgroups', 'chromium-experimental-subgroup-matrix'] as const;
export type OptionalFeature = (typeof OPTIONAL_FEATURES)[number];

interface AdapterLike {
  readonly features: { has(name: string): boolean };
  readonly limits: Record<string, number>;
  readonly info?: {
    description?: string; vendor?: string; architecture?: string; device?: string; subgroupMaxSize?: number;
    subgroupMatrixConfigs?: readonly { componentType: string; resultComponentType: string; M: number; N: number; K: number }[];
  };
  requestDevice(desc: { requiredFeatures: string[]; requiredLimits: Record<string, number> }): Promise<GpuDeviceLike>;
}

export interface AcquiredDevice {
  device: GpuDeviceLike;
  /** "NVIDIA H100 ...", "SwiftShader driver 5.0.0": what the adapter says it is. */
  adapter: string;
  /** The optional features this device was created with. */
  features: OptionalFeature[];
  /**
   * Tensor cores for float16 products (tensor-core-wgsl.ts): an f16 -> f32 subgroup matrix shape
   * the adapter lists that tiles 32x32, and its largest subgroup; null without them.
   */
  tensorCores: { config: MatrixConfig; subgroupMaxSize: number } | null;
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
  return { device, adapter: name, features, tensorCores: tensorCoresOf(adapter, features) };
}

/** The adapter's f16 -> f32 subgroup matrix config that tiles a 32x32 block (the largest), where it has one. */
function tensorCoresOf(adapter: AdapterLike, features: readonly OptionalFeature[]): AcquiredDevice['tensorCores'] {
  if (!features.includes('chromium-experimental-subgroup-matrix') || !features.includes('shader-f16')) return null;
  const max = adapter.info?.subgroupMaxSize;
  const configs = (adapter.info?.subgroupMatrixConfigs ?? [])
    .filter((c) => c.componentType === 'f16' && c.resultComponentType === 'f32' && TENSOR_TILE % c.M === 0 && TENSOR_TILE % c.N === 0)
    .sort((a, b) => b.M * b.N * b.K - a.M * a.N * a.K);
  return configs[0] && max ? { config: { M: configs[0].M, N: configs[0].N, K: configs[0].K }, subgroupMaxSize: max } : null;
}
