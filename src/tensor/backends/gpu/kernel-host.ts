// What the gpu backend's kernel files (fused.ts, matmul.ts) need from it: the runner, launches
// split past the binding limit, storages checked and wrapped. A narrow handle, so a kernel file
// depends on this and not on the whole GpuBackend class (which imports them).

import type { ReduceOp, Storage } from '../../backend.js';
import type { DType } from '../../dtype.js';
import type { KernelSpec } from './kernels.js';
import type { DeviceBuffer, KernelArg, Runner } from './runner.js';
import type { GpuStorage } from './storage.js';

export interface GpuKernelHost {
  readonly runner: Runner;
  /** Whether matmul uses the runner's fast kernel (turned off if it fails the self-test). */
  fastMatmul: boolean;
  /** The storages as this backend's, or an error naming `op` (another backend's, or float64). */
  check(op: string, ...ss: Storage[]): GpuStorage[];
  /** A buffer as a storage of `size` values (freed when the storage is collected or disposed). */
  wrap(buf: DeviceBuffer, size: number, dtype: DType, host?: Int32Array | null): GpuStorage;
  /** One launch of `spec` (an elementwise one split into bound chunks past the binding limit). */
  run(spec: KernelSpec, out: readonly number[], args: readonly KernelArg[], into?: { buf: DeviceBuffer; offset: number }): DeviceBuffer;
  /** The runner's bit-exact cast (CAST_CODES mode) of n values into a new buffer. */
  castBuf(buf: DeviceBuffer, n: number, mode: number): DeviceBuffer;
  /** x viewed as [outer, size, inner], reduced over the middle axis, as a buffer. */
  reduceBuf(op: ReduceOp, buf: DeviceBuffer, outer: number, size: number, inner: number): DeviceBuffer;
  full(size: number, dtype: DType, value: number): Storage;
  /** Refuse int32 indices outside [0, limit) where the storage keeps a host copy. */
  checkIndex(op: string, ix: GpuStorage, limit: number, what: string): void;
}
