// GPT-2 as build-nanogpt's train_gpt2.py defines it: pre-LN blocks, fused c_attn, GELU-tanh
// MLP, weight tying wte = lm_head, GPT-2 init. Field names equal GPT-2 checkpoint keys.

import { Generator, defaultGenerator } from '../tensor/random.js';
import { Module, type HostTensor } from './module.js';
import { Embedding, LayerNorm, Linear } from './layers.js';
import { shapeStr } from '../tensor/shape.js';
import { Tensor, noGrad, arange, randn, tensor, ops, F, deferredInRegion, scope } from '../tensor/index.js';

export interface GPTConfig {
  /** max sequence length */
  blockSize: number;
  vocabSize: number;
  nLayer: number;
  nHead: number;
  nEmbd: number;
}

/** Model presets: OpenAI's four GPT-2 sizes (vocab padded to 50304, a multiple of 64) and small CPU ones. */
export const GPT_PRESETS: Record<string, GPTConfig> = {
  'gpt2': { nLayer: 12, nHead: 12, nEmbd: 768, blockSize: 1024, vocabSize: 50304 },        // 124M
  'gpt2-medium': { nLayer: 24, nHead: 16, nEmbd: 1024, blockSize: 1024, vocabSize: 50304 }, // 350M
  'gpt2-large': { nLayer: 36, nHead: 20, nEmbd: 1280, blockSize: 1024, vocabSize: 50304 },  // 774M
  'gpt2-xl': { nLayer: 48, nHead: 25, nEmbd: 1600, blockSize: 1024, vocabSize: 50304 },     // 1558M
  // CPU presets: small enough to watch learn on a laptop in minutes. 'nano' is npm run train's
  // default: on a 1,024-token BPE (the vocabulary then comes from the data) it passes the bigram
  // count model in about two minutes on 2 cores; deeper models learn more per step but see fewer tokens
  'nano': { nLayer: 1, nHead: 4, nEmbd: 128, blockSize: 64, vocabSize: 50304 },
  'tiny': { nLayer: 4, nHead: 4, nEmbd: 128, blockSize: 128, vocabSize: 50304 },
  'small': { nLayer: 6, nHead: 6, nEmbd: 384, blockSize: 256, vocabSize: 50304 },
};

/** Layers inside GPT skip their own default init: GPT.initWeights (or a load) sets every weight. */
const NO_INIT = { init: false } as const;

/** Multi-head causal self-attention with the q, k, v projections fused into c_attn. */
export class CausalSelfAttention extends Module {
  c_attn: Linear;
  c_proj: Linear;
  constructor(readonly config: GPTConfig) {
    super();
    if (config.nEmbd % config.nHead !== 0) {
      throw new Error(`CausalSelfAttention: nEmbd ${config.nEmbd} must be divisible by nHead ${config.nHead}`);
    }
    this.c_attn = new Linear(config.nEmbd, 3 * config.nEmbd, true, NO_INIT);
    this.c_proj = new Linear(config.nEmbd, config.nEmbd, true, NO_INIT);
  }

  /**
   * x (B, T, C) -> (B, T, C). With a cache, keys/values of earlier positions are reused so
   * each new token costs one position (sampling).
   */
  forward(x: Tensor, cache?: KVCache): Tensor {
    const [B, T, C] = x.shape as [number, number, number];
    const nh = this.config.nHead, hs = C / nh;
    const qkv = this.c_attn.forward(x); // (B, T, 3C)
    if (!cache) return this.c_proj.forward(F.causalSelfAttention(qkv, nh)); // (B, T, C)
    const heads = (t: Tensor): Tensor => ops.transpose(ops.reshape(t, [B, T, nh, hs]), 1, 2); // (B, nh, T, hs)
    const [q, k0, v0] = ops.split(qkv, C, 2).map(heads) as [Tensor, Tensor, Tensor];
    let k = k0, v = v0;
    if (cache) {
      if (cache.k) { k = ops.cat([cache.k, k0], 2); v = ops.cat([cache.v!, v0], 2); }
      cache.k = k; cache.v = v;
    }
    const y = F.scaledDotProductAttention(q, k, v, { isCausal: true }); // (B, nh, T, hs)
    return this.c_proj.forward(ops.reshape(ops.transpose(y, 1, 2), [B, T, C])); // re-assemble heads side by side
  }
}

/** Keys and values of the positions seen so far, per layer: (B, nh, S, hs). */
export interface KVCache { k: Tensor | null; v: Tensor | null }

