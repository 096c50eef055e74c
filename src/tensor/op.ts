// How an op runs, decided in one place. An op is declared once with defineOp: its composite
// math (the readable definition, differentiated by the tape), its optional fused kernel with
// that kernel's own backward (used when the backend provides it and its guards hold), and its
// dtype rules: half inputs computed in float32 and rounded once, and the category torch.autocast
// puts it in. Ops never look at which backend they run on: they ask for a kernel by name.

import type { FusedKernels, Storage } from './backend.js';
import { isHalf, type DType } from './dtype.js';
import { Tensor, fromOp } from './tensor.js';
import { cast, computeStorage, outStorage } from './ops.js';

/**
 * torch.autocast's lists: 'lower' ops (matmul, linear, attention) run in the autocast dtype,
 * 'float32' ops (softmax, layerNorm, cross-entropy, exp, sums) compute in float32, 'promote'
 * ops run in their inputs' dtype with type promotion. Only consulted inside an autocast region.
 */
export type AutocastCategory = 'lower' | 'float32' | 'promote';

/** A fused kernel's forward on float32 storages: the output and how to differentiate it. */
export interface FusedRun {
  out: Storage;
  /** Float32 gradients of the inputs (null where none flows) from the output's float32 gradient. */
  backward(g: Storage): (Storage | null)[];
}

/** What a fused kernel needs from one call: its differentiable inputs, output shape and forward. */
export interface FusedCall {
  /** The tensors the kernel reads and differentiates, in the order `forward` receives them. */
  inputs: readonly Tensor[];
  shape: readonly number[];
  forward(xs: Storage[]): FusedRun;
}

export interface OpSpec<A extends unknown[]> {
  readonly name: string;
  readonly autocast: AutocastCategory;
  /**
   * Half-precision (float16/bfloat16) inputs are computed in float32 and the result is rounded
   * once to the input's dtype, as the fused kernels do (the composite would round every
   * intermediate: a sum, a mean, a variance).
   */
  readonly halfInFloat32?: boolean;
  /** The backend's fused kernel for these arguments, or null when it has none or a guard fails. */
  fused?(kernels: FusedKernels, ...args: A): FusedCall | null;
  /** The composite definition. */
  compose(...args: A): Tensor;
}

export type Op<A extends unknown[]> = ((...args: A) => Tensor) & { readonly spec: OpSpec<A> };

/** The op as a function: the fused kernel where it applies, else the composite (in float32 for halves when asked). */
export function defineOp<A extends unknown[]>(spec: OpSpec<A>): Op<A> {
  const run = (...args: A): Tensor => {
    const first = args.find((a): a is Tensor => a instanceof Tensor);
    if (!first) throw new Error(`${spec.name}: expected at least one tensor argument`);
    const call = spec.fused?.(first.backend.fused, ...args);
    if (call) return runFused(spec.name, call);
    const half = spec.halfInFloat32 ? args.find((a): a is Tensor => a instanceof Tensor && isHalf(a.dtype)) : undefined;
    if (half) {
      const wide = args.map((a) => (a instanceof Tensor && isHalf(a.dtype) ? cast(a, 'float32') : a)) as A;
      return cast(spec.compose(...wide), half.dtype);
    }
    return spec.compose(...args);
  };
  return Object.assign(run, { spec });
}

/**
 * Run a fused kernel on the tape: inputs widened to float32 (kernels see no half types), the
 * output narrowed back to the first input's dtype, each input gradient to its input's dtype.
 */
function runFused(name: string, call: FusedCall): Tensor {
  const like = call.inputs[0]!;
  const { out, backward } = call.forward(call.inputs.map(computeStorage));
  return fromOp(name, outStorage(like, out), call.shape, call.inputs, (g) => backward(computeStorage(g)).map((s, i) => {
    const x = call.inputs[i]!;
    return s ? new Tensor(outStorage(x, s), x.shape, x.backend) : null;
  }));
}

/**
 * For updates that are not on the tape (AdamW, the clipping norm): the backend's fused kernel
 * `name` when every operand is float32 (what fused kernels take), else null and the caller
 * composes the update from ops.
 */
export function fusedFloat32<N extends keyof FusedKernels>(name: N, operands: readonly Tensor[]): NonNullable<FusedKernels[N]> | null {
  const k = operands[0]?.backend.fused[name];
  return k && operands.every((t) => t.dtype === ('float32' satisfies DType)) ? k as NonNullable<FusedKernels[N]> : null;
}
