// The wasm backend: the js reference backend with its hot float32 kernels (matmul, softmax
// family, cross-entropy, layerNorm, attention, GELU and unary ops, broadcasting binary ops,
// reductions, AdamW, sums of squares) replaced by WebAssembly SIMD kernels run on a pool of
// worker threads. Tensors stay in ordinary host typed arrays (so models are not bound by the
// 4 GiB wasm32 memory); each kernel call copies its operands into the shared wasm memory.
// Movement ops with a contiguous innermost dim copy whole rows. Everything else (int32 and
// float64 kernels, other layouts, indexing, `log`, `pow`, `where`, `cast`) is the js backend's;
// float64 fused kernels run plain loops (fused-ref.ts), so gradchecks keep working.

import { availableParallelism } from 'node:os';
import { registerBackend, type AdamWParams, type Backend, type BinaryOp, type FusedKernels, type MatmulParams, type ReduceOp, type Storage, type UnaryOp } from '../../backend.js';
import { allocHost, bytesPerElement, type DType, type HostArray } from '../../dtype.js';
import { sizeOf, type Shape } from '../../shape.js';
import { JsBackend, type HostStorage } from '../js.js';
import { emitModule, Func } from './emit.js';
import * as ref from './fused-ref.js';
import { gemmPtr, readC, wasmMatmul, type Causal } from './matmul.js';
import { buildModule, type KernelModule } from './module.js';
import { WasmMemoryError, WasmRuntime } from './pool.js';

/** Elements per task of elementwise kernels. Fixed: sumSquares' partial sums depend on it. */
const CHUNK = 16384;
/** Columns per task of column reductions (only scheduling, not the summation order). */
const COL_BLOCK = 64;
/** Matrix arg with no grouping: rows are `stride` apart. */
const NOGROUP = 0x3fffffff;

const UNARY = new Set<UnaryOp>(['neg', 'abs', 'sqrt', 'relu', 'step', 'exp', 'tanh', 'gelu', 'geluGrad']);
const BINARY = new Set<BinaryOp>(['add', 'sub', 'mul', 'div', 'max', 'min', 'gt', 'lt', 'eq']);

/** Synchronous check: WebAssembly SIMD, shared memory and SharedArrayBuffer all work here. */
export function wasmSimdAvailable(): boolean {
  try {
    if (typeof SharedArrayBuffer === 'undefined' || typeof Atomics === 'undefined') return false;
    const f = new Func([], ['f32']);
    f.f32Const(1).f32x4Splat().f32Const(2).f32x4Splat().f32x4Add().f32x4ExtractLane(0);
    const bytes = emitModule({ memory: { initial: 1, maximum: 1, shared: true }, funcs: [{ name: 'f', func: f }] });
    const mod = new WebAssembly.Module(bytes as BufferSource);
    const memory = new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    const inst = new WebAssembly.Instance(mod, { env: { memory } });
    return (inst.exports.f as () => number)() === 3;
  } catch {
    return false;
  }
}

export interface WasmBackendOptions {
  /** Worker threads including the main thread (default: one per core). Results do not depend on it. */
  threads?: number;
  /**
   * Bytes of host buffers the recycling pool may hold, tracked (live) and free together
   * (default 1 GiB; 0 disables). Training allocates the same large activations every step;
   * reusing their buffers avoids paying the OS's first-touch page faults again each step
   * (on this CI VM, ~7 ms per MB).
   */
  poolBytes?: number;
}

/** Buffers below this size are left to malloc, which recycles small blocks itself. */
const POOL_MIN_BYTES = 1 << 20;

/**
 * Recycles large host ArrayBuffers: a storage's buffer returns here when the storage is
 * garbage collected (FinalizationRegistry) or disposed, and the next allocation of the same
 * byte length takes it. Only buffers this backend allocated are recycled, and readSync hands
 * out copies of them, so no array a caller holds can change under it.
 *
 * The registry keeps a tracked buffer alive until its finalizer runs (after the step, when
 * the event loop turns), so tracked + free bytes together stay under `cap`: to make room the
 * oldest free buffers are dropped, then the oldest tracked ones are handed back to the GC
 * (parameters and optimizer state, allocated first and living forever, age out of the budget;
 * a step's short-lived activations are what it keeps). Without the bound GPT-2 124M peaked at
 * 8.6 GB RSS instead of 4.5.
 */
