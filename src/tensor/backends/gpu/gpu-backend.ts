// The gpu backend: tensors whose data lives in device buffers, every primitive of the
// Backend contract as a gpu.js kernel (kernels.ts), run by a Runner (WebGPU, or gpu.js's
// cpu mode in CI). Ops stay synchronous: kernels are enqueued, only read() waits.
//
// Host-side work done here, and why:
// - broadcasting and strided views are collapsed to at most 3 dims on the host, so the
//   kernels index inputs through gpu.js's i32 accessor (exact past 2^24 elements; see
//   kernels.ts); the shapes that do not collapse go to the runner's WGSL gather (u32 index
//   arithmetic, any size);
// - int32 storages (token ids, targets) keep a host copy next to the device buffer: the
//   indices come from the host data loader anyway, int32 ops on them run on the host with
//   the reference backend, and scatterAddRows sorts them there (see scatterAddRows);
// - float16/bfloat16 storages are packed two per 32-bit word (2 bytes an element, as on the
//   host): only the runner's bit-exact cast reads or writes packed words, so the movement
//   kernels (strided, pad, gatherRows) move halves unpacked and pack the result again.

import type { Backend, BinaryOp, DeviceLossInfo, FusedKernels, MatmulParams, ReduceOp, Storage, UnaryOp } from '../../backend.js';
import { convertHost, isHalf, float32ToBfloat16Bits, float32ToFloat16Bits, type DType, type HostArray } from '../../dtype.js';
import { broadcastStrides, shapeStr, sizeOf } from '../../shape.js';
import { HostStorage, JsBackend } from '../js.js';
import { collapseBroadcast, collapseStrided, pad3, pad3f } from './collapse.js';
import { makeFused } from './fused.js';
import { BINARY_CODES, CAST_CODES, KERNELS, MODES, UNARY_CODES, type KernelSpec } from './kernels.js';
import { halfMatmul, matmul as gpuMatmul } from './matmul.js';
import { arg, type DeviceBuffer, type KernelArg, type Runner } from './runner.js';
import { selfTest } from './self-test.js';
import type { GpuKernelHost } from './kernel-host.js';
import type { WebGpuRunner } from './webgpu-runner.js';
import { F32_EXACT, GpuStorage, float64Error, forcedGc } from './storage.js';
import { trackStorage } from '../../scope.js';

export { GpuStorage } from './storage.js';
export { collapseBroadcast, collapseStrided } from './collapse.js';

export interface GpuBackendOptions {
  /** The backend's name (registry key). */
  name?: string;
  /**
   * Reductions are split into chunks until about this many threads run (a long reduction
   * on one thread is slow on a GPU); tests set it low to exercise the two-pass path.
   */
  reduceThreads?: number;
}


export class GpuBackend implements Backend, GpuKernelHost {
  readonly name: string;
  readonly hostMemory = false;
  readonly fused: FusedKernels;
  readonly hostRef = new JsBackend(); // int32 host-side math (exact, and tiny: indices)
  private readonly reduceThreads: number;
  private readonly registry: FinalizationRegistry<{ buf: DeviceBuffer | null }>;
  /**
   * Storages holding a device buffer now (tf.memory()'s numTensors): freed ones, by a scope,
   * dispose() or the collector, are not counted. A count that stays up after code that should
   * have freed its temporaries says they wait for the garbage collector.
   */
  liveStorages = 0;
  /** Whether matmul uses the runner's fast kernel (turned off if it fails the self-test). */
  fastMatmul = true;

  /** Why the device was lost, once it is (see DeviceLostError); null while it lives. */
  get lost(): DeviceLossInfo | null {
    return this.runner.lost ?? null;
  }

  constructor(readonly runner: Runner, opts: GpuBackendOptions = {}) {
    this.name = opts.name ?? 'gpu';
    this.reduceThreads = opts.reduceThreads ?? 65536;
    // a storage dropped without dispose() returns its buffer to the pool when collected
    this.registry = new FinalizationRegistry((cell) => {
      if (cell.buf) { this.runner.release(cell.buf); cell.buf = null; this.liveStorages--; }
    });
    this.fused = makeFused(this);
  }

