// GPT-2 weights in Hugging Face's layout (GPT2LMHeadModel: config.json + model.safetensors) <-> our
// parameter names, with no file access: config.json objects, parameter specs, and tensors read from
// or laid out for open safetensors data. hf-gpt2.ts puts files and directories around it (Node); a
// web page uses it on bytes in memory. The layouts' differences are listed in hf-gpt2.ts.

import { toFloat32, type SafetensorsFile, type SafetensorsTensorInput } from '../data/safetensors-format.js';
import { EOT } from '../data/tokenizer.js';

export interface Gpt2Config {
  nLayer: number;
  nHead: number;
  nEmbd: number;
  /** Context length (HF n_positions). */
  blockSize: number;
  vocabSize: number;
}

export interface Weight {
  shape: number[];
  data: Float32Array;
}
/** Our parameter name -> weight in our (nn.Linear [out, in]) layout. */
export type WeightMap = Map<string, Weight>;

export interface Gpt2ParamSpec {
  /** Our (nanoGPT state_dict) name. */
  name: string;
  /** Shape in our layout. */
  shape: number[];
  /** Name in HF's model.safetensors (without the `transformer.` prefix, as the hub's gpt2). */
  hfName: string;
  /** Shape in HF's layout ([in, out] for Conv1D weights). */
  hfShape: number[];
  /** True for the four Conv1D weights stored transposed by HF. */
  conv1d: boolean;
}

/** Every GPT-2 parameter except lm_head.weight (tied to transformer.wte.weight), in state_dict order. */
export function gpt2ParamSpecs(c: Gpt2Config): Gpt2ParamSpec[] {
  const C = c.nEmbd;
  const specs: Gpt2ParamSpec[] = [];
  const add = (hfName: string, shape: number[], conv1d = false): void => {
    specs.push({ name: `transformer.${hfName}`, shape, hfName, hfShape: conv1d ? [shape[1]!, shape[0]!] : shape, conv1d });
  };
  add('wte.weight', [c.vocabSize, C]);
  add('wpe.weight', [c.blockSize, C]);
  for (let i = 0; i < c.nLayer; i++) {
    const h = `h.${i}.`;
    add(`${h}ln_1.weight`, [C]);
    add(`${h}ln_1.bias`, [C]);
    add(`${h}attn.c_attn.weight`, [3 * C, C], true);
    add(`${h}attn.c_attn.bias`, [3 * C]);
    add(`${h}attn.c_proj.weight`, [C, C], true);
    add(`${h}attn.c_proj.bias`, [C]);
    add(`${h}ln_2.weight`, [C]);
    add(`${h}ln_2.bias`, [C]);
    add(`${h}mlp.c_fc.weight`, [4 * C, C], true);
    add(`${h}mlp.c_fc.bias`, [4 * C]);
    add(`${h}mlp.c_proj.weight`, [C, 4 * C], true);
    add(`${h}mlp.c_proj.bias`, [C]);
  }
  add('ln_f.weight', [C]);
  add('ln_f.bias', [C]);
  return specs;
}

export const LM_HEAD = 'lm_head.weight';
export const WTE = 'transformer.wte.weight';

/** Row-major [rows, cols] -> [cols, rows], in 32x32 tiles so reads and strided writes both stay in cache
 *  (GPT-2 124M has 85M Conv1D weights to transpose on every load and save). */
export function transpose2d(src: Float32Array, rows: number, cols: number): Float32Array {
  const dst = new Float32Array(rows * cols);
  const B = 32;
  for (let r0 = 0; r0 < rows; r0 += B) {
    const r1 = Math.min(r0 + B, rows);
    for (let c0 = 0; c0 < cols; c0 += B) {
      const c1 = Math.min(c0 + B, cols);
      for (let r = r0; r < r1; r++) {
        const base = r * cols;
        for (let k = c0; k < c1; k++) dst[k * rows + r] = src[base + k]!;
      }
    }
  }
  return dst;
}

const fmt = (s: readonly number[]): string => `[${s.join(', ')}]`;
const sameShape = (a: readonly number[], b: readonly number[]): boolean => a.length === b.length && a.every((d, i) => d === b[i]);

function bitsEqual(a: Float32Array, b: Float32Array): boolean {
  if (a.length !== b.length) return false;
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  const y = new Uint32Array(b.buffer, b.byteOffset, b.length);
  for (let i = 0; i < x.length; i++) if (x[i] !== y[i]) return false;
  return true;
}

