// Deterministic lifetimes for device memory (tf.tidy's idea, with backward()'s help). A backend
// whose memory the garbage collector cannot see (a GPU's) reports every storage it creates;
// `scope(fn)` frees, when fn returns, each one created inside that fn does not return, and
// backward() run inside a scope frees what it has consumed as it walks the tape: each gradient
// once no rule still holds it, each rule's temporaries, and each activation once the op that
// made it has been differentiated. Host-memory backends report nothing: a scope costs them
// nothing and the garbage collector frees their arrays as before.

import type { Backend, Storage } from './backend.js';
import { Tensor, tapeHooks } from './tensor.js';

interface Scope {
  /** What this scope will free: storage -> its backend. */
  readonly owned: Map<Storage, Backend>;
  /** The storages in the order they were created (entries freed since stay; `owned` decides). */
  readonly log: Storage[];
}

const stack: Scope[] = [];

/**
 * Run fn and free every device storage created inside it that it does not return (tensors, or
 * arrays / objects of tensors, one level deep). Nested scopes hand what they return to the
 * enclosing one. A tensor used after its scope freed it fails with a message saying so; keep(t)
 * takes one out of every scope. Synchronous only: an await inside would let unrelated work
 * allocate into the scope.
 */
export function scope<T>(fn: () => T): T {
  const s: Scope = { owned: new Map(), log: [] };
  stack.push(s);
  tapeHooks.recordOutputs = true;
  let out: T;
  try {
    out = fn();
    if (out instanceof Promise) throw new Error('scope: fn returned a Promise; a scope is synchronous (await outside it)');
  } finally {
    stack.splice(stack.indexOf(s), 1);
    tapeHooks.recordOutputs = stack.length > 0;
  }
  const returned = new Set<Storage>();
  collect(out, returned, 2);
  const parent = stack[stack.length - 1];
  for (const [st, be] of s.owned) {
    if (returned.has(st)) { if (parent) { parent.owned.set(st, be); parent.log.push(st); } } else be.dispose(st, 'the scope it was made in ended (return it from the scope, or keep() it)');
  }
  return out;
}

/** Take t's storage out of every scope: it lives until dispose() or garbage collection. */
export function keep<T extends Tensor>(t: T): T {
  release(t.storage);
  return t;
}

/** Whether a scope is running (backward() frees as it goes only then). */
export function inScope(): boolean { return stack.length > 0; }

/** Called by a backend for each storage it creates (backends with host memory need not). */
export function trackStorage(s: Storage, backend: Backend): void {
  const top = stack[stack.length - 1];
  if (top) { top.owned.set(s, backend); top.log.push(s); }
}

/** Whether the innermost scope made s (and has not freed or given it up). */
export function ownedHere(s: Storage): boolean { return stack[stack.length - 1]?.owned.has(s) ?? false; }

/** Free s now if the innermost scope made it; `why` is what a later use of it will be told. */
export function freeIfOwned(s: Storage, why: string): void {
  const top = stack[stack.length - 1];
  const be = top?.owned.get(s);
  if (!be) return;
  top!.owned.delete(s);
  be.dispose(s, why);
}

/** Untrack s everywhere (a leaf's gradient, a kept tensor): no scope frees it. */
export function release(s: Storage): void {
  for (const sc of stack) sc.owned.delete(s);
}

/** A position in the innermost scope's creation log, for freeCreatedSince. */
export function mark(): number { return stack[stack.length - 1]?.log.length ?? 0; }

/** Free what the innermost scope made since `at`, except `except`. */
export function freeCreatedSince(at: number, except: ReadonlySet<Storage>, why: string): void {
  const top = stack[stack.length - 1];
  if (!top) return;
  for (let i = at; i < top.log.length; i++) {
    const st = top.log[i]!;
    if (!except.has(st)) freeIfOwned(st, why);
  }
}

function collect(v: unknown, into: Set<Storage>, depth: number): void {
  if (v instanceof Tensor) { into.add(v.storage); return; }
  if (depth === 0 || v === null || typeof v !== 'object') return;
  for (const x of Array.isArray(v) ? v : Object.values(v)) collect(x, into, depth - 1);
}
