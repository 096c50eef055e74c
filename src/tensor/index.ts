// The engine's entry: importing it loads the Tensor with every method (methods.ts attaches
// them), autograd, the functional namespace and the CPU backends. Everything inside the
// engine imports the module it needs; users import this (or the package root).

export { Tensor, noGrad, isGradEnabled, fromOp } from './tensor.js';
export type { TapeNode, TapeInput, BackwardFn, NestedArray } from './tensor.js';
export { tensor, zeros, ones, full, zerosLike, onesLike, randn, rand, randint, arange, eye } from './creation.js';
export { sigmoid, clamp, min, std, stack, clone, argmax, maxWithIndices } from './composed.js';
export type { TensorOptions, CreateOptions, TypedData } from './creation.js';
export { backward } from './autograd.js';
export { scope, keep } from './scope.js';
export { autocast, autocastDtype, deferredInRegion } from './autocast.js';
export type { AutocastDtype, AutocastOptions } from './autocast.js';
export { to, toAsync } from './transfer.js';
export * as ops from './ops.js';
import './methods.js';
export * as F from './functional.js';
import './backends/index.js';