/** Our config as checkpoints store it (the sidecar's "config", the tapegrad_config metadata): {nLayer, nHead, nEmbd, blockSize, vocabSize}. */
export function parseTapegradConfig(c: unknown, where: string): Gpt2Config {
  const o = (typeof c === 'object' && c !== null ? c : {}) as Record<string, unknown>;
  const keys = ['nLayer', 'nHead', 'nEmbd', 'blockSize', 'vocabSize'] as const;
  for (const k of keys) {
    if (!Number.isSafeInteger(o[k]) || (o[k] as number) <= 0) throw new Error(`${where}: config.${k} must be a positive integer, got ${JSON.stringify(o[k])}`);
  }
  return { nLayer: o.nLayer as number, nHead: o.nHead as number, nEmbd: o.nEmbd as number, blockSize: o.blockSize as number, vocabSize: o.vocabSize as number };
}

// ---- config.json ----------------------------------------------------------------------------

function posInt(json: Record<string, unknown>, key: string, where: string): number {
  const v = json[key];
  if (!Number.isSafeInteger(v) || (v as number) <= 0) throw new Error(`${where}: "${key}" must be a positive integer, got ${JSON.stringify(v)}`);
  return v as number;
}

/** Our config from an HF GPT-2 config.json object; refuses settings our GPT cannot represent. */
export function parseHfGpt2Config(json: unknown, where = 'config.json'): Gpt2Config {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) throw new Error(`${where}: expected a JSON object`);
  const j = json as Record<string, unknown>;
  if (j.model_type !== undefined && j.model_type !== 'gpt2') throw new Error(`${where}: model_type is ${JSON.stringify(j.model_type)}, expected "gpt2"`);
  const act = j.activation_function;
  // build-nanogpt uses nn.GELU(approximate='tanh'), which is HF's gelu_new / gelu_pytorch_tanh.
  if (act !== undefined && act !== 'gelu_new' && act !== 'gelu_pytorch_tanh') {
    throw new Error(`${where}: activation_function ${JSON.stringify(act)} is not the tanh-approximate GELU our GPT uses (gelu_new)`);
  }
  const eps = j.layer_norm_epsilon;
  if (eps !== undefined && eps !== 1e-5) throw new Error(`${where}: layer_norm_epsilon ${JSON.stringify(eps)} differs from the 1e-5 our LayerNorm uses`);
  if (j.scale_attn_by_inverse_layer_idx === true) throw new Error(`${where}: scale_attn_by_inverse_layer_idx=true is not supported by our attention`);
  if (j.tie_word_embeddings === false) throw new Error(`${where}: tie_word_embeddings=false; our GPT ties lm_head to wte`);
  const nLayer = posInt(j, 'n_layer', where);
  const nHead = posInt(j, 'n_head', where);
  const nEmbd = posInt(j, 'n_embd', where);
  const vocabSize = posInt(j, 'vocab_size', where);
  const ctxKey = j.n_positions !== undefined ? 'n_positions' : 'n_ctx';
  if (j[ctxKey] === undefined) throw new Error(`${where}: needs "n_positions" (or the older "n_ctx") for the context length`);
  const blockSize = posInt(j, ctxKey, where);
  if (nEmbd % nHead !== 0) throw new Error(`${where}: n_embd ${nEmbd} is not divisible by n_head ${nHead}`);
  if (j.n_inner !== undefined && j.n_inner !== null && j.n_inner !== 4 * nEmbd) {
    throw new Error(`${where}: n_inner ${JSON.stringify(j.n_inner)} is not 4 * n_embd = ${4 * nEmbd}, which our MLP assumes`);
  }
  return { nLayer, nHead, nEmbd, blockSize, vocabSize };
}

/** config.json for GPT2LMHeadModel (fields as in the hub's gpt2 config.json). */
export function hfGpt2ConfigJson(c: Gpt2Config, vocabSize = c.vocabSize): Record<string, unknown> {
  return {
    activation_function: 'gelu_new',
    architectures: ['GPT2LMHeadModel'],
    // build-nanogpt trains without dropout; these only matter if someone fine-tunes the export in transformers.
    attn_pdrop: 0.0,
    bos_token_id: EOT,
    embd_pdrop: 0.0,
    eos_token_id: EOT,
    initializer_range: 0.02,
    layer_norm_epsilon: 1e-5,
    model_type: 'gpt2',
    n_ctx: c.blockSize,
    n_embd: c.nEmbd,
    n_head: c.nHead,
    n_inner: null,
    n_layer: c.nLayer,
    n_positions: c.blockSize,
    reorder_and_upcast_attn: false,
    resid_pdrop: 0.0,
    scale_attn_by_inverse_layer_idx: false,
    scale_attn_weights: true,
    tie_word_embeddings: true,
    torch_dtype: 'float32',
    use_cache: true,
    vocab_size: vocabSize,
  };
}

// ---- model.safetensors <-> WeightMap --------------------------------------------------------

/** Where each tensor of a (possibly sharded) HF checkpoint lives. */
export interface TensorSource {
  names: string[];
  file(name: string): SafetensorsFile;
  close(): Promise<void>;
}

