// The gpu backend's kernels executed by gpu.js in `cpu` mode: gpu.js parses each kernel
// function and runs its translated JavaScript over host Float32Arrays. This is how CI
// (no GPU) tests the exact kernel sources that WebGPU runs.

import { bfloat16BitsToFloat32, float16BitsToFloat32, float32ToBfloat16Bits, float32ToFloat16Bits } from '../../dtype.js';
import { CAST_CODES, packs, type KernelSpec } from './kernels.js';
import type { BufferView, DeviceBuffer, KernelArg, Runner } from './runner.js';
import type { GpuJsModule } from './gpujs.js';

class HostBuffer implements DeviceBuffer {
  constructor(readonly data: Float32Array) {}
  get length(): number { return this.data.length; }
}

type CpuKernel = (...args: unknown[]) => unknown;

/** Flatten gpu.js's nested result (Float32Array rows inside arrays) into `out`. */
function flattenInto(v: unknown, out: Float32Array, at: number): number {
  if (v instanceof Float32Array) { out.set(v, at); return at + v.length; }
  if (Array.isArray(v)) { for (const e of v) at = flattenInto(e, out, at); return at; }
  throw new Error(`gpu backend (cpu mode): unexpected kernel result ${String(v)}`);
}

export interface CpuRunnerOptions {
  /**
   * Emulate a WebGPU storage-binding limit (in f32): a kernel binding more throws as on the
   * device, so tests can make the backend chunk large kernels with small tensors.
   */
  maxBindingElements?: number | undefined;
}

export class CpuRunner implements Runner {
  readonly mode = 'cpu' as const;
  readonly maxBindingElements: number;
  private readonly gpu: { createKernel(fn: unknown, settings: object): CpuKernel };
  // gpu.js's cpu mode bakes each Input argument's dims into the compiled JavaScript (with
  // `dynamicArguments` it would index by the OUTPUT dims instead), so a kernel is compiled
  // per (kernel, output dims, argument dims); tests use few shapes, so the cache stays small.
  private readonly cache = new Map<string, CpuKernel>();

  constructor(private readonly gpujs: GpuJsModule, opts: CpuRunnerOptions = {}) {
    this.maxBindingElements = opts.maxBindingElements ?? 2 ** 31 - 1;
    this.gpu = new gpujs.GPU({ mode: 'cpu' }) as unknown as { createKernel(fn: unknown, settings: object): CpuKernel };
  }

  upload(data: Float32Array): DeviceBuffer { return new HostBuffer(data); }
  alloc(length: number): DeviceBuffer { return new HostBuffer(new Float32Array(length)); }
  read(buf: DeviceBuffer, size: number): Promise<Float32Array> {
    return Promise.resolve((buf as HostBuffer).data.slice(0, size));
  }
  release(_buf: DeviceBuffer): void { /* garbage collected */ }

  /** The WGSL cast's modes (wgsl.ts) on host words: bit patterns through Uint32/Uint16 views, never a float round trip. */
  cast(x: DeviceBuffer, n: number, mode: number): DeviceBuffer {
    const src = (x as HostBuffer).data;
    const out = new Float32Array(packs(mode) ? Math.ceil(n / 2) : n);
    const halves = new Uint16Array(src.buffer, src.byteOffset, src.length * 2);
    const into = new Uint16Array(out.buffer);
    switch (mode) {
      case CAST_CODES.f16ToF32: for (let i = 0; i < n; i++) out[i] = float16BitsToFloat32(halves[i]!); break;
      case CAST_CODES.bf16ToF32: for (let i = 0; i < n; i++) out[i] = bfloat16BitsToFloat32(halves[i]!); break;
      case CAST_CODES.unpack: for (let i = 0; i < n; i++) out[i] = halves[i]!; break;
      case CAST_CODES.f32ToF16: for (let i = 0; i < n; i++) into[i] = float32ToFloat16Bits(src[i]!); break;
      case CAST_CODES.f32ToBf16: for (let i = 0; i < n; i++) into[i] = float32ToBfloat16Bits(src[i]!); break;
      case CAST_CODES.pack: for (let i = 0; i < n; i++) into[i] = src[i]!; break;
      case CAST_CODES.trunc: for (let i = 0; i < n; i++) out[i] = Math.trunc(src[i]!); break;
      default: new Uint32Array(out.buffer).set(new Uint32Array(src.buffer, src.byteOffset, n));
    }
    return new HostBuffer(out);
  }
  flush(): void { /* eager */ }