class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private freeBytes = 0;
  private trackedBytes = 0;
  /** Allocated here, not yet wrapped in a storage. */
  private readonly fresh = new WeakSet<ArrayBuffer>();
  /** Tracked buffers, oldest first, with their unregister tokens. */
  private readonly tracked = new Map<ArrayBuffer, object>();
  private readonly registry = new FinalizationRegistry<ArrayBuffer>((buf) => this.give(buf));
  readonly stats = { hits: 0, misses: 0, freeBytes: 0, trackedBytes: 0 };
  constructor(private readonly cap: number) {}

  /** Is `buf` a tracked (recyclable) buffer? Then readers get copies. */
  owns(buf: ArrayBufferLike): boolean { return buf instanceof ArrayBuffer && this.tracked.has(buf); }

  /** A buffer of `bytes` (recycled ones hold old data), or null below the pooling size. */
  take(bytes: number): { buf: ArrayBuffer; recycled: boolean } | null {
    if (this.cap === 0 || bytes < POOL_MIN_BYTES) return null;
    const buf = this.free.get(bytes)?.pop();
    if (buf) { this.freeBytes -= bytes; this.stats.hits++; } else this.stats.misses++;
    const out = buf ?? new ArrayBuffer(bytes);
    this.fresh.add(out);
    this.sync();
    return { buf: out, recycled: buf !== undefined };
  }
  /** Called when a storage wraps `buf`: from now on its lifetime is the storage's. */
  track(storage: object, buf: ArrayBufferLike): void {
    if (!(buf instanceof ArrayBuffer) || !this.fresh.has(buf)) return;
    this.fresh.delete(buf);
    const n = buf.byteLength;
    if (n > this.cap) return;
    const over = (): boolean => this.trackedBytes + this.freeBytes + n > this.cap;
    for (const [bytes, list] of this.free) { // drop the sizes freed longest ago (Map order = first insertion)
      if (!over()) break;
      while (list.length && over()) { list.shift(); this.freeBytes -= bytes; }
      if (!list.length) this.free.delete(bytes);
    }
    for (const [old, token] of this.tracked) { // then stop tracking the oldest live buffers
      if (!over()) break;
      this.registry.unregister(token);
      this.tracked.delete(old);
      this.trackedBytes -= old.byteLength;
    }
    const token = {};
    this.tracked.set(buf, token);
    this.trackedBytes += n;
    this.registry.register(storage, buf, token);
    this.sync();
  }
  release(buf: ArrayBufferLike): void {
    if (!(buf instanceof ArrayBuffer)) return;
    const token = this.tracked.get(buf);
    if (token && this.registry.unregister(token)) this.give(buf);
  }
  private give(buf: ArrayBuffer): void {
    if (!this.tracked.delete(buf)) return;
    this.trackedBytes -= buf.byteLength;
    const list = this.free.get(buf.byteLength);
    if (list) list.push(buf); else this.free.set(buf.byteLength, [buf]);
    this.freeBytes += buf.byteLength;
    this.sync();
  }
  private sync(): void { this.stats.freeBytes = this.freeBytes; this.stats.trackedBytes = this.trackedBytes; }
}

let compiled: KernelModule | null = null;

export function createWasmBackend(opts: WasmBackendOptions = {}): WasmBackend {
  return new WasmBackend(opts);
}

// importing this module makes getBackendByName('wasm') work (default threads); where SIMD or
// shared memory is missing the factory throws with the fallback advice
registerBackend('wasm', () => createWasmBackend());

type F32 = Float32Array;

export class WasmBackend extends JsBackend implements Backend {
  override readonly name: string = 'wasm';
  readonly threads: number;
  private readonly rt: WasmRuntime;
  private readonly km: KernelModule;
  private readonly pool: BufferPool;
  override readonly fused: FusedKernels;

