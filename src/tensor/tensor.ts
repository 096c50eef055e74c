// The Tensor: a backend storage plus shape and dtype, and the tape that records how each
// tensor was made so that `loss.backward()` can replay the backward rules in reverse.
// Methods mirror PyTorch in camelCase; the ops themselves live in ops.ts / functional.ts.

import { getBackend, getBackendByName, type Backend, type Storage } from './backend.js';
import { allocHost, bfloat16BitsToFloat32, convertHost, float16BitsToFloat32, isFloat, type DType, type HostArray } from './dtype.js';
import { defaultGenerator, type Generator } from './random.js';
import { sameShape, shapeStr, sizeOf, type Shape } from './shape.js';
import * as ops from './ops.js';
import * as F from './functional.js';

// ---------------------------------------------------------------------------------------
// The tape. Each differentiable op's output remembers its inputs and a backward rule that
// maps the output gradient to one gradient per input (null where none flows).
// ---------------------------------------------------------------------------------------
export type BackwardFn = (grad: Tensor) => (Tensor | null)[];

export interface TapeNode {
  readonly op: string;
  readonly inputs: readonly Tensor[];
  readonly backward: BackwardFn;
}

let gradEnabled = true;
/** Nodes whose graph an earlier backward() freed. */
const freedNodes = new WeakSet<TapeNode>();

/** Run `fn` without recording on the tape (torch.no_grad). */
export function noGrad<T>(fn: () => T): T {
  const prev = gradEnabled;
  gradEnabled = false;
  try { return fn(); } finally { gradEnabled = prev; }
}

export function isGradEnabled(): boolean { return gradEnabled; }

/** Wrap a kernel's output storage as a tensor, recording the op if any input needs a gradient. */
export function fromOp(op: string, storage: Storage, shape: Shape, inputs: readonly Tensor[], backward: BackwardFn): Tensor {
  const backend = inputs[0]?.backend ?? getBackend();
  const out = new Tensor(storage, shape, backend);
  if (gradEnabled && inputs.some((t) => t.requiresGrad)) {
    out.requiresGrad = true;
    out.node = { op, inputs, backward };
  }
  return out;
}

export type NestedArray = number | NestedArray[];
export type TypedData = Float32Array | Float64Array | Uint16Array | Int32Array | Uint8Array | Int8Array | Int16Array | Uint32Array | BigInt64Array;

export interface TensorOptions {
  shape?: readonly number[];
  dtype?: DType;
  requiresGrad?: boolean;
  /** Backend name or instance; defaults to the current backend (setBackend). */
  backend?: string | Backend;
}

export class Tensor {
  readonly shape: readonly number[];
  readonly dtype: DType;
  readonly backend: Backend;
  /** The backend buffer. Internal: optimizers swap it in place (like torch's p.data). */
  storage: Storage;
  requiresGrad = false;
  /** Accumulated gradient of a leaf after backward(); same shape and dtype as the tensor. */
  grad: Tensor | null = null;
  /** How this tensor was made (null for leaves and for tensors made under noGrad). */
  node: TapeNode | null = null;

  constructor(storage: Storage, shape: Shape, backend: Backend = getBackend()) {
    if (storage.size !== sizeOf(shape)) {
      throw new Error(`Tensor: storage holds ${storage.size} elements but shape ${shapeStr(shape)} needs ${sizeOf(shape)}`);
    }
    this.storage = storage;
    this.shape = Object.freeze([...shape]);
    this.dtype = storage.dtype;
    this.backend = backend;
  }

  get ndim(): number { return this.shape.length; }
  /** Number of elements. */
  get size(): number { return this.storage.size; }
  numel(): number { return this.storage.size; }
  get isLeaf(): boolean { return this.node === null; }

  toString(): string {
    return `Tensor(shape=${shapeStr(this.shape)}, dtype=${this.dtype}, backend=${this.backend.name}${this.requiresGrad ? ', requiresGrad' : ''})`;
  }