  // ---- the kernel files' handle (GpuKernelHost: matmul.ts, fused.ts) ----
  check(op: string, ...ss: Storage[]): GpuStorage[] {
    return ss.map((s) => {
      if (!(s instanceof GpuStorage)) throw new Error(`${op}: storage is not from the ${this.name} backend; move the tensor with .to('${this.name}')`);
      if (s.dtype === 'float64') throw float64Error(op);
      return s;
    });
  }
  wrap(buf: DeviceBuffer, size: number, dtype: DType, host: Int32Array | null = null): GpuStorage {
    const s = new GpuStorage(buf, size, dtype, host);
    this.registry.register(s, s.cell, s);
    this.liveStorages++;
    trackStorage(s, this);
    this.selfTestMade?.push(s);
    return s;
  }
  run(spec: KernelSpec, out: readonly number[], args: readonly KernelArg[], into?: { buf: DeviceBuffer; offset: number }): DeviceBuffer {
    const n = out[0]!;
    if (!spec.elementwise || into || n <= this.runner.maxBindingElements) return this.runner.run(spec, out, args, into);
    const chunk = Math.floor(this.runner.maxBindingElements / 64) * 64;
    // past the binding limit: the output a bound chunk at a time, each full-length argument bound from the chunk's start
    const result = this.runner.alloc(n);
    for (let base = 0; base < n; base += chunk) {
      const m = Math.min(chunk, n - base);
      const part = args.map((a) => (typeof a !== 'number' && a.dims.length === 1 && a.dims[0] === n ? { buf: a.buf, dims: [m], offset: base } : a));
      this.runner.run(spec, [m], part, { buf: result, offset: base });
    }
    return result;
  }
  /** A storage from a host reference-backend result (int32 host path). */
  fromHostRef(s: Storage): GpuStorage {
    return this.fromHost((s as HostStorage).data, s.dtype) as GpuStorage;
  }
  hostOf(s: GpuStorage): Storage { return this.hostRef.fromHost(s.host!, 'int32'); }
  allHost(...ss: GpuStorage[]): boolean { return ss.every((s) => s.dtype === 'int32' && s.host !== null); }

  // ---- memory ----
  fromHost(data: HostArray, dtype: DType): Storage {
    if (dtype === 'float64') throw float64Error('fromHost');
    let f: Float32Array;
    let host: Int32Array | null = null;
    if (dtype === 'float32') f = data instanceof Float32Array ? data : Float32Array.from(data);
    else if (isHalf(dtype)) {
      // two 16-bit patterns per word, element 2i in the low half (WebGPU buffers are little-endian)
      const words = new Uint16Array(2 * Math.ceil(data.length / 2));
      words.set(data);
      f = new Float32Array(words.buffer);
    } else {
      f = Float32Array.from(data);
      if (dtype === 'int32') {
        host = data instanceof Int32Array ? data : Int32Array.from(data);
        for (let i = 0; i < host.length; i++) {
          if (Math.abs(host[i]!) > F32_EXACT) {
            throw new Error(`fromHost: int32 value ${host[i]} at ${i} is beyond +-2^24; the gpu backend holds int32 in f32 on the device (exact up to 16,777,216), enough for token ids and targets`);
          }
        }
      }
    }
    return this.wrap(this.runner.upload(f), data.length, dtype, host);
  }

  full(size: number, dtype: DType, value: number): Storage {
    if (dtype === 'float64') throw float64Error('full');
    if (isHalf(dtype)) {
      // the 16-bit pattern filled as an exact f32 integer, then packed
      const bits = dtype === 'float16' ? float32ToFloat16Bits(value) : float32ToBfloat16Bits(value);
      const wide = this.run(KERNELS.fill, [size], [bits]);
      const out = this.castBuf(wide, size, CAST_CODES.pack);
      this.runner.release(wide);
      return this.wrap(out, size, dtype);
    }
    const v = dtype === 'int32' ? Math.trunc(value) : value;
    const host = dtype === 'int32' ? new Int32Array(size).fill(v) : null;
    return this.wrap(this.run(KERNELS.fill, [size], [v]), size, dtype, host);
  }

