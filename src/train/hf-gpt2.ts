// GPT-2 weights in Hugging Face's layout (GPT2LMHeadModel: config.json + model.safetensors) <-> our
// parameter names, which are nanoGPT's / build-nanogpt's state_dict keys (as its from_pretrained maps them).
//
// The two layouts differ in three ways, all handled here on plain Float32Arrays (no engine Tensor):
//  1. HF's attention/MLP projections are Conv1D modules storing weight as [in, out]; ours are nn.Linear
//     [out, in], so c_attn, attn.c_proj, mlp.c_fc and mlp.c_proj weights are transposed both ways.
//  2. HF names drop the `transformer.` prefix on the hub's gpt2 file (save_pretrained keeps it); both read.
//  3. HF stores no lm_head.weight (tied to wte) and may store non-parameter buffers (h.{i}.attn.bias,
//     the causal mask, and h.{i}.attn.masked_bias) that are ignored.
// Vocabulary: HF GPT-2 has 50257 tokens, our gpt2 preset pads to 50304 (a multiple of 64, for speed).
// Loading with `padVocabTo` appends zero rows to wte (as build-nanogpt's padded rows start out unused).
// Caution: those rows give logit 0, while a trained GPT-2's real logits are mostly well below 0, so an
// HF model padded this way puts most probability on the padded ids unless logits >= 50257 are masked
// (in the loss and in sampling) or the model keeps vocab 50257. Export writes config.json vocab_size = our vocab size by default, so `--init-from` reads
// it back bit-exactly; `cropVocabTo: 50257` writes only the real rows for transformers compatibility.

import { mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { writeFileAtomic } from '../data/fsutil.js';
import {
  openSafetensors, toFloat32, writeSafetensors,
  type SafetensorsFile, type SafetensorsTensorInput,
} from '../data/safetensors.js';

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

export const HF_GPT2_VOCAB_SIZE = 50257;
export const GPT2_EOT_TOKEN = 50256;

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
    bos_token_id: GPT2_EOT_TOKEN,
    embd_pdrop: 0.0,
    eos_token_id: GPT2_EOT_TOKEN,
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
interface TensorSource {
  names: string[];
  file(name: string): SafetensorsFile;
  close(): Promise<void>;
}

function singleSource(f: SafetensorsFile): TensorSource {
  return { names: [...f.names], file: () => f, close: () => f.close() };
}

const BUFFER_RE = /^h\.\d+\.attn\.(bias|masked_bias)$/;

/**
 * Read GPT-2 weights stored under HF names (with or without `transformer.`) from open safetensors
 * file(s), converting F32/F16/BF16 to float32 and transposing Conv1D weights into our layout.
 */
async function readHfWeights(src: TensorSource, config: Gpt2Config, where: string, padVocabTo?: number): Promise<WeightMap> {
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
    if (!Number.isSafeInteger(padVocabTo) || padVocabTo < config.vocabSize) throw new Error(`${where}: padVocabTo ${padVocabTo} must be an integer >= the checkpoint's vocab_size ${config.vocabSize}`);
    const padded = new Float32Array(padVocabTo * config.nEmbd); // extra rows stay zero
    padded.set(wte.data);
    weights.set(WTE, { shape: [padVocabTo, config.nEmbd], data: padded });
  }
  weights.set(LM_HEAD, weights.get(WTE)!); // tied: the same arrays, as nanoGPT's state_dict has both keys
  return weights;
}

/** Read HF-named GPT-2 weights from one safetensors file (used by our checkpoints too). */
export async function readHfGpt2Safetensors(path: string, config: Gpt2Config, opts: { padVocabTo?: number } = {}): Promise<WeightMap> {
  const f = await openSafetensors(path);
  try {
    return await readHfWeights(singleSource(f), config, path, opts.padVocabTo);
  } finally {
    await f.close();
  }
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
 * Write GPT-2 weights under HF names (no `transformer.` prefix) with Conv1D weights as [in, out], F32,
 * atomically. Conv1D transposes are made one tensor at a time while streaming.
 */
export async function writeHfGpt2Safetensors(
  path: string, config: Gpt2Config, weights: WeightMap,
  opts: { cropVocabTo?: number; metadata?: Record<string, string> } = {},
): Promise<void> {
  const specs = checkGpt2Weights(config, weights, path);
  const vocab = opts.cropVocabTo ?? config.vocabSize;
  if (!Number.isSafeInteger(vocab) || vocab <= 0 || vocab > config.vocabSize) throw new Error(`${path}: cropVocabTo ${vocab} must be an integer in 1..${config.vocabSize}`);
  const out: [string, SafetensorsTensorInput][] = specs.map((s) => {
    const w = weights.get(s.name)!;
    if (s.name === WTE && vocab !== config.vocabSize) {
      return [s.hfName, { dtype: 'F32', shape: [vocab, config.nEmbd], data: w.data.subarray(0, vocab * config.nEmbd) }];
    }
    const data = s.conv1d ? () => transpose2d(w.data, s.shape[0]!, s.shape[1]!) : w.data;
    return [s.hfName, { dtype: 'F32', shape: s.hfShape, data }];
  });
  // transformers refuses safetensors files whose metadata lacks format "pt" (or tf/flax/mlx).
  await writeSafetensors(path, out, { format: 'pt', ...opts.metadata });
}

// ---- directories ----------------------------------------------------------------------------

const HF_DIR_HELP =
  'A Hugging Face GPT-2 directory must contain config.json and model.safetensors (or model.safetensors.index.json with its shards), ' +
  'e.g. from `huggingface-cli download gpt2 config.json model.safetensors --local-dir <dir>` or written by `npm run export`';

async function exists(p: string): Promise<boolean> {
  try {
    await stat(p);
    return true;
  } catch {
    return false;
  }
}

export async function readJsonFile(path: string): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    throw new Error(`${path}: cannot read: ${(e as Error).message}`, { cause: e });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (e) {
    throw new Error(`${path}: not valid JSON: ${(e as Error).message}`, { cause: e });
  }
}

