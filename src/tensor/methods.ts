// The ops as Tensor methods, `x.add(y).relu()` as torch's: declaration merging adds them to
// Tensor's type and this table to its prototype (loaded once by the package's index).

import { Tensor } from './tensor.js';
import { abs, add, div, eq, exp, expand, gelu, gt, log, lt, maskedFill, matmul, max, maximum, mean, minimum, mul, narrow, neg, permute,
  pow, relu, reshape, slice, split, sqrt, squeeze, sub, sum, tanh, transpose, unsqueeze } from './ops.js';

declare module './tensor.js' {
  interface Tensor {
    add(o: Tensor | number): Tensor;
    sub(o: Tensor | number): Tensor;
    mul(o: Tensor | number): Tensor;
    div(o: Tensor | number): Tensor;
    pow(exponent: number): Tensor;
    maximum(o: Tensor | number): Tensor;
    minimum(o: Tensor | number): Tensor;
    gt(o: Tensor | number): Tensor;
    lt(o: Tensor | number): Tensor;
    eq(o: Tensor | number): Tensor;
    neg(): Tensor;
    exp(): Tensor;
    log(): Tensor;
    sqrt(): Tensor;
    tanh(): Tensor;
    relu(): Tensor;
    gelu(): Tensor;
    abs(): Tensor;
    matmul(o: Tensor): Tensor;
    sum(dims?: number | readonly number[], keepdim?: boolean): Tensor;
    mean(dims?: number | readonly number[], keepdim?: boolean): Tensor;
    max(dims?: number | readonly number[], keepdim?: boolean): Tensor;
    reshape(shape: readonly number[]): Tensor;
    view(shape: readonly number[]): Tensor;
    flatten(): Tensor;
    unsqueeze(dim: number): Tensor;
    squeeze(dim?: number): Tensor;
    permute(dims: readonly number[]): Tensor;
    transpose(dim0?: number, dim1?: number): Tensor;
    readonly T: Tensor;
    expand(shape: readonly number[]): Tensor;
    narrow(dim: number, start: number, length: number): Tensor;
    slice(dim: number, start?: number, end?: number): Tensor;
    split(sizes: number | readonly number[], dim?: number): Tensor[];
    maskedFill(mask: Tensor, value: number): Tensor;
  }
}

const methods: { [K in keyof Tensor]?: (this: Tensor, ...args: never[]) => unknown } = {
  add(this: Tensor, o: Tensor | number) { return add(this, o); },
  sub(this: Tensor, o: Tensor | number) { return sub(this, o); },
  mul(this: Tensor, o: Tensor | number) { return mul(this, o); },
  div(this: Tensor, o: Tensor | number) { return div(this, o); },
  pow(this: Tensor, exponent: number) { return pow(this, exponent); },
  maximum(this: Tensor, o: Tensor | number) { return maximum(this, o); },
  minimum(this: Tensor, o: Tensor | number) { return minimum(this, o); },
  gt(this: Tensor, o: Tensor | number) { return gt(this, o); },
  lt(this: Tensor, o: Tensor | number) { return lt(this, o); },
  eq(this: Tensor, o: Tensor | number) { return eq(this, o); },
  neg(this: Tensor) { return neg(this); },
  exp(this: Tensor) { return exp(this); },
  log(this: Tensor) { return log(this); },
  sqrt(this: Tensor) { return sqrt(this); },
  tanh(this: Tensor) { return tanh(this); },
  relu(this: Tensor) { return relu(this); },
  gelu(this: Tensor) { return gelu(this); },
  abs(this: Tensor) { return abs(this); },
  matmul(this: Tensor, o: Tensor) { return matmul(this, o); },
  sum(this: Tensor, dims?: number | readonly number[], keepdim = false) { return sum(this, dims, keepdim); },
  mean(this: Tensor, dims?: number | readonly number[], keepdim = false) { return mean(this, dims, keepdim); },
  max(this: Tensor, dims?: number | readonly number[], keepdim = false) { return max(this, dims, keepdim); },
  reshape(this: Tensor, shape: readonly number[]) { return reshape(this, shape); },
  view(this: Tensor, shape: readonly number[]) { return reshape(this, shape); },
  flatten(this: Tensor) { return reshape(this, [-1]); },
  unsqueeze(this: Tensor, dim: number) { return unsqueeze(this, dim); },
  squeeze(this: Tensor, dim?: number) { return squeeze(this, dim); },
  permute(this: Tensor, dims: readonly number[]) { return permute(this, dims); },
  transpose(this: Tensor, dim0 = -2, dim1 = -1) { return transpose(this, dim0, dim1); },
  expand(this: Tensor, shape: readonly number[]) { return expand(this, shape); },
  narrow(this: Tensor, dim: number, start: number, length: number) { return narrow(this, dim, start, length); },
  slice(this: Tensor, dim: number, start?: number, end?: number) { return slice(this, dim, start, end); },
  split(this: Tensor, sizes: number | readonly number[], dim = 0) { return split(this, sizes, dim); },
  maskedFill(this: Tensor, mask: Tensor, value: number) { return maskedFill(this, mask, value); },
};
Object.assign(Tensor.prototype, methods);
Object.defineProperty(Tensor.prototype, 'T', { get(this: Tensor) { return transpose(this, -2, -1); }, configurable: true });