  async read(s: Storage): Promise<HostArray> {
    const [g] = this.check('read', s);
    if (g!.host) return g!.host;
    this.runner.flush();
    if (isHalf(g!.dtype)) {
      const words = await this.runner.read(g!.buf, Math.ceil(g!.size / 2));
      return new Uint16Array(words.buffer, words.byteOffset, g!.size).slice();
    }
    const f = await this.runner.read(g!.buf, g!.size);
    return g!.dtype === 'int32' ? Int32Array.from(f) : f;
  }

  readSync(_s: Storage): HostArray {
    throw new Error(`readSync: the ${this.name} backend keeps data in GPU memory and WebGPU reads back only asynchronously; use \`await t.data()\``);
  }

  dispose(s: Storage, reason?: string): void {
    if (!(s instanceof GpuStorage) || !s.cell.buf) return;
    this.registry.unregister(s);
    this.runner.release(s.cell.buf);
    s.cell.buf = null;
    this.liveStorages--;
    s.freedBecause = reason ?? null;
  }

  // ---- elementwise ----
  cast(x: Storage, to: DType): Storage {
    const [s] = this.check('cast', x);
    if (to === 'float64') throw float64Error('cast');
    if (this.allHost(s!)) return this.fromHost(convertHost(s!.host!, 'int32', to), to);
    const from = s!.dtype;
    if (from === to) return this.wrap(this.castBuf(s!.buf, isHalf(from) ? Math.ceil(s!.size / 2) : s!.size, CAST_CODES.copy), s!.size, to);
    let buf = s!.buf;
    let tmp: DeviceBuffer | null = null;
    // to float32 first (unpacking and decoding half bits), then encode to the target
    if (isHalf(from)) {
      tmp = buf = this.castBuf(buf, s!.size, from === 'float16' ? CAST_CODES.f16ToF32 : CAST_CODES.bf16ToF32);
      if (to === 'float32') return this.wrap(buf, s!.size, to);
    }
    const mode = to === 'float16' ? CAST_CODES.f32ToF16 : to === 'bfloat16' ? CAST_CODES.f32ToBf16
      : to === 'int32' && from !== 'int32' ? CAST_CODES.trunc : CAST_CODES.copy;
    const out = this.castBuf(buf, s!.size, mode);
    if (tmp) this.runner.release(tmp);
    return this.wrap(out, s!.size, to);
  }

  /** The runner's bit-exact cast (CAST_CODES mode) of n values into a new buffer. */
  castBuf(buf: DeviceBuffer, n: number, mode: number): DeviceBuffer {
    return this.runner.cast(buf, n, mode);
  }

  /**
   * A movement kernel on a half storage: its 16-bit patterns unpacked to f32 integers, moved by
   * `move` (which makes n values), packed again. Bits are kept as they are (NaN payloads too);
   * the unpacked copies are temporaries of this call.
   */
  private moveHalf(s: GpuStorage, n: number, move: (wide: GpuStorage) => GpuStorage): GpuStorage {
    const wide = this.wrap(this.castBuf(s.buf, s.size, CAST_CODES.unpack), s.size, 'float32');
    const moved = move(wide);
    const out = this.wrap(this.castBuf(moved.buf, n, CAST_CODES.pack), n, s.dtype);
    this.dispose(wide);
    if (moved !== wide) this.dispose(moved);
    return out;
  }

  unary(op: UnaryOp, x: Storage): Storage {
    const [s] = this.check(`unary ${op}`, x);
    if (this.allHost(s!)) return this.fromHostRef(this.hostRef.unary(op, this.hostOf(s!)));
    return this.wrap(this.run(KERNELS.unary, [s!.size], [arg(s!.buf, s!.size), UNARY_CODES[op]]), s!.size, s!.dtype);
  }

