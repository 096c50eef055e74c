// The gpu backend: tensors whose data lives in device buffers, every primitive of the
// Backend contract as a gpu.js kernel (kernels.ts), run by a Runner (WebGPU, or gpu.js's
// cpu mode in CI). Ops stay synchronous: kernels are enqueued, only read() waits.
//
// Host-side work done here, and why:
// - broadcasting and strided views are collapsed to at most 3 dims on the host, so the
//   kernels index inputs through gpu.js's i32 accessor (exact past 2^24 elements; see
//   kernels.ts); the rare shapes that do not collapse go to an f32-index kernel that is
//   exact below 2^24 and refused (with the shapes named) above;
// - int32 storages (token ids, targets) keep a host copy next to the device buffer: the
//   indices come from the host data loader anyway, int32 ops on them run on the host with
//   the reference backend, and scatterAddRows sorts them there (see scatterAddRows).

import type { AdamWParams, Backend, BinaryOp, FusedKernels, MatmulParams, ReduceOp, Storage, UnaryOp } from '../../backend.js';
import { convertHost, float32ToBfloat16Bits, float32ToFloat16Bits, type DType, type HostArray } from '../../dtype.js';
import { shapeStr, sizeOf } from '../../shape.js';
import { HostStorage, JsBackend } from '../js.js';
import { BINARY_CODES, CAST_CODES, KERNELS, UNARY_CODES, type KernelSpec } from './kernels.js';
import type { BufferArg, DeviceBuffer, KernelArg, Runner } from './runner.js';

/** Integers above this are not exact in the f32 the device holds them in. */
const F32_EXACT = 2 ** 24;

/** A device buffer plus dtype; int32 storages also keep their values on the host. */
export class GpuStorage implements Storage {
  /** Shared with the FinalizationRegistry so an in-place update (adamw) swaps what it frees. */
  readonly cell: { buf: DeviceBuffer | null };
  constructor(buf: DeviceBuffer, readonly size: number, readonly dtype: DType, readonly host: Int32Array | null) {
    this.cell = { buf };
  }
  get buf(): DeviceBuffer {
    if (!this.cell.buf) throw new Error(`gpu backend: this ${this.dtype} storage of ${this.size} elements was disposed and then used; keep the tensor alive until its last use`);
    return this.cell.buf;
  }
}

export interface GpuBackendOptions {
  /** The backend's name (registry key). */
  name?: string;
  /**
   * Reductions are split into chunks until about this many threads run (a long reduction
   * on one thread is slow on a GPU); tests set it low to exercise the two-pass path.
   */
  reduceThreads?: number;
}

function arg(buf: DeviceBuffer, ...dims: number[]): BufferArg {
  return { buf, dims: dims.map((d) => Math.max(1, d)) };
}

/** Collapse a broadcast: drop size-1 output dims, merge neighbours with equal broadcast flags. */
export function collapseBroadcast(outShape: readonly number[], inShapes: readonly (readonly number[])[]):
  { dims: number[]; flags: number[][] } {
  const n = outShape.length;
  const dims: number[] = [];
  const flags: number[][] = inShapes.map(() => []);
  for (let d = 0; d < n; d++) {
    const size = outShape[d]!;
    if (size === 1) continue;
    const f = inShapes.map((s) => ((s[s.length - n + d] ?? 1) === 1 ? 0 : 1));
    const last = dims.length - 1;
    if (last >= 0 && f.every((v, i) => flags[i]![last] === v)) {
      dims[last]! *= size;
    } else {
      dims.push(size);
      f.forEach((v, i) => flags[i]!.push(v));
    }
  }
  if (dims.length === 0) { dims.push(1); flags.forEach((f) => f.push(1)); }
  return { dims, flags };
}

/** Collapse a strided view: drop size-1 dims, merge (d, d+1) when stride[d] = stride[d+1]*shape[d+1]. */
export function collapseStrided(shape: readonly number[], strides: readonly number[]): { dims: number[]; strides: number[] } {
  const dims: number[] = [], st: number[] = [];
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = dims.length - 1;
    if (last >= 0 && st[last] === strides[d]! * shape[d]!) {
      dims[last]! *= shape[d]!;
      st[last] = strides[d]!;
    } else {
      dims.push(shape[d]!);
      st.push(strides[d]!);
    }
  }
  if (dims.length === 0) { dims.push(1); st.push(0); }
  return { dims, strides: st };
}

export class GpuBackend implements Backend {
  readonly name: string;
  readonly hostMemory = false;
  readonly fused: FusedKernels;
  private readonly hostRef = new JsBackend(); // int32 host-side math (exact, and tiny: indices)
  private readonly reduceThreads: number;
  private readonly registry: FinalizationRegistry<{ buf: DeviceBuffer | null }>;
  /** Whether matmul uses the runner's fast kernel (turned off if it fails the self-test). */
  private fastMatmul = true;

