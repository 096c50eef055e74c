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
import { openSafetensors, writeSafetensors, type SafetensorsFile } from '../data/safetensors.js';
import {
  HF_SAFETENSORS_METADATA, WTE, hfGpt2ConfigJson, hfGpt2Tensors, parseHfGpt2Config, readHfWeights, singleSource,
  type Gpt2Config, type TensorSource, type WeightMap,
} from './hf-layout.js';

export * from './hf-layout.js';

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
 * Write GPT-2 weights under HF names (no `transformer.` prefix) with Conv1D weights as [in, out], F32,
 * atomically (see hfGpt2Tensors).
 */
export async function writeHfGpt2Safetensors(
  path: string, config: Gpt2Config, weights: WeightMap,
  opts: { cropVocabTo?: number; metadata?: Record<string, string> } = {},
): Promise<void> {
  await writeSafetensors(path, hfGpt2Tensors(config, weights, path, opts), { ...HF_SAFETENSORS_METADATA, ...opts.metadata });
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