  /** The WGSL gather's twin (wgsl.ts) on host words. */
  gather(x: DeviceBuffer, shape: readonly number[], strides: readonly number[], offset: number): DeviceBuffer {
    const src = (x as HostBuffer).data;
    const n = shape.reduce((a, b) => a * b, 1);
    this.bind('gather input', src.length); // the device binds the input whole, the output a chunk at a time
    const xs = new Uint32Array(src.buffer, src.byteOffset, src.length), out = new Float32Array(n), ys = new Uint32Array(out.buffer);
    for (let i = 0; i < n; i++) {
      let rest = i, idx = offset;
      for (let k = shape.length - 1; k >= 0; k--) { idx += (rest % shape[k]!) * strides[k]!; rest = Math.floor(rest / shape[k]!); }
      ys[i] = xs[idx]!;
    }
    return new HostBuffer(out);
  }

  /** The WGSL segment sum's twin (wgsl.ts) on host values. */
  segmentSum(src: DeviceBuffer, cols: number, perm: DeviceBuffer, offs: DeviceBuffer, rows: number): DeviceBuffer {
    const s = (src as HostBuffer).data, pd = (perm as HostBuffer).data, od = (offs as HostBuffer).data;
    const p = new Uint32Array(pd.buffer, pd.byteOffset, pd.length), o = new Uint32Array(od.buffer, od.byteOffset, od.length);
    this.bind('segment sum rows', s.length); // bound whole; the output goes a chunk of rows at a time
    const out = new Float32Array(rows * cols);
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) {
        let acc = 0;
        for (let j = o[r]!; j < o[r + 1]!; j++) acc = Math.fround(acc + s[p[j]! * cols + c]!);
        out[r * cols + c] = acc;
      }
    }
    return new HostBuffer(out);
  }

  private bind(what: string, length: number, offset = 0): void {
    if (offset % 64 !== 0) throw new Error(`gpu backend: ${what} bound at element offset ${offset}, not a multiple of 64 (256 bytes)`);
    if (length > this.maxBindingElements) {
      throw new Error(`gpu backend: ${what} binds ${length} floats, over the storage binding limit of ${this.maxBindingElements} (emulated)`);
    }
  }

  run(spec: KernelSpec, out: readonly number[], args: readonly KernelArg[], into?: BufferView): DeviceBuffer {
    const total = out.reduce((a, b) => a * b, 1);
    this.bind(`${spec.name} output`, total, into?.offset);
    if (total === 0) return into ? into.buf : new HostBuffer(new Float32Array(0));
    const callArgs: unknown[] = [];
    const keyParts: string[] = [spec.name, out.join('x')];
    args.forEach((a, i) => {
      if (typeof a === 'number') { callArgs.push(a); return; }
      const rank = spec.argRanks[i]!;
      if (a.dims.length !== rank) throw new Error(`gpu backend: ${spec.name} argument ${i} needs ${rank} dims, got [${a.dims.join(', ')}]`);
      const want = a.dims.reduce((p, q) => p * q, 1);
      const full = (a.buf as HostBuffer).data;
      const off = a.offset ?? 0;
      // what WebGPU would bind: the whole buffer, or from the offset up to the binding limit
      const bound = a.offset !== undefined ? Math.min(full.length - off, this.maxBindingElements) : full.length;
      this.bind(`${spec.name} argument ${i}`, bound, off);
      let data = a.offset !== undefined ? full.subarray(off, off + bound) : full;
      // gpu.js's Input must be exactly its declared size; declared dims may round past the end
      if (data.length !== want) { const d = new Float32Array(want); d.set(data.subarray(0, Math.min(want, data.length))); data = d; }
      callArgs.push(new this.gpujs.Input(data, [...a.dims]));
      keyParts.push(a.dims.join('x'));
    });
    const key = keyParts.join('|');
    let k = this.cache.get(key);
    if (!k) {
      if (this.cache.size > 256) this.cache.clear();
      k = this.gpu.createKernel(spec.fn, {
        output: [...out],
        argumentTypes: [...spec.argTypes],
        loopMaxIterations: 2 ** 31 - 1,
        tactic: 'precision',
      });
      this.cache.set(key, k);
    }
    const res = k(...callArgs);
    let flat: Float32Array;
    if (spec.rank === 1) flat = res instanceof Float32Array ? res : Float32Array.from(res as ArrayLike<number>);
    else { flat = new Float32Array(total); flattenInto(res, flat, 0); }
    if (!into) return new HostBuffer(flat);
    (into.buf as HostBuffer).data.set(flat, into.offset);
    return into.buf;
  }
}
