// A GPT's weights as the files the CLI reads and writes, held in memory: what a web page downloads
// (an HF directory's model.safetensors + config.json, which `npm run sample -- --init-from DIR`
// loads) and what it is handed back (those, or a checkpoint of `npm run train`). No file access:
// loadWeights (checkpoint.ts) is the same on disk. A learned BPE travels as tapegrad_tokenizer.json
// (and in the safetensors metadata), as `npm run export` writes it.

import { bytesSource, openSafetensorsSource, safetensorsBytes } from '../data/safetensors-format.js';
import {
  HF_SAFETENSORS_METADATA, WTE, hfGpt2ConfigJson, hfGpt2Tensors, parseHfGpt2Config, parseTapegradConfig, readHfWeights, singleSource,
  type Gpt2Config, type WeightMap,
} from './hf-layout.js';
import { EXPORTED_TOKENIZER_FILE as TOKENIZER_FILE, GPT2_SPEC, recordedTokenizer, type TokenizerSpec } from '../data/tokenizer-spec.js';

/**
 * An HF GPT-2 directory's two files, and the tokenizer file when it is not GPT-2's; the safetensors
 * also carries our config and tokenizer, so it loads on its own too.
 */
export async function modelFiles(config: Gpt2Config, weights: WeightMap, step: number | null, tokenizer: TokenizerSpec = GPT2_SPEC): Promise<Map<string, Uint8Array>> {
  const meta: Record<string, string> = { ...HF_SAFETENSORS_METADATA, tapegrad_config: JSON.stringify(config) };
  if (step !== null) meta.tapegrad_step = String(step);
  if (tokenizer.type !== 'gpt2') meta.tapegrad_tokenizer = JSON.stringify(tokenizer);
  const utf8 = new TextEncoder();
  const files = new Map<string, Uint8Array>([
    ['model.safetensors', await safetensorsBytes(hfGpt2Tensors(config, weights, 'model.safetensors'), meta)],
    ['config.json', utf8.encode(JSON.stringify(hfGpt2ConfigJson(config), null, 2) + '\n')],
  ]);
  if (tokenizer.type !== 'gpt2') files.set(TOKENIZER_FILE, utf8.encode(JSON.stringify(tokenizer)));
  return files;
}


function parseJson(bytes: Uint8Array, where: string): unknown {
  try {
    return JSON.parse(new TextDecoder().decode(bytes)) as unknown;
  } catch (e) {
    throw new Error(`${where}: not valid JSON: ${(e as Error).message}`);
  }
}

/**
 * Weights from the files of a model directory, by name: an HF GPT-2 directory (config.json +
 * model.safetensors) or a checkpoint of ours (model_<step>.safetensors, whose metadata or
 * model_<step>.json sidecar holds the config). Errors say which file is missing or wrong.
 */
export async function weightsFromFiles(files: ReadonlyMap<string, Uint8Array>): Promise<{ config: Gpt2Config; weights: WeightMap; step: number | null; source: string; tokenizer: TokenizerSpec }> {
  const names = [...files.keys()];
  const model = names.filter((n) => n.endsWith('.safetensors') && !/^optim_\d+\.safetensors$/.test(n))
    .sort((a, b) => (a === 'model.safetensors' ? -1 : b === 'model.safetensors' ? 1 : b.localeCompare(a))); // newest model_<step> first
  if (model.length === 0) {
    throw new Error(`no model weights among ${names.length ? names.join(', ') : 'no files'}: pick model.safetensors + config.json (npm run export, or this page's download) or a model_<step>.safetensors of npm run train`);
  }
  const name = model[0]!;
  const f = await openSafetensorsSource(name, bytesSource(files.get(name)!, name));
  try {
    let config: Gpt2Config;
    let step: number | null = null;
    const stepMeta = f.metadata.tapegrad_step;
    if (stepMeta !== undefined && /^\d+$/.test(stepMeta)) step = Number(stepMeta);
    const sidecar = /^model_(\d+)\.safetensors$/.exec(name) ? name.replace(/\.safetensors$/, '.json') : null;
    if (files.has('config.json')) {
      config = parseHfGpt2Config(parseJson(files.get('config.json')!, 'config.json'), 'config.json');
    } else if (f.metadata.tapegrad_config !== undefined) {
      let parsed: unknown;
      try { parsed = JSON.parse(f.metadata.tapegrad_config); } catch { throw new Error(`${name}: metadata tapegrad_config is not valid JSON`); }
      config = parseTapegradConfig(parsed, `${name} (metadata tapegrad_config)`);
    } else if (sidecar && files.has(sidecar)) {
      config = parseTapegradConfig((parseJson(files.get(sidecar)!, sidecar) as { config?: unknown }).config, sidecar);
    } else {
      throw new Error(`${name}: cannot tell the model's config: pick config.json with it (or its model_<step>.json sidecar)`);
    }
    const weights = await readHfWeights(singleSource(f), config, name);
    // the tokenizer: its file, else the sidecar's, else the safetensors metadata, else GPT-2's
    let tokenizer: TokenizerSpec;
    if (files.has(TOKENIZER_FILE)) tokenizer = recordedTokenizer(parseJson(files.get(TOKENIZER_FILE)!, TOKENIZER_FILE), TOKENIZER_FILE);
    else if (sidecar && files.has(sidecar)) tokenizer = recordedTokenizer((parseJson(files.get(sidecar)!, sidecar) as { tokenizer?: unknown }).tokenizer, sidecar);
    else tokenizer = recordedTokenizer(f.metadata.tapegrad_tokenizer, `${name} (metadata tapegrad_tokenizer)`);
    return { config: { ...config, vocabSize: weights.get(WTE)!.shape[0]! }, weights, step, source: name, tokenizer };
  } finally {
    await f.close();
  }
}