  binary(op: BinaryOp, a: Storage, aShape: readonly number[], b: Storage, bShape: readonly number[], outShape: readonly number[]): Storage {
    const [sa, sb] = this.check(`binary ${op}`, a, b);
    if (this.allHost(sa!, sb!)) {
      return this.fromHostRef(this.hostRef.binary(op, this.hostOf(sa!), aShape, this.hostOf(sb!), bShape, outShape));
    }
    const n = sizeOf(outShape);
    const code = BINARY_CODES[op];
    const { dims, flags } = collapseBroadcast(outShape, [aShape, bShape]);
    let out: DeviceBuffer;
    if (dims.length === 1) {
      out = this.run(KERNELS.binary1, [n], [arg(sa!.buf, sa!.size), arg(sb!.buf, sb!.size), flags[0]![0]!, flags[1]![0]!, code]);
    } else if (dims.length <= 3) {
      const [X, Y, Z] = pad3(dims);
      const [fa, fb] = flags.map((f) => pad3f(f));
      out = this.run(KERNELS.binary3, [X, Y, Z], [
        arg(sa!.buf, fa![0] ? X : 1, fa![1] ? Y : 1, fa![2] ? Z : 1),
        arg(sb!.buf, fb![0] ? X : 1, fb![1] ? Y : 1, fb![2] ? Z : 1),
        fa![0]!, fa![1]!, fa![2]!, fb![0]!, fb![1]!, fb![2]!, code]);
    } else {
      // more than 3 alternating broadcast dims: expand the broadcast inputs, then go flat
      const ea = this.expandTo(`binary ${op}`, sa!, aShape, outShape), eb = this.expandTo(`binary ${op}`, sb!, bShape, outShape);
      out = this.run(KERNELS.binary1, [n], [arg(ea.buf, n), arg(eb.buf, n), 1, 1, code]);
      if (ea !== sa) this.dispose(ea);
      if (eb !== sb) this.dispose(eb);
    }
    return this.wrap(out, n, sa!.dtype);
  }

  where(cond: Storage, condShape: readonly number[], a: Storage, aShape: readonly number[],
    b: Storage, bShape: readonly number[], outShape: readonly number[]): Storage {
    const [sc, sa, sb] = this.check('where', cond, a, b);
    if (this.allHost(sa!, sb!) && sc!.host) {
      return this.fromHostRef(this.hostRef.where(this.hostOf(sc!), condShape, this.hostOf(sa!), aShape, this.hostOf(sb!), bShape, outShape));
    }
    const n = sizeOf(outShape);
    const { dims, flags } = collapseBroadcast(outShape, [condShape, aShape, bShape]);
    let out: DeviceBuffer;
    if (dims.length === 1) {
      out = this.run(KERNELS.where1, [n], [arg(sc!.buf, sc!.size), arg(sa!.buf, sa!.size), arg(sb!.buf, sb!.size),
        flags[0]![0]!, flags[1]![0]!, flags[2]![0]!]);
    } else if (dims.length <= 3) {
      const [X, Y, Z] = pad3(dims);
      const f = flags.map((fl) => pad3f(fl));
      const d = (i: number): number[] => [f[i]![0] ? X : 1, f[i]![1] ? Y : 1, f[i]![2] ? Z : 1];
      out = this.run(KERNELS.where3, [X, Y, Z], [arg(sc!.buf, ...d(0)), arg(sa!.buf, ...d(1)), arg(sb!.buf, ...d(2)),
        ...f[0]!, ...f[1]!, ...f[2]!]);
    } else {
      const ec = this.expandTo('where', sc!, condShape, outShape), ea = this.expandTo('where', sa!, aShape, outShape),
        eb = this.expandTo('where', sb!, bShape, outShape);
      out = this.run(KERNELS.where1, [n], [arg(ec.buf, n), arg(ea.buf, n), arg(eb.buf, n), 1, 1, 1]);
      for (const [e, s] of [[ec, sc], [ea, sa], [eb, sb]] as const) if (e !== s) this.dispose(e);
    }
    return this.wrap(out, n, sa!.dtype);
  }