  // ---- reading values (explicit, so a GPU backend never reads back implicitly) ----
  /** The flat values (float16/bfloat16 as their raw bits). Works on every backend. */
  data(): Promise<HostArray> { return this.backend.read(this.storage); }
  /** The flat values, synchronously; CPU backends only. Do not mutate the result. */
  dataSync(): HostArray {
    if (!this.backend.hostMemory) {
      throw new Error(`dataSync: the ${this.backend.name} backend keeps data off the host; use \`await t.data()\``);
    }
    return this.backend.readSync(this.storage);
  }
  /** Values decoded to plain numbers (half types converted), synchronously. */
  private numbers(): ArrayLike<number> {
    const d = this.dataSync();
    if (this.dtype === 'float16') return Array.from(d, float16BitsToFloat32);
    if (this.dtype === 'bfloat16') return Array.from(d, bfloat16BitsToFloat32);
    return d;
  }
  /** The single value of a one-element tensor. */
  item(): number {
    if (this.size !== 1) throw new Error(`item: only one-element tensors can be converted to a number, got shape ${shapeStr(this.shape)}`);
    return this.numbers()[0]!;
  }
  /** Nested arrays of numbers (a number for a 0-d tensor). */
  toArray(): NestedArray {
    const flat = this.numbers();
    const build = (dim: number, offset: number): NestedArray => {
      if (dim === this.shape.length) return flat[offset]!;
      const inner = sizeOf(this.shape.slice(dim + 1));
      return Array.from({ length: this.shape[dim]! }, (_, i) => build(dim + 1, offset + i * inner));
    };
    return build(0, 0);
  }

  // ---- autograd ----
  /** Mark as a leaf that accumulates .grad (returns this, like requires_grad_()). */
  requiresGrad_(flag = true): this {
    if (flag && !isFloat(this.dtype)) throw new Error(`requiresGrad_: only floating tensors can require gradients, got ${this.dtype}`);
    this.requiresGrad = flag;
    return this;
  }
  /** A tensor sharing the data, cut from the tape. */
  detach(): Tensor { return new Tensor(this.storage, this.shape, this.backend); }
  zeroGrad(): void { this.grad = null; }

  /**
   * Backpropagate from this tensor: walk the tape in reverse topological order, applying
   * each op's backward rule and accumulating (+=) into the .grad of leaves that require it,
   * so two backward calls add up, as gradient accumulation needs.
   */
  backward(gradient?: Tensor): void {
    if (!this.requiresGrad) {
      throw new Error('backward: this tensor does not require grad (no input had requiresGrad, or it was computed under noGrad)');
    }
    if (!gradient) {
      if (this.size !== 1) {
        throw new Error(`backward: grad can be implicitly created only for scalar outputs, got shape ${shapeStr(this.shape)}; ` +
          'reduce first (e.g. .sum()) or pass a gradient of the same shape: t.backward(g)');
      }
      gradient = ones(this.shape, { dtype: this.dtype, backend: this.backend });
    } else if (!sameShape(gradient.shape, this.shape)) {
      throw new Error(`backward: gradient shape ${shapeStr(gradient.shape)} does not match the tensor's shape ${shapeStr(this.shape)}`);
    }

    // Topological order by iterative DFS (no recursion: deep residual stacks are fine).
    const tape: Tensor[] = [];
    const seen = new Set<Tensor>([this]);
    const stack: [Tensor, number][] = [[this, 0]];
    while (stack.length) {
      const top = stack[stack.length - 1]!;
      const [t, i] = top;
      if (t.node && freedNodes.has(t.node)) {
        throw new Error(`backward: the graph through '${t.node.op}' was freed by an earlier backward(); ` +
          'recompute the forward pass for each backward (a tensor computed before a backward() cannot be reused after it)');
      }
      const inputs = t.node?.inputs ?? [];
      if (i < inputs.length) {
        top[1]++;
        const child = inputs[i]!;
        if (child.requiresGrad && !seen.has(child)) { seen.add(child); stack.push([child, 0]); }
      } else {
        stack.pop();
        tape.push(t);
      }
    }

    const grads = new Map<Tensor, Tensor>([[this, gradient]]);
    noGrad(() => {
      for (let k = tape.length - 1; k >= 0; k--) {
        const t = tape[k]!;
        const g = grads.get(t);
        if (!g) continue;
        grads.delete(t);
        const node = t.node;
        if (!node) { t.grad = t.grad ? ops.add(t.grad, g) : g; continue; } // a leaf: accumulate
        const gin = node.backward(g);
        node.inputs.forEach((inp, j) => {
          let gi = gin[j];
          if (!gi || !inp.requiresGrad) return;
          gi = ops.sumToShape(gi, inp.shape, node.op); // broadcasting is undone here, once, for every op
          if (gi.dtype !== inp.dtype) gi = ops.cast(gi, inp.dtype);
          const prev = grads.get(inp);
          grads.set(inp, prev ? ops.add(prev, gi) : gi);
        });
      }
    });
    // Free the graph, as PyTorch does without retain_graph: saved tensors can be collected. The
    // tensors stay non-leaves, so backward through them again is an error, not a silent leaf.
    for (const t of tape) {
      if (t.node && !freedNodes.has(t.node)) {
        const freed: TapeNode = { op: t.node.op, inputs: [], backward: () => [] };
        freedNodes.add(freed);
        t.node = freed;
      }
    }
  }

