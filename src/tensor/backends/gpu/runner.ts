// How the gpu backend runs a kernel: a Runner owns device memory and dispatch. Two exist:
// gpu.js's `cpu` mode (host Float32Arrays; how CI tests the kernels) and WebGPU (our own
// dispatch of the WGSL gpu.js translates, so buffers stay on the device and are pooled).

import type { KernelSpec } from './kernels.js';

/** A device buffer of float32 values (every dtype is held as f32 on the device). */
export interface DeviceBuffer {
  /** Number of f32 slots (may exceed the storage's size: pooled buffers are rounded up). */
  readonly length: number;
}

/** An array argument: a buffer and the dims ([x], [x, y] or [x, y, z]) the kernel indexes it with. */
export interface BufferArg {
  readonly buf: DeviceBuffer;
  readonly dims: readonly number[];
}
export type KernelArg = BufferArg | number;

export interface MatmulDims {
  batch: number; m: number; n: number; k: number;
  transA: boolean; transB: boolean;
  aBatchStride: number; bBatchStride: number;
}

export interface Runner {
  readonly mode: 'cpu' | 'webgpu';
  /** Copy host values to a new device buffer. */
  upload(data: Float32Array): DeviceBuffer;
  /** Run a kernel over `out` ([x] for rank-1 kernels, [x, y, z] for rank 3) into a new buffer. */
  run(spec: KernelSpec, out: readonly number[], args: readonly KernelArg[]): DeviceBuffer;
  /** Read the first `size` values back. */
  read(buf: DeviceBuffer, size: number): Promise<Float32Array>;
  /** Return a buffer for reuse; enqueued work that reads it still sees its values. */
  release(buf: DeviceBuffer): void;
  /** A faster matmul than the portable gpu.js kernel, where the runner has one. */
  matmul?(a: DeviceBuffer, b: DeviceBuffer, p: MatmulDims): DeviceBuffer;
  /** Largest number of f32 one kernel argument may bind. */
  readonly maxBindingElements: number;
  /** Submit anything queued (a no-op where work runs eagerly). */
  flush(): void;
}