  /** x broadcast to outShape as a contiguous storage (x itself when already that size). */
  expandTo(op: string, x: GpuStorage, shape: readonly number[], outShape: readonly number[]): GpuStorage {
    if (x.size === sizeOf(outShape)) return x;
    const st = broadcastStrides(shape, outShape);
    return this.stridedImpl(op, x, outShape, st, 0);
  }

  // ---- reductions ----
  reduce(op: ReduceOp, x: Storage, outer: number, size: number, inner: number): Storage {
    const [s] = this.check(`reduce ${op}`, x);
    if (size === 0) return this.full(outer * inner, s!.dtype, op === 'sum' ? 0 : -Infinity);
    return this.wrap(this.reduceBuf(op, s!.buf, outer, size, inner), outer * inner, s!.dtype);
  }

  reduceBuf(op: ReduceOp, buf: DeviceBuffer, outer: number, size: number, inner: number): DeviceBuffer {
    const code = MODES.reduce[op];
    const want = Math.ceil(this.reduceThreads / Math.max(1, outer * inner));
    let groups = Math.min(want, Math.ceil(size / 32));
    if (groups < 2) groups = 1;
    const chunk = Math.ceil(size / groups);
    groups = Math.ceil(size / chunk);
    const part = this.run(KERNELS.reduce, [inner, groups, outer], [arg(buf, inner, size, outer), size, chunk, code]);
    if (groups === 1) return part;
    // partials are [outer, groups, inner]: reduce them again
    const out = this.reduceBuf(op, part, outer, groups, inner);
    this.runner.release(part);
    return out;
  }

  // ---- matmul (matmul.ts) ----
  matmul(a: Storage, b: Storage, p: MatmulParams): Storage {
    if (!isHalf(a.dtype) && !isHalf(b.dtype)) return gpuMatmul(this, a, b, p);
    // two halves of one dtype (autocast's linears): the wide kernel widens them in its tile loads
    const halves = halfMatmul(this, a, b, p);
    if (halves) return halves;
    // halves widened for the float32 kernel; the copies are this call's own
    const [wa, wb] = [isHalf(a.dtype) ? this.cast(a, 'float32') : a, isHalf(b.dtype) ? this.cast(b, 'float32') : b];
    const out = gpuMatmul(this, wa, wb, p);
    if (wa !== a) this.dispose(wa);
    if (wb !== b) this.dispose(wb);
    return out;
  }

  // ---- movement ----
  strided(x: Storage, outShape: readonly number[], strides: readonly number[], offset: number): Storage {
    const [s] = this.check('strided', x);
    return this.stridedImpl('strided', s!, outShape, strides, offset);
  }

  stridedImpl(op: string, s: GpuStorage, outShape: readonly number[], strides: readonly number[], offset: number): GpuStorage {
    const n = sizeOf(outShape);
    if (s.host) return this.fromHostRef(this.hostRef.strided(this.hostOf(s), outShape, strides, offset));
    if (isHalf(s.dtype)) return this.moveHalf(s, n, (w) => this.stridedImpl(op, w, outShape, strides, offset));
    if (n === 0) return this.wrap(this.runner.upload(new Float32Array(0)), 0, s.dtype);
    const { dims, strides: st } = collapseStrided(outShape, strides);
    if (dims.length <= 3) {
      const [X, Y, Z] = pad3(dims);
      const [sx, sy, sz] = [st[st.length - 1] ?? 0, st.length >= 2 ? st[st.length - 2]! : 0, st.length >= 3 ? st[st.length - 3]! : 0];
      // declared dims [DX, DY] make the accessor compute sy*y + sz*z in i32 (see kernels.ts)
      let DX = 1, DY = 1, fy = 0, fz = 0, ok = true;
      if (sy > 0) {
        DX = sy; fy = 1;
        if (sz > 0) { if (sz % sy === 0) { DY = sz / sy; fz = 1; } else ok = false; }
      } else if (sz > 0) { DX = sz; fz = 1; }
      if (ok) {
        const DZ = Math.max(1, Math.ceil(s.size / (DX * DY)));
        return this.wrap(this.run(KERNELS.strided3, [X, Y, Z], [arg(s.buf, DX, DY, DZ), sx, offset, fy, fz]), n, s.dtype);
      }
    }
    // strides that do not nest: the WGSL gather's u32 index arithmetic, any size
    if (dims.length > 8) {
      throw new Error(`${op}: the gpu backend cannot gather a view of shape ${shapeStr(outShape)} with strides [${strides.join(', ')}]: ` +
        `it collapses to ${dims.length} dims [${dims.join(', ')}] that do not merge, and the gather takes up to 8; make it contiguous in two steps`);
    }
    return this.wrap(this.runner.gather(s.buf, dims, st, offset), n, s.dtype);
  }

