// A gpu storage: a device buffer and its dtype (int32 storages keep a host copy of their values),
// and how its buffer gets back to the pool: freed by a scope or backward() (scope.ts), dispose(),
// or, as the backstop for tensors made outside any scope, garbage collection.

import type { Storage } from '../../backend.js';
import type { DType } from '../../dtype.js';
import type { DeviceBuffer } from './runner.js';

/** Integers above this are not exact in the f32 the device holds them in. */
export const F32_EXACT = 2 ** 24;

/** A device buffer plus dtype; int32 storages also keep their values on the host. */
export class GpuStorage implements Storage {
  /** Shared with the FinalizationRegistry so an in-place update (adamw) swaps what it frees. */
  readonly cell: { buf: DeviceBuffer | null };
  /** Why the buffer went back to the pool (for the message a later use gets). */
  freedBecause: string | null = null;
  constructor(buf: DeviceBuffer, readonly size: number, readonly dtype: DType, readonly host: Int32Array | null) {
    this.cell = { buf };
  }
  get buf(): DeviceBuffer {
    if (!this.cell.buf) {
      throw new Error(`gpu backend: a ${this.dtype} tensor of ${this.size} elements was used after ${this.freedBecause ?? 'dispose()'}; ` +
        'its memory is back in the pool. Use it before then, return it from the scope, or keep() it');
    }
    return this.cell.buf;
  }
}

export function float64Error(op: string): Error {
  return new Error(`${op}: float64 is not supported on the gpu backend (WebGPU has no f64); float64 is for checking on the js backend — use float32 on the GPU`);
}


let gcFn: Promise<(() => void) | null> | null = null;
/** A way to force a garbage collection: global gc(), or V8's exposed through node:v8 + node:vm. */
export function forcedGc(): Promise<(() => void) | null> {
  if (!gcFn) {
    gcFn = (async () => {
      const g = (globalThis as { gc?: () => void }).gc;
      if (typeof g === 'function') return g;
      if (typeof process === 'undefined' || !process.versions?.node) return null;
      try {
        const v8 = await import('node:v8');
        const vm = await import('node:vm');
        v8.setFlagsFromString('--expose-gc');
        return vm.runInNewContext('gc') as () => void;
      } catch {
        return null;
      }
    })();
  }
  return gcFn;
}