export class MLP extends Module {
  c_fc: Linear;
  c_proj: Linear;
  constructor(config: GPTConfig) {
    super();
    this.c_fc = new Linear(config.nEmbd, 4 * config.nEmbd, true, NO_INIT);
    this.c_proj = new Linear(4 * config.nEmbd, config.nEmbd, true, NO_INIT);
  }
  // c_proj(gelu(c_fc(x))); c_fc and its GELU as one op, which a GPU computes in one launch
  forward(x: Tensor): Tensor { return this.c_proj.forward(F.linearGelu(x, this.c_fc.weight, this.c_fc.bias)); }
}

/** Pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)). */
export class Block extends Module {
  ln_1: LayerNorm;
  attn: CausalSelfAttention;
  ln_2: LayerNorm;
  mlp: MLP;
  constructor(config: GPTConfig) {
    super();
    this.ln_1 = new LayerNorm(config.nEmbd);
    this.attn = new CausalSelfAttention(config);
    this.ln_2 = new LayerNorm(config.nEmbd);
    this.mlp = new MLP(config);
  }
  forward(x: Tensor, cache?: KVCache): Tensor {
    x = ops.add(x, this.attn.forward(this.ln_1.forward(x), cache));
    return ops.add(x, this.mlp.forward(this.ln_2.forward(x)));
  }
}

/** With targets, `logits` is computed when first read (training reads only the loss). */
export interface GPTOutput { readonly logits: Tensor; loss: Tensor | null }

export interface GenerateOptions {
  maxNewTokens: number;
  topK?: number;
  temperature?: number;
  generator?: Generator;
  /** Reuse keys/values of earlier positions (default true). */
  kvCache?: boolean;
  /** Called with each step's new tokens (one per row), for streaming. */
  onToken?: (tokens: number[]) => void;
  /**
   * Sample only ids below this (default: the whole vocabulary). A vocabulary padded past the tokenizer's
   * (50304 > 50257) has rows no tokenizer can decode; sampling one would break decoding.
   */
  vocabLimit?: number;
}

export class GPT extends Module {
  transformer: { wte: Embedding; wpe: Embedding; h: Block[]; ln_f: LayerNorm };
  lm_head: Linear;

  /**
   * `init: false` skips the random GPT-2 init (weights start at zero) for callers that load
   * weights right after; on GPT-2 124M that init costs seconds.
   */
  constructor(readonly config: GPTConfig, opts: { generator?: Generator; init?: boolean } = {}) {
    super();
    this.transformer = {
      wte: new Embedding(config.vocabSize, config.nEmbd, NO_INIT),
      wpe: new Embedding(config.blockSize, config.nEmbd, NO_INIT),
      h: Array.from({ length: config.nLayer }, () => new Block(config)),
      ln_f: new LayerNorm(config.nEmbd),
    };
    this.lm_head = new Linear(config.nEmbd, config.vocabSize, false, NO_INIT);
    const untied = this.lm_head.weight;
    this.lm_head.weight = this.transformer.wte.weight; // weight tying, as GPT-2
    untied.backend.dispose(untied.storage, 'GPT ties lm_head.weight to transformer.wte.weight');
    if (opts.init !== false) this.initWeights(opts.generator ?? defaultGenerator);
  }

  /**
   * Node: a GPT with the weights at `path`: a checkpoint of ours (model_<step>.json or .safetensors),
   * a training --out-dir (its newest complete checkpoint), or a Hugging Face GPT-2 directory
   * (config.json + model.safetensors). In eval mode, on the current backend.
   */
  static async fromPretrained(path: string): Promise<GPT> {
    const { loadWeights } = await import('../train/checkpoint.js'); // file access, loaded when asked
    const loaded = await loadWeights(path);
    const model = new GPT(loaded.config, { init: false });
    model.loadStateDict(loaded.weights);
    return model.eval();
  }

