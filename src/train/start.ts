// Where a training run starts: the newest usable checkpoint of its out-dir (--resume), given
// weights (--init-from: an HF GPT-2 directory or one of our checkpoints), or a preset's config
// with a fresh random init. Every run has an identity (model config or starting weights, data,
// seed, world size), recorded in its checkpoints: a fresh run refuses an out-dir holding another
// run's checkpoints unless told (--overwrite), and --resume refuses a checkpoint of another run.

import { createHash } from 'node:crypto';
import { statSync } from 'node:fs';
import { basename, resolve } from 'node:path';
import { listShards } from '../data/loader.js';
import { GPT_PRESETS, type GPTConfig } from '../nn/gpt.js';
import { checkpointSidecars, loadCheckpoint, loadWeights, removeCheckpoints } from './checkpoint.js';
import { readJsonFile, type Weight, type WeightMap } from './hf-gpt2.js';
import { describeTokenizer, paddedVocabSize, recordedTokenizer, sameTokenizer, tokenizerFromSpec, type TokenizerSpec } from '../data/tokenizer-spec.js';
import { TOKENIZER_FILE } from '../data/shards.js';
import { parseHubModel } from './pretrained.js';

export interface StartOptions {
  model: string;
  nLayer?: number | undefined; nHead?: number | undefined; nEmbd?: number | undefined;
  blockSize?: number | undefined; vocabSize?: number | undefined;
  initFrom?: string | undefined;
  outDir: string;
  /** A resumed checkpoint past it is refused (it would train a negative number of steps). */
  maxSteps: number;
  dataDir: string;
  /** The data's tokenizer: starting weights must have been trained with it; sets the default vocabulary. */
  tokenizer?: TokenizerSpec | undefined;
  seed: number;
  worldSize: number;
  resume: boolean;
  /** Start over in an out-dir that holds checkpoints (they are deleted). */
  overwrite?: boolean | undefined;
}

/** What makes two runs the same run. */
export interface RunIdentity {
  /** The model's shape (a preset with overrides), or null when it comes from --init-from. */
  config: GPTConfig | null;
  initFrom: string | null;
  /** The data: its directory and a fingerprint of its shards (names and sizes). */
  data: { dir: string; shards: number; fingerprint: string };
  seed: number;
  worldSize: number;
}

export interface Start {
  config: GPTConfig;
  /** The first step to run (the checkpoint's step when resuming, else 0). */
  step: number;
  /** Weights to load instead of the random init. */
  weights: WeightMap | null;
  /** When resuming: the checkpoint, its optimizer state and what its sidecar recorded. */
  resumed: { sidecar: string; optimizer: Map<string, Weight>; meta: Record<string, unknown> } | null;
  /** What this run is (null on the ranks other than 0, which write no checkpoints). */
  identity: RunIdentity | null;
}

/**
 * The model of --model and its overrides. The presets' vocabulary (50304) is GPT-2's padded; data
 * made with a learned BPE gets that BPE's vocabulary, padded to a multiple of 64 as GPT-2's is.
 */
export function presetConfig(o: Pick<StartOptions, 'model' | 'nLayer' | 'nHead' | 'nEmbd' | 'blockSize' | 'vocabSize' | 'tokenizer'>): GPTConfig {
  const preset = GPT_PRESETS[o.model];
  if (!preset) throw new Error(`--model ${o.model}: unknown preset; choose one of ${Object.keys(GPT_PRESETS).join(', ')}`);
  const learned = o.tokenizer && o.tokenizer.type !== 'gpt2' ? tokenizerFromSpec(o.tokenizer) : null;
  const tokens = learned?.vocabSize ?? null;
  const vocabSize = o.vocabSize ?? (learned ? paddedVocabSize(learned) : preset.vocabSize);
  if (tokens !== null && vocabSize < tokens) {
    throw new Error(`--vocab-size ${vocabSize} is below the data's tokenizer (${describeTokenizer(o.tokenizer!)}); give at least ${tokens}, or leave it out`);
  }
  return {
    nLayer: o.nLayer ?? preset.nLayer, nHead: o.nHead ?? preset.nHead, nEmbd: o.nEmbd ?? preset.nEmbd,
    blockSize: o.blockSize ?? preset.blockSize, vocabSize,
  };
}

