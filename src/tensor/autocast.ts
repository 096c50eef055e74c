// torch.autocast: inside `autocast('bfloat16', () => model.forward(x))` matmuls, linear layers and
// attention run in the half dtype (accumulating in float32), softmax, layer norm, cross-entropy,
// exp, log, pow and sum compute in float32, and every other op runs in its inputs' dtype with type
// promotion (a float32 residual + a bfloat16 branch is float32). Each op declares which of the
// three it is (ops.ts, define-op.ts) and hands its inputs to `autocastInputs`; everything else
// about autocast is here: the region's state, the casts of float32 parameters made in it (a
// weight used twice is cast once, as torch caches them), and what a backward keeps of a cast.

import type { Storage } from './backend.js';
import { cast } from './cast.js';
import { isHalf, type DType } from './dtype.js';
import { Tensor } from './tensor.js';

/** torch.autocast's lists for CUDA, which build-nanogpt trains under. */
export type AutocastCategory = 'lower' | 'float32' | 'promote';
export type AutocastDtype = 'bfloat16' | 'float16';

export interface AutocastOptions {
  /** false: run `fn` with autocast off (inside a region, too), as torch.autocast(enabled=False). */
  enabled?: boolean;
}

let active: AutocastDtype | null = null;
let depth = 0;
/** Casts of float32 leaves that require grad, for the outermost region (cleared when it ends). */
const paramCasts = new Map<Tensor, Tensor>();

/** The dtype of the innermost enabled autocast region, or null outside one (or where it is disabled). */
export function autocastDtype(): AutocastDtype | null { return active; }

/**
 * Run `fn` under autocast to `dtype`. Regions nest (the innermost wins); one that returns a
 * promise lasts until the promise settles, so do not interleave two async regions on one thread.
 * Run backward() outside the region, as with torch (backward rules never autocast anyway).
 */
export function autocast<T>(dtype: AutocastDtype, fn: () => T, opts: AutocastOptions = {}): T {
  if (dtype !== 'bfloat16' && dtype !== 'float16') {
    throw new Error(`autocast: dtype must be 'bfloat16' or 'float16', got ${JSON.stringify(dtype)}`);
  }
  return within(opts.enabled === false ? null : dtype, fn);
}

/** Run `fn` with autocast off: op composites and backward rules, which get their dtypes from their op. */
export function withoutAutocast<T>(fn: () => T): T {
  return active === null ? fn() : within(null, fn);
}

function within<T>(dtype: AutocastDtype | null, fn: () => T): T {
  const prev = active;
  active = dtype;
  depth++;
  const leave = (): void => {
    active = prev;
    if (--depth === 0) {
      // the casts are the region's own: no backward reads them (matmul recasts a weight instead,
      // see keptForBackward), so a device backend gets their memory back now, not at the
      // end of the step's scope
      for (const c of paramCasts.values()) c.backend.dispose(c.storage, 'the autocast region that cast it ended');
      paramCasts.clear();
    }
  };
  let out: T;
  try { out = fn(); } catch (e) { leave(); throw e; }
  if (out instanceof Promise) return out.finally(leave) as T;
  leave();
  return out;
}

/**
 * A function that runs `fn` later under the autocast state of now: for an output computed only
 * if it is asked for (GPT's logits beside its fused loss), which must round as the forward did.
 */
export function deferredInRegion<T>(fn: () => T): () => T {
  const dtype = active;
  return () => (dtype === active ? fn() : within(dtype, fn));
}

// ---- what an op sees ---------------------------------------------------------------------------

/** Which float32 leaf each cached cast was made from (weakly: a cast dies with its tape). */
const castSources = new WeakMap<Tensor, Tensor>();

/** The region's cast of float32 leaf `x` to the region's dtype (made once per region). */
function cachedParamCast(x: Tensor, to: DType): Tensor {
  let c = paramCasts.get(x);
  if (!c || c.dtype !== to) { c = cast(x, to); paramCasts.set(x, c); castSources.set(c, x); }
  return c;
}

/**
 * An op's tensor arguments as autocast hands them to it: inside a region, 'lower' ops get their
 * floating inputs in the region's half dtype (float32 parameters cast once per region) and
 * 'float32' ops get half inputs widened; float64, integer and 'promote' arguments pass as they are.
 */
export function autocastInputs<A extends readonly unknown[]>(category: AutocastCategory, args: A): A {
  const dt = active;
  if (dt === null || category === 'promote') return args;
  const to: DType = category === 'lower' ? dt : 'float32';
  return args.map((a) => {
    if (!(a instanceof Tensor) || a.dtype === to || (a.dtype !== 'float32' && !isHalf(a.dtype))) return a;
    return a.dtype === 'float32' && a.isLeaf && a.requiresGrad ? cachedParamCast(a, to) : cast(a, to);
  }) as unknown as A;
}

/**
 * What a backward rule should keep of input `t` to read its value later: `t` itself, or for a
 * parameter's cached half cast, a recast from the float32 parameter (alive anyway). Keeping the
 * cast would hold a half copy of every weight through the backward (GPT-2 124M: 250 MB);
 * recasting gives the same bits, as weights do not change between forward and backward.
 */
export function keptForBackward(t: Tensor): () => Tensor {
  const src = castSources.get(t);
  // two functions, not two arrows here: arrows made in one scope share it, and would keep t alive
  return src ? recastOf(src, t.dtype, t.shape) : keep(t);
}
function keep(t: Tensor): () => Tensor { return () => t; }
function recastOf(src: Tensor, dtype: DType, shape: readonly number[]): () => Tensor {
  return () => new Tensor(src.backend.cast(src.storage, dtype), shape, src.backend);
}

/**
 * keptForBackward for a fused kernel, which keeps storages and no tensor (a tensor would keep
 * its tape alive): t's storage, or for a parameter's cached cast a recast of the parameter.
 */
export function keptStorageForBackward(t: Tensor): () => Storage {
  const src = castSources.get(t);
  return src ? recastStorageOf(src, t.dtype) : keepStorage(t.storage);
}
function keepStorage(s: Storage): () => Storage { return () => s; }
function recastStorageOf(src: Tensor, dtype: DType): () => Storage {
  return () => src.backend.cast(src.storage, dtype);
}
