// torch.autocast: inside `autocast('bfloat16', () => model.forward(x))` matmuls, linear layers and
// attention run in the half dtype (accumulating in float32), softmax, layer norm, cross-entropy,
// exp, log, pow and sum compute in float32, and every other op runs in its inputs' dtype with type
// promotion (a float32 residual + a bfloat16 branch is float32). Each op declares which of the
// three it is (op.ts); this module only holds the region's state: its dtype, and the casts of
// float32 parameters made in it, so a weight used twice is cast once (as torch caches them).

import type { Tensor } from './tensor.js';

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
      // see ops.keptForBackward), so a device backend gets their memory back now, not at the
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

/** Which float32 leaf each cached cast was made from (weakly: a cast dies with its tape). */
const castSources = new WeakMap<Tensor, Tensor>();

/** The region's cast of float32 leaf `x` (made by `make` the first time it is asked for). */
export function cachedParamCast(x: Tensor, make: () => Tensor): Tensor {
  let c = paramCasts.get(x);
  if (!c || c.dtype !== active) { c = make(); paramCasts.set(x, c); castSources.set(c, x); }
  return c;
}

/** The float32 parameter a cached cast was made from, if `t` is one (see ops.keptForBackward). */
export function castSource(t: Tensor): Tensor | undefined {
  return castSources.get(t);
}
