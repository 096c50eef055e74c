// The wasm runtime: one shared WebAssembly.Memory, the kernel module instantiated on it by the
// main thread and by a persistent pool of worker threads, dispatch through Atomics on a small
// control SharedArrayBuffer (no message per op), and a bump arena for kernel operands.
//
// Determinism: a dispatch is `ntasks` independent tasks; each task writes its own outputs and
// sums in an order fixed by the task index alone. Threads (main + workers) only race for
// *which* task they take next (Atomics.add on a counter), so results never depend on the
// thread count or on scheduling.

import { spawnKernelWorker, type KernelWorker } from './threads.js';

/** Every kernel export has this signature: (task index, pointer to its argument block). */
export type KernelFn = (task: number, args: number) => void;

// control block layout (Int32 slots)
const GEN = 0;      // bumped by the main thread to start a dispatch (11 bits, wraps)
const FN = 1;       // kernel index; -1 asks workers to exit
const NTASKS = 2;
const NEXT = 3;     // (gen << 20) | next task index: a task is taken by CAS, only for the current gen
const DONE = 4;     // tasks finished in this dispatch
const ARGS = 5;
const ERR = 6;      // set when a task threw (a wasm trap) in a worker
const IDX_MASK = 0xfffff;
const MAX_TASKS = IDX_MASK;

// The worker is a JS source string (vitest runs .ts, and `new Worker` cannot load .ts files;
// threads.ts starts it on Node or in a browser and gives it `workerData`): it instantiates the
// module on the shared memory, then loops waiting on GEN. The main thread
// never waits for a worker to wake: it waits for the tasks to be done, so a worker that the OS
// schedules late (busy machine) costs nothing; a late worker cannot take a task of a newer
// dispatch because the task counter carries the generation.
const WORKER_SRC = `
const { module, memory, ctrl: ctrlBuf, names } = workerData;
const inst = new WebAssembly.Instance(module, { env: { memory } });
const fns = names.map((n) => inst.exports[n]);
const ctrl = new Int32Array(ctrlBuf);
let gen = 0;
for (;;) {
  // spin briefly (ops arrive back to back during training), then sleep on the futex
  let spins = 0;
  while (Atomics.load(ctrl, ${GEN}) === gen && spins < 20000) spins++;
  Atomics.wait(ctrl, ${GEN}, gen);
  gen = Atomics.load(ctrl, ${GEN});
  const fi = ctrl[${FN}];
  if (fi < 0) break;
  const f = fns[fi], n = ctrl[${NTASKS}], args = ctrl[${ARGS}];
  for (;;) {
    const v = Atomics.load(ctrl, ${NEXT});
    if ((v >>> 20) !== gen || (v & ${IDX_MASK}) >= n) break;
    if (Atomics.compareExchange(ctrl, ${NEXT}, v, v + 1) !== v) continue;
    // a trap must still count as done, or the main thread would wait forever
    try { f(v & ${IDX_MASK}, args); } catch { Atomics.store(ctrl, ${ERR}, 1); }
    if (Atomics.add(ctrl, ${DONE}, 1) + 1 === n) Atomics.notify(ctrl, ${DONE});
  }
}
`;

/** A kernel call's operands do not fit the 4 GiB of a wasm32 memory. */
export class WasmMemoryError extends Error {
  constructor(readonly bytes: number) {
    super(`wasm backend: a kernel needs ${bytes} bytes of wasm memory, over the 4 GiB wasm32 limit`);
  }
}

function trapped(name: string, e: unknown): Error {
  return new Error(`wasm backend: kernel '${name}' trapped (${e instanceof Error ? e.message : 'in a worker thread'}); ` +
    'this is a bug in the kernel or its arguments — the js backend computes the same op');
}

const PAGE = 65536;
/** 4 GiB: the wasm32 limit. Shared memories reserve address space for the maximum up front. */
const MAX_PAGES = 65536;
const ARENA_START = 1024;

export class WasmRuntime {
  readonly memory: WebAssembly.Memory;
  readonly fns: KernelFn[];
  private readonly index = new Map<string, number>();
  private readonly ctrl: Int32Array;
  private readonly workers: KernelWorker[] = [];
  private top = ARENA_START;
  private gen = 0;