/** Weights trained with one tokenizer read another's ids as noise: refuse, naming both. */
function checkTokenizer(weights: TokenizerSpec, data: TokenizerSpec | undefined, what: string, dataDir: string): void {
  if (!data || sameTokenizer(weights, data)) return;
  throw new Error(`${what} was trained with ${describeTokenizer(weights)}, but the data in ${dataDir} uses ${describeTokenizer(data)}; ` +
    (weights.type === 'gpt2' ? 'train it on GPT-2 shards (--tokenizer gpt2, or a --data-dir from npm run prepare-data)' : 'train it on the data it was made with'));
}

function identityOf(o: StartOptions): RunIdentity {
  const shards = [...listShards(o.dataDir, 'val'), ...listShards(o.dataDir, 'train')];
  const h = createHash('sha256');
  for (const s of shards) h.update(`${basename(s)}:${statSync(s).size};`);
  if (o.tokenizer && o.tokenizer.type !== 'gpt2') h.update(`${TOKENIZER_FILE}:${JSON.stringify(o.tokenizer)}`);
  return {
    config: o.initFrom ? null : presetConfig(o),
    initFrom: o.initFrom ? (parseHubModel(o.initFrom) ? o.initFrom : resolve(o.initFrom)) : null, // a Hub name as given
    data: { dir: resolve(o.dataDir), shards: shards.length, fingerprint: h.digest('hex').slice(0, 16) },
    seed: o.seed,
    worldSize: o.worldSize,
  };
}

/** How two identities differ, one "what: X there, Y here" per difference. */
export function identityDiff(there: RunIdentity, here: RunIdentity): string[] {
  const out: string[] = [];
  if (there.config && here.config) {
    for (const k of Object.keys(here.config) as (keyof GPTConfig)[]) {
      if (there.config[k] !== here.config[k]) out.push(`config.${k}: ${there.config[k]} there, ${here.config[k]} here`);
    }
  } else if ((there.initFrom ?? '') !== (here.initFrom ?? '')) {
    const what = (i: RunIdentity): string => (i.initFrom ? `--init-from ${i.initFrom}` : 'a preset');
    out.push(`start: ${what(there)} there, ${what(here)} here`);
  }
  if (there.data.fingerprint !== here.data.fingerprint) {
    out.push(`data: ${there.data.dir} (${there.data.shards} shards) there, ${here.data.dir} (${here.data.shards} shards${there.data.dir === here.data.dir ? ', changed since' : ''}) here`);
  }
  if (there.seed !== here.seed) out.push(`seed: ${there.seed} there, ${here.seed} here`);
  if (there.worldSize !== here.worldSize) out.push(`world size: ${there.worldSize} there, ${here.worldSize} here`);
  return out;
}

/** The identity a sidecar recorded, or null (a checkpoint from before identities, or not ours). */
async function recordedIdentity(sidecar: string): Promise<RunIdentity | null> {
  try {
    const run = ((await readJsonFile(sidecar)) as { run?: RunIdentity }).run;
    return run && typeof run === 'object' && run.data ? run : null;
  } catch {
    return null;
  }
}