  pad(x: Storage, shape: readonly number[], before: readonly number[], after: readonly number[]): Storage {
    const [s] = this.check('pad', x);
    if (s!.host) return this.fromHostRef(this.hostRef.pad(this.hostOf(s!), shape, before, after));
    if (isHalf(s!.dtype)) return this.moveHalf(s!, sizeOf(shape.map((d, i) => d + before[i]! + after[i]!)), (w) => this.pad(w, shape, before, after) as GpuStorage);
    // one axis at a time: each is a [outer, len, inner] pad, exact in i32 however large
    let cur = [...shape];
    let buf = s!.buf;
    let owned = false;
    for (let d = 0; d < shape.length; d++) {
      if (before[d] === 0 && after[d] === 0) continue;
      const outer = sizeOf(cur.slice(0, d)), len = cur[d]!, inner = sizeOf(cur.slice(d + 1));
      const total = before[d]! + len + after[d]!;
      const next = outer * total * inner === 0 ? this.runner.upload(new Float32Array(0))
        : this.run(KERNELS.padAxis, [inner, total, outer], [arg(buf, inner, len, outer), before[d]!, len]);
      if (owned) this.runner.release(buf);
      buf = next; owned = true;
      cur = cur.map((v, i) => (i === d ? total : v));
    }
    const n = sizeOf(cur);
    if (!owned) buf = this.castBuf(buf, n, CAST_CODES.copy);
    return this.wrap(buf, n, s!.dtype);
  }

  // ---- indexing ----
  gatherRows(table: Storage, cols: number, idx: Storage, n: number): Storage {
    const [t, ix] = this.check('gatherRows', table, idx);
    const rows = t!.size / cols;
    this.checkIndex('gatherRows', ix!, rows, 'row index');
    if (n * cols === 0) return this.full(0, t!.dtype, 0);
    if (isHalf(t!.dtype)) return this.moveHalf(t!, n * cols, (w) => this.gatherRows(w, cols, idx, n) as GpuStorage);
    return this.wrap(this.run(KERNELS.gatherRows, [cols, n, 1], [arg(t!.buf, cols, rows), arg(ix!.buf, n)]), n * cols, t!.dtype);
  }

