// How the gpu backend runs a kernel: a Runner owns device memory and dispatch. Two exist:
// gpu.js's `cpu` mode (host Float32Arrays; how CI tests the kernels) and WebGPU (our own
// dispatch of the WGSL gpu.js translates, so buffers stay on the device and are pooled).

import type { AdamWParams } from '../../backend.js';
import type { KernelSpec } from './kernels.js';

/** A device buffer of float32 values (every dtype is held as f32 on the device). */
export interface DeviceBuffer {
  /** Number of f32 slots (may exceed the storage's size: pooled buffers are rounded up). */
  readonly length: number;
}

/**
 * An array argument: a buffer and the dims ([x], [x, y] or [x, y, z]) the kernel indexes it
 * with; `offset` (elements, a multiple of 64 = WebGPU's 256-byte binding alignment) binds
 * the buffer from there on, which is how kernels run over row chunks of a tensor larger
 * than one storage binding may be.
 */
export interface BufferArg {
  readonly buf: DeviceBuffer;
  readonly dims: readonly number[];
  readonly offset?: number;
}
/** A buffer from an element offset (a multiple of 64) on. */
export interface BufferView {
  readonly buf: DeviceBuffer;
  readonly offset: number;
}
/** A matmul operand: all of a buffer (no offset), or a view from an offset on. */
export interface OperandView {
  readonly buf: DeviceBuffer;
  readonly offset?: number | undefined;
}
export type KernelArg = BufferArg | number;

/** A buffer argument indexed with `dims` (each at least 1). */
export function arg(buf: DeviceBuffer, ...dims: number[]): BufferArg {
  return { buf, dims: dims.map((d) => Math.max(1, d)) };
}

export interface MatmulDims {
  batch: number; m: number; n: number; k: number;
  transA: boolean; transB: boolean;
  aBatchStride: number; bBatchStride: number;
}

export interface Runner {
  readonly mode: 'cpu' | 'webgpu';
  /** Copy host values to a new device buffer. */
  upload(data: Float32Array): DeviceBuffer;
  /**
   * Run a kernel over `out` ([x] for rank-1 kernels, [x, y, z] for rank 3) into a new buffer,
   * or into `into` from its offset on (returning into.buf).
   */
  run(spec: KernelSpec, out: readonly number[], args: readonly KernelArg[], into?: BufferView): DeviceBuffer;
  /** A new buffer of at least `length` f32 (contents unspecified). */
  alloc(length: number): DeviceBuffer;
  /** Read the first `size` values back. */
  read(buf: DeviceBuffer, size: number): Promise<Float32Array>;
  /** Return a buffer for reuse; enqueued work that reads it still sees its values. */
  release(buf: DeviceBuffer): void;
  /** A bit-exact cast (CAST_CODES mode) where the portable gpu.js kernel's float arithmetic may not be exact (WebGPU). */
  cast?(x: DeviceBuffer, n: number, mode: number): DeviceBuffer;
  /** AdamW updating p, m and v in place in one launch, where the runner has one (the portable kernels take three). */
  adamw?(p: DeviceBuffer, g: DeviceBuffer, m: DeviceBuffer, v: DeviceBuffer, n: number, h: AdamWParams): void;
  /** A faster matmul than the portable gpu.js kernel, where the runner has one. */
  matmul?(a: OperandView, b: OperandView, p: MatmulDims, into?: BufferView): DeviceBuffer;
  /** Largest number of f32 one kernel argument may bind. */
  readonly maxBindingElements: number;
  /** Submit anything queued (a no-op where work runs eagerly). */
  flush(): void;
}
