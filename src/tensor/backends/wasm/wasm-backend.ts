// The wasm backend: the js reference backend with its hot float32 kernels (matmul, softmax
// family, cross-entropy, layerNorm, attention, GELU and unary ops, broadcasting binary ops,
// reductions, AdamW, sums of squares, float32 <-> half casts) replaced by WebAssembly SIMD
// kernels run on a pool of worker threads. Tensors stay in ordinary host typed arrays (so models
// are not bound by the 4 GiB wasm32 memory); each kernel call copies its operands into the shared
// wasm memory. Movement ops with a contiguous innermost dim copy whole rows. Everything else
// (int32 and float64 kernels, other layouts, indexing, `log`, `pow`, `where`, other casts) is the
// js backend's. The fused kernels are in fused.ts.

import type { Backend, BinaryOp, FusedKernels, MatmulParams, ReduceOp, Storage, UnaryOp } from '../../backend.js';
import { allocHost, type DType, type HostArray } from '../../dtype.js';
import { sizeOf, type Shape } from '../../shape.js';
import { JsBackend } from '../js.js';
import { CHUNK, COL_BLOCK, tooBig, wasmFused } from './fused.js';
import { NOGROUP, dense } from './row-kernels.js';
import type { WasmKernelHost } from './kernel-host.js';
import { place, wasmMatmul } from './matmul.js';
import { buildModule, matmulShape, type KernelModule } from './module.js';
import { WasmRuntime } from './runtime.js';
import { wasmSimdAvailable } from './simd.js';
import { hostThreads, noThreadsReason } from './threads.js';

const UNARY = new Set<UnaryOp>(['neg', 'abs', 'sqrt', 'relu', 'step', 'exp', 'tanh', 'gelu', 'geluGrad']);
const BINARY = new Set<BinaryOp>(['add', 'sub', 'mul', 'div', 'max', 'min', 'gt', 'lt', 'eq']);

export interface WasmBackendOptions {
  /** Worker threads including the main thread (default: one per core). Results do not depend on it. */
  threads?: number;
  /**
   * Share the wasm memory between threads (default: where the runtime allows it). Without it
   * (a page that is not cross-origin isolated has no SharedArrayBuffer) the backend runs on one
   * thread, same kernels, same results.
   */
  sharedMemory?: boolean;
  /**
   * Fused multiply-add (relaxed SIMD's f32x4.relaxed_madd) in the matmul micro-kernels where the
   * engine has it (default true; Node >= 20 and Chrome do). One rounding per multiply-add
   * instead of two: results differ from the mul+add kernels (false, or an engine without relaxed
   * SIMD) in the last bits, and do not depend on the thread count either way. It is faster
   * wherever it was measured; `bench/wasm-tune.ts` compares the two on your machine.
   */
  fma?: boolean;
}

const compiled = new Map<string, KernelModule>();

type F32 = Float32Array;
const CAST_KERNELS: Partial<Record<string, string>> = {
  'bfloat16>float32': 'bf16ToF32', 'float32>bfloat16': 'f32ToBf16', 'float16>float32': 'f16ToF32', 'float32>float16': 'f32ToF16',
};
/** Elements converted per trip through the arena (wasm memory stays small for huge casts). */
const CAST_SLAB = 1 << 22;

export class WasmBackend extends JsBackend implements Backend, WasmKernelHost {
  override readonly name: string = 'wasm';
  readonly threads: number;
  /** The worker pool and its shared memory (internal: for this backend's fused.ts). */
  readonly runtime: WasmRuntime;
  readonly kernels: KernelModule;
  override readonly fused: FusedKernels;

  constructor(opts: WasmBackendOptions = {}) {
    super();
    if (!wasmSimdAvailable()) {
      throw new Error('wasm backend: this runtime lacks WebAssembly SIMD; use the js backend');
    }
    const why = noThreadsReason();
    const shared = opts.sharedMemory ?? why === null;
    if (shared && why !== null) throw new Error(`wasm backend: sharedMemory was asked for, but ${why}`);
    this.threads = opts.threads ?? (shared ? hostThreads() : 1);
    if (this.threads > 1 && !shared) {
      throw new Error(`wasm backend: ${this.threads} threads need a shared memory, but ${why ?? 'sharedMemory is false'}; use threads: 1`);
    }
    const shape = matmulShape(opts.fma ?? true);
    const key = `${shared}/${shape.fma}`;
    let kernels = compiled.get(key);
    if (!kernels) { kernels = buildModule(shape, shared); compiled.set(key, kernels); }
    this.kernels = kernels;
    this.runtime = new WasmRuntime(this.kernels.module, this.kernels.names, this.threads, shared);
    this.fused = wasmFused(this);
  }

  /** Bytes of wasm memory (its high-water mark: a wasm memory grows, never shrinks). */
  memoryStats(): { wasmBytes: number } {
    return { wasmBytes: this.runtime.memory.buffer.byteLength };
  }

  /** Stop the worker threads (they are unref'd, so this is only needed to free them early). */
  terminate(): void { this.runtime.terminate(); }