  constructor(opts: WasmBackendOptions = {}) {
    super();
    if (!wasmSimdAvailable()) {
      throw new Error('wasm backend: this runtime lacks WebAssembly SIMD or SharedArrayBuffer; use the js backend');
    }
    this.threads = opts.threads ?? Math.max(1, availableParallelism());
    compiled ??= buildModule();
    this.km = compiled;
    this.rt = new WasmRuntime(this.km.module, this.km.names, this.threads);
    this.pool = new BufferPool(opts.poolBytes ?? 2 ** 30);
    this.fused = {
      softmax: (x, rows, cols) => this.softmax(x, rows, cols),
      softmaxBackward: (y, gy, rows, cols) => this.rowsBwd('softmaxBwd', ref.softmaxBackwardRef, y, gy, rows, cols),
      logSoftmax: (x, rows, cols) => this.logSoftmax(x, rows, cols),
      logSoftmaxBackward: (y, gy, rows, cols) => this.rowsBwd('logSoftmaxBwd', ref.logSoftmaxBackwardRef, y, gy, rows, cols),
      layerNorm: (x, w, b, rows, cols, eps) => this.layerNorm(x, w, b, rows, cols, eps),
      layerNormBackward: (x, w, mean, rstd, gy, rows, cols) => this.layerNormBackward(x, w, mean, rstd, gy, rows, cols),
      crossEntropy: (logits, t, rows, cols) => this.crossEntropy(logits, t, rows, cols),
      crossEntropyBackward: (logits, t, lse, gl, rows, cols) => this.crossEntropyBackward(logits, t, lse, gl, rows, cols),
      attention: (q, k, v, bh, t, s, d, scale, causal) => {
        try { return this.attention(q, k, v, bh, t, s, d, scale, causal); } catch (e) {
          return WasmBackend.tooBig(e, 'attention', `(batch*heads ${bh}, T ${t}, S ${s}, head dim ${d})`);
        }
      },
      attentionBackward: (q, k, v, o, lse, go, bh, t, s, d, scale, causal) => {
        try { return this.attentionBackward(q, k, v, o, lse, go, bh, t, s, d, scale, causal); } catch (e) {
          return WasmBackend.tooBig(e, 'attention backward', `(batch*heads ${bh}, T ${t}, S ${s}, head dim ${d})`);
        }
      },
      adamw: (p, g, m, v, h) => this.adamw(p, g, m, v, h),
      sumSquares: (xs) => this.sumSquares(xs),
    };
  }

  /** Buffer pool counters: allocations served from recycled buffers (hits) or new ones (misses). */
  poolStats(): { hits: number; misses: number; freeBytes: number; trackedBytes: number; wasmBytes: number } {
    return { ...this.pool.stats, wasmBytes: this.rt.memory.buffer.byteLength };
  }

  /** Stop the worker threads (they are unref'd, so this is only needed to free them early). */
  terminate(): void { this.rt.terminate(); }

  // ---- host memory: recycled large buffers ----
  /** A host array, possibly recycled: zeroed only when `zero` (every element must be written otherwise). */
  private raw(size: number, dtype: DType, zero = false): HostArray {
    const got = this.pool.take(size * bytesPerElement(dtype));
    if (!got) return allocHost(dtype, size);
    const { buf, recycled } = got;
    const a = dtype === 'float32' ? new Float32Array(buf) : dtype === 'float64' ? new Float64Array(buf)
      : dtype === 'int32' ? new Int32Array(buf) : new Uint16Array(buf);
    if (recycled && zero) a.fill(0);
    return a;
  }
  /** The js kernels expect zeroed outputs. */
  protected override alloc(size: number, dtype: DType): HostArray { return this.raw(size, dtype, true); }
  protected override wrap(data: HostArray, dtype: DType): HostStorage {
    const s = super.wrap(data, dtype);
    this.pool.track(s, data.buffer);
    return s;
  }
  /** Recycled buffers are handed out as copies, so a caller's array never changes later. */
  override readSync(s: Storage): HostArray {
    const d = this.host(s);
    return this.pool.owns(d.buffer) ? d.slice() : d;
  }
  override read(s: Storage): Promise<HostArray> { return Promise.resolve(this.readSync(s)); }
  override dispose(s: Storage): void { this.pool.release(this.host(s).buffer); }

  // ---- helpers ----
  private f32(s: Storage): F32 | null {
    return s.dtype === 'float32' ? (this.host(s) as F32) : null;
  }
  private out(data: HostArray): Storage { return this.wrap(data, 'float32'); }
  /** Copy a host array into the arena. */
  private put(a: Float32Array | Int32Array): number {
    const p = this.rt.alloc(a.length * 4);
    if (a instanceof Float32Array) this.rt.f32(p, a.length).set(a); else this.rt.i32(p, a.length).set(a);
    return p;
  }
  private take(ptr: number, n: number): F32 {
    const out = this.raw(n, 'float32') as F32;
    out.set(this.rt.f32(ptr, n));
    return out;
  }
  /** Rows per task: enough tasks to balance the threads, enough work per task to pay for it. */
  private rpt(rows: number, cols: number): number {
    let r = Math.ceil(rows / (this.threads * 8));
    r = Math.max(r, Math.ceil(8192 / Math.max(cols, 1)));
    return Math.max(1, Math.min(r, rows));
  }
  /** Run a row kernel over [rows, cols]; `args` follow rows, cols, rows-per-task. */
  private rows(name: string, rows: number, cols: number, args: number[], floats: number[] = []): void {
    if (rows === 0) return;
    const rpt = this.rpt(rows, cols);
    const all = [rows, cols, rpt, ...args, ...floats];
    const fi = floats.map((_, i) => 3 + args.length + i);
    this.rt.run(name, Math.ceil(rows / rpt), this.rt.args(all, fi));
  }
  /** A dense matrix argument (pointer, stride, no grouping). */
  private static dense(ptr: number, cols: number): number[] { return [ptr, cols, NOGROUP, 0]; }
  private scoped<T>(fn: () => T): T {
    const mark = this.rt.mark();
    try { return fn(); } finally { this.rt.release(mark); }
  }
  /** Name the op and its shapes when its operands overflow the wasm32 memory. */
  private static tooBig(e: unknown, op: string, shapes: string): never {
    if (e instanceof WasmMemoryError) {
      throw new Error(`${op} ${shapes}: needs ${(e.bytes / 2 ** 30).toFixed(1)} GiB of wasm memory, over the 4 GiB wasm32 limit; ` +
        'use a smaller batch or sequence length, or the js backend (--backend js)');
    }
    throw e;
  }