export function singleSource(f: SafetensorsFile): TensorSource {
  return { names: [...f.names], file: () => f, close: () => f.close() };
}

const BUFFER_RE = /^h\.\d+\.attn\.(bias|masked_bias)$/;

/**
 * Read GPT-2 weights stored under HF names (with or without `transformer.`) from open safetensors
 * file(s), converting F32/F16/BF16 to float32 and transposing Conv1D weights into our layout.
 */
export async function readHfWeights(src: TensorSource, config: Gpt2Config, where: string, padVocabTo?: number): Promise<WeightMap> {
  checkConfigAgainstFile(src, config, where); // before gpt2ParamSpecs: a config claiming 3M layers would allocate 36M specs
  const specs = gpt2ParamSpecs(config);
  const byHf = new Map(specs.map((s) => [s.hfName, s]));
  const stored = new Map<string, string>(); // HF name without prefix -> name in file
  const unknown: string[] = [];
  let lmHeadName: string | null = null;
  for (const name of src.names) {
    const bare = name.startsWith('transformer.') ? name.slice('transformer.'.length) : name;
    if (bare === LM_HEAD) { lmHeadName = name; continue; }
    if (BUFFER_RE.test(bare)) continue;
    if (!byHf.has(bare)) { unknown.push(name); continue; }
    if (stored.has(bare)) throw new Error(`${where}: both ${JSON.stringify(stored.get(bare))} and ${JSON.stringify(name)} are present; keep one`);
    stored.set(bare, name);
  }
  if (unknown.length) throw new Error(`${where}: tensors that are not GPT-2 parameters: ${unknown.slice(0, 8).join(', ')}${unknown.length > 8 ? ` (+${unknown.length - 8} more)` : ''}; is this a GPT2LMHeadModel checkpoint with the config's n_layer=${config.nLayer}?`);
  const missing = specs.filter((s) => !stored.has(s.hfName)).map((s) => s.hfName);
  if (missing.length) throw new Error(`${where}: missing tensors ${missing.slice(0, 8).join(', ')}${missing.length > 8 ? ` (+${missing.length - 8} more)` : ''} for n_layer=${config.nLayer}`);

  const weights: WeightMap = new Map();
  for (const s of specs) {
    const name = stored.get(s.hfName)!;
    const f = src.file(name);
    const info = f.info(name);
    if (!sameShape(info.shape, s.hfShape)) {
      throw new Error(`${where}: tensor ${name} has shape ${fmt(info.shape)} but the config (n_layer=${config.nLayer}, n_embd=${config.nEmbd}, n_positions=${config.blockSize}, vocab_size=${config.vocabSize}) needs ${fmt(s.hfShape)} in HF layout (${fmt(s.shape)} as our ${s.name})`);
    }
    let data = toFloat32(await f.read(name), `${where}: tensor ${name}`);
    checkFinite(data, where, name);
    if (s.conv1d) data = transpose2d(data, s.hfShape[0]!, s.hfShape[1]!);
    weights.set(s.name, { shape: [...s.shape], data });
  }
  const wte = weights.get(WTE)!;
  if (lmHeadName !== null) {
    const f = src.file(lmHeadName);
    const info = f.info(lmHeadName);
    const head = sameShape(info.shape, wte.shape) ? toFloat32(await f.read(lmHeadName), `${where}: tensor ${lmHeadName}`) : null;
    if (!head || !bitsEqual(head, wte.data)) throw new Error(`${where}: ${lmHeadName} differs from wte.weight, but GPT-2 (and our GPT) ties them; this checkpoint is not a tied GPT-2`);
  }
  if (padVocabTo !== undefined && padVocabTo !== config.vocabSize) {
    if (!Number.isSafeInteger(padVocabTo) || padVocabTo < config.vocabSize) throw new Error(`${where}: holds ${config.vocabSize} vocabulary rows, more than the ${padVocabTo} asked for (--vocab-size); give --vocab-size >= ${config.vocabSize}, or omit it to keep the checkpoint's`);
    const padded = new Float32Array(padVocabTo * config.nEmbd); // extra rows stay zero
    padded.set(wte.data);
    weights.set(WTE, { shape: [padVocabTo, config.nEmbd], data: padded });
  }
  weights.set(LM_HEAD, weights.get(WTE)!); // tied: the same arrays, as nanoGPT's state_dict has both keys
  return weights;
}

/**
 * The config against what the weights file says of itself, from its header alone: the number of
 * layers and the embedding shapes. Errors name both sides.
 */