  // ---- conversion ----
  /** Move to another backend (by name) or convert to a dtype. */
  to(target: DType | string | Backend): Tensor {
    if (typeof target === 'string' && (['float32', 'float64', 'float16', 'bfloat16', 'int32'] as string[]).includes(target)) {
      return ops.cast(this, target as DType);
    }
    const backend = typeof target === 'string' ? getBackendByName(target) : target;
    if (backend === this.backend) return this;
    if (!this.backend.hostMemory) {
      throw new Error(`to(${backend.name}): reading from the ${this.backend.name} backend is async; use \`await t.toAsync('${backend.name}')\``);
    }
    const data = this.backend.readSync(this.storage).slice();
    return new Tensor(backend.fromHost(data, this.dtype), this.shape, backend);
  }
  async toAsync(target: string | Backend): Promise<Tensor> {
    const backend = typeof target === 'string' ? getBackendByName(target) : target;
    const data = (await this.backend.read(this.storage)).slice();
    return new Tensor(backend.fromHost(data, this.dtype), this.shape, backend);
  }
  float(): Tensor { return ops.cast(this, 'float32'); }
  double(): Tensor { return ops.cast(this, 'float64'); }
  half(): Tensor { return ops.cast(this, 'float16'); }
  int(): Tensor { return ops.cast(this, 'int32'); }

  // ---- ops as methods ----
  add(o: Tensor | number): Tensor { return ops.add(this, o); }
  sub(o: Tensor | number): Tensor { return ops.sub(this, o); }
  mul(o: Tensor | number): Tensor { return ops.mul(this, o); }
  div(o: Tensor | number): Tensor { return ops.div(this, o); }
  pow(exponent: number): Tensor { return ops.pow(this, exponent); }
  maximum(o: Tensor | number): Tensor { return ops.maximum(this, o); }
  minimum(o: Tensor | number): Tensor { return ops.minimum(this, o); }
  gt(o: Tensor | number): Tensor { return ops.gt(this, o); }
  lt(o: Tensor | number): Tensor { return ops.lt(this, o); }
  eq(o: Tensor | number): Tensor { return ops.eq(this, o); }
  neg(): Tensor { return ops.neg(this); }
  exp(): Tensor { return ops.exp(this); }
  log(): Tensor { return ops.log(this); }
  sqrt(): Tensor { return ops.sqrt(this); }
  tanh(): Tensor { return ops.tanh(this); }
  relu(): Tensor { return ops.relu(this); }
  gelu(): Tensor { return ops.gelu(this); }
  abs(): Tensor { return ops.abs(this); }
  matmul(o: Tensor): Tensor { return ops.matmul(this, o); }
  sum(dims?: number | readonly number[], keepdim = false): Tensor { return ops.sum(this, dims, keepdim); }
  mean(dims?: number | readonly number[], keepdim = false): Tensor { return ops.mean(this, dims, keepdim); }
  max(dims?: number | readonly number[], keepdim = false): Tensor { return ops.max(this, dims, keepdim); }
  reshape(shape: readonly number[]): Tensor { return ops.reshape(this, shape); }
  view(shape: readonly number[]): Tensor { return ops.reshape(this, shape); }
  flatten(): Tensor { return ops.reshape(this, [-1]); }
  unsqueeze(dim: number): Tensor { return ops.unsqueeze(this, dim); }
  squeeze(dim?: number): Tensor { return ops.squeeze(this, dim); }
  permute(dims: readonly number[]): Tensor { return ops.permute(this, dims); }
  transpose(dim0 = -2, dim1 = -1): Tensor { return ops.transpose(this, dim0, dim1); }
  get T(): Tensor { return ops.transpose(this, -2, -1); }
  expand(shape: readonly number[]): Tensor { return ops.expand(this, shape); }
  narrow(dim: number, start: number, length: number): Tensor { return ops.narrow(this, dim, start, length); }
  slice(dim: number, start?: number, end?: number): Tensor { return ops.slice(this, dim, start, end); }
  split(sizes: number | readonly number[], dim = 0): Tensor[] { return ops.split(this, sizes, dim); }
  contiguous(): Tensor { return this; } // storage is always contiguous
  maskedFill(mask: Tensor, value: number): Tensor { return ops.maskedFill(this, mask, value); }
  softmax(dim = -1): Tensor { return F.softmax(this, dim); }
  logSoftmax(dim = -1): Tensor { return F.logSoftmax(this, dim); }
}

// ---------------------------------------------------------------------------------------
// Creation
// ---------------------------------------------------------------------------------------
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
