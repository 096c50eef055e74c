// The basic layers, as torch.nn: Linear (weight [out, in]), Embedding, LayerNorm, the activations
// and Dropout as modules, and Sequential.
// Initialisation follows PyTorch's defaults; GPT re-initialises as GPT-2 does.

import { Module } from './module.js';
import type { DType } from '../tensor/dtype.js';
import { Tensor, full, rand, randn, ops, F } from '../tensor/index.js';

export interface LayerOptions {
  dtype?: DType;
  /** false: zero weights, for a caller that initialises or loads them itself (saves time on big models). */
  init?: boolean;
}

/** y = x W^T + b, W stored [out, in] as torch.nn.Linear. Default init U(-1/sqrt(in), 1/sqrt(in)). */
export class Linear extends Module {
  weight: Tensor;
  bias: Tensor | null;
  constructor(readonly inFeatures: number, readonly outFeatures: number, bias = true, opts: LayerOptions = {}) {
    super();
    const bound = 1 / Math.sqrt(inFeatures);
    const u = (shape: number[]): Tensor => opts.init === false
      ? full(shape, 0, { dtype: opts.dtype, requiresGrad: true })
      : ops.sub(ops.mul(rand(shape, opts), 2 * bound), bound).detach().requiresGrad_();
    this.weight = u([outFeatures, inFeatures]);
    this.bias = bias ? u([outFeatures]) : null;
  }
  forward(x: Tensor): Tensor { return F.linear(x, this.weight, this.bias); }
}

/** A lookup table [num, dim]; default init N(0, 1) as torch.nn.Embedding. */
export class Embedding extends Module {
  weight: Tensor;
  constructor(readonly numEmbeddings: number, readonly embeddingDim: number, opts: LayerOptions = {}) {
    super();
    this.weight = opts.init === false
      ? full([numEmbeddings, embeddingDim], 0, { dtype: opts.dtype, requiresGrad: true })
      : randn([numEmbeddings, embeddingDim], { dtype: opts.dtype, requiresGrad: true });
  }
  forward(idx: Tensor): Tensor { return F.embedding(idx, this.weight); }
}

/** LayerNorm over the last dim with eps 1e-5, weight ones and bias zeros. */
export class LayerNorm extends Module {
  weight: Tensor;
  bias: Tensor | null;
  constructor(readonly normalizedShape: number, bias = true, readonly eps = 1e-5, opts: LayerOptions = {}) {
    super();
    this.weight = full([normalizedShape], 1, { ...opts, requiresGrad: true });
    this.bias = bias ? full([normalizedShape], 0, { ...opts, requiresGrad: true }) : null;
  }
  forward(x: Tensor): Tensor { return F.layerNorm(x, this.weight, this.bias, this.eps); }
}

/** max(x, 0) as a module (torch.nn.ReLU). */
export class ReLU extends Module {
  forward(x: Tensor): Tensor { return ops.relu(x); }
}

/** GELU with GPT-2's tanh approximation as a module (torch.nn.GELU(approximate='tanh')). */
export class GELU extends Module {
  forward(x: Tensor): Tensor { return ops.gelu(x); }
}

/** Zeroes each element with probability p while training, scaling the rest by 1/(1-p); identity in eval() (torch.nn.Dropout). */
export class Dropout extends Module {
  constructor(readonly p = 0.5) {
    super();
    if (p < 0 || p > 1) throw new Error(`Dropout: probability must be in [0, 1], got ${p}`);
  }
  forward(x: Tensor): Tensor { return F.dropout(x, this.p, this.training); }
}

/** Anything with forward(x) -> y that Sequential can chain. */
export interface Layer { forward(x: Tensor): Tensor }

/** Modules applied in order, named 0, 1, ... in the state dict as torch.nn.Sequential's. */
export class Sequential extends Module {
  [index: number]: Module & Layer;
  declare readonly length: number;
  constructor(...layers: (Module & Layer)[]) {
    super();
    // the modules are fields '0', '1', ...: the state dict's names are torch's
    layers.forEach((m, i) => { this[i] = m; });
    Object.defineProperty(this, 'length', { value: layers.length, enumerable: false });
  }
  forward(x: Tensor): Tensor {
    let h = x;
    for (let i = 0; i < this.length; i++) h = this[i]!.forward(h);
    return h;
  }
}
