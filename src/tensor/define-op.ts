// How an op runs, decided in one place. An op is declared once with defineOp: its composite
// math (the readable definition, differentiated by the tape), its optional fused kernel with
// that kernel's own backward (used when the backend provides it and its guards hold), and its
// dtype rules: half inputs computed in float32 and rounded once, and the category torch.autocast
// puts it in. Ops never look at which backend they run on: they ask for a kernel by name.

import type { FusedKernels, Storage } from './backend.js';
import { isHalf, type DType } from './dtype.js';
import { Tensor, fromOp } from './tensor.js';
import { cast } from './cast.js';
import { computeStorage, outStorage, releaseCopy } from './kernel-io.js';
import { autocastDtype, autocastInputs, keptStorageForBackward, withoutAutocast, type AutocastCategory } from './autocast.js';

/** A fused kernel's forward on float32 storages: the output and how to differentiate it. */
export interface FusedRun {
  out: Storage;
  /**
   * Float32 gradients of the inputs (null where none flows) from the output's float32 gradient.
   * `xs` are the inputs again as float32 when the call `readsInputs` (else empty), and `out` the
   * op's output as float32 when it `readsOutput` (else null): the kernel must not keep its
   * forward's, which for half inputs or outputs are float32 copies twice their size (a half
   * output is read back rounded). Attention keeps its float32 output instead: torch's math
   * attention differentiates through the unrounded softmax, and the fixtures are torch's.
   */
  backward(g: Storage, xs: Storage[], out: Storage | null): (Storage | null)[];
  /** The backward holds `out` itself (attention: see above), so a narrowed op must not free it. */
  keepsOutput?: boolean;
}

/** What a fused kernel needs from one call: its differentiable inputs, output shape and forward. */
export interface FusedCall {
  /** The tensors the kernel reads and differentiates, in the order `forward` receives them. */
  inputs: readonly Tensor[];
  shape: readonly number[];
  forward(xs: Storage[]): FusedRun;
  /** Whether the backward reads the inputs (softmax's reads only its output). */
  readsInputs: boolean;
  /** Whether the backward reads the output (softmax, attention). */
  readsOutput?: boolean;
}

export interface OpSpec<A extends unknown[]> {
  readonly name: string;
  /** torch.autocast's list for the op (see autocast.ts); only consulted inside an autocast region. */
  readonly autocast: AutocastCategory;
  /**
   * Half-precision (float16/bfloat16) inputs are computed in float32 and the result is rounded
   * once to the input's dtype, as the fused kernels do (the composite would round every
   * intermediate: a sum, a mean, a variance).
   */
  readonly halfInFloat32?: boolean;
  /**
   * The backend's fused kernel for these arguments, or null when it has none or a guard fails.
   * `kernels.<name>` is declared in backend.ts's FusedKernels, whose comment says where each
   * backend implements it (under the same name).
   */
  fused?(kernels: FusedKernels, ...args: A): FusedCall | null;
  /** The composite definition. */
  compose(...args: A): Tensor;
}

export type Op<A extends unknown[]> = ((...args: A) => Tensor) & { readonly spec: OpSpec<A> };

/** The op as a function: the fused kernel where it applies, else the composite (in float32 for halves when asked). */
export function defineOp<A extends unknown[]>(spec: OpSpec<A>): Op<A> {
  // autocast applies at the op's boundary (its inputs' dtypes); the composite inside is the op's own math
  const run = (...args: A): Tensor => {
    // a float32-list op's fused kernel takes half inputs as they are and widens them itself (again
    // in backward), so the tape holds the half input, not a float32 copy: the same math as casting
    // first, at half the activation memory (the logits before cross-entropy are the largest)
    if (spec.autocast === 'float32' && autocastDtype() !== null) {
      const out = withoutAutocast(() => fusedOrNull(args, 'float32'));
      if (out) return out;
    }
    const ins = autocastInputs(spec.autocast, args);
    return withoutAutocast(() => fusedOrNull(ins) ?? composed(ins));
  };
  const fusedOrNull = (args: A, outDtype?: DType): Tensor | null => {
    const first = args.find((a): a is Tensor => a instanceof Tensor);
    if (!first) throw new Error(`${spec.name}: expected at least one tensor argument`);
    // kernels are written for float32 (halves widened to it); float64, the gradchecks' dtype,
    // runs the composite: the independent definition every fused kernel is tested against
    if (args.some((a) => a instanceof Tensor && a.dtype === 'float64')) return null;
    const call = spec.fused?.(first.backend.fused, ...args);
    return call ? runFused(spec.name, call, outDtype) : null;
  };
  const composed = (args: A): Tensor => {
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
 * output in `outDtype` (default: the first input's dtype), each input gradient in its input's dtype.
 */
function runFused(name: string, call: FusedCall, outDtype?: DType): Tensor {
  const like = call.inputs[0]!;
  const wide = call.inputs.map(computeStorage);
  const { out, backward, keepsOutput } = call.forward(wide);
  // the float32 copies of half inputs are this call's own (backward gets the inputs again); a loop,
  // not an arrow: an arrow would put `wide` in the context the backward closure below keeps alive
  for (let i = 0; i < wide.length; i++) releaseCopy(call.inputs[i]!, wide[i]!);
  // the rule keeps the inputs' storages (as stored: half stays half) only when the kernel's
  // backward reads them, and otherwise their dtypes and shapes: the tape keeps no tensor alive.
  // An autocast region's cast of a parameter is not kept (see keptStorageForBackward)
  const saved = call.readsInputs ? call.inputs.map(keptStorageForBackward) : null;
  const meta = call.inputs.map((x) => ({ dtype: x.dtype, shape: x.shape }));
  const widen = (s: Storage): Storage => (isHalf(s.dtype) ? like.backend.cast(s, 'float32') : s);
  const stored = outStorage(like, out, outDtype);
  // narrowed: the float32 result is no one's (a backward that `readsOutput` widens `stored` again),
  // unless the kernel keeps it (attention's backward reads it unrounded, as torch's math attention)
  if (stored !== out && !keepsOutput) like.backend.dispose(out);
  const readOut = call.readsOutput ? stored : null;
  return fromOp(name, stored, call.shape, call.inputs, (g) => backward(computeStorage(g), saved?.map((get) => widen(get())) ?? [], readOut && widen(readOut)).map((s, i) =>
    (s ? new Tensor(outStorage(like, s, meta[i]!.dtype), meta[i]!.shape, like.backend) : null)));
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
