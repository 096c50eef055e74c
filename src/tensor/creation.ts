// Making tensors: from numbers, nested arrays or typed arrays, filled, seeded random, ranges.

import { getBackend, getBackendByName, type Backend } from './backend.js';
import { allocHost, convertHost, type DType, type HostArray } from './dtype.js';
import { defaultGenerator, type Generator } from './random.js';
import { shapeStr, sizeOf } from './shape.js';
import { Tensor, type NestedArray } from './tensor.js';

export type TypedData = Float32Array | Float64Array | Uint16Array | Int32Array | Uint8Array | Int8Array | Int16Array | Uint32Array | BigInt64Array;

export interface TensorOptions {
  shape?: readonly number[];
  dtype?: DType;
  requiresGrad?: boolean;
  /** Backend name or instance; defaults to the current backend (setBackend). */
  backend?: string | Backend;
}

function resolveBackend(b?: string | Backend): Backend {
  return b === undefined ? getBackend() : typeof b === 'string' ? getBackendByName(b) : b;
}

function inferShape(op: string, data: NestedArray): number[] {
  const shape: number[] = [];
  let cur: NestedArray = data;
  while (Array.isArray(cur)) { shape.push(cur.length); cur = cur[0] as NestedArray; }
  // verify the nesting is rectangular
  const check = (x: NestedArray, dim: number): void => {
    if (dim === shape.length) {
      if (typeof x !== 'number') throw new Error(`${op}: expected a number at depth ${dim}, got ${Array.isArray(x) ? 'an array' : typeof x}`);
      return;
    }
    if (!Array.isArray(x) || x.length !== shape[dim]) {
      throw new Error(`${op}: ragged nested array: expected length ${shape[dim]} at depth ${dim}, got ${Array.isArray(x) ? x.length : typeof x}`);
    }
    for (const y of x) check(y, dim + 1);
  };
  check(data, 0);
  return shape;
}

/** Which dtype a typed array makes when none is given: integer arrays make int32 index tensors. */
function dtypeOfTyped(a: TypedData): DType {
  if (a instanceof Float32Array) return 'float32';
  if (a instanceof Float64Array) return 'float64';
  return 'int32';
}

function toInt32(op: string, a: TypedData): Int32Array {
  if (a instanceof Int32Array) return a.slice();
  const out = new Int32Array(a.length);
  if (a instanceof BigInt64Array) {
    for (let i = 0; i < a.length; i++) {
      const v = a[i]!;
      if (v > 2147483647n || v < -2147483648n) throw new Error(`${op}: int64 value ${v} at ${i} does not fit int32`);
      out[i] = Number(v);
    }
  } else {
    for (let i = 0; i < a.length; i++) out[i] = Math.trunc(a[i]!);
  }
  return out;
}

/**
 * Make a tensor from a number, a nested array, or a typed array (give `shape` for
 * multi-dim typed data). Integer typed arrays (Uint16Array token shards, Int32Array, …)
 * make int32 index tensors; a Uint16Array with dtype float16/bfloat16 is taken as bits.
 */
export function tensor(data: NestedArray | TypedData, opts: TensorOptions = {}): Tensor {
  const backend = resolveBackend(opts.backend);
  let host: HostArray;
  let shape: number[];
  let dtype: DType;
  if (typeof data === 'number' || Array.isArray(data)) {
    shape = typeof data === 'number' ? [] : inferShape('tensor', data);
    dtype = opts.dtype ?? 'float32';
    const f64 = new Float64Array(sizeOf(shape));
    if (opts.shape) shape = [...opts.shape]; // a flat list with a shape, as for typed arrays (size checked below)
    let pos = 0;
    const fill = (x: NestedArray): void => { if (typeof x === 'number') f64[pos++] = x; else x.forEach(fill); };
    fill(data);
    host = dtype === 'float64' ? f64 : convertHost(f64, 'float64', dtype);
  } else {
    const isBits = data instanceof Uint16Array && (opts.dtype === 'float16' || opts.dtype === 'bfloat16');
    const natural: DType = isBits ? opts.dtype! : dtypeOfTyped(data);
    dtype = opts.dtype ?? natural;
    const base: HostArray = isBits ? (data as Uint16Array).slice()
      : natural === 'int32' ? toInt32('tensor', data)
      : (data as Float32Array | Float64Array).slice();
    host = dtype === natural ? base : convertHost(base, natural, dtype);
    shape = opts.shape ? [...opts.shape] : [data.length];
  }
  if (sizeOf(shape) !== host.length) {
    throw new Error(`tensor: ${host.length} values cannot have shape ${shapeStr(shape)} (${sizeOf(shape)} elements)`);
  }
  const t = new Tensor(backend.fromHost(host, dtype), shape, backend);
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}