  // ---- primitives ----
  override matmul(a: Storage, b: Storage, p: MatmulParams): Storage {
    const A = this.f32(a), B = this.f32(b);
    if (!A || !B) return super.matmul(a, b, p);
    try {
      return this.out(wasmMatmul(this.rt, this.km.shape, A, B, p, this.raw(p.batch * p.m * p.n, 'float32') as F32));
    } catch (e) {
      return WasmBackend.tooBig(e, 'matmul', `(batch ${p.batch}, m ${p.m}, n ${p.n}, k ${p.k})`);
    }
  }

  override unary(op: UnaryOp, x: Storage): Storage {
    const X = this.f32(x);
    if (!X || !UNARY.has(op)) return super.unary(op, x);
    return this.out(this.scoped(() => {
      const n = X.length, px = this.put(X), py = this.rt.alloc(n * 4);
      this.rt.run(`u_${op}`, Math.ceil(n / CHUNK), this.rt.args([n, CHUNK, px, py]));
      return this.take(py, n);
    }));
  }

  override binary(op: BinaryOp, a: Storage, aShape: Shape, b: Storage, bShape: Shape, outShape: Shape): Storage {
    const A = this.f32(a), B = this.f32(b);
    const n = sizeOf(outShape);
    if (!A || !B || !BINARY.has(op) || n === 0) return super.binary(op, a, aShape, b, bShape, outShape);
    // each operand is full (n), a scalar, or a row repeated over the leading dims
    const kind = (x: F32, shape: Shape): number | 'full' | null => {
      if (x.length === n) return 'full';
      if (x.length === 1) return 1;
      const s = [...shape]; while (s.length && s[0] === 1) s.shift();
      const tail = outShape.slice(outShape.length - s.length);
      return s.length <= outShape.length && s.every((d, i) => d === tail[i]) ? x.length : null;
    };
    const ka = kind(A, aShape), kb = kind(B, bShape);
    if (ka === null || kb === null || (ka !== 'full' && kb !== 'full')) return super.binary(op, a, aShape, b, bShape, outShape);
    const rowLen = ka === 'full' ? kb : ka;
    return this.out(this.scoped(() => {
      const py = this.rt.alloc(n * 4);
      // a scalar becomes one row of `cols` copies; full-by-full runs as rows of a fixed width
      const cols = rowLen === 'full' || rowLen === 1 ? Math.min(n, 4096) : rowLen;
      const prep = (x: F32, k: number | 'full'): number =>
        k === 1 ? this.put(new Float32Array(cols).fill(x[0]!)) : this.put(x);
      const pa = prep(A, ka), pb = prep(B, kb);
      const full = Math.floor(n / cols), tail = n - full * cols;
      const call = (rows: number, c: number, off: number): void => {
        const ra = ka === 'full' ? [pa + off * 4, c, NOGROUP, 0] : [pa, 0, NOGROUP, 0];
        const rb = kb === 'full' ? [pb + off * 4, c, NOGROUP, 0] : [pb, 0, NOGROUP, 0];
        this.rows(`b_${op}`, rows, c, [...ra, ...rb, py + off * 4, c, NOGROUP, 0]);
      };
      call(full, cols, 0);
      if (tail) call(1, tail, full * cols); // only when cols is not a row length (scalar / full)
      return this.take(py, n);
    }));
  }

  override reduce(op: ReduceOp, x: Storage, outer: number, size: number, inner: number): Storage {
    const X = this.f32(x);
    if (!X || size === 0 || outer * inner === 0) return super.reduce(op, x, outer, size, inner);
    return this.out(this.scoped(() => {
      const px = this.put(X), py = this.rt.alloc(outer * inner * 4);
      if (inner === 1) {
        this.rows(`r_${op}`, outer, size, [...WasmBackend.dense(px, size), py]);
      } else {
        const tasks = outer * Math.ceil(inner / COL_BLOCK);
        this.rt.run(`c_${op}`, tasks, this.rt.args([outer, size, inner, COL_BLOCK, px, py]));
      }
      return this.take(py, outer * inner);
    }));
  }

