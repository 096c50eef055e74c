// How the gpu backend runs a kernel: a Runner owns device memory and dispatch. Two exist:
// gpu.js's `cpu` mode (host Float32Arrays; how CI tests the kernels) and WebGPU (our own
// dispatch of the WGSL gpu.js translates, so buffers stay on the device and are pooled).

import type { AdamWParams, DeviceLossInfo } from '../../backend.js';
import type { KernelSpec } from './kernels.js';

/**
 * A device buffer of 32-bit words: float32 values (int32 as exact f32 too), or float16/bfloat16
 * packed two per word (only the runner's cast reads or writes those; see CAST_CODES).
 */
export interface DeviceBuffer {
  /** Number of 32-bit words (may exceed what a storage uses: pooled buffers are rounded up). */
  readonly length: number;
}

/**
 * An array argument: a buffer and the dims ([x], [x, y] or [x, y, z]) the kernel indexes it
 * with; `offset` (elements, a multiple of 64 = WebGPU's 256-byte binding alignment) binds
 * the buffer from there on, which is how kernels run over row chunks of a tensor larger
 * than one storage binding may be.
 */
export interface BufferArg {
  readonly buf: DeviceBuffer;
  readonly dims: readonly number[];
  readonly offset?: number;
}
/** A buffer from an element offset (a multiple of 64) on. */
export interface BufferView {
  readonly buf: DeviceBuffer;
  readonly offset: number;
}
/** A matmul operand: all of a buffer (no offset), or a view from an offset on. */
export interface OperandView {
  readonly buf: DeviceBuffer;
  readonly offset?: number | undefined;
}
export type KernelArg = BufferArg | number;

/** A buffer argument indexed with `dims` (each at least 1). */
export function arg(buf: DeviceBuffer, ...dims: number[]): BufferArg {
  return { buf, dims: dims.map((d) => Math.max(1, d)) };
}

export interface MatmulDims {
  batch: number; m: number; n: number; k: number;
  transA: boolean; transB: boolean;
  aBatchStride: number; bBatchStride: number;
}

/**
 * What the fast matmul adds to its output pass: a bias [n] added to every row (a linear layer's
 * forward), and op(A)'s row sums written to rowSums [m] (with op(A) = G^T, a linear layer's bias
 * gradient, from the weight gradient's pass over G).
 */
export interface MatmulEpilogue {
  readonly bias?: DeviceBuffer;
  readonly rowSums?: DeviceBuffer;
  /** With half operands: the result (and the bias) of their type, rounded as stored (packed, two a word). */
  readonly halfOut?: boolean;
  /** The result written here, and GELU of it as the output (an MLP's c_fc and its GELU); with halves, both rounded to their type. */
  readonly preGelu?: DeviceBuffer;
}

/** Where a flash-attention operand's element (z = b*nh + h, row i, d) is: off + b*sB + h*sH + i*sT + d. */
export interface AttnView { off: number; sB: number; sH: number; sT: number }
/** One flash-attention launch (flash-wgsl.ts): sizes, and the views the kernel reads and writes. */
export interface FlashArgs {
  B: number; nh: number; T: number; S: number; hs: number; scale: number; causal: boolean;
  /** bwdKV: bit 0 writes dK (view g) and dS, bit 1 dV (view g2), bit 2 adds to them (a later query chunk). */
  mode?: number;
  /** The backward's chunk: batch entries b0 .. b0 + bn - 1 (all B by default), queries qa .. qb - 1 (all T). */
  b0?: number; bn?: number; qa?: number; qb?: number;
  q: AttnView; k: AttnView; v: AttnView; o?: AttnView; dO?: AttnView; g?: AttnView; g2?: AttnView;
}
export type FlashKernel = 'flashFwd' | 'flashBwdQ' | 'flashBwdKV';
/** A half dtype's precision that float32 values are rounded to where autocast stores halves ('none': kept). */
export type HalfRounding = 'none' | 'float16' | 'bfloat16';

