// How an op's tensors meet a kernel: one backend for all operands, torch's type promotion (a
// number is a wrapped scalar that does not widen the result), and half types (float16/bfloat16)
// widened to float32 for the kernel, its result rounded back once. Every op in ops.ts,
// functional.ts and define-op.ts calls a kernel through these.

import type { Storage } from './backend.js';
import { isHalf, type DType } from './dtype.js';
import { Tensor } from './tensor.js';
import { full } from './creation.js';

export function sameBackend(op: string, ts: readonly Tensor[]): void {
  const b = ts[0]!.backend;
  for (const t of ts) {
    if (t.backend !== b) {
      throw new Error(`${op}: tensors are on different backends (${b.name} and ${t.backend.name}); move one with t.to('${b.name}')`);
    }
  }
}

/** The storage a kernel computes on: half types are widened to float32. */
export function computeStorage(t: Tensor): Storage {
  return isHalf(t.dtype) ? t.backend.cast(t.storage, 'float32') : t.storage;
}

/** Store a kernel result in the op's output dtype (narrowing back to half where needed). */
export function outStorage(t: Tensor, s: Storage, dtype: DType = t.dtype): Storage {
  return s.dtype === dtype ? s : t.backend.cast(s, dtype);
}

/**
 * A kernel result that only this op holds, in the op's output dtype: where it is narrowed, the
 * float32 result goes back to the device's pool at once instead of at the end of the scope (under
 * autocast every op makes one).
 */
export function narrowed(t: Tensor, s: Storage, dtype: DType = t.dtype): Storage {
  if (s.dtype === dtype) return s;
  const out = t.backend.cast(s, dtype);
  t.backend.dispose(s);
  return out;
}

/** Free a copy an op made of t's values for a kernel (computeStorage, storageAs), never t's own storage. */
export function releaseCopy(t: Tensor, s: Storage): void {
  if (s !== t.storage) t.backend.dispose(s);
}

/** t's values as a storage of `dtype` (a cast only when the dtypes differ). */
export function storageAs(t: Tensor, dtype: DType): Storage {
  return t.storage.dtype === dtype ? t.storage : t.backend.cast(t.storage, dtype);
}

/** PyTorch-like type promotion for binary ops. */
function promote(a: DType, b: DType): DType {
  if (a === b) return a;
  if (a === 'float64' || b === 'float64') return 'float64';
  if (a === 'float32' || b === 'float32') return 'float32';
  if (a === 'int32') return b;
  if (b === 'int32') return a;
  return 'float32'; // float16 with bfloat16
}

/**
 * A number operand as a 0-d tensor. Like torch's wrapped scalars it is a float32 operand for
 * half tensors (not rounded to half first) and does not widen the result dtype (resultDtype).
 */
const wrappedScalars = new WeakSet<Tensor>();
export function scalarLike(x: Tensor, v: number): Tensor {
  const dtype: DType = x.dtype === 'int32' ? (Number.isInteger(v) ? 'int32' : 'float32') : isHalf(x.dtype) ? 'float32' : x.dtype;
  const s = full([], v, { dtype, backend: x.backend });
  wrappedScalars.add(s);
  return s;
}

/** The dtype of a binary op's result: a wrapped number keeps a float tensor's dtype. */
export function resultDtype(a: Tensor, b: Tensor): DType {
  if (wrappedScalars.has(b) && a.dtype !== 'int32') return a.dtype;
  if (wrappedScalars.has(a) && b.dtype !== 'int32') return b.dtype;
  return promote(a.dtype, b.dtype);
}

export function asTensor(x: Tensor, o: Tensor | number): Tensor {
  return typeof o === 'number' ? scalarLike(x, o) : o;
}