  /**
   * Hugging Face's GPT-2 state dicts load too, where that is unambiguous: names without the
   * `transformer.` prefix (GPT2Model, the hub's model.safetensors), the attention's causal-mask
   * buffers (`attn.bias`, `attn.masked_bias`: not parameters) dropped, and Conv1D weights stored
   * [in, out] transposed, decided for the whole dict by the c_attn weight's shape ([C, 3C] in HF's
   * layout, [3C, C] in ours; attn.c_proj's square one could not tell).
   */
  protected override adaptStateDict(entries: Map<string, Tensor | HostTensor>): Map<string, Tensor | HostTensor> {
    const own = this.stateDict();
    const out = new Map<string, Tensor | HostTensor>();
    for (const [key, value] of entries) {
      const name = !own.has(key) && own.has(`transformer.${key}`) ? `transformer.${key}` : key;
      if (!own.has(name) && /(^|\.)attn\.(bias|masked_bias)$/.test(name)) continue;
      out.set(name, value);
    }
    const C = this.config.nEmbd;
    const cAttn = out.get('transformer.h.0.attn.c_attn.weight');
    if (cAttn && cAttn.shape.length === 2 && cAttn.shape[0] === C && cAttn.shape[1] === 3 * C) {
      for (const [name, value] of out) {
        if (/\.(attn\.c_attn|attn\.c_proj|mlp\.c_fc|mlp\.c_proj)\.weight$/.test(name) && value.shape.length === 2) out.set(name, transposed(value));
      }
    }
    return out;
  }

  /**
   * GPT-2 init: normal(0, 0.02) for Linear and Embedding weights, zero biases, and the
   * residual projections (attn.c_proj, mlp.c_proj) scaled by (2 * n_layer)^-0.5 so the
   * residual stream's variance does not grow with depth.
   */
  private initWeights(gen: Generator): void {
    const residualStd = 0.02 * (2 * this.config.nLayer) ** -0.5;
    noGrad(() => {
      for (const [name, p] of this.namedParameters()) {
        // the layers were built with zero biases and weights, and LayerNorm's ones: those stay
        if (name.endsWith('.bias') || name.includes('.ln_')) continue;
        const std = name.endsWith('c_proj.weight') ? residualStd : 0.02;
        const zeros = p.storage;
        // the scope frees the draw before scaling; the zeros go back now too (on a GPU, device
        // memory the garbage collector would otherwise return whenever it ran)
        p.storage = scope(() => ops.mul(randn(p.shape, { generator: gen }), std)).storage;
        p.backend.dispose(zeros, 'GPT.initWeights replaced it');
      }
    });
  }

  /** idx (B, T) int32 -> logits (B, T, vocab) and, with targets (B, T), the mean cross-entropy. */
  forward(idx: Tensor, targets?: Tensor | null, caches?: KVCache[]): GPTOutput {
    if (idx.ndim !== 2) throw new Error(`GPT.forward: idx must be (B, T) token ids, got shape ${shapeStr(idx.shape)}`);
    const [B, T] = idx.shape as [number, number];
    const past = caches?.[0]?.k?.shape[2] ?? 0;
    if (past + T > this.config.blockSize) {
      throw new Error(`GPT.forward: cannot forward a sequence of length ${past + T}, block size is only ${this.config.blockSize}; ` +
        'use a shorter --seq-len or a model with a larger --block-size');
    }
    const pos = arange(past, past + T, 1, { dtype: 'int32', backend: idx.backend }); // (T)
    const tokEmb = this.transformer.wte.forward(idx); // (B, T, C)
    const posEmb = this.transformer.wpe.forward(pos); // (T, C)
    let x = ops.add(tokEmb, posEmb);
    this.transformer.h.forEach((block, i) => { x = block.forward(x, caches?.[i]); });
    x = this.transformer.ln_f.forward(x);
    if (!targets) return { logits: this.lm_head.forward(x), loss: null }; // (B, T, vocab)
    if (targets.shape[0] !== B || targets.shape[1] !== T) {
      throw new Error(`GPT.forward: targets ${shapeStr(targets.shape)} must match idx ${shapeStr(idx.shape)}`);
    }
    const rowsTargets = ops.reshape(targets, [B * T]);
    // the loss of lm_head's logits as one op: a backend with the fused kernel never holds all
    // B*T*vocab logits (nor their gradient); they are made only if the caller reads them (under
    // autocast rounded as torch's: the product in the half type, the loss in float32)
    const loss = F.linearCrossEntropy(ops.reshape(x, [B * T, this.config.nEmbd]), this.lm_head.weight, rowsTargets);
    const head = deferredInRegion(() => this.lm_head.forward(x));
    let logits: Tensor | null = null;
    return { get logits(): Tensor { return (logits ??= head()); }, loss };
  }