  constructor(readonly runner: Runner, opts: GpuBackendOptions = {}) {
    this.name = opts.name ?? 'gpu';
    this.reduceThreads = opts.reduceThreads ?? 65536;
    // a storage dropped without dispose() returns its buffer to the pool when collected
    this.registry = new FinalizationRegistry((cell) => {
      if (cell.buf) { this.runner.release(cell.buf); cell.buf = null; }
    });
    this.fused = this.makeFused();
  }

  // ---- helpers ----
  private check(op: string, ...ss: Storage[]): GpuStorage[] {
    return ss.map((s) => {
      if (!(s instanceof GpuStorage)) throw new Error(`${op}: storage is not from the ${this.name} backend; move the tensor with .to('${this.name}')`);
      if (s.dtype === 'float64') throw float64Error(op);
      return s;
    });
  }
  private wrap(buf: DeviceBuffer, size: number, dtype: DType, host: Int32Array | null = null): GpuStorage {
    const s = new GpuStorage(buf, size, dtype, host);
    this.registry.register(s, s.cell, s);
    return s;
  }
  private run(spec: KernelSpec, out: readonly number[], args: readonly KernelArg[], into?: { buf: DeviceBuffer; offset: number }): DeviceBuffer {
    return this.runner.run(spec, out, args, into);
  }
  /** A storage from a host reference-backend result (int32 host path). */
  private fromHostRef(s: Storage): GpuStorage {
    return this.fromHost((s as HostStorage).data, s.dtype) as GpuStorage;
  }
  private hostOf(s: GpuStorage): Storage { return this.hostRef.fromHost(s.host!, 'int32'); }
  private allHost(...ss: GpuStorage[]): boolean { return ss.every((s) => s.dtype === 'int32' && s.host !== null); }