export interface CreateOptions {
  dtype?: DType;
  requiresGrad?: boolean;
  backend?: string | Backend;
}

export function full(shape: readonly number[], value: number, opts: CreateOptions = {}): Tensor {
  const backend = resolveBackend(opts.backend);
  for (const d of shape) {
    if (!Number.isInteger(d) || d < 0) throw new Error(`full: invalid shape ${shapeStr(shape)} (dims must be non-negative integers)`);
  }
  const t = new Tensor(backend.full(sizeOf(shape), opts.dtype ?? 'float32', value), shape, backend);
  if (opts.requiresGrad) t.requiresGrad_(true);
  return t;
}
export function zeros(shape: readonly number[], opts: CreateOptions = {}): Tensor { return full(shape, 0, opts); }
export function ones(shape: readonly number[], opts: CreateOptions = {}): Tensor { return full(shape, 1, opts); }
export function zerosLike(t: Tensor): Tensor { return full(t.shape, 0, { dtype: t.dtype, backend: t.backend }); }
export function onesLike(t: Tensor): Tensor { return full(t.shape, 1, { dtype: t.dtype, backend: t.backend }); }

function fromGenerator(shape: readonly number[], opts: CreateOptions & { generator?: Generator }, sample: (g: Generator) => number): Tensor {
  const g = opts.generator ?? defaultGenerator;
  const n = sizeOf(shape);
  const f = new Float64Array(n);
  for (let i = 0; i < n; i++) f[i] = sample(g);
  return tensor(f, { shape, dtype: opts.dtype ?? 'float32', requiresGrad: opts.requiresGrad, backend: opts.backend });
}
/** Standard normal samples from the seeded generator (see manualSeed). */
export function randn(shape: readonly number[], opts: CreateOptions & { generator?: Generator } = {}): Tensor {
  return fromGenerator(shape, opts, (g) => g.randn());
}
/** Uniform [0, 1) samples from the seeded generator. */
export function rand(shape: readonly number[], opts: CreateOptions & { generator?: Generator } = {}): Tensor {
  return fromGenerator(shape, opts, (g) => g.random());
}

/** Integers uniform in [low, high) from the seeded generator, int32 (torch.randint's int64). */
export function randint(low: number, high: number, shape: readonly number[], opts: Omit<CreateOptions, 'dtype' | 'requiresGrad'> & { generator?: Generator } = {}): Tensor {
  if (!Number.isInteger(low) || !Number.isInteger(high) || high <= low) throw new Error(`randint: need integers low < high, got [${low}, ${high})`);
  const g = opts.generator ?? defaultGenerator;
  const out = new Int32Array(sizeOf(shape));
  for (let i = 0; i < out.length; i++) out[i] = low + g.randint(high - low);
  return tensor(out, { shape, backend: opts.backend });
}

/** The n x m identity (m defaults to n), float32 unless a dtype is given (torch.eye). */
export function eye(n: number, m = n, opts: CreateOptions = {}): Tensor {
  const host = new Float64Array(n * m);
  for (let i = 0; i < Math.min(n, m); i++) host[i * m + i] = 1;
  return tensor(host, { shape: [n, m], dtype: opts.dtype ?? 'float32', requiresGrad: opts.requiresGrad, backend: opts.backend });
}

/** arange(end) or arange(start, end, step), float32 unless a dtype is given. */
export function arange(start: number, end?: number, step = 1, opts: CreateOptions = {}): Tensor {
  if (end === undefined) { end = start; start = 0; }
  if (step === 0) throw new Error('arange: step must be non-zero');
  const n = Math.max(0, Math.ceil((end - start) / step));
  const dtype = opts.dtype ?? 'float32';
  const host = allocHost(dtype === 'float16' || dtype === 'bfloat16' ? 'float32' : dtype, n);
  for (let i = 0; i < n; i++) host[i] = start + i * step;
  return tensor(host as Float32Array, { shape: [n], dtype, requiresGrad: opts.requiresGrad, backend: opts.backend });
}