  // ---- movement: row copies instead of the reference's per-element odometer ----
  /**
   * Gathers whose innermost dim is contiguous (the head split/merge transposes of attention,
   * slices, splits) copy whole rows with TypedArray.set; other layouts use the reference.
   */
  override strided(x: Storage, outShape: Shape, strides: readonly number[], offset: number): Storage {
    const shape = [...outShape], st = [...strides];
    // merge trailing dims that are contiguous in the source into one longer row
    while (shape.length >= 2 && st[st.length - 1] === 1 && st[st.length - 2] === shape[shape.length - 1]) {
      const n = shape.pop()!; st.pop();
      shape[shape.length - 1]! *= n; st[st.length - 1] = 1;
    }
    const nd = shape.length, size = sizeOf(shape);
    const inner = shape[nd - 1] ?? 1;
    if (nd === 0 || st[nd - 1] !== 1 || inner < 16 || size === 0) return super.strided(x, outShape, strides, offset);
    const a = this.host(x);
    const out = this.raw(size, x.dtype);
    const idx = new Array<number>(nd).fill(0);
    let src = offset;
    for (let dst = 0; dst < size; dst += inner) {
      out.set(a.subarray(src, src + inner) as never, dst);
      for (let d = nd - 2; d >= 0; d--) {
        idx[d]!++; src += st[d]!;
        if (idx[d]! < shape[d]!) break;
        src -= st[d]! * shape[d]!; idx[d] = 0;
      }
    }
    return this.wrap(out, x.dtype);
  }

  override pad(x: Storage, shape: Shape, before: readonly number[], after: readonly number[]): Storage {
    const nd = shape.length, inner = shape[nd - 1] ?? 0, size = sizeOf(shape);
    if (nd === 0 || inner < 16 || size === 0) return super.pad(x, shape, before, after);
    const outShape = shape.map((d, i) => d + before[i]! + after[i]!);
    const ost = new Array<number>(nd).fill(1);
    for (let d = nd - 2; d >= 0; d--) ost[d] = ost[d + 1]! * outShape[d + 1]!;
    const a = this.host(x);
    const out = this.alloc(sizeOf(outShape), x.dtype); // zeroed: the padding
    let dst = 0;
    for (let d = 0; d < nd; d++) dst += before[d]! * ost[d]!;
    const idx = new Array<number>(nd).fill(0);
    for (let src = 0; src < size; src += inner) {
      out.set(a.subarray(src, src + inner) as never, dst);
      for (let d = nd - 2; d >= 0; d--) {
        idx[d]!++; dst += ost[d]!;
        if (idx[d]! < shape[d]!) break;
        dst -= ost[d]! * shape[d]!; idx[d] = 0;
      }
    }
    return this.wrap(out, x.dtype);
  }

  // ---- fused kernels ----
  private softmax(x: Storage, rows: number, cols: number): Storage {
    const X = this.f32(x);
    if (!X) { const y = this.alloc(rows * cols, x.dtype); ref.softmaxRef(this.host(x), rows, cols, y); return this.wrap(y, x.dtype); }
    return this.out(this.scoped(() => {
      const px = this.put(X), py = this.rt.alloc(X.length * 4);
      this.rows('softmax', rows, cols, [...WasmBackend.dense(px, cols), ...WasmBackend.dense(py, cols)]);
      return this.take(py, rows * cols);
    }));
  }

  private rowsBwd(kernel: string, fallback: typeof ref.softmaxBackwardRef, y: Storage, gy: Storage, rows: number, cols: number): Storage {
    const Y = this.f32(y), G = this.f32(gy);
    if (!Y || !G) {
      const gx = this.alloc(rows * cols, y.dtype);
      fallback(this.host(y), this.host(gy), rows, cols, gx);
      return this.wrap(gx, y.dtype);
    }
    return this.out(this.scoped(() => {
      const py = this.put(Y), pg = this.put(G), px = this.rt.alloc(rows * cols * 4);
      const d = WasmBackend.dense;
      this.rows(kernel, rows, cols, [...d(py, cols), ...d(pg, cols), ...d(px, cols)]);
      return this.take(px, rows * cols);
    }));
  }