export interface Runner {
  readonly mode: 'cpu' | 'webgpu';
  /** Set once the device is lost (WebGPU); its reads then throw DeviceLostError. */
  readonly lost?: DeviceLossInfo | null;
  /** Copy host values to a new device buffer. */
  upload(data: Float32Array): DeviceBuffer;
  /**
   * Run a kernel over `out` ([x] for rank-1 kernels, [x, y, z] for rank 3) into a new buffer,
   * or into `into` from its offset on (returning into.buf).
   */
  run(spec: KernelSpec, out: readonly number[], args: readonly KernelArg[], into?: BufferView): DeviceBuffer;
  /** A new buffer of at least `length` f32 (contents unspecified). */
  alloc(length: number): DeviceBuffer;
  /** Read the first `size` words back (as float32; a packed half buffer's bits are the caller's to reinterpret). */
  read(buf: DeviceBuffer, size: number): Promise<Float32Array>;
  /** Return a buffer for reuse; enqueued work that reads it still sees its values. */
  release(buf: DeviceBuffer): void;
  /**
   * n values converted by bits (CAST_CODES mode) into a new buffer: exact on every device, where
   * float arithmetic may assume no NaN or flush subnormals; modes to a half write ceil(n/2) words.
   */
  cast(x: DeviceBuffer, n: number, mode: number): DeviceBuffer;
  /**
   * GELU of a packed half tensor of n elements (or, with g of its type, its backward g * gelu'(x)),
   * computed in float32 and rounded once to its type, where the runner has the kernel (wgsl.ts).
   */
  geluHalf?(x: DeviceBuffer, g: DeviceBuffer | null, n: number, half: 'float16' | 'bfloat16'): DeviceBuffer;
  /**
   * out[i] = x[offset + sum_k c_k * strides[k]] for i's coordinates c in `shape` (up to 8 dims), in
   * u32 arithmetic (exact for any buffer a device binds); 32-bit words copied as they are.
   */
  gather(x: DeviceBuffer, shape: readonly number[], strides: readonly number[], offset: number): DeviceBuffer;
  /**
   * out [rows, cols]: row r sums the rows perm[offs[r]] .. perm[offs[r+1] - 1] of src [., cols];
   * perm and offs are u32 words (upload their Uint32Array's bytes).
   */
  segmentSum(src: DeviceBuffer, cols: number, perm: DeviceBuffer, offs: DeviceBuffer, rows: number): DeviceBuffer;
  /**
   * The buffers as consecutive slots of a few packed buffers (spans), where the runner can copy
   * on the device (WebGPU): multi-tensor kernels then take a launch per span, not per tensor.
   * Slots are the buffers' new homes (the old ones released); null when one exceeds a binding.
   */
  pack?(bufs: readonly DeviceBuffer[], sizes: readonly number[]): { slots: DeviceBuffer[]; spans: DeviceBuffer[] } | null;
  /** Buffers that will not be wanted again: freed for good rather than pooled (after the work recorded with them). */
  discard?(bufs: readonly DeviceBuffer[]): void;
  /** Whether two buffers share device memory (a launch may not write one and read the other). */
  aliases?(a: DeviceBuffer, b: DeviceBuffer): boolean;
  /** AdamW updating p, m and v in place in one launch, where the runner has one (the portable kernels take three). */
  adamw?(p: DeviceBuffer, g: DeviceBuffer, m: DeviceBuffer, v: DeviceBuffer, n: number, h: AdamWParams): void;
  /** x += y ('add') or x *= y[0] ('scale') in place, where the runner can write a buffer it reads (WebGPU). */
  inPlace?(mode: 'add' | 'scale', x: DeviceBuffer, y: DeviceBuffer, n: number): void;
  /**
   * Flash attention (flash-wgsl.ts), where the runner has it: fwd binds [q, k, v, o, lse], bwdKV
   * [q, k, v, o, dO, lse, dS, dKV], then bwdQ [k, dS, dQ].
   */
  flash?(kernel: FlashKernel, a: FlashArgs, buffers: readonly DeviceBuffer[]): void;
  /** LayerNorm forward in one launch (layernorm-wgsl.ts), where the runner has it: y [rows, cols], mean and rstd [rows]. */
  layerNorm?(x: DeviceBuffer, w: DeviceBuffer, b: DeviceBuffer, rows: number, cols: number, eps: number): { y: DeviceBuffer; mean: DeviceBuffer; rstd: DeviceBuffer };
  /** LayerNorm's gradients gx [rows, cols], gw and gb [cols] (layernorm-wgsl.ts: two launches), where the runner has them. */
  layerNormBackward?(x: DeviceBuffer, w: DeviceBuffer, mean: DeviceBuffer, rstd: DeviceBuffer, gy: DeviceBuffer, rows: number, cols: number):
    { gx: DeviceBuffer; gw: DeviceBuffer; gb: DeviceBuffer };
  /**
   * Cross-entropy rows in one launch (cross-entropy-wgsl.ts), where the runner has it: per row of
   * z [rows, cols] its logsumexp and loss; with gradScale, z overwritten by (softmax - onehot) * gradScale.
   * With `round`, the logits are read, and the gradient written, rounded to that half dtype's precision.
   */
  crossEntropyRows?(z: BufferView, targets: BufferView, rows: number, cols: number, lse: BufferView, loss: BufferView, gradScale: number | null, round?: HalfRounding): void;
  /**
   * A faster matmul than the portable gpu.js kernel, where the runner has one; where wideMatmul(p),
   * an epilogue, and operands that are both packed halves (`halves`; view offsets in 32-bit words) widened as loaded.
   */
  matmul?(a: OperandView, b: OperandView, p: MatmulDims, into?: BufferView, epilogue?: MatmulEpilogue, halves?: 'bf16' | 'f16'): DeviceBuffer;
  /** Whether matmul takes an epilogue for this product (the 128x128 kernel's layouts). */
  wideMatmul?(p: MatmulDims): boolean;
  /**
   * float16 operands (packed; view offsets in 32-bit words) on tensor cores, float32 out (new, or
   * into a view), or with `halfOut` float16 out (a float16 bias added first), where tensorMatmul(p).
   */
  matmulTensor?(a: OperandView, b: OperandView, p: MatmulDims, into?: BufferView, epilogue?: Pick<MatmulEpilogue, 'bias' | 'halfOut' | 'preGelu'>): DeviceBuffer;
  /** Whether matmulTensor takes this product (the device has tensor cores, and the shape tiles). */
  tensorMatmul?(p: MatmulDims): boolean;
  /** Stop using tensor cores (they failed the self-test). */
  tensorCoresOff?(): void;
  /** Largest number of f32 one kernel argument may bind. */
  readonly maxBindingElements: number;
  /** Submit anything queued (a no-op where work runs eagerly). */
  flush(): void;
}