function checkConfigAgainstFile(src: TensorSource, config: Gpt2Config, where: string): void {
  const layers = new Set<number>();
  let wte: readonly number[] | null = null, wpe: readonly number[] | null = null;
  for (const name of src.names) {
    const m = /(?:^|\.)h\.(\d+)\./.exec(name);
    if (m) layers.add(Number(m[1]));
    const bare = name.startsWith('transformer.') ? name.slice('transformer.'.length) : name;
    if (bare === 'wte.weight') wte = src.file(name).info(name).shape;
    if (bare === 'wpe.weight') wpe = src.file(name).info(name).shape;
  }
  const says = `the config says n_layer ${config.nLayer}, n_embd ${config.nEmbd}, n_positions ${config.blockSize}`;
  if (layers.size !== config.nLayer) {
    const held = layers.size ? `${layers.size} layers (h.${Math.min(...layers)} .. h.${Math.max(...layers)})` : 'no transformer layers';
    throw new Error(`${where}: ${says} but the weights file holds ${held}; the config and the weights do not belong together`);
  }
  if (wte && wte[1] !== config.nEmbd) throw new Error(`${where}: ${says} but wte.weight is ${fmt(wte)}`);
  if (wpe && (wpe[0] !== config.blockSize || wpe[1] !== config.nEmbd)) throw new Error(`${where}: ${says} but wpe.weight is ${fmt(wpe)}`);
}

/** NaN or infinity in a weight: a diverged or corrupt checkpoint, refused by name. */
function checkFinite(data: Float32Array, where: string, name: string): void {
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v - v !== 0) { // NaN and +-Infinity
      throw new Error(`${where}: tensor ${name} holds non-finite values (${v} at index ${i}); the checkpoint is diverged or corrupt, use an earlier one`);
    }
  }
}

/** Check a WeightMap against the config: every parameter present, shapes right, lm_head tied. */
export function checkGpt2Weights(config: Gpt2Config, weights: WeightMap, where: string): Gpt2ParamSpec[] {
  const specs = gpt2ParamSpecs(config);
  const known = new Set(specs.map((s) => s.name));
  const extra = [...weights.keys()].filter((k) => !known.has(k) && k !== LM_HEAD);
  if (extra.length) throw new Error(`${where}: weights contain names that are not GPT-2 parameters: ${extra.slice(0, 8).join(', ')} (expected nanoGPT names like transformer.h.0.attn.c_attn.weight)`);
  for (const s of specs) {
    const w = weights.get(s.name);
    if (!w) throw new Error(`${where}: weights lack ${s.name} (shape ${fmt(s.shape)})`);
    if (!sameShape(w.shape, s.shape)) throw new Error(`${where}: ${s.name} has shape ${fmt(w.shape)} but the config needs ${fmt(s.shape)}`);
    if (!(w.data instanceof Float32Array) || w.data.length !== s.shape.reduce((a, b) => a * b, 1)) {
      throw new Error(`${where}: ${s.name} data must be a Float32Array of ${s.shape.reduce((a, b) => a * b, 1)} elements`);
    }
  }
  const head = weights.get(LM_HEAD);
  if (head && head !== weights.get(WTE) && !bitsEqual(head.data, weights.get(WTE)!.data)) {
    throw new Error(`${where}: lm_head.weight differs from transformer.wte.weight; our GPT-2 ties them, so only one can be saved`);
  }
  return specs;
}


/**
 * GPT-2 weights as the tensors of an HF model.safetensors: HF names (no `transformer.` prefix),
 * Conv1D weights as [in, out] (transposed one tensor at a time while a writer streams them), F32.
 * `cropVocabTo: 50257` writes only wte's real rows. With HF_SAFETENSORS_METADATA as the metadata.
 */
export function hfGpt2Tensors(config: Gpt2Config, weights: WeightMap, where: string, opts: { cropVocabTo?: number } = {}): [string, SafetensorsTensorInput][] {
  const specs = checkGpt2Weights(config, weights, where);
  const vocab = opts.cropVocabTo ?? config.vocabSize;
  if (!Number.isSafeInteger(vocab) || vocab <= 0 || vocab > config.vocabSize) throw new Error(`${where}: cropVocabTo ${vocab} must be an integer in 1..${config.vocabSize}`);
  const out: [string, SafetensorsTensorInput][] = specs.map((s) => {
    const w = weights.get(s.name)!;
    if (s.name === WTE && vocab !== config.vocabSize) {
      return [s.hfName, { dtype: 'F32', shape: [vocab, config.nEmbd], data: w.data.subarray(0, vocab * config.nEmbd) }];
    }
    const data = s.conv1d ? () => transpose2d(w.data, s.shape[0]!, s.shape[1]!) : w.data;
    return [s.hfName, { dtype: 'F32', shape: s.hfShape, data }];
  });
  return out;
}

/** transformers refuses safetensors files whose metadata lacks format "pt" (or tf/flax/mlx). */
export const HF_SAFETENSORS_METADATA: Readonly<Record<string, string>> = { format: 'pt' };