  /** max and sum(exp(x - max)) per row in wasm, logsumexp finished here (wasm has no log). */
  private rowLse(px: number, rows: number, cols: number): F32 {
    const pm = this.rt.alloc(rows * 4), ps = this.rt.alloc(rows * 4);
    this.rows('rowStats', rows, cols, [...WasmBackend.dense(px, cols), pm, ps]);
    const m = this.rt.f32(pm, rows), s = this.rt.f32(ps, rows);
    const lse = new Float32Array(rows);
    for (let r = 0; r < rows; r++) lse[r] = m[r]! + Math.log(s[r]!);
    return lse;
  }

  private logSoftmax(x: Storage, rows: number, cols: number): Storage {
    const X = this.f32(x);
    if (!X) { const y = this.alloc(rows * cols, x.dtype); ref.logSoftmaxRef(this.host(x), rows, cols, y); return this.wrap(y, x.dtype); }
    return this.out(this.scoped(() => {
      const px = this.put(X), py = this.rt.alloc(X.length * 4);
      const pl = this.put(this.rowLse(px, rows, cols));
      this.rows('subRow', rows, cols, [...WasmBackend.dense(px, cols), ...WasmBackend.dense(py, cols), pl]);
      return this.take(py, rows * cols);
    }));
  }

  private crossEntropy(logits: Storage, targets: Storage, rows: number, cols: number): { loss: Storage; lse: Storage } {
    const X = this.f32(logits), T = this.host(targets);
    if (!X) {
      const loss = this.alloc(rows, logits.dtype), lse = this.alloc(rows, logits.dtype);
      ref.crossEntropyRef(this.host(logits), T, rows, cols, loss, lse);
      return { loss: this.wrap(loss, logits.dtype), lse: this.wrap(lse, logits.dtype) };
    }
    const lse = this.scoped(() => this.rowLse(this.put(X), rows, cols));
    const loss = new Float32Array(rows);
    for (let r = 0; r < rows; r++) loss[r] = lse[r]! - X[r * cols + T[r]!]!;
    return { loss: this.out(loss), lse: this.out(lse) };
  }

  private crossEntropyBackward(logits: Storage, targets: Storage, lse: Storage, gloss: Storage, rows: number, cols: number): Storage {
    const X = this.f32(logits), L = this.f32(lse), GL = this.f32(gloss), T = this.host(targets) as Int32Array;
    if (!X || !L || !GL) {
      const g = this.alloc(rows * cols, logits.dtype);
      ref.crossEntropyBackwardRef(this.host(logits), T, this.host(lse), this.host(gloss), rows, cols, g);
      return this.wrap(g, logits.dtype);
    }
    return this.out(this.scoped(() => {
      const px = this.put(X), pg = this.rt.alloc(rows * cols * 4);
      const pl = this.put(L), pgl = this.put(GL), pt = this.put(T);
      this.rows('ceBwd', rows, cols, [...WasmBackend.dense(px, cols), ...WasmBackend.dense(pg, cols), pl, pgl, pt]);
      return this.take(pg, rows * cols);
    }));
  }

  private layerNorm(x: Storage, w: Storage, b: Storage, rows: number, cols: number, eps: number): { y: Storage; mean: Storage; rstd: Storage } {
    const X = this.f32(x), W = this.f32(w), B = this.f32(b);
    if (!X || !W || !B) {
      const dt = x.dtype;
      const y = this.alloc(rows * cols, dt), mean = this.alloc(rows, dt), rstd = this.alloc(rows, dt);
      ref.layerNormRef(this.host(x), this.host(w), this.host(b), rows, cols, eps, y, mean, rstd);
      return { y: this.wrap(y, dt), mean: this.wrap(mean, dt), rstd: this.wrap(rstd, dt) };
    }
    return this.scoped(() => {
      const px = this.put(X), pw = this.put(W), pb = this.put(B);
      const py = this.rt.alloc(rows * cols * 4), pm = this.rt.alloc(rows * 4), pr = this.rt.alloc(rows * 4);
      this.rows('lnFwd', rows, cols, [...WasmBackend.dense(px, cols), ...WasmBackend.dense(py, cols), pw, pb, pm, pr], [eps]);
      return { y: this.out(this.take(py, rows * cols)), mean: this.out(this.take(pm, rows)), rstd: this.out(this.take(pr, rows)) };
    });
  }