  /**
   * Segment sum: the host sorts the n indices (a counting sort, O(n + rows)), so each output
   * row sums its own segment of source rows on the device. Needs the indices' host copy,
   * which every int32 storage made from host data (or by int32 ops on such) has.
   */
  scatterAddRows(src: Storage, cols: number, idx: Storage, n: number, rows: number): Storage {
    const [s, ix] = this.check('scatterAddRows', src, idx);
    if (!ix!.host) {
      throw new Error(`scatterAddRows: the gpu backend sorts the ${n} indices on the host, but this int32 index storage was computed on the device ` +
        `(cast from float); build indices from host data (tensor(Int32Array)) as the data loader does`);
    }
    this.checkIndex('scatterAddRows', ix!, rows, 'row index');
    if (rows * cols === 0) return this.full(rows * cols, s!.dtype, 0);
    const h = ix!.host;
    // u32 on the device (uploaded as their bytes): exact for any count
    const offs = new Uint32Array(rows + 1);
    for (let r = 0; r < n; r++) offs[h[r]! + 1]!++;
    for (let v = 0; v < rows; v++) offs[v + 1]! += offs[v]!;
    const fillAt = offs.slice(0, rows);
    const perm = new Uint32Array(Math.max(n, 1));
    for (let r = 0; r < n; r++) perm[fillAt[h[r]!]!++] = r;
    const pb = this.runner.upload(new Float32Array(perm.buffer)), ob = this.runner.upload(new Float32Array(offs.buffer));
    const out = this.runner.segmentSum(s!.buf, cols, pb, ob, rows);
    this.runner.release(pb);
    this.runner.release(ob);
    return this.wrap(out, rows * cols, s!.dtype);
  }

  pickLast(x: Storage, rows: number, cols: number, idx: Storage): Storage {
    const [s, ix] = this.check('pickLast', x, idx);
    this.checkIndex('pickLast', ix!, cols, 'column index');
    if (rows === 0) return this.full(0, s!.dtype, 0);
    return this.wrap(this.run(KERNELS.pickLast, [rows], [arg(s!.buf, cols, rows), arg(ix!.buf, rows)]), rows, s!.dtype);
  }

  scatterLast(g: Storage, rows: number, cols: number, idx: Storage): Storage {
    const [s, ix] = this.check('scatterLast', g, idx);
    this.checkIndex('scatterLast', ix!, cols, 'column index');
    if (rows * cols === 0) return this.full(rows * cols, s!.dtype, 0);
    return this.wrap(this.run(KERNELS.scatterLast, [cols, rows, 1], [arg(s!.buf, rows), arg(ix!.buf, rows)]), rows * cols, s!.dtype);
  }

  /** Indices made from host data keep a host copy: checked there (device-computed ones cannot be). */
  checkIndices(op: string, idx: Storage, limit: number, what: string, context: string): void {
    const [ix] = this.check(op, idx);
    if (ix!.host) this.hostRef.checkIndices(op, this.hostOf(ix!), limit, what, context);
  }

  /** A kernel's own check of its index operand: int32, and in range where a host copy is kept. */
  checkIndex(op: string, ix: GpuStorage, limit: number, what: string): void {
    if (ix.dtype !== 'int32') throw new Error(`${op}: ${what}s must be int32, got ${ix.dtype}`);
    if (ix.host) this.hostRef.checkIndices(op, this.hostOf(ix), limit, what, `${ix.size} indices`);
  }

  // ---- lifecycle ----
  /**
   * Return the buffers of tensors that are no longer referenced to the pool. Device buffers
   * are freed when their tensors are garbage collected, and a training step makes thousands
   * of temporaries that a JS heap barely notices, so call this once per step (it forces a
   * GC on Node, then lets the finalizers run).
   */
  async collect(): Promise<void> {
    this.runner.flush();
    const gc = await forcedGc();
    if (gc) {
      gc();
      // finalizers run as tasks after the collection; two turns let them all through
      for (let i = 0; i < 2; i++) await new Promise((r) => setTimeout(r, 0));
    }
  }

  /** The most device memory taken so far (in buffers, pooled ones included), where the runner counts it (WebGPU). */
  deviceBytes(): number | null {
    const peak = (this.runner as Partial<Pick<WebGpuRunner, 'peakBytes'>>).peakBytes;
    return peak ?? null;
  }

  /** The start-up self-test (self-test.ts); what it made goes back to the pool as it ends, not when collected. */
  async selfTest(): Promise<void> {
    this.selfTestMade = [];
    try {
      await selfTest(this);
    } finally {
      for (const s of this.selfTestMade) this.dispose(s, 'the self-test ended');
      this.selfTestMade = null;
    }
  }
  private selfTestMade: GpuStorage[] | null = null;
}
