// tapegrad's public API: tensors, the tape, ops, functional (F), nn, optim, data, train.

export { Tensor, tensor, zeros, ones, full, zerosLike, onesLike, randn, rand, arange, noGrad, isGradEnabled } from './tensor/tensor.js';
export type { TensorOptions, CreateOptions, NestedArray, TypedData, TapeNode, BackwardFn } from './tensor/tensor.js';
export { cat, where, matmul } from './tensor/ops.js';
export * as F from './tensor/functional.js';
export { gradcheck } from './tensor/gradcheck.js';
export type { GradcheckOptions, GradcheckResult } from './tensor/gradcheck.js';
export { manualSeed, Generator } from './tensor/random.js';
export { getBackend, setBackend, registerBackend, getBackendByName } from './tensor/backend.js';
export type { Backend, Storage, FusedKernels, MatmulParams, UnaryOp, BinaryOp, ReduceOp, AdamWParams } from './tensor/backend.js';
export { JsBackend, HostStorage } from './tensor/backends/js.js';
export type { DType, HostArray } from './tensor/dtype.js';
export { float32ToFloat16Bits, float16BitsToFloat32, float32ToBfloat16Bits, bfloat16BitsToFloat32 } from './tensor/dtype.js';
export * from './nn/index.js';
export * from './optim/index.js';