  private layerNormBackward(x: Storage, w: Storage, mean: Storage, rstd: Storage, gy: Storage, rows: number, cols: number):
    { gx: Storage; gw: Storage; gb: Storage } {
    const X = this.f32(x), W = this.f32(w), M = this.f32(mean), R = this.f32(rstd), G = this.f32(gy);
    if (!X || !W || !M || !R || !G) {
      const dt = x.dtype;
      const gx = this.alloc(rows * cols, dt), gw = this.alloc(cols, dt), gb = this.alloc(cols, dt);
      ref.layerNormBackwardRef(this.host(x), this.host(w), this.host(mean), this.host(rstd), this.host(gy), rows, cols, gx, gw, gb);
      return { gx: this.wrap(gx, dt), gw: this.wrap(gw, dt), gb: this.wrap(gb, dt) };
    }
    return this.scoped(() => {
      const px = this.put(X), pw = this.put(W), pm = this.put(M), pr = this.put(R), pg = this.put(G);
      const pgx = this.rt.alloc(rows * cols * 4), pgw = this.rt.alloc(cols * 4), pgb = this.rt.alloc(cols * 4);
      const d = WasmBackend.dense;
      this.rows('lnBwdX', rows, cols, [...d(px, cols), ...d(pg, cols), ...d(pgx, cols), pw, pm, pr]);
      this.rt.run('lnBwdWB', Math.ceil(cols / COL_BLOCK), this.rt.args([1, rows, cols, COL_BLOCK, px, pg, pm, pr, pgw, pgb]));
      return { gx: this.out(this.take(pgx, rows * cols)), gw: this.out(this.take(pgw, cols)), gb: this.out(this.take(pgb, cols)) };
    });
  }

  /** Scores S = q k^T per head, padded by the gemm: a grouped matrix argument for row kernels. */
  private scores(pq: number, pk: number, bh: number, t: number, s: number, d: number, mask: (mode: 1 | 2 | 3) => Causal | undefined): number[] {
    const g = gemmPtr(this.rt, this.km.shape, pq, pk,
      { batch: bh, m: t, n: s, k: d, transA: false, transB: true, aBatchStride: t * d, bBatchStride: s * d }, mask(1));
    return [g.c, g.ldc, t, g.cBatch];
  }

  /**
   * Which causal skip a product may use: only with a causal mask and s >= t (then every query
   * sees at least one key, so no output row is left unwritten).
   */
  private static causalMask(causal: boolean, t: number, s: number): (mode: 1 | 2 | 3) => Causal | undefined {
    return (mode) => (causal && s >= t ? { mode, off: s - t } : undefined);
  }

  private attention(q: Storage, k: Storage, v: Storage, bh: number, t: number, s: number, d: number, scale: number, causal: boolean):
    { o: Storage; lse: Storage } {
    const Q = this.f32(q), K = this.f32(k), V = this.f32(v);
    if (!Q || !K || !V) {
      const dt = q.dtype, o = this.alloc(bh * t * d, dt), lse = this.alloc(bh * t, dt);
      ref.attentionRef(this.host(q), this.host(k), this.host(v), bh, t, s, d, scale, causal, o, lse);
      return { o: this.wrap(o, dt), lse: this.wrap(lse, dt) };
    }
    return this.scoped(() => {
      const pq = this.put(Q), pk = this.put(K), pv = this.put(V);
      const mask = WasmBackend.causalMask(causal, t, s);
      const sc = this.scores(pq, pk, bh, t, s, d, mask);
      const pp = this.rt.alloc(bh * t * s * 4), pm = this.rt.alloc(bh * t * 4), ps = this.rt.alloc(bh * t * 4);
      this.rows('attnSoftmax', bh * t, s, [...sc, ...WasmBackend.dense(pp, s), pm, ps, t, s - t, causal ? 1 : 0], [scale]);
      const o = readC(this.rt, gemmPtr(this.rt, this.km.shape, pp, pv,
        { batch: bh, m: t, n: d, k: s, transA: false, transB: false, aBatchStride: t * s, bBatchStride: s * d }, mask(2)),
      bh, t, d, this.raw(bh * t * d, 'float32') as F32);
      const m = this.rt.f32(pm, bh * t), sm = this.rt.f32(ps, bh * t);
      const lse = new Float32Array(bh * t);
      for (let r = 0; r < bh * t; r++) lse[r] = m[r]! + Math.log(sm[r]!);
      return { o: this.out(o), lse: this.out(lse) };
    });
  }

