// Training checkpoints, as build-nanogpt's `model_{step:05d}.pt` ({model, config, step, val_loss}) but in
// safetensors: model_<step>.safetensors (HF GPT-2 names and Conv1D layout, so HF-style loading reads it),
// optim_<step>.safetensors (optimizer state under the caller's names) and the JSON sidecar model_<step>.json.
// Each file is written to a temp file and renamed; the sidecar goes last, so a checkpoint is complete exactly
// when its sidecar exists, and a crash mid-save leaves the previous checkpoint the latest complete one.

import { readdir, rm, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';
import { makeDirs, writeFileAtomic } from '../data/fsutil.js';
import type { Module } from '../nn/module.js';
import type { AdamW } from '../optim/adamw.js';
import { openSafetensors, readSafetensors, toFloat32, writeSafetensors, type SafetensorsTensorInput } from '../data/safetensors.js';
import {
  readHfGpt2Dir, readHfGpt2Safetensors, readJsonFile, writeHfGpt2Safetensors, parseHfGpt2Config, parseTapegradConfig,
  type Gpt2Config, type WeightMap, type Weight,
} from './hf-gpt2.js';
import { EXPORTED_TOKENIZER_FILE, GPT2_SPEC, recordedTokenizer, type TokenizerSpec } from '../data/tokenizer-spec.js';
import { resolveModelSource } from './pretrained.js';

export const CHECKPOINT_FORMAT = 'tapegrad-checkpoint';
export const CHECKPOINT_VERSION = 1;

export interface CheckpointState {
  config: Gpt2Config;
  /** Our parameter names (nanoGPT state_dict keys), our layout. */
  weights: WeightMap;
  /** Optimizer state (e.g. `<param>.exp_avg`), saved as float32 under these names; omit for none. */
  optimizerState?: Map<string, Weight>;
  /** Anything JSON-serializable (val_loss, lr, data position, ...), spread into the sidecar. */
  meta?: Record<string, unknown>;
}

export interface CheckpointPaths {
  sidecar: string;
  model: string;
  optim: string | null;
}

export interface LoadedCheckpoint {
  step: number;
  config: Gpt2Config;
  weights: WeightMap;
  /** Empty when the checkpoint has none or `optimizer: false` was asked. */
  optimizerState: Map<string, Weight>;
  meta: Record<string, unknown>;
  paths: CheckpointPaths;
}

/** A float32 array as it is; any other (a float64 model's) converted. */
function asFloat32(a: ArrayLike<number>): Float32Array { return a instanceof Float32Array ? a : Float32Array.from(a); }

/**
 * A model's weights (and an AdamW's moments, under `<param>.exp_avg` / `.exp_avg_sq`) as host
 * arrays for saveCheckpoint. The arrays are the backend's own where it can give them (no copy of
 * GPT-2's 1.5 GB): save before the next step changes them. A NaN or infinity is refused, naming
 * the parameter (`what` says what was being done).
 */
export async function modelState(model: Module, optimizer?: AdamW | null, what = 'not saving'):
  Promise<{ weights: WeightMap; optimizerState: Map<string, Weight>; optimizerStep: number }> {
  const weights: WeightMap = new Map();
  const optimizerState = new Map<string, Weight>();
  let optimizerStep = 0;
  for (const [name, p] of model.namedParameters()) {
    const data = asFloat32(await p.data());
    for (let i = 0; i < data.length; i++) {
      if (data[i]! - data[i]! !== 0) throw new Error(`${what}: ${name} holds ${data[i]} (the run has diverged)`);
    }
    weights.set(name, { shape: [...p.shape], data });
    const st = optimizer?.getState(p);
    if (!st) continue;
    optimizerStep = st.step;
    optimizerState.set(`${name}.exp_avg`, { shape: [...p.shape], data: asFloat32(await st.expAvg.data()) });
    optimizerState.set(`${name}.exp_avg_sq`, { shape: [...p.shape], data: asFloat32(await st.expAvgSq.data()) });
  }
  return { weights, optimizerState, optimizerStep };
}

/** Sidecar keys owned by this module; meta may not use them. */
const RESERVED = new Set(['format', 'version', 'step', 'config', 'model', 'optimizer']);

/** build-nanogpt pads the step to 5 digits; larger steps just get longer (we sort numerically). */
export function checkpointBase(step: number): string {
  return `model_${String(step).padStart(5, '0')}`;
}

export function checkpointPaths(outDir: string, step: number, withOptimizer: boolean): CheckpointPaths {
  const base = checkpointBase(step);
  return {
    sidecar: join(outDir, `${base}.json`),
    model: join(outDir, `${base}.safetensors`),
    optim: withOptimizer ? join(outDir, `optim_${String(step).padStart(5, '0')}.safetensors`) : null,
  };
}

/** Save a complete checkpoint for `step` in `outDir` (created if needed); returns the paths written. */
export async function saveCheckpoint(outDir: string, step: number, state: CheckpointState): Promise<CheckpointPaths> {
  if (!Number.isSafeInteger(step) || step < 0) throw new Error(`saveCheckpoint(${outDir}): step must be a non-negative integer, got ${step}`);
  const meta = state.meta ?? {};
  const clash = Object.keys(meta).filter((k) => RESERVED.has(k));
  if (clash.length) throw new Error(`saveCheckpoint(${outDir}): meta keys ${clash.join(', ')} are reserved for the sidecar (${[...RESERVED].join(', ')}); rename them`);
  const withOpt = state.optimizerState !== undefined && state.optimizerState.size > 0;
  const paths = checkpointPaths(outDir, step, withOpt);

  makeDirs(outDir, `saveCheckpoint(${outDir})`);
  // Overwriting a step: drop its sidecar first so the half-replaced files never look complete.
  await unlink(paths.sidecar).catch((e: NodeJS.ErrnoException) => { if (e.code !== 'ENOENT') throw e; });
  await writeHfGpt2Safetensors(paths.model, state.config, state.weights, {
    // self-describing even without the sidecar (loadWeights falls back to these)
    metadata: {
      tapegrad_step: String(step), tapegrad_config: JSON.stringify(state.config),
      ...(meta.tokenizer !== undefined ? { tapegrad_tokenizer: JSON.stringify(meta.tokenizer) } : {}),
    },
  });
  if (paths.optim) {
    const tensors: [string, SafetensorsTensorInput][] = [];
    for (const [name, w] of state.optimizerState!) {
      if (!(w.data instanceof Float32Array)) throw new Error(`saveCheckpoint(${outDir}): optimizer state ${name} must be a Float32Array (optimizer state is float32)`);
      tensors.push([name, { dtype: 'F32', shape: w.shape, data: w.data }]);
    }
    await writeSafetensors(paths.optim, tensors, { format: 'pt', tapegrad_step: String(step) });
  }
  const sidecar = {
    format: CHECKPOINT_FORMAT,
    version: CHECKPOINT_VERSION,
    step,
    config: state.config,
    model: basename(paths.model),
    optimizer: paths.optim ? basename(paths.optim) : null,
    ...meta,
  };
  writeFileAtomic(paths.sidecar, JSON.stringify(sidecar, null, 2) + '\n');
  return paths;
}

/** Complete checkpoints in `outDir` (sidecar and the files it names exist), oldest step first. */
export async function listCheckpoints(outDir: string): Promise<{ step: number; sidecar: string }[]> {
  let names: string[];
  try {
    names = await readdir(outDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    throw new Error(`${outDir}: cannot list checkpoints: ${(e as Error).message}`, { cause: e });
  }
  const found: { step: number; sidecar: string }[] = [];
  for (const n of names) {
    const m = /^model_(\d+)\.json$/.exec(n);
    if (!m) continue;
    const step = Number(m[1]);
    const optim = join(outDir, `optim_${m[1]}.safetensors`);
    const sidecar = join(outDir, n);
    if (!(await isFile(join(outDir, `model_${m[1]}.safetensors`)))) continue;
    // The optimizer file is only required when the sidecar names one.
    let needsOptim = false;
    try {
      needsOptim = ((await readJsonFile(sidecar)) as { optimizer?: unknown }).optimizer != null;
    } catch {
      continue; // unreadable sidecar: not a complete checkpoint
    }
    if (needsOptim && !(await isFile(optim))) continue;
    found.push({ step, sidecar });
  }
  return found.sort((a, b) => a.step - b.step);
}

/** Every checkpoint sidecar in `outDir` (complete or not), newest step first. */
export async function checkpointSidecars(outDir: string): Promise<{ step: number; sidecar: string }[]> {
  let names: string[];
  try { names = await readdir(outDir); } catch { return []; }
  return names.map((n) => /^model_(\d+)\.json$/.exec(n)).filter((m): m is RegExpExecArray => m !== null)
    .map((m) => ({ step: Number(m[1]), sidecar: join(outDir, m[0]) })).sort((a, b) => b.step - a.step);
}

/**
 * Keep the newest `keep` complete checkpoints in `outDir` and the one with the best (lowest)
 * validation loss; delete the other complete ones (each sidecar first, so none looks complete while
 * its files go). Incomplete ones are left to --resume's checks. Returns the deleted sidecars.
 */
export async function pruneCheckpoints(outDir: string, keep: number): Promise<string[]> {
  const all = await listCheckpoints(outDir);
  if (all.length <= keep) return [];
  let best: string | null = null, bestLoss = Infinity;
  for (const c of all) {
    const v = ((await readJsonFile(c.sidecar).catch(() => ({}))) as { val_loss?: unknown }).val_loss;
    if (typeof v === 'number' && v < bestLoss) { bestLoss = v; best = c.sidecar; }
  }
  const doomed = all.slice(0, all.length - keep).filter((c) => c.sidecar !== best);
  for (const { step, sidecar } of doomed) {
    const p = checkpointPaths(outDir, step, true);
    await rm(sidecar, { force: true });
    for (const f of [p.model, p.optim!]) await rm(f, { force: true });
  }
  return doomed.map((c) => c.sidecar);
}

/** Delete every checkpoint file in `outDir` (sidecars first, so none looks complete meanwhile); returns how many checkpoints. */
export async function removeCheckpoints(outDir: string): Promise<number> {
  const sidecars = await checkpointSidecars(outDir);
  for (const { sidecar } of sidecars) await rm(sidecar, { force: true });
  for (const n of await readdir(outDir).catch(() => [] as string[])) {
    if (/^(model|optim)_\d+\.safetensors$/.test(n)) await rm(join(outDir, n), { force: true });
  }
  return sidecars.length;
}

/** Sidecar path of the newest complete checkpoint in `outDir`, or null when there is none. */
export async function latestCheckpoint(outDir: string): Promise<string | null> {
  const all = await listCheckpoints(outDir);
  return all.length ? all[all.length - 1]!.sidecar : null;
}

async function isFile(p: string): Promise<boolean> {
  try {
    return (await stat(p)).isFile();
  } catch {
    return false;
  }
}

function sidecarFor(path: string): string {
  if (path.endsWith('.json')) return path;
  const m = /^(?:model|optim)_(\d+)\.safetensors$/.exec(basename(path));
  if (!m) throw new Error(`${path}: not a checkpoint path; expected model_<step>.json or model_<step>.safetensors`);
  return join(dirname(path), `model_${m[1]}.json`);
}

/** Load a checkpoint given its sidecar (model_<step>.json) or its model_<step>.safetensors. */
export async function loadCheckpoint(path: string, opts: { optimizer?: boolean; padVocabTo?: number } = {}): Promise<LoadedCheckpoint> {
  const sidecarPath = sidecarFor(path);
  if (!(await isFile(sidecarPath))) throw new Error(`${path}: its sidecar ${sidecarPath} is missing, so the checkpoint is incomplete (interrupted save?); use latestCheckpoint() to find a complete one`);
  const raw = (await readJsonFile(sidecarPath)) as Record<string, unknown>;
  if (raw.format !== CHECKPOINT_FORMAT) throw new Error(`${sidecarPath}: not a tapegrad checkpoint sidecar (format ${JSON.stringify(raw.format)})`);
  if (raw.version !== CHECKPOINT_VERSION) throw new Error(`${sidecarPath}: checkpoint version ${JSON.stringify(raw.version)} is not the supported ${CHECKPOINT_VERSION}`);
  const step = raw.step;
  if (!Number.isSafeInteger(step) || (step as number) < 0) throw new Error(`${sidecarPath}: "step" must be an integer >= 0, got ${JSON.stringify(step)}`);
  // the file's name says the step too: a sidecar that disagrees was edited or copied wrongly
  const named = /^model_(\d+)\.json$/.exec(basename(sidecarPath));
  if (named && Number(named[1]) !== step) throw new Error(`${sidecarPath}: "step" is ${step} but the file is named for step ${Number(named[1])}; the sidecar is not this checkpoint's`);
  const config = parseTapegradConfig(raw.config, sidecarPath);
  const dir = dirname(sidecarPath);
  if (typeof raw.model !== 'string') throw new Error(`${sidecarPath}: "model" must name the model file`);
  const paths: CheckpointPaths = {
    sidecar: sidecarPath,
    model: join(dir, basename(raw.model)),
    optim: typeof raw.optimizer === 'string' ? join(dir, basename(raw.optimizer)) : null,
  };
  if (!(await isFile(paths.model))) throw new Error(`${sidecarPath}: its weights file ${basename(paths.model)} is missing (an interrupted save?)`);
  if (paths.optim && opts.optimizer !== false && !(await isFile(paths.optim))) {
    throw new Error(`${sidecarPath}: its optimizer state ${basename(paths.optim)} is missing (an interrupted save?)`);
  }
  const weights = await readHfGpt2Safetensors(paths.model, config, { padVocabTo: opts.padVocabTo });
  const optimizerState = new Map<string, Weight>();
  if (paths.optim && opts.optimizer !== false) {
    const { tensors } = await readSafetensors(paths.optim);
    for (const [name, t] of tensors) optimizerState.set(name, { shape: t.shape, data: toFloat32(t, `${paths.optim}: ${name}`) });
  }
  const meta: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(raw)) if (!RESERVED.has(k)) meta[k] = v;
  return { step: step as number, config: { ...config, vocabSize: weights.get('transformer.wte.weight')!.shape[0]! }, weights, optimizerState, meta, paths };
}

export interface LoadedWeights {
  source: 'hf' | 'checkpoint';
  /** The file or directory actually read (a checkpoint's sidecar, or the HF directory). */
  path: string;
  config: Gpt2Config;
  weights: WeightMap;
  /** The checkpoint's step, null for HF directories. */
  step: number | null;
  /** The tokenizer the weights were trained with (GPT-2's unless one is recorded). */
  tokenizer: TokenizerSpec;
}

/**
 * What `--init-from` accepts: a Hub model by name (gpt2, gpt2-medium, ..., OWNER/NAME[@REVISION]:
 * see pretrained.ts), an HF GPT-2 directory (config.json + model.safetensors), one of our
 * checkpoints (model_<step>.json or model_<step>.safetensors), or a training output directory (its
 * newest complete checkpoint). A bare HF-named .safetensors works too when it carries our config in its
 * metadata or sits next to an HF config.json. Optimizer state is not loaded (see loadCheckpoint).
 */
export async function loadWeights(spec: string, opts: { padVocabTo?: number } = {}): Promise<LoadedWeights> {
  const pathOrDir = await resolveModelSource(spec); // gpt2, OWNER/NAME: from the Hugging Face cache
  let st;
  try {
    st = await stat(pathOrDir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${pathOrDir}: cannot read it: ${(e as Error).message}`);
    throw new Error(`${pathOrDir}: does not exist; pass an HF GPT-2 directory (config.json + model.safetensors), a checkpoint model_<step>.json / .safetensors, or a training output directory`);
  }
  if (st.isDirectory()) {
    if (await isFile(join(pathOrDir, 'config.json'))) {
      const { config, weights } = await readHfGpt2Dir(pathOrDir, opts);
      return { source: 'hf', path: pathOrDir, config, weights, step: null, tokenizer: await exportedTokenizer(pathOrDir) };
    }
    const latest = await latestCheckpoint(pathOrDir);
    if (latest) return fromCheckpoint(latest, opts);
    throw new Error(`${pathOrDir}: has neither config.json (an HF GPT-2 directory) nor a complete checkpoint model_<step>.json`);
  }
  const name = basename(pathOrDir);
  if (name === 'config.json') return loadWeights(dirname(pathOrDir), opts);
  if (/^optim_\d+\.safetensors$/.test(name)) throw new Error(`${pathOrDir}: is optimizer state, not weights; pass the model_<step>.safetensors or model_<step>.json next to it`);
  if (name.endsWith('.json')) return fromCheckpoint(pathOrDir, opts);
  if (!name.endsWith('.safetensors')) throw new Error(`${pathOrDir}: expected a directory, a .json sidecar or a .safetensors file`);
  if (/^model_\d+\.safetensors$/.test(name) && (await isFile(sidecarFor(pathOrDir)))) return fromCheckpoint(pathOrDir, opts);

  // A bare safetensors file: our config in its metadata, else an HF config.json beside it.
  const f = await openSafetensors(pathOrDir);
  const metaConfig = f.metadata.tapegrad_config;
  const metaStep = f.metadata.tapegrad_step;
  const metaTokenizer = f.metadata.tapegrad_tokenizer;
  await f.close();
  if (metaConfig !== undefined) {
    let parsed: unknown;
    try {
      parsed = JSON.parse(metaConfig);
    } catch {
      throw new Error(`${pathOrDir}: metadata tapegrad_config is not valid JSON`);
    }
    const config = parseTapegradConfig(parsed, `${pathOrDir} (metadata tapegrad_config)`);
    const weights = await readHfGpt2Safetensors(pathOrDir, config, opts);
    const step = metaStep !== undefined && /^\d+$/.test(metaStep) ? Number(metaStep) : null;
    return { source: 'checkpoint', path: pathOrDir, config: { ...config, vocabSize: weights.get('transformer.wte.weight')!.shape[0]! }, weights, step,
      tokenizer: recordedTokenizer(metaTokenizer, `${pathOrDir} (metadata tapegrad_tokenizer)`) };
  }
  const cfgPath = join(dirname(pathOrDir), 'config.json');
  if (await isFile(cfgPath)) {
    const config = parseHfGpt2Config(await readJsonFile(cfgPath), cfgPath);
    const weights = await readHfGpt2Safetensors(pathOrDir, config, opts);
    return { source: 'hf', path: pathOrDir, config: { ...config, vocabSize: weights.get('transformer.wte.weight')!.shape[0]! }, weights, step: null,
      tokenizer: await exportedTokenizer(dirname(pathOrDir)) };
  }
  throw new Error(`${pathOrDir}: cannot tell the model config: no model_<step>.json sidecar, no tapegrad_config metadata and no config.json beside it`);
}

async function fromCheckpoint(path: string, opts: { padVocabTo?: number }): Promise<LoadedWeights> {
  const c = await loadCheckpoint(path, { optimizer: false, padVocabTo: opts.padVocabTo });
  return { source: 'checkpoint', path: c.paths.sidecar, config: c.config, weights: c.weights, step: c.step, tokenizer: recordedTokenizer(c.meta.tokenizer, c.paths.sidecar) };
}

/**
 * The tokenizer of whatever loadWeights accepts, without reading the weights: a checkpoint's
 * sidecar, a safetensors file's metadata, or an exported directory's tapegrad_tokenizer.json.
 */
export async function loadTokenizerSpec(spec: string): Promise<TokenizerSpec> {
  const pathOrDir = await resolveModelSource(spec);
  const st = await stat(pathOrDir).catch((e: NodeJS.ErrnoException) => {
    throw new Error(e.code === 'ENOENT' ? `${pathOrDir}: does not exist; pass a checkpoint, a training output directory or an HF GPT-2 directory` : `${pathOrDir}: cannot read it: ${e.message}`);
  });
  if (st.isDirectory()) {
    if (await isFile(join(pathOrDir, 'config.json'))) return exportedTokenizer(pathOrDir);
    const latest = await latestCheckpoint(pathOrDir);
    if (!latest) throw new Error(`${pathOrDir}: has neither config.json (an HF GPT-2 directory) nor a complete checkpoint model_<step>.json`);
    return loadTokenizerSpec(latest);
  }
  const name = basename(pathOrDir);
  if (name === 'config.json') return exportedTokenizer(dirname(pathOrDir));
  if (name.endsWith('.json') || (/^model_\d+\.safetensors$/.test(name) && (await isFile(sidecarFor(pathOrDir))))) {
    const sidecar = sidecarFor(pathOrDir);
    return recordedTokenizer(((await readJsonFile(sidecar)) as { tokenizer?: unknown }).tokenizer, sidecar);
  }
  const f = await openSafetensors(pathOrDir);
  const meta = f.metadata.tapegrad_tokenizer;
  await f.close();
  if (meta === undefined) return exportedTokenizer(dirname(pathOrDir));
  return recordedTokenizer(meta, `${pathOrDir} (metadata tapegrad_tokenizer)`);
}

/** An exported directory's learned BPE (tapegrad_tokenizer.json), else GPT-2's. */
async function exportedTokenizer(dir: string): Promise<TokenizerSpec> {
  const file = join(dir, EXPORTED_TOKENIZER_FILE);
  return (await isFile(file)) ? recordedTokenizer(await readJsonFile(file), file) : GPT2_SPEC;
}
