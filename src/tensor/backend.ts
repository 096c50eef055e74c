// The backend contract: a device is an allocator plus a small set of primitive kernels
// (after tinygrad's ~25 primitives and jax-js's malloc/read/dispatch). Ops never branch
// on the device; they call these kernels. Storage is opaque to ops: a backend whose
// memory lives elsewhere (a GPU) fits, because values are only read through read/readSync.
//
// Conventions for every kernel:
// - inputs are contiguous, row-major; every kernel returns a NEW storage (no aliasing),
//   except the fused kernels marked "In place" (adamw, addInPlace, scaleInPlace);
// - float16/bfloat16 storages hold bits: `cast` converts them, `matmul` takes half operands
//   and widens them as it reads, the movement kernels move them as they are; every other float
//   primitive sees float32 or float64 (the op layer widens halves to float32 and rounds back);
// - fused kernels take float32 only (float64 runs the op's composite, see define-op.ts);
// - index arguments (`idx`) are int32 storages;
// - shapes are plain number arrays; sizes are element counts.

import type { DType, HostArray } from './dtype.js';

/** A backend's buffer. Its concrete type is the backend's business. */
export interface Storage {
  readonly size: number;
  readonly dtype: DType;
}

export type UnaryOp =
  | 'neg' | 'exp' | 'log' | 'sqrt' | 'tanh' | 'relu' | 'abs'
  | 'step'      // x > 0 ? 1 : 0 (relu's derivative)
  | 'gelu'      // tanh approximation, as GPT-2
  | 'geluGrad'; // d gelu(x) / dx

export type BinaryOp =
  | 'add' | 'sub' | 'mul' | 'div' | 'pow' | 'max' | 'min'
  | 'gt' | 'lt' | 'eq';          // comparisons give 1 or 0 in the input dtype

export type ReduceOp = 'sum' | 'max';

export interface MatmulParams {
  batch: number;
  m: number; n: number; k: number;
  /** a is stored per batch as [k, m] instead of [m, k]. */
  transA: boolean;
  /** b is stored per batch as [n, k] instead of [k, n]. */
  transB: boolean;
  /** Elements between consecutive batch matrices; 0 broadcasts one matrix over the batch. */
  aBatchStride: number;
  bBatchStride: number;
}

export interface AdamWParams {
  lr: number; beta1: number; beta2: number; eps: number; weightDecay: number;
  /** 1-based step number, for bias correction. */
  step: number;
}

/**
 * Optional fused kernels. When a backend provides one, the op uses it (forward and its
 * own backward); otherwise the op is composed from primitives and differentiated by the
 * tape. Every fused kernel is tested against its composite.
 *
 * Where to read one: the op that calls it is a `defineOp` in functional.ts (its `compose` is the
 * math, its `fused` the call); the optimizer's are called by optim/adamw.ts and optim/clip.ts,
 * the in-place add by autograd.ts. The kernels: backends/wasm/fused.ts (row loops in
 * row-kernels.ts, attention.ts) and backends/gpu/fused.ts (gpu.js kernels in kernels.ts,
 * WGSL in wgsl.ts), each under the name it has here.
 */
