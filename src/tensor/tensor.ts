// The Tensor: a backend storage plus shape and dtype, and the tape that records how each
// tensor was made, so that `loss.backward()` (autograd.ts) can replay the backward rules in
// reverse. Methods mirror PyTorch in camelCase; the op modules attach them (ops.ts,
// functional.ts, autograd.ts), so this module depends on none of them.

import { getBackend, type Backend, type Storage } from './backend.js';
import { bfloat16BitsToFloat32, float16BitsToFloat32, isFloat, type DType, type HostArray } from './dtype.js';
import { shapeStr, sizeOf, type Shape } from './shape.js';
import { formatTensor } from './print.js';

// ---------------------------------------------------------------------------------------
// The tape. Each differentiable op's output remembers its inputs and a backward rule that
// maps the output gradient to one gradient per input (null where none flows).
// ---------------------------------------------------------------------------------------
export type BackwardFn = (grad: Tensor) => (Tensor | null)[];

/**
 * An op's input as the tape keeps it: where its gradient goes (the leaf itself, or the op that
 * made it) with its shape and dtype, but not its values. An intermediate tensor thus lives only
 * as long as some backward rule captured it (mul keeps its operands; add, cast, reshape keep
 * nothing), which is what activation memory is.
 */
export interface TapeInput {
  readonly leaf: Tensor | null;
  readonly node: TapeNode | null;
  readonly shape: Shape;
  readonly dtype: DType;
}

export interface TapeNode {
  readonly op: string;
  /** One entry per op input; null where no gradient flows (the input does not require it). */
  inputs: readonly (TapeInput | null)[];
  backward: BackwardFn;
  /** The op's output storage, recorded inside a scope (scope.ts) so backward() can free it. */
  out?: Storage;
}

/** Set by scope.ts while a scope runs: nodes then record their output storage. */
export const tapeHooks = { recordOutputs: false };

let gradEnabled = true;

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
    out.node = {
      op, backward,
      inputs: inputs.map((t) => (t.requiresGrad ? { leaf: t.node ? null : t, node: t.node, shape: t.shape, dtype: t.dtype } : null)),
    };
    if (tapeHooks.recordOutputs) out.node.out = storage;
  }
  return out;
}

export type NestedArray = number | NestedArray[];

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

  /** torch's format: `tensor([[ 0.1000, -2.0000], ...], dtype=int32)`, large tensors summarised (print.ts). */
  toString(): string {
    const extras: string[] = [];
    if (this.dtype !== 'float32') extras.push(`dtype=${this.dtype}`);
    if (this.backend.name !== 'js' && this.backend.name !== 'wasm') extras.push(`backend=${this.backend.name}`);
    if (this.node) extras.push(`gradFn=<${this.node.op}>`);
    else if (this.requiresGrad) extras.push('requiresGrad=true');
    let values: ArrayLike<number> | null = null;
    try { values = this.backend.hostMemory ? this.numbers() : null; } catch { values = null; } // a freed storage
    return formatTensor(values, this.shape, extras, this.dtype === 'int32');
  }
  /** console.log(t) and util.inspect(t) in Node print the values, as toString. */
  [Symbol.for('nodejs.util.inspect.custom')](): string { return this.toString(); }

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

  /** Storage is always contiguous (reshape shares it; every other op writes a new one). */
  contiguous(): Tensor { return this; }

}