async function openHfSource(dir: string): Promise<TensorSource> {
  const single = join(dir, 'model.safetensors');
  if (await exists(single)) return singleSource(await openSafetensors(single));
  const indexPath = join(dir, 'model.safetensors.index.json');
  if (!(await exists(indexPath))) {
    const hint = (await exists(join(dir, 'pytorch_model.bin'))) ? ' (it has pytorch_model.bin: pickle files are not read; download model.safetensors instead)' : '';
    throw new Error(`${dir}: no model.safetensors${hint}. ${HF_DIR_HELP}`);
  }
  // Sharded checkpoint: {"weight_map": {tensor name: shard file name}}.
  const index = (await readJsonFile(indexPath)) as { weight_map?: unknown };
  const map = index.weight_map;
  if (typeof map !== 'object' || map === null) throw new Error(`${indexPath}: expected {"weight_map": {name: shard file}}`);
  const files = new Map<string, SafetensorsFile>();
  const where = new Map<string, SafetensorsFile>();
  try {
    for (const [name, shard] of Object.entries(map as Record<string, unknown>)) {
      if (typeof shard !== 'string' || shard.includes('/') || shard.includes('\\')) throw new Error(`${indexPath}: shard for ${name} must be a file name in ${dir}, got ${JSON.stringify(shard)}`);
      let f = files.get(shard);
      if (!f) { f = await openSafetensors(join(dir, shard)); files.set(shard, f); }
      if (!f.has(name)) throw new Error(`${indexPath}: says ${name} is in ${shard}, but that file has no such tensor`);
      where.set(name, f);
    }
  } catch (e) {
    for (const f of files.values()) await f.close();
    throw e;
  }
  return {
    names: [...where.keys()],
    file: (name) => where.get(name)!,
    close: async () => { for (const f of files.values()) await f.close(); },
  };
}

/**
 * Read a Hugging Face GPT-2 directory (config.json + model.safetensors) into our names and layout.
 * `padVocabTo` (e.g. 50304) appends zero rows to wte and reports that vocab size in the config.
 */
export async function readHfGpt2Dir(dir: string, opts: { padVocabTo?: number } = {}): Promise<{ config: Gpt2Config; weights: WeightMap }> {
  const configPath = join(dir, 'config.json');
  if (!(await exists(configPath))) throw new Error(`${dir}: no config.json. ${HF_DIR_HELP}`);
  const config = parseHfGpt2Config(await readJsonFile(configPath), configPath);
  const src = await openHfSource(dir);
  try {
    const weights = await readHfWeights(src, config, dir, opts.padVocabTo);
    return { config: { ...config, vocabSize: weights.get(WTE)!.shape[0]! }, weights };
  } finally {
    await src.close();
  }
}

/**
 * Write a directory transformers' GPT2LMHeadModel.from_pretrained can load: model.safetensors first,
 * then config.json, each via temp file + rename (a directory with config.json is complete).
 * `cropVocabTo: 50257` drops our padding rows so vocab_size matches the GPT-2 tokenizer.
 */
export async function writeHfGpt2Dir(
  dir: string, config: Gpt2Config, weights: WeightMap,
  opts: { cropVocabTo?: number; metadata?: Record<string, string> } = {},
): Promise<void> {
  try {
    await mkdir(dir, { recursive: true });
  } catch (e) {
    throw new Error(`${dir}: cannot create the output directory: ${(e as Error).message}`, { cause: e });
  }
  const vocab = opts.cropVocabTo ?? config.vocabSize;
  await writeHfGpt2Safetensors(join(dir, 'model.safetensors'), config, weights, opts);
  writeFileAtomic(join(dir, 'config.json'), JSON.stringify(hfGpt2ConfigJson(config, vocab), null, 2) + '\n');
}