  // ---- memory ----
  fromHost(data: HostArray, dtype: DType): Storage {
    if (dtype === 'float64') throw float64Error('fromHost');
    let f: Float32Array;
    let host: Int32Array | null = null;
    if (dtype === 'float32') f = data instanceof Float32Array ? data : Float32Array.from(data);
    else {
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
    const v = dtype === 'float16' ? float32ToFloat16Bits(value) : dtype === 'bfloat16' ? float32ToBfloat16Bits(value)
      : dtype === 'int32' ? Math.trunc(value) : value;
    const host = dtype === 'int32' ? new Int32Array(size).fill(v) : null;
    return this.wrap(this.run(KERNELS.fill, [size], [v]), size, dtype, host);
  }

  async read(s: Storage): Promise<HostArray> {
    const [g] = this.check('read', s);
    if (g!.host) return g!.host;
    this.runner.flush();
    const f = await this.runner.read(g!.buf, g!.size);
    switch (g!.dtype) {
      case 'float32': return f;
      case 'int32': return Int32Array.from(f);
      default: return Uint16Array.from(f);
    }
  }

  readSync(_s: Storage): HostArray {
    throw new Error(`readSync: the ${this.name} backend keeps data in GPU memory and WebGPU reads back only asynchronously; use \`await t.data()\``);
  }

  dispose(s: Storage): void {
    if (!(s instanceof GpuStorage) || !s.cell.buf) return;
    this.registry.unregister(s);
    this.runner.release(s.cell.buf);
    s.cell.buf = null;
  }

  // ---- elementwise ----
  cast(x: Storage, to: DType): Storage {
    const [s] = this.check('cast', x);
    if (to === 'float64') throw float64Error('cast');
    if (this.allHost(s!)) return this.fromHost(convertHost(s!.host!, 'int32', to), to);
    const from = s!.dtype;
    let buf = s!.buf;
    let tmp: DeviceBuffer | null = null;
    // to float32 first (decoding half bits), then encode to the target
    if (from === 'float16' || from === 'bfloat16') {
      tmp = buf = this.castBuf(buf, s!.size, from === 'float16' ? CAST_CODES.f16ToF32 : CAST_CODES.bf16ToF32);
      if (to === 'float32') return this.wrap(buf, s!.size, to);
    }
    const mode = to === 'float16' ? CAST_CODES.f32ToF16 : to === 'bfloat16' ? CAST_CODES.f32ToBf16
      : to === 'int32' && from !== 'int32' ? CAST_CODES.trunc : CAST_CODES.copy;
    const out = this.castBuf(buf, s!.size, mode);
    if (tmp) this.runner.release(tmp);
    return this.wrap(out, s!.size, to);
  }

  /** The runner's bit-exact cast where it has one (WebGPU), else the portable gpu.js kernel. */
  private castBuf(buf: DeviceBuffer, n: number, mode: number): DeviceBuffer {
    return this.runner.cast ? this.runner.cast(buf, n, mode) : this.run(KERNELS.cast, [n], [arg(buf, n), mode]);
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
  private expandTo(op: string, x: GpuStorage, shape: readonly number[], outShape: readonly number[]): GpuStorage {
    if (x.size === sizeOf(outShape)) return x;
    const st = stridesOfBroadcast(shape, outShape);
    return this.stridedImpl(op, x, outShape, st, 0);
  }

  // ---- reductions ----
  reduce(op: ReduceOp, x: Storage, outer: number, size: number, inner: number): Storage {
    const [s] = this.check(`reduce ${op}`, x);
    if (size === 0) return this.full(outer * inner, s!.dtype, op === 'sum' ? 0 : -Infinity);
    return this.wrap(this.reduceBuf(op, s!.buf, outer, size, inner), outer * inner, s!.dtype);
  }

  private reduceBuf(op: ReduceOp, buf: DeviceBuffer, outer: number, size: number, inner: number): DeviceBuffer {
    const code = op === 'sum' ? 0 : 1;
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

  // ---- matmul ----
  matmul(a: Storage, b: Storage, p: MatmulParams): Storage {
    const [sa, sb] = this.check('matmul', a, b);
    const { batch, m, n, k, transA, transB, aBatchStride, bBatchStride } = p;
    const what = `matmul [${batch}, ${m}, ${k}] @ [${k}, ${n}] (transA ${transA}, transB ${transB}, batch strides ${aBatchStride}, ${bBatchStride})`;
    if ((aBatchStride !== 0 && aBatchStride !== m * k) || (bBatchStride !== 0 && bBatchStride !== k * n)) {
      throw new Error(`${what}: the gpu backend takes batch strides of 0 (broadcast) or the matrix size (${m * k}, ${k * n}); make the operand contiguous first`);
    }
    if (batch * m * n === 0 || k === 0) return this.full(batch * m * n, sa!.dtype, 0);
    const max = this.runner.maxBindingElements;
    const A = sa!.buf, B = sb!.buf;
    const fits = (len: number): boolean => len <= max;
    const aLen = (aBatchStride ? batch : 1) * m * k, bLen = (bBatchStride ? batch : 1) * k * n;
    if (fits(aLen) && fits(bLen) && fits(batch * m * n)) {
      return this.wrap(this.matmulView({ buf: A, offset: undefined }, { buf: B, offset: undefined }, p), batch * m * n, sa!.dtype);
    }
    // Above one storage binding (~2 GiB; GPT-2's logits at B=16 are 3.3 GB): run over chunks
    // whose rows are contiguous in memory, 64-row aligned for WebGPU's 256-byte offsets.
    const too = (): Error => new Error(`${what}: an operand is over the device's storage binding limit (${max} floats) ` +
      'in a layout the gpu backend cannot split into row chunks; use a smaller batch');
    if (batch !== 1) throw too();
    if (!transA && fits(bLen)) {
      // rows of A and of C: C[r0:r1] = A[r0:r1] @ B
      const rc = Math.floor(max / Math.max(k, n) / 64) * 64;
      if (rc < 64) throw too();
      const out = this.runner.alloc(m * n);
      for (let r0 = 0; r0 < m; r0 += rc) {
        const rows = Math.min(rc, m - r0);
        this.matmulView({ buf: A, offset: r0 * k }, { buf: B, offset: undefined }, { ...p, m: rows }, { buf: out, offset: r0 * n });
      }
      return this.wrap(out, m * n, sa!.dtype);
    }
    if (transA && !transB && fits(m * n)) {
      // split the reduction: A is stored [k, m] and B [k, n], so k-chunks are row blocks of both
      const kc = Math.floor(max / Math.max(m, n) / 64) * 64;
      if (kc < 64) throw too();
      let acc: DeviceBuffer | null = null;
      for (let k0 = 0; k0 < k; k0 += kc) {
        const ks = Math.min(kc, k - k0);
        const part = this.matmulView({ buf: A, offset: k0 * m }, { buf: B, offset: k0 * n }, { ...p, k: ks });
        if (acc) {
          const sum = this.run(KERNELS.binary1, [m * n], [arg(acc, m * n), arg(part, m * n), 1, 1, BINARY_CODES.add]);
          this.runner.release(acc);
          this.runner.release(part);
          acc = sum;
        } else acc = part;
      }
      return this.wrap(acc!, m * n, sa!.dtype);
    }
    throw too();
  }

  /** One matmul on (possibly offset) views: the runner's fast kernel, or the portable one. */
  private matmulView(a: { buf: DeviceBuffer; offset: number | undefined }, b: { buf: DeviceBuffer; offset: number | undefined },
    p: MatmulParams, into?: { buf: DeviceBuffer; offset: number }): DeviceBuffer {
    const { batch, m, n, k, transA, transB, aBatchStride, bBatchStride } = p;
    if (this.runner.matmul && this.fastMatmul) {
      return this.runner.matmul(a, b, p, into);
    }
    const fa = aBatchStride === 0 ? 0 : 1, fb = bBatchStride === 0 ? 0 : 1;
    const ba = fa ? batch : 1, bb = fb ? batch : 1;
    const view = (buf: DeviceBuffer, offset: number | undefined, ...dims: number[]): BufferArg =>
      (offset === undefined ? arg(buf, ...dims) : { ...arg(buf, ...dims), offset });
    const Av = transA ? view(a.buf, a.offset, m, k, ba) : view(a.buf, a.offset, k, m, ba);
    const Bv = transB ? view(b.buf, b.offset, k, n, bb) : view(b.buf, b.offset, n, k, bb);
    const spec = transA ? (transB ? KERNELS.matmulTT : KERNELS.matmulTN) : (transB ? KERNELS.matmulNT : KERNELS.matmulNN);
    return this.run(spec, [n, m, batch], [Av, Bv, k, fa, fb], into);
  }

  // ---- movement ----
  strided(x: Storage, outShape: readonly number[], strides: readonly number[], offset: number): Storage {
    const [s] = this.check('strided', x);
    return this.stridedImpl('strided', s!, outShape, strides, offset);
  }

  private stridedImpl(op: string, s: GpuStorage, outShape: readonly number[], strides: readonly number[], offset: number): GpuStorage {
    const n = sizeOf(outShape);
    if (s.host) return this.fromHostRef(this.hostRef.strided(this.hostOf(s), outShape, strides, offset));
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
    if (dims.length > 6 || n >= F32_EXACT || s.size >= F32_EXACT) {
      throw new Error(`${op}: the gpu backend cannot gather a view of shape ${shapeStr(outShape)} with strides [${strides.join(', ')}] ` +
        `from ${s.size} elements: it collapses to ${dims.length} dims [${dims.join(', ')}] with non-nesting strides, and its f32 index ` +
        `arithmetic is exact only below 2^24 elements; make the tensor contiguous in smaller pieces (e.g. permute fewer dims at once)`);
    }
    const sh = [...Array(6 - dims.length).fill(1), ...dims], ss = [...Array(6 - st.length).fill(0), ...st];
    return this.wrap(this.run(KERNELS.stridedN, [n], [arg(s.buf, s.size), offset, ...sh, ...ss]), n, s.dtype);
  }

  pad(x: Storage, shape: readonly number[], before: readonly number[], after: readonly number[]): Storage {
    const [s] = this.check('pad', x);
    if (s!.host) return this.fromHostRef(this.hostRef.pad(this.hostOf(s!), shape, before, after));
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
    if (!owned) buf = this.run(KERNELS.cast, [n], [arg(buf, n), CAST_CODES.copy]);
    return this.wrap(buf, n, s!.dtype);
  }

  // ---- indexing ----
  gatherRows(table: Storage, cols: number, idx: Storage, n: number): Storage {
    const [t, ix] = this.check('gatherRows', table, idx);
    const rows = t!.size / cols;
    this.checkIndex('gatherRows', ix!, rows, 'row index');
    if (n * cols === 0) return this.full(0, t!.dtype, 0);
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
    const offs = new Float32Array(rows + 1);
    for (let r = 0; r < n; r++) offs[h[r]! + 1]!++;
    for (let v = 0; v < rows; v++) offs[v + 1]! += offs[v]!;
    const fillAt = offs.slice(0, rows);
    const perm = new Float32Array(Math.max(n, 1));
    for (let r = 0; r < n; r++) perm[fillAt[h[r]!]!++] = r;
    if (rows + 1 >= F32_EXACT || n >= F32_EXACT) {
      throw new Error(`scatterAddRows: ${rows} rows / ${n} indices exceed 2^24, the exact range of the f32 offsets on the device`);
    }
    const pb = this.runner.upload(perm), ob = this.runner.upload(offs);
    const out = this.run(KERNELS.scatterAddRows, [cols, rows, 1], [arg(s!.buf, cols, Math.max(n, 1)), arg(pb, perm.length), arg(ob, rows + 1)]);
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

  /** Indices are checked on the host copy (the op layer cannot read device memory). */
  private checkIndex(op: string, ix: GpuStorage, limit: number, what: string): void {
    if (ix.dtype !== 'int32') throw new Error(`${op}: ${what}s must be int32, got ${ix.dtype}`);
    const h = ix.host;
    if (!h) return;
    for (let i = 0; i < h.length; i++) {
      if (h[i]! < 0 || h[i]! >= limit) throw new Error(`${op}: ${what} out of range: ${h[i]} at flat position ${i}; valid values are 0..${limit - 1}`);
    }
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

  /**
   * Check the device's answers on small problems against the js reference backend and
   * float64 matmul. A wrong fast matmul is switched off (the portable kernel takes over,
   * with a warning); wrong primitives throw, naming what differs.
   */
  async selfTest(): Promise<void> {
    const ref = this.hostRef;
    const vals = (n: number, seed: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233) * 2);
    const bad: string[] = [];
    const cmp = async (what: string, got: Storage, want: ArrayLike<number>, tol = 1e-5): Promise<boolean> => {
      const g = await this.read(got);
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(g[i]! - want[i]!) / (1 + Math.abs(want[i]!)));
      if (!(worst <= tol) || g.length !== want.length) { bad.push(`${what}: worst error ${worst}`); return false; }
      return true;
    };
    const pair = (d: Float32Array): [Storage, Storage] => [this.fromHost(d.slice(), 'float32'), ref.fromHost(d.slice(), 'float32')];
    const [a, ra] = pair(vals(15, 1)), [b, rb] = pair(vals(5, 2));
    await cmp('unary gelu', this.unary('gelu', a), ref.readSync(ref.unary('gelu', ra)), 1e-4); // GPU exp/tanh are a few ulp
    await cmp('binary add [3,5]+[5]', this.binary('add', a, [3, 5], b, [5], [3, 5]), ref.readSync(ref.binary('add', ra, [3, 5], rb, [5], [3, 5])));
    await cmp('reduce sum', this.reduce('sum', a, 3, 5, 1), ref.readSync(ref.reduce('sum', ra, 3, 5, 1)));
    await cmp('strided transpose', this.strided(a, [5, 3], [1, 5], 0), ref.readSync(ref.strided(ra, [5, 3], [1, 5], 0)));
    const primitivesOk = bad.length === 0;
    const [batch, m, n, k] = [2, 37, 41, 29];
    let fastOk = true;
    for (const transA of [false, true]) for (const transB of [false, true]) {
      const A = vals(batch * m * k, 3), B = vals(k * n, 4);
      const p = { batch, m, n, k, transA, transB, aBatchStride: m * k, bBatchStride: 0 };
      const want = new Float64Array(batch * m * n);
      for (let t = 0; t < batch; t++) for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
        let acc = 0;
        for (let q = 0; q < k; q++) acc += (transA ? A[t * m * k + q * m + i]! : A[t * m * k + i * k + q]!) * (transB ? B[j * k + q]! : B[q * n + j]!);
        want[(t * m + i) * n + j] = acc;
      }
      const sa = this.fromHost(A, 'float32'), sb = this.fromHost(B, 'float32');
      if (this.runner.matmul) {
        this.fastMatmul = true;
        fastOk = (await cmp(`fast matmul transA=${transA} transB=${transB}`, this.matmul(sa, sb, p), want, 1e-4)) && fastOk;
      }
      this.fastMatmul = false;
      await cmp(`portable matmul transA=${transA} transB=${transB}`, this.matmul(sa, sb, p), want, 1e-4);
    }
    this.fastMatmul = fastOk;
    if (!primitivesOk || bad.some((b) => b.startsWith('portable'))) {
      throw new Error(`gpu backend self-test: the device gave wrong answers:\n${bad.join('\n')}`);
    }
    if (!fastOk) console.warn(`gpu backend: the tiled WGSL matmul failed its self-test on this device, using the portable kernel:\n${bad.join('\n')}`);
  }

  // ---- fused kernels ----
  private makeFused(): FusedKernels {
    const f32 = (op: string, s: Storage): GpuStorage => {
      const [g] = this.check(op, s);
      if (g!.dtype !== 'float32') throw new Error(`${op}: fused kernels take float32 storages, got ${g!.dtype}`);
      return g!;
    };
    const rowStat = (x: GpuStorage, rows: number, cols: number, mode: number): DeviceBuffer =>
      this.run(KERNELS.rowStat, [rows], [arg(x.buf, cols, rows), cols, mode]);
    return {
      softmax: (x, rows, cols) => {
        const s = f32('softmax', x);
        const lse = rowStat(s, rows, cols, 1);
        const y = this.run(KERNELS.softmaxApply, [cols, rows, 1], [arg(s.buf, cols, rows), arg(lse, rows), 0]);
        this.runner.release(lse);
        return this.wrap(y, rows * cols, 'float32');
      },
      softmaxBackward: (y, gy, rows, cols) => this.softmaxBack(f32('softmaxBackward', y), f32('softmaxBackward', gy), rows, cols, 0),
      logSoftmax: (x, rows, cols) => {
        const s = f32('logSoftmax', x);
        const lse = rowStat(s, rows, cols, 1);
        const y = this.run(KERNELS.softmaxApply, [cols, rows, 1], [arg(s.buf, cols, rows), arg(lse, rows), 1]);
        this.runner.release(lse);
        return this.wrap(y, rows * cols, 'float32');
      },
      logSoftmaxBackward: (y, gy, rows, cols) => this.softmaxBack(f32('logSoftmaxBackward', y), f32('logSoftmaxBackward', gy), rows, cols, 1),
      layerNorm: (x, w, b, rows, cols, eps) => {
        const sx = f32('layerNorm', x), sw = f32('layerNorm', w), sb = f32('layerNorm', b);
        const X = arg(sx.buf, cols, rows);
        const mean = this.run(KERNELS.lnStat, [rows], [X, arg(sx.buf, 1), cols, eps, 0]);
        const rstd = this.run(KERNELS.lnStat, [rows], [X, arg(mean, rows), cols, eps, 1]);
        const y = this.run(KERNELS.lnApply, [cols, rows, 1], [X, arg(mean, rows), arg(rstd, rows), arg(sw.buf, cols), arg(sb.buf, cols)]);
        return { y: this.wrap(y, rows * cols, 'float32'), mean: this.wrap(mean, rows, 'float32'), rstd: this.wrap(rstd, rows, 'float32') };
      },
      layerNormBackward: (x, w, mean, rstd, gy, rows, cols) => {
        const op = 'layerNormBackward';
        const X = arg(f32(op, x).buf, cols, rows), W = arg(f32(op, w).buf, cols), M = arg(f32(op, mean).buf, rows),
          R = arg(f32(op, rstd).buf, rows), G = arg(f32(op, gy).buf, cols, rows);
        const s1 = this.run(KERNELS.lnBackStat, [rows], [X, M, R, W, G, cols, 0]);
        const s2 = this.run(KERNELS.lnBackStat, [rows], [X, M, R, W, G, cols, 1]);
        const gx = this.run(KERNELS.lnBackApply, [cols, rows, 1], [X, M, R, W, G, arg(s1, rows), arg(s2, rows), cols]);
        this.runner.release(s1);
        this.runner.release(s2);
        // column sums over rows go through the chunked reduce: one thread per column would
        // leave most of a GPU idle (768 threads looping over B*T rows)
        const gb = this.reduceBuf('sum', G.buf, 1, rows, cols);
        const gyx = this.run(KERNELS.lnGyXhat, [cols, rows, 1], [X, M, R, G]);
        const gw = this.reduceBuf('sum', gyx, 1, rows, cols);
        this.runner.release(gyx);
        return { gx: this.wrap(gx, rows * cols, 'float32'), gw: this.wrap(gw, cols, 'float32'), gb: this.wrap(gb, cols, 'float32') };
      },
      crossEntropy: (logits, targets, rows, cols) => {
        const s = f32('crossEntropy', logits);
        const [t] = this.check('crossEntropy', targets);
        this.checkIndex('crossEntropy', t!, cols, 'target');
        const lse = this.runner.alloc(rows), loss = this.runner.alloc(rows);
        // over row chunks when the logits exceed one storage binding (GPT-2 at B=16: 3.3 GB)
        this.rowChunks('crossEntropy', rows, cols, (r0, rc, whole) => {
          const X = whole ? arg(s.buf, cols, rc) : { ...arg(s.buf, cols, rc), offset: r0 * cols };
          const T = whole ? arg(t!.buf, rc) : { ...arg(t!.buf, rc), offset: r0 };
          this.run(KERNELS.rowStat, [rc], [X, cols, 1], { buf: lse, offset: r0 });
          const L = whole ? arg(lse, rc) : { ...arg(lse, rc), offset: r0 };
          this.run(KERNELS.ceLoss, [rc], [X, L, T], { buf: loss, offset: r0 });
        });
        return { loss: this.wrap(loss, rows, 'float32'), lse: this.wrap(lse, rows, 'float32') };
      },
      crossEntropyBackward: (logits, targets, lse, gloss, rows, cols) => {
        const op = 'crossEntropyBackward';
        const [t] = this.check(op, targets);
        const x = f32(op, logits).buf, l = f32(op, lse).buf, gl = f32(op, gloss).buf;
        const g = this.runner.alloc(rows * cols);
        this.rowChunks(op, rows, cols, (r0, rc, whole) => {
          const v = (buf: DeviceBuffer, off: number, ...dims: number[]): BufferArg => (whole ? arg(buf, ...dims) : { ...arg(buf, ...dims), offset: off });
          this.run(KERNELS.ceBack, [cols, rc, 1], [v(x, r0 * cols, cols, rc), v(l, r0, rc), v(t!.buf, r0, rc), v(gl, r0, rc)],
            { buf: g, offset: r0 * cols });
        });
        return this.wrap(g, rows * cols, 'float32');
      },
      attention: (q, k, v, bh, t, s, d, scale, causal) => this.attention(f32('attention', q), f32('attention', k), f32('attention', v), bh, t, s, d, scale, causal),
      attentionBackward: (q, k, v, o, lse, go, bh, t, s, d, scale, causal) => {
        const op = 'attentionBackward';
        return this.attentionBackward(f32(op, q), f32(op, k), f32(op, v), f32(op, o), f32(op, lse), f32(op, go), bh, t, s, d, scale, causal);
      },
      adamw: (p, g, m, v, h) => this.adamw(f32('adamw', p), f32('adamw', g), f32('adamw', m), f32('adamw', v), h),
      sumSquares: (xs) => {
        // every storage's partial sums side by side in one buffer (each run starting 64-aligned,
        // as binding offsets must), then one reduction: 1 launch per storage instead of ~3
        const chunk = 4096;
        const runs: { s: GpuStorage; groups: number; offset: number }[] = [];
        let total = 0;
        for (const x of xs) {
          const s = f32('sumSquares', x);
          if (s.size === 0) continue;
          const groups = Math.ceil(s.size / chunk);
          runs.push({ s, groups, offset: total });
          total += Math.ceil(groups / 64) * 64;
        }
        if (!runs.length) return this.wrap(this.run(KERNELS.fill, [1], [0]), 1, 'float32');
        const partials = this.run(KERNELS.fill, [total], [0]); // the gaps between runs sum as zeros
        for (const r of runs) {
          this.run(KERNELS.sumSquares, [r.groups], [arg(r.s.buf, chunk, r.groups), r.s.size, chunk], { buf: partials, offset: r.offset });
        }
        const out = this.reduceBuf('sum', partials, 1, total, 1);
        this.runner.release(partials);
        return this.wrap(out, 1, 'float32');
      },
    };
  }

  /**
   * Attention without keeping the [bh, t, s] probabilities: scores by the matmul kernel, a
   * masked row logsumexp, P, then P v; the backward recomputes P from q, k and the saved
   * logsumexp (flash attention's trade: a second q k^T instead of bh*t*s floats per layer
   * held from the forward to the backward — 400 MB per GPT-2 layer at B=8).
   */
  private attention(q: GpuStorage, k: GpuStorage, v: GpuStorage, bh: number, t: number, s: number, d: number, scale: number, causal: boolean): { o: Storage; lse: Storage } {
    const { P, lse } = this.attnProbs(q.buf, k.buf, bh, t, s, d, scale, causal);
    const o = this.matmulView({ buf: P, offset: undefined }, { buf: v.buf, offset: undefined },
      { batch: bh, m: t, n: d, k: s, transA: false, transB: false, aBatchStride: t * s, bBatchStride: s * d });
    this.runner.release(P);
    return { o: this.wrap(o, bh * t * d, 'float32'), lse: this.wrap(lse, bh * t, 'float32') };
  }

  private attnProbs(q: DeviceBuffer, k: DeviceBuffer, bh: number, t: number, s: number, d: number, scale: number, causal: boolean,
    lseIn?: DeviceBuffer): { P: DeviceBuffer; lse: DeviceBuffer } {
    const S = this.matmulView({ buf: q, offset: undefined }, { buf: k, offset: undefined },
      { batch: bh, m: t, n: s, k: d, transA: false, transB: true, aBatchStride: t * d, bBatchStride: s * d });
    const rows = bh * t, c = causal ? 1 : 0;
    const lse = lseIn ?? this.run(KERNELS.attnStat, [rows], [arg(S, s, rows), t, s, scale, c]);
    const P = this.run(KERNELS.attnProb, [s, rows, 1], [arg(S, s, rows), arg(lse, rows), t, s, scale, c]);
    this.runner.release(S);
    return { P, lse };
  }

  private attentionBackward(q: GpuStorage, k: GpuStorage, v: GpuStorage, o: GpuStorage, lse: GpuStorage, go: GpuStorage,
    bh: number, t: number, s: number, d: number, scale: number, causal: boolean): { gq: Storage; gk: Storage; gv: Storage } {
    const rows = bh * t;
    const { P } = this.attnProbs(q.buf, k.buf, bh, t, s, d, scale, causal, lse.buf);
    const mm = (a: DeviceBuffer, b: DeviceBuffer, m: number, n: number, kk: number, transA: boolean, transB: boolean): DeviceBuffer =>
      this.matmulView({ buf: a, offset: undefined }, { buf: b, offset: undefined },
        { batch: bh, m, n, k: kk, transA, transB, aBatchStride: m * kk, bBatchStride: kk * n });
    const gv = mm(P, go.buf, s, d, t, true, false);              // P^T dO       [bh, s, d]
    const dP = mm(go.buf, v.buf, t, s, d, false, true);          // dO v^T       [bh, t, s]
    const D = this.run(KERNELS.rowDot, [rows], [arg(o.buf, d, rows), arg(go.buf, d, rows), d, 0]); // rowsum(dO * O)
    const dS = this.run(KERNELS.attnGrad, [s, rows, 1], [arg(P, s, rows), arg(dP, s, rows), arg(D, rows), scale]);
    for (const b of [P, dP, D]) this.runner.release(b);
    const gq = mm(dS, k.buf, t, d, s, false, false);             // dS k         [bh, t, d]
    const gk = mm(dS, q.buf, s, d, t, true, false);              // dS^T q       [bh, s, d]
    this.runner.release(dS);
    return { gq: this.wrap(gq, rows * d, 'float32'), gk: this.wrap(gk, bh * s * d, 'float32'), gv: this.wrap(gv, bh * s * d, 'float32') };
  }

  /**
   * Call fn over row chunks [r0, r0 + rc) of a [rows, cols] tensor so that no binding
   * exceeds the device limit; one call with whole = true when it all fits.
   */
  private rowChunks(op: string, rows: number, cols: number, fn: (r0: number, rc: number, whole: boolean) => void): void {
    const max = this.runner.maxBindingElements;
    if (rows * cols <= max) { fn(0, rows, true); return; }
    const rc = Math.floor(max / Math.max(1, cols) / 64) * 64;
    if (rc < 64) throw new Error(`${op}: rows of ${cols} values exceed the device's storage binding limit (${max} floats) 64 rows at a time`);
    for (let r0 = 0; r0 < rows; r0 += rc) fn(r0, Math.min(rc, rows - r0), false);
  }

  private softmaxBack(y: GpuStorage, gy: GpuStorage, rows: number, cols: number, mode: number): Storage {
    const Y = arg(y.buf, cols, rows), G = arg(gy.buf, cols, rows);
    const dot = this.run(KERNELS.rowDot, [rows], [Y, G, cols, mode]);
    const gx = this.run(KERNELS.softmaxBack, [cols, rows, 1], [Y, G, arg(dot, rows), mode]);
    this.runner.release(dot);
    return this.wrap(gx, rows * cols, 'float32');
  }

  /**
   * In place, as the contract asks: one launch where the runner has a fused kernel (WebGPU),
   * else the portable kernels write new buffers that replace p, m and v's.
   */
  private adamw(p: GpuStorage, g: GpuStorage, m: GpuStorage, v: GpuStorage, h: AdamWParams): void {
    const n = p.size;
    if (n === 0) return;
    // (one buffer bound both read-write and read-only in one launch is invalid: aliased
    // arguments, which only tests make, take the portable path)
    if (this.runner.adamw && new Set([p.buf, g.buf, m.buf, v.buf]).size === 4) { this.runner.adamw(p.buf, g.buf, m.buf, v.buf, n, h); return; }
    const m2 = this.run(KERNELS.adamMoment, [n], [arg(m.buf, n), arg(g.buf, n), h.beta1, 0]);
    const v2 = this.run(KERNELS.adamMoment, [n], [arg(v.buf, n), arg(g.buf, n), h.beta2, 1]);
    const bc1 = 1 - h.beta1 ** h.step, bc2 = 1 - h.beta2 ** h.step;
    const p2 = this.run(KERNELS.adamParam, [n], [arg(p.buf, n), arg(m2, n), arg(v2, n), h.lr, h.weightDecay, bc1, bc2, h.eps]);
    for (const [s, b] of [[m, m2], [v, v2], [p, p2]] as const) {
      this.runner.release(s.buf);
      s.cell.buf = b;
    }
  }
}

let gcFn: Promise<(() => void) | null> | null = null;
/** A way to force a garbage collection: global gc(), or V8's exposed through node:v8 + node:vm. */
function forcedGc(): Promise<(() => void) | null> {
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

function float64Error(op: string): Error {
  return new Error(`${op}: float64 is not supported on the gpu backend (WebGPU has no f64); float64 is for checking on the js backend — use float32 on the GPU`);
}

function pad3(dims: readonly number[]): [number, number, number] {
  const r = [...dims].reverse();
  return [r[0] ?? 1, r[1] ?? 1, r[2] ?? 1];
}
function pad3f(flags: readonly number[]): [number, number, number] {
  const r = [...flags].reverse();
  return [r[0] ?? 0, r[1] ?? 0, r[2] ?? 0];
}
function stridesOfBroadcast(shape: readonly number[], outShape: readonly number[]): number[] {
  const n = outShape.length;
  const st: number[] = new Array<number>(n).fill(0);
  let acc = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    const od = n - shape.length + d;
    st[od] = shape[d] === 1 && outShape[od] !== 1 ? 0 : acc;
    acc *= shape[d]!;
  }
  return st;
}