export async function resolveStart(o: StartOptions, print: (s: string) => void): Promise<Start> {
  const identity = identityOf(o);
  const sidecars = await checkpointSidecars(o.outDir);
  const span = sidecars.length ? `model_${String(sidecars[sidecars.length - 1]!.step).padStart(5, '0')} .. model_${String(sidecars[0]!.step).padStart(5, '0')}` : '';

  if (o.resume) {
    const skipped: string[] = [];
    for (const { sidecar } of sidecars) {
      let ck;
      try {
        ck = await loadCheckpoint(sidecar, { optimizer: true });
      } catch (e) {
        const why = (e as Error).message.replace(`${sidecar}: `, '');
        print(`--resume: skipping ${sidecar}: ${why}`);
        skipped.push(`${sidecar}: ${why}`);
        continue;
      }
      // optimizer moments that do not fit the weights (another model's file) make the checkpoint
      // unusable like corrupt weights: say so and fall back to an older one
      const misfit = [...ck.optimizerState].find(([name, w]) => {
        const param = ck.weights.get(name.replace(/\.exp_avg(_sq)?$/, ''));
        return !param || param.data.length !== w.data.length;
      });
      if (misfit) {
        const why = `its optimizer file holds '${misfit[0]}' (${misfit[1].data.length} values), which this checkpoint's weights have no parameter of that size for: it belongs to another model`;
        print(`--resume: skipping ${sidecar}: ${why}`);
        skipped.push(`${sidecar}: ${why}`);
        continue;
      }
      const recorded = await recordedIdentity(sidecar);
      if (recorded) {
        const diff = identityDiff(recorded, identity);
        if (diff.length) {
          throw new Error(`--resume: ${sidecar} belongs to another run: ${diff.join('; ')}. ` +
            'Resume it with the settings it was made with, or start a new run in another --out-dir');
        }
      } else {
        print(`--resume: ${sidecar} records no run identity (an older checkpoint); not checked against this run's settings`);
      }
      checkTokenizer(recordedTokenizer(ck.meta.tokenizer, sidecar), o.tokenizer, sidecar, o.dataDir);
      if (ck.step >= o.maxSteps) {
        throw new Error(`--resume: ${sidecar} is at step ${ck.step}, and --max-steps ${o.maxSteps} leaves nothing to train; give --max-steps above ${ck.step} to train on`);
      }
      print(`resuming from ${sidecar} (step ${ck.step})`);
      return { config: ck.config, step: ck.step, weights: ck.weights, resumed: { sidecar, optimizer: ck.optimizerState, meta: ck.meta }, identity };
    }
    if (skipped.length) {
      throw new Error(`--resume: no usable checkpoint in ${o.outDir}:\n  ${skipped.join('\n  ')}\n` +
        'Nothing was changed. Repair or remove those files, or start over with --overwrite');
    }
    print(`--resume: no checkpoint in ${o.outDir}; starting from scratch`);
  } else if (sidecars.length) {
    if (!o.overwrite) {
      const recorded = await recordedIdentity(sidecars[0]!.sidecar);
      const diff = recorded ? identityDiff(recorded, identity) : [];
      const whose = !recorded ? 'a run' : diff.length ? `another run (${diff.join('; ')})` : 'a run with these same settings';
      throw new Error(`--out-dir ${o.outDir} holds checkpoints of ${whose}: ${span}. ` +
        'Continue it with --resume, start over with --overwrite (deletes them), or choose another --out-dir');
    }
    const n = await removeCheckpoints(o.outDir);
    print(`--overwrite: removed ${n} checkpoint(s) of an earlier run from ${o.outDir}`);
  }

  if (o.initFrom) {
    // keep the source's vocabulary (50257 for OpenAI's GPT-2, as from_pretrained does): zero rows
    // padded onto a trained wte would get logit 0, far above the real tokens' logits
    const lw = await loadWeights(o.initFrom, o.vocabSize ? { padVocabTo: o.vocabSize } : {}).catch((e: Error) => { throw new Error(`--init-from ${e.message}`); });
    // the model's shape comes from the weights: a flag that says otherwise was meant for another model
    const flags: [string, number | undefined, number][] = [['--n-layer', o.nLayer, lw.config.nLayer], ['--n-head', o.nHead, lw.config.nHead],
      ['--n-embd', o.nEmbd, lw.config.nEmbd], ['--block-size', o.blockSize, lw.config.blockSize]];
    const clash = flags.filter(([, given, has]) => given !== undefined && given !== has);
    if (clash.length) {
      throw new Error(`--init-from ${o.initFrom} holds a model with ${clash.map(([f, , has]) => `${f} ${has}`).join(', ')}, but ${clash.map(([f, given]) => `${f} ${given}`).join(', ')} ` +
        'was given; the model comes from the weights: drop those flags (or start from scratch without --init-from)');
    }
    checkTokenizer(lw.tokenizer, o.tokenizer, `--init-from ${o.initFrom}`, o.dataDir);
    print(`initialised from ${lw.path} (${lw.source})`);
    return { config: lw.config, step: 0, weights: lw.weights, resumed: null, identity };
  }
  return { config: presetConfig(o), step: 0, weights: null, resumed: null, identity };
}