  /**
   * `module` must import its memory as shared when `threads` > 1 (the workers share it) and may
   * import it unshared for one thread, which is how a page without cross-origin isolation (no
   * SharedArrayBuffer) still runs the kernels.
   */
  constructor(readonly module: WebAssembly.Module, readonly names: readonly string[], readonly threads: number, shared = true) {
    if (!Number.isInteger(threads) || threads < 1) {
      throw new Error(`wasm backend: threads must be a positive integer, got ${threads}`);
    }
    if (threads > 1 && !shared) throw new Error('wasm backend: more than one thread needs a shared memory');
    this.memory = new WebAssembly.Memory({ initial: 256, maximum: MAX_PAGES, shared });
    const inst = new WebAssembly.Instance(module, { env: { memory: this.memory } });
    this.fns = names.map((n, i) => {
      this.index.set(n, i);
      const f = inst.exports[n];
      if (typeof f !== 'function') throw new Error(`wasm backend: module lacks export '${n}'`);
      return f as KernelFn;
    });
    // (one thread never touches the control block; an ordinary buffer stands in where SAB is absent)
    this.ctrl = new Int32Array(shared ? new SharedArrayBuffer(64) : new ArrayBuffer(64));
    // the main thread is one of the `threads`: it takes tasks too, so threads=1 spawns nothing
    for (let i = 1; i < threads; i++) {
      this.workers.push(spawnKernelWorker(WORKER_SRC, { module, memory: this.memory, ctrl: this.ctrl.buffer as SharedArrayBuffer, names }));
    }
  }

  /** Run tasks 0..ntasks-1 of kernel `name` on all threads; returns when all are done. */
  run(name: string, ntasks: number, args: number): void {
    const fi = this.index.get(name);
    if (fi === undefined) throw new Error(`wasm backend: unknown kernel '${name}'`);
    const f = this.fns[fi]!;
    if (this.workers.length === 0 || ntasks <= 1) {
      try { for (let t = 0; t < ntasks; t++) f(t, args); } catch (e) { throw trapped(name, e); }
      return;
    }
    if (ntasks > MAX_TASKS) throw new Error(`wasm backend: ${name} split into ${ntasks} tasks, over ${MAX_TASKS}; use larger chunks`);
    const c = this.ctrl;
    const gen = (this.gen + 1) & 0x7ff;
    this.gen = gen;
    // close the counter under the new generation before rewriting the fields, so a worker
    // still holding the previous generation cannot take a task meanwhile
    Atomics.store(c, NEXT, (gen << 20) | IDX_MASK);
    c[FN] = fi; c[NTASKS] = ntasks; c[ARGS] = args;
    Atomics.store(c, DONE, 0);
    Atomics.store(c, ERR, 0);
    Atomics.store(c, NEXT, gen << 20);
    Atomics.store(c, GEN, gen);
    Atomics.notify(c, GEN);
    let failed: unknown;
    for (;;) {
      const v = Atomics.load(c, NEXT);
      if ((v & IDX_MASK) >= ntasks) break;
      if (Atomics.compareExchange(c, NEXT, v, v + 1) !== v) continue;
      try { f(v & IDX_MASK, args); } catch (e) { failed ??= e; }
      Atomics.add(c, DONE, 1);
    }
    let spins = 0;
    for (;;) {
      const d = Atomics.load(c, DONE);
      if (d === ntasks) break;
      if (spins++ < 20000) continue;
      Atomics.wait(c, DONE, d, 20);
    }
    // only now (no task of this dispatch still running) report a trap
    if (failed !== undefined || Atomics.load(c, ERR)) throw trapped(name, failed);
  }

  // ---- arena: kernel operands live here only for the duration of one backend call ----
  mark(): number { return this.top; }
  release(mark: number): void { this.top = mark; }
  /** Reserve `bytes` (64-byte aligned, for cache lines) and grow the memory when needed. */
  alloc(bytes: number): number {
    const p = Math.ceil(this.top / 64) * 64; // not `& ~63`: addresses pass 2^31
    const end = p + bytes;
    if (end > MAX_PAGES * PAGE - PAGE) throw new WasmMemoryError(end);
    const have = this.memory.buffer.byteLength;
    if (end > have) this.memory.grow(Math.ceil((end - have) / PAGE));
    this.top = end;
    return p;
  }
  f32(ptr: number, len: number): Float32Array { return new Float32Array(this.memory.buffer, ptr, len); }
  i32(ptr: number, len: number): Int32Array { return new Int32Array(this.memory.buffer, ptr, len); }
  /** Write an argument block: integers as i32, and numbers listed in `floats` (by position) as f32. */
  args(values: readonly number[], floats: readonly number[] = []): number {
    const p = this.alloc(values.length * 4);
    const iv = this.i32(p, values.length);
    const fv = this.f32(p, values.length);
    values.forEach((v, i) => { iv[i] = v; });
    for (const i of floats) fv[i] = values[i]!;
    return p;
  }

  /** Stop the workers (tests and benchmarks that create several backends). */
  terminate(): void {
    if (this.workers.length === 0) return;
    this.ctrl[FN] = -1;
    this.gen = (this.gen + 1) & 0x7ff;
    Atomics.store(this.ctrl, GEN, this.gen);
    Atomics.notify(this.ctrl, GEN);
    for (const w of this.workers) w.terminate();
    this.workers.length = 0;
  }
}