  /**
   * Sample continuations of the rows of idx (B, T0) as train_gpt2.py does: softmax of the last
   * position's logits / temperature, keep the top-k, sample from them. Returns (B, T0 + n) ids.
   */
  async generate(idx: number[][], opts: GenerateOptions): Promise<number[][]> {
    const { maxNewTokens, topK = 50, temperature = 1, generator = defaultGenerator, kvCache = true } = opts;
    const rows = idx.map((r) => [...r]);
    const B = rows.length;
    const V = this.config.vocabSize;
    const Vs = Math.min(V, opts.vocabLimit ?? V); // sampled ids are < Vs; rows are still V apart in the logits
    if (!(Vs >= 1)) throw new Error(`GPT.generate: vocabLimit ${opts.vocabLimit} must be a positive number of token ids`);
    const wasTraining = this.training;
    this.eval();
    try {
      let caches: KVCache[] | undefined = kvCache ? this.transformer.h.map(() => ({ k: null, v: null })) : undefined;
      let fed = 0; // positions already in the cache
      for (let step = 0; step < maxNewTokens; step++) {
        const len = rows[0]!.length;
        if (caches && len > this.config.blockSize) { caches = this.transformer.h.map(() => ({ k: null, v: null })); fed = 0; }
        const start = caches ? fed : Math.max(0, len - this.config.blockSize);
        const ctxStart = caches && fed === 0 ? Math.max(0, len - this.config.blockSize) : start;
        const window = rows.map((r) => r.slice(ctxStart));
        const T = window[0]!.length;
        const x = tensor(Int32Array.from(window.flat()), { shape: [B, T], backend: this.transformer.wte.weight.backend });
        const logits = noGrad(() => this.forward(x, null, caches).logits);
        if (caches) fed = ctxStart + T;
        const last = noGrad(() => ops.narrow(logits, 1, T - 1, 1)); // (B, 1, V)
        const data = await last.data();
        for (let i = 0; i < data.length; i++) {
          if (data[i]! - data[i]! !== 0) {
            throw new Error(`GPT.generate: the logits of row ${Math.floor(i / V)} at step ${step} hold ${data[i]}; the model's weights or activations are not finite`);
          }
        }
        const next: number[] = [];
        for (let b = 0; b < B; b++) {
          next.push(sampleTopK(data as Float32Array, b * V, Vs, topK, temperature, generator));
          rows[b]!.push(next[b]!);
        }
        opts.onToken?.(next);
      }
    } finally {
      this.train(wasTraining);
    }
    return rows;
  }
}

/** Sample from the top-k of softmax(logits / temperature) (torch.topk + multinomial). */
export function sampleTopK(logits: ArrayLike<number>, offset: number, V: number, k: number, temperature: number, gen: Generator): number {
  const kk = Math.max(1, Math.min(k, V));
  // the k largest logits by partial selection (insertion into a sorted top list; O(V) for
  // typical logits); ties keep the lower index first, as a stable sort would
  const top: number[] = [];
  const val: number[] = [];
  for (let i = 0; i < V; i++) {
    const v = logits[offset + i]!;
    if (top.length === kk && !(v > val[kk - 1]!)) continue;
    let j = top.length === kk ? kk - 1 : top.length;
    while (j > 0 && v > val[j - 1]!) { top[j] = top[j - 1]!; val[j] = val[j - 1]!; j--; }
    top[j] = i; val[j] = v;
  }
  if (top.length === 0) throw new Error('sampleTopK: every logit is NaN; the model has diverged');
  if (temperature === 0) return top[0]!; // greedy: the largest logit (the first of ties)
  const t = temperature;
  const maxL = val[0]! / t;
  const w = val.map((v) => Math.exp(v / t - maxL));
  const total = w.reduce((s, x) => s + x, 0);
  let r = gen.random() * total;
  for (let j = 0; j < top.length; j++) { r -= w[j]!; if (r < 0) return top[j]!; }
  return top[top.length - 1]!;
}

/** A [rows, cols] weight as [cols, rows] (Conv1D's layout to nn.Linear's). */
function transposed(w: Tensor | HostTensor): Tensor | HostTensor {
  const [rows, cols] = w.shape as [number, number];
  if (w instanceof Tensor) return noGrad(() => ops.transpose(w, 0, 1)); // a new contiguous storage
  const src = w.data, dst = new (src.constructor as new (n: number) => typeof src)(src.length);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) dst[c * rows + r] = src[r * cols + c]!;
  return { shape: [cols, rows], data: dst };
}