export interface FusedKernels {
  /**
   * op(a) @ op(b) + bias (float32 [n], added to every row) in one kernel: a linear layer's forward
   * with its bias in the product's epilogue. Null where this product's layout has no such kernel.
   */
  matmulBias?(a: Storage, b: Storage, p: MatmulParams, bias: Storage): Storage | null;
  /**
   * GELU(op(a) @ op(b) + bias), float32, from one kernel, with the pre-activation (which GELU's
   * backward reads): an MLP's c_fc and its GELU. Null where this product has no such kernel.
   */
  matmulBiasGelu?(a: Storage, b: Storage, p: MatmulParams, bias: Storage): { out: Storage; pre: Storage } | null;
  /**
   * op(a) @ op(b) (+ bias [n]) of two half operands of one dtype (the bias of it too), rounded to
   * that dtype once, from one kernel: an autocast linear layer. Null where the backend has no such
   * kernel for this product (the op then adds the bias and casts after the float32 product).
   */
  matmulHalf?(a: Storage, b: Storage, p: MatmulParams, bias: Storage | null): Storage | null;
  /**
   * matmulHalf, then GELU of its rounded result, rounded again (torch's GELU on the half tensor),
   * from the same kernel, with that rounded result (`pre`, which GELU's backward reads).
   */
  matmulHalfGelu?(a: Storage, b: Storage, p: MatmulParams, bias: Storage | null): { out: Storage; pre: Storage } | null;
  /**
   * op(a) @ op(b) and the sums of op(a)'s rows [m], from one kernel: with op(a) = G^T a linear
   * layer's weight gradient G^T X and its bias gradient (G's column sums). Null where this
   * product's layout has no such kernel.
   */
  matmulRowSums?(a: Storage, b: Storage, p: MatmulParams): { out: Storage; rowSums: Storage } | null;
  /**
   * The sums over the rows of x [rows, cols] (its column sums: a linear layer's bias gradient),
   * float32 [cols], where the backend has a faster way than its reduce for x's dtype; else null.
   */
  columnSums?(x: Storage, rows: number, cols: number): Storage | null;
  /** GELU (tanh approximation) of a half tensor, in float32 and rounded once to its dtype, in one kernel; null where the backend has none. */
  geluHalf?(x: Storage): Storage | null;
  /** g * gelu'(x) for a half x and g of its dtype, rounded once to it, in one kernel; null where the backend has none. */
  geluBackwardHalf?(x: Storage, g: Storage): Storage | null;
  /** GELU's (tanh approximation) backward, g * gelu'(x), in one kernel. */
  geluBackward?(x: Storage, g: Storage): Storage;
  /** Row softmax over the last dim of [rows, cols]. */
  softmax?(x: Storage, rows: number, cols: number): Storage;
  /** gx = y * (gy - sum(gy * y)) per row. */
  softmaxBackward?(y: Storage, gy: Storage, rows: number, cols: number): Storage;
  logSoftmax?(x: Storage, rows: number, cols: number): Storage;
  /** gx = gy - exp(y) * sum(gy) per row. */
  logSoftmaxBackward?(y: Storage, gy: Storage, rows: number, cols: number): Storage;
  /** y = (x - mean) * rstd * w + b over the last dim; also returns mean and rstd per row. */
  layerNorm?(x: Storage, w: Storage, b: Storage, rows: number, cols: number, eps: number):
    { y: Storage; mean: Storage; rstd: Storage };
  layerNormBackward?(x: Storage, w: Storage, mean: Storage, rstd: Storage, gy: Storage, rows: number, cols: number):
    { gx: Storage; gw: Storage; gb: Storage };
  /** Per-row loss = logsumexp(x) - x[target]; also returns logsumexp per row. */
  crossEntropy?(logits: Storage, targets: Storage, rows: number, cols: number): { loss: Storage; lse: Storage };
  /** glogits[r, c] = gloss[r] * (softmax(x)[r, c] - (c == target[r])). */
  crossEntropyBackward?(logits: Storage, targets: Storage, lse: Storage, gloss: Storage, rows: number, cols: number): Storage;
  /**
   * The mean cross-entropy of the logits x w^T (x [rows, cols], w [classes, cols]) against int32
   * targets [rows], over chunks of rows, so the [rows, classes] logits never exist at once (GPT's
   * lm_head: 206 MB at 8 x 128 tokens and 50304 classes). With `grad`, also the gradients for an
   * upstream gradient of 1, made chunk by chunk while the logits are at hand: gx [rows, cols] and
   * gw [classes, cols]. With `lower` (under torch.autocast) the values are rounded where autocast
   * stores them in that half type: x and w before the product, the logits, their gradient, gx, and
   * gw once summed over all rows; the loss is float32 as autocast's cross-entropy.
   */
  linearCrossEntropy?(x: Storage, w: Storage, targets: Storage, rows: number, cols: number, classes: number, grad: boolean,
    lower: 'float16' | 'bfloat16' | null): { loss: Storage; gx: Storage | null; gw: Storage | null };
  /**
   * Causal (or full) attention over q, k, v of shape [bh, t, d] (keys [bh, s, d]):
   * o = softmax(q k^T * scale + causal mask) v; also returns the row logsumexp [bh, t].
   */
  attention?(q: Storage, k: Storage, v: Storage, bh: number, t: number, s: number, d: number, scale: number, causal: boolean):
    { o: Storage; lse: Storage };
  attentionBackward?(q: Storage, k: Storage, v: Storage, o: Storage, lse: Storage, go: Storage,
    bh: number, t: number, s: number, d: number, scale: number, causal: boolean): { gq: Storage; gk: Storage; gv: Storage };
  /**
   * Causal self-attention of GPT's packed projections: qkv [B, T, 3C] (q, k, v side by side, each
   * nh heads of hs) -> o [B, T, C] with the heads side by side, and the row logsumexp [B*nh, T];
   * no split or transpose copies, no [T, T] scores.
   */
  attentionPacked?(qkv: Storage, B: number, T: number, nh: number, hs: number, scale: number): { o: Storage; lse: Storage };
  /** The gradient of attentionPacked's qkv [B, T, 3C] from go [B, T, C]. */
  attentionPackedBackward?(qkv: Storage, o: Storage, lse: Storage, go: Storage, B: number, T: number, nh: number, hs: number, scale: number): Storage;
  /**
   * In place, for each parameter i (same hyperparameters and step, as a param group's):
   * p -= lr*wd*p; m,v Adam moments; p -= lr * mhat / (sqrt(vhat) + eps). All at once, as torch's
   * fused AdamW: a GPU runs every parameter of the group in a launch or two (gpu/fused.ts).
   */
  adamw?(ps: Storage[], gs: Storage[], ms: Storage[], vs: Storage[], h: AdamWParams): void;
  /** Sum of squares of every element of every storage, as a 1-element float32 storage (for clipping). */
  sumSquares?(xs: Storage[]): Storage;
  /** In place: into += x (the same size): a gradient accumulated into the storage that holds it. */
  addInPlace?(into: Storage, x: Storage): void;
  /** In place: each x *= factor[0], a 1-element storage read where it lives (no host round trip); 1 leaves x as it is. */
  scaleInPlace?(xs: Storage[], factor: Storage): void;
}