  private attentionBackward(q: Storage, k: Storage, v: Storage, o: Storage, lse: Storage, go: Storage,
    bh: number, t: number, s: number, d: number, scale: number, causal: boolean): { gq: Storage; gk: Storage; gv: Storage } {
    const Q = this.f32(q), K = this.f32(k), V = this.f32(v), O = this.f32(o), L = this.f32(lse), GO = this.f32(go);
    if (!Q || !K || !V || !O || !L || !GO) {
      const dt = q.dtype;
      const gq = this.alloc(bh * t * d, dt), gk = this.alloc(bh * s * d, dt), gv = this.alloc(bh * s * d, dt);
      ref.attentionBackwardRef(this.host(q), this.host(k), this.host(v), this.host(o), this.host(lse), this.host(go),
        bh, t, s, d, scale, causal, gq, gk, gv);
      return { gq: this.wrap(gq, dt), gk: this.wrap(gk, dt), gv: this.wrap(gv, dt) };
    }
    return this.scoped(() => {
      const rt = this.rt, sh = this.km.shape, dense = WasmBackend.dense;
      const pq = this.put(Q), pk = this.put(K), pv = this.put(V), po = this.put(O), pl = this.put(L), pgo = this.put(GO);
      const mask = WasmBackend.causalMask(causal, t, s);
      const sc = this.scores(pq, pk, bh, t, s, d, mask);
      const pp = rt.alloc(bh * t * s * 4);
      const lim = [t, s - t, causal ? 1 : 0];
      this.rows('attnProbs', bh * t, s, [...sc, ...dense(pp, s), pl, ...lim], [scale]);
      // dV = P^T dO
      const gv = readC(rt, gemmPtr(rt, sh, pp, pgo,
        { batch: bh, m: s, n: d, k: t, transA: true, transB: false, aBatchStride: t * s, bBatchStride: t * d }, mask(3)),
      bh, s, d, this.raw(bh * s * d, 'float32') as F32);
      // dP = dO V^T, then dS = P (dP - rowsum(dO * O)) * scale
      const dp = gemmPtr(rt, sh, pgo, pv, { batch: bh, m: t, n: s, k: d, transA: false, transB: true, aBatchStride: t * d, bBatchStride: s * d }, mask(1));
      const pD = rt.alloc(bh * t * 4);
      this.rows('rowDot', bh * t, d, [...dense(pgo, d), ...dense(po, d), pD]);
      const pds = rt.alloc(bh * t * s * 4);
      this.rows('attnDs', bh * t, s, [...dense(pp, s), dp.c, dp.ldc, t, dp.cBatch, ...dense(pds, s), pD, ...lim], [scale]);
      // dQ = dS K ; dK = dS^T Q
      const gq = readC(rt, gemmPtr(rt, sh, pds, pk,
        { batch: bh, m: t, n: d, k: s, transA: false, transB: false, aBatchStride: t * s, bBatchStride: s * d }, mask(2)),
      bh, t, d, this.raw(bh * t * d, 'float32') as F32);
      const gk = readC(rt, gemmPtr(rt, sh, pds, pq,
        { batch: bh, m: s, n: d, k: t, transA: true, transB: false, aBatchStride: t * s, bBatchStride: t * d }, mask(3)),
      bh, s, d, this.raw(bh * s * d, 'float32') as F32);
      return { gq: this.out(gq), gk: this.out(gk), gv: this.out(gv) };
    });
  }

  private adamw(p: Storage, g: Storage, m: Storage, v: Storage, h: AdamWParams): void {
    const P = this.f32(p), G = this.f32(g), M = this.f32(m), V = this.f32(v);
    if (!P || !G || !M || !V) { ref.adamwRef(this.host(p), this.host(g), this.host(m), this.host(v), h); return; }
    this.scoped(() => {
      const n = P.length;
      const pp = this.put(P), pg = this.put(G), pm = this.put(M), pv = this.put(V);
      const bc1 = 1 - h.beta1 ** h.step, bc2 = 1 - h.beta2 ** h.step;
      const floats = [h.lr, h.beta1, h.beta2, 1 - h.beta1, 1 - h.beta2, h.eps, h.weightDecay, bc1, bc2];
      this.rt.run('adamw', Math.ceil(n / CHUNK), this.rt.args([n, CHUNK, pp, pg, pm, pv, ...floats], floats.map((_, i) => 6 + i)));
      P.set(this.rt.f32(pp, n)); M.set(this.rt.f32(pm, n)); V.set(this.rt.f32(pv, n));
    });
  }

  private sumSquares(xs: Storage[]): Storage {
    let total = 0;
    for (const x of xs) {
      const X = this.f32(x);
      if (!X) { const a = this.host(x); for (let i = 0; i < a.length; i++) total += a[i]! * a[i]!; continue; }
      if (X.length === 0) continue;
      this.scoped(() => {
        const chunks = Math.ceil(X.length / CHUNK);
        const px = this.put(X), po = this.rt.alloc(chunks * 4);
        this.rt.run('sumsq', chunks, this.rt.args([X.length, CHUNK, px, po]));
        const parts = this.rt.f32(po, chunks);
        for (let i = 0; i < chunks; i++) total += parts[i]!; // in chunk order: thread-count independent
      });
    }
    return this.out(Float32Array.of(total));
  }
}