  // ---- host memory ----
  // Plain typed arrays, freed by the GC. (A pool recycling large buffers was measured here and
  // dropped: it held up to 1 GiB of dead buffers until the step ended, for no speed.)
  /** A new host array for a kernel's output. */
  raw(size: number, dtype: DType): HostArray { return allocHost(dtype, size); }
  // ---- the kernel files' handle (WasmKernelHost: fused.ts, attention.ts) ----
  private f32(s: Storage): F32 | null {
    return s.dtype === 'float32' ? (this.host(s) as F32) : null;
  }
  out(data: HostArray): Storage { return this.wrap(data, 'float32'); }
  /** Copy a host array into the arena. */
  put(a: Float32Array | Int32Array): number {
    const p = this.runtime.alloc(a.length * 4);
    if (a instanceof Float32Array) this.runtime.f32(p, a.length).set(a); else this.runtime.i32(p, a.length).set(a);
    return p;
  }
  take(ptr: number, n: number): F32 {
    const out = this.raw(n, 'float32') as F32;
    out.set(this.runtime.f32(ptr, n));
    return out;
  }
  /** Rows per task: enough tasks to balance the threads, enough work per task to pay for it. */
  private rowsPerTask(rows: number, cols: number): number {
    let r = Math.ceil(rows / (this.threads * 8));
    r = Math.max(r, Math.ceil(8192 / Math.max(cols, 1)));
    return Math.max(1, Math.min(r, rows));
  }
  /** Run a row kernel over [rows, cols]; `args` follow rows, cols, rows-per-task. */
  rows(name: string, rows: number, cols: number, args: number[], floats: number[] = []): void {
    if (rows === 0) return;
    const rowsPerTask = this.rowsPerTask(rows, cols);
    const all = [rows, cols, rowsPerTask, ...args, ...floats];
    const fi = floats.map((_, i) => 3 + args.length + i);
    this.runtime.run(name, Math.ceil(rows / rowsPerTask), this.runtime.args(all, fi));
  }
  scoped<T>(fn: () => T): T {
    const mark = this.runtime.mark();
    try { return fn(); } finally { this.runtime.release(mark); }
  }
  // ---- primitives ----
  override matmul(a: Storage, b: Storage, p: MatmulParams): Storage {
    // float32, or bfloat16 widened while packing (float16 takes the contract's cast)
    const operand = (s: Storage): F32 | Uint16Array | null => (s.dtype === 'float32' ? this.host(s) as F32 : s.dtype === 'bfloat16' ? this.host(s) as Uint16Array : null);
    const A = operand(a), B = operand(b);
    if (!A || !B) return super.matmul(a, b, p);
    try {
      return this.out(wasmMatmul(this.runtime, this.kernels.shape, A, B, p, this.raw(p.batch * p.m * p.n, 'float32') as F32));
    } catch (e) {
      return tooBig(e, 'matmul', `(batch ${p.batch}, m ${p.m}, n ${p.n}, k ${p.k})`);
    }
  }

  /** bfloat16/float16 <-> float32 in wasm (autocast's constant traffic), through the arena a slab at a time. */
  override cast(x: Storage, to: DType): Storage {
    const kernel = CAST_KERNELS[`${x.dtype}>${to}`];
    const n = x.size;
    if (!kernel || n < 4096) return super.cast(x, to);
    const src = this.host(x), out = this.raw(n, to);
    const inBytes = x.dtype === 'float32' ? 4 : 2, outBytes = 6 - inBytes;
    for (let at = 0; at < n; at += CAST_SLAB) {
      const len = Math.min(CAST_SLAB, n - at);
      this.scoped(() => {
        const ps = this.runtime.alloc(len * inBytes), pd = this.runtime.alloc(len * outBytes);
        place(this.runtime, ps, len, inBytes === 2).set(src.subarray(at, at + len) as never);
        const chunk = Math.max(CHUNK, Math.ceil(len / (this.threads * 4) / 8) * 8);
        this.runtime.run(kernel, Math.ceil(len / chunk), this.runtime.args([len, chunk, ps, pd]));
        out.set(place(this.runtime, pd, len, outBytes === 2) as never, at);
      });
    }
    return this.wrap(out, to);
  }

  override unary(op: UnaryOp, x: Storage): Storage {
    const X = this.f32(x);
    if (!X || !UNARY.has(op)) return super.unary(op, x);
    return this.out(this.scoped(() => {
      const n = X.length, px = this.put(X), py = this.runtime.alloc(n * 4);
      this.runtime.run(`u_${op}`, Math.ceil(n / CHUNK), this.runtime.args([n, CHUNK, px, py]));
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
      const py = this.runtime.alloc(n * 4);
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
      const px = this.put(X), py = this.runtime.alloc(outer * inner * 4);
      if (inner === 1) {
        this.rows(`r_${op}`, outer, size, [...dense(px, size), py]);
      } else {
        const tasks = outer * Math.ceil(inner / COL_BLOCK);
        this.runtime.run(`c_${op}`, tasks, this.runtime.args([outer, size, inner, COL_BLOCK, px, py]));
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
}