/** The fused kernels a CPU backend provides: all but the GPU-only ones (packed attention, matmul epilogues, GELU's kernels, half column sums: the composites are as fast there). */
export type CpuFusedKernels = Required<Omit<FusedKernels, 'attentionPacked' | 'attentionPackedBackward' | 'matmulBias' | 'matmulBiasGelu' | 'matmulHalf' | 'matmulHalfGelu' | 'matmulRowSums' | 'geluBackward' | 'geluHalf' | 'geluBackwardHalf' | 'columnSums'>>;

/** Why a backend's device went away: the WebGPU `GPUDeviceLostInfo` (reason 'destroyed' or 'unknown'). */
export interface DeviceLossInfo {
  readonly reason: string;
  readonly message: string;
}

/**
 * Thrown by a read from a backend whose device was lost (a driver reset, another process, a
 * backgrounded browser tab, `device.destroy()`): its tensors went with it, so a training loop
 * recreates the backend and reloads from its last checkpoint (npm run train does).
 */
export class DeviceLostError extends Error {
  constructor(readonly backend: string, readonly info: DeviceLossInfo) {
    super(`${backend} backend: the WebGPU device was lost (${info.reason}${info.message ? `: ${info.message}` : ''}); ` +
      'every tensor on it is gone. Create the backend again (initGpuBackend() gives a new device) and reload from a checkpoint');
    this.name = 'DeviceLostError';
  }
}

export interface Backend {
  readonly name: string;
  /** True when readSync works (memory is on the host). */
  readonly hostMemory: boolean;
  readonly fused: FusedKernels;
  /** Set once the backend's device is lost (GPU backends); every later read throws DeviceLostError. */
  readonly lost?: DeviceLossInfo | null;

  // ---- memory ----
  /** Take a host array (the backend may keep it without copying; callers must not reuse it). */
  fromHost(data: HostArray, dtype: DType): Storage;
  /** A storage of `size` elements all equal to `value`. */
  full(size: number, dtype: DType, value: number): Storage;
  read(s: Storage): Promise<HostArray>;
  /** Synchronous read; throws on a backend without host memory. The result must not be mutated. */
  readSync(s: Storage): HostArray;
  /**
   * Optional (host-memory backends): the storage's own array, not a copy. Writing to it changes
   * every tensor on that storage; for code that updates buffers in place (the DDP all-reduce).
   */
  hostView?(s: Storage): HostArray;
  /**
   * Release memory early (optional to call: storage otherwise lives until garbage collected).
   * `reason` is what a later use of the storage is told (scope.ts passes why it freed it).
   */
  dispose(s: Storage, reason?: string): void;
  /**
   * Optional: give the memory of storages that are no longer referenced back now. A backend
   * whose device memory is freed by garbage collection (gpu) needs this once per training
   * step, because a step's thousands of temporaries barely register on the JS heap.
   */
  collect?(): Promise<void>;
  /**
   * Optional (device-memory backends): bytes of device memory the backend has taken so far, its
   * buffer pool's high-water mark (a pool gives nothing back, so this is also the peak).
   */
  deviceBytes?(): number | null;

