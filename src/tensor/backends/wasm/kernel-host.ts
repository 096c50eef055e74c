// What the wasm kernel files (fused.ts, attention.ts) need from the backend: the worker pool and
// its kernels, and the copies between host arrays and wasm memory. A narrow handle, so a kernel
// file depends on this and not on the whole WasmBackend class (which imports them).

import type { Storage } from '../../backend.js';
import type { DType, HostArray } from '../../dtype.js';
import type { KernelModule } from './module.js';
import type { WasmRuntime } from './runtime.js';

export interface WasmKernelHost {
  /** The worker pool and its shared memory. */
  readonly runtime: WasmRuntime;
  readonly kernels: KernelModule;
  /** A storage's own host array (not a copy). */
  hostView(s: Storage): HostArray;
  /** A new host array for a kernel's output. */
  raw(size: number, dtype: DType): HostArray;
  /** Wrap a float32 host array as a storage. */
  out(data: HostArray): Storage;
  /** Copy a host array into wasm memory; its address. */
  put(a: Float32Array | Int32Array): number;
  /** Copy n floats at `ptr` out of wasm memory into a new host array. */
  take(ptr: number, n: number): Float32Array;
  /** Run a row kernel over [rows, cols]; `args` follow rows, cols, rows-per-task. */
  rows(name: string, rows: number, cols: number, args: number[], floats?: number[]): void;
  /** Run fn and give back the wasm memory it allocated. */
  scoped<T>(fn: () => T): T;
}
