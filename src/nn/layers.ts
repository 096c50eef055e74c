// The basic layers, as torch.nn: Linear (weight [out, in]), Embedding, LayerNorm.
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