  // ---- elementwise ----
  cast(x: Storage, to: DType): Storage;
  unary(op: UnaryOp, x: Storage): Storage;
  /** Broadcasting binary op: a and b are broadcast to outShape (numpy rules, shapes right-aligned). */
  binary(op: BinaryOp, a: Storage, aShape: readonly number[], b: Storage, bShape: readonly number[],
    outShape: readonly number[]): Storage;
  /** out = cond != 0 ? a : b, all three broadcast to outShape. */
  where(cond: Storage, condShape: readonly number[], a: Storage, aShape: readonly number[],
    b: Storage, bShape: readonly number[], outShape: readonly number[]): Storage;

  // ---- reductions ----
  /** x viewed as [outer, size, inner], reduced over the middle axis -> [outer, inner]. */
  reduce(op: ReduceOp, x: Storage, outer: number, size: number, inner: number): Storage;

  // ---- matmul ----
  /**
   * out[bt] = op(a[bt]) @ op(b[bt]), out is [batch, m, n] float32. a and b are float32 or both
   * one half dtype, accumulated in float32 (a backend widens halves where it reads them).
   */
  matmul(a: Storage, b: Storage, p: MatmulParams): Storage;

  // ---- movement ----
  /** out[i_0..i_r] = x[offset + sum_k i_k * strides[k]] (permute, slice, expand are all this). */
  strided(x: Storage, outShape: readonly number[], strides: readonly number[], offset: number): Storage;
  /** Zero padding: out has shape[k] + before[k] + after[k] along each axis. */
  pad(x: Storage, shape: readonly number[], before: readonly number[], after: readonly number[]): Storage;

  // ---- indexing ----
  /**
   * Throw when an int32 index storage holds a value outside [0, limit), naming the op, `what`
   * the indices are and `context` (shapes). A backend checks where it holds the values (a gpu
   * backend keeps a host copy of indices); the op layer never reads device memory.
   */
  checkIndices(op: string, idx: Storage, limit: number, what: string, context: string): void;
  /** out[r, :] = table[idx[r], :] ; table is [rows, cols], idx has n entries -> [n, cols]. */
  gatherRows(table: Storage, cols: number, idx: Storage, n: number): Storage;
  /** out[v, :] = sum over r with idx[r] == v of src[r, :] ; out is [rows, cols]. */
  scatterAddRows(src: Storage, cols: number, idx: Storage, n: number, rows: number): Storage;
  /** out[r] = x[r, idx[r]] for x of [rows, cols]. */
  pickLast(x: Storage, rows: number, cols: number, idx: Storage): Storage;
  /** out[r, c] = c == idx[r] ? g[r] : 0, out is [rows, cols]. */
  scatterLast(g: Storage, rows: number, cols: number, idx: Storage): Storage;
}

// ---- registry ----
const factories = new Map<string, () => Backend>();
const instances = new Map<string, Backend>();
let current: Backend | null = null;

/** Make `name` available to getBackendByName/setBackend (backends/index.ts registers 'js'). */
export function registerBackend(name: string, factory: () => Backend): void {
  factories.set(name, factory);
}

export function getBackendByName(name: string): Backend {
  let b = instances.get(name);
  if (!b) {
    const f = factories.get(name);
    if (!f) throw new Error(`unknown backend '${name}'; available: ${[...factories.keys()].join(', ')}`);
    b = f();
    instances.set(name, b);
  }
  return b;
}

let chosen = false;
let noticed = false;
/** The backend new tensors are created on ('js' until setBackend chooses another). */
export function getBackend(): Backend {
  if (!current) current = getBackendByName('js');
  return current;
}

/**
 * Called by the js reference backend with the multiply-adds of a matmul: the first large one on
 * the default backend (no setBackend call) in Node says once, on stderr, how to get the fast one.
 */
export function noteReferenceWork(backend: Backend, macs: number): void {
  if (noticed || chosen || macs < 2 ** 24 || backend !== instances.get('js')) return;
  if (typeof process === 'undefined' || !process.versions?.node) return;
  noticed = true;
  process.stderr.write("tapegrad: computing on the 'js' reference backend (the default: exact but slow); " +
    "setBackend(createWasmBackend()) gives the fast CPU backend (SIMD on worker threads), as npm run train uses\n");
}

/**
 * Select the backend for new tensors. Async backends (GPU) are initialised by their
 * own async `init...` function first and then selected by name here.
 */
export function setBackend(name: string | Backend): Backend {
  chosen = true;
  current = typeof name === 'string' ? getBackendByName(name) : name;
  if (typeof name !== 'string') instances.set(name.name, name);
  return current;
}
