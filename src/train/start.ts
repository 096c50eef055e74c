// Where a training run starts: the newest complete checkpoint of its out-dir (--resume), given
// weights (--init-from: an HF GPT-2 directory or one of our checkpoints), or a preset's config
// with a fresh random init.

import { GPT_PRESETS, type GPTConfig } from '../nn/gpt.js';
import { latestCheckpoint, loadCheckpoint, loadWeights } from './checkpoint.js';
import type { Weight, WeightMap } from './hf-gpt2.js';

export interface StartOptions {
  model: string;
  nLayer?: number | undefined; nHead?: number | undefined; nEmbd?: number | undefined;
  blockSize?: number | undefined; vocabSize?: number | undefined;
  initFrom?: string | undefined;
  outDir: string;
  resume: boolean;
}

export interface Start {
  config: GPTConfig;
  /** The first step to run (the checkpoint's step when resuming, else 0). */
  step: number;
  /** Weights to load instead of the random init. */
  weights: WeightMap | null;
  /** When resuming: the checkpoint, its optimizer state and what its sidecar recorded. */
  resumed: { sidecar: string; optimizer: Map<string, Weight>; meta: Record<string, unknown> } | null;
}

export async function resolveStart(o: StartOptions, print: (s: string) => void): Promise<Start> {
  const resumeFrom = o.resume ? await latestCheckpoint(o.outDir) : null;
  if (o.resume && !resumeFrom) print(`--resume: no complete checkpoint in ${o.outDir}; starting from scratch`);
  if (resumeFrom) {
    const ck = await loadCheckpoint(resumeFrom, { optimizer: true });
    print(`resuming from ${resumeFrom} (step ${ck.step})`);
    return { config: ck.config, step: ck.step, weights: ck.weights, resumed: { sidecar: resumeFrom, optimizer: ck.optimizerState, meta: ck.meta } };
  }
  if (o.initFrom) {
    // keep the source's vocabulary (50257 for OpenAI's GPT-2, as from_pretrained does): zero rows
    // padded onto a trained wte would get logit 0, far above the real tokens' logits
    const lw = await loadWeights(o.initFrom, o.vocabSize ? { padVocabTo: o.vocabSize } : {});
    print(`initialised from ${lw.path} (${lw.source})`);
    return { config: lw.config, step: 0, weights: lw.weights, resumed: null };
  }
  const preset = GPT_PRESETS[o.model];
  if (!preset) throw new Error(`--model ${o.model}: unknown preset; choose one of ${Object.keys(GPT_PRESETS).join(', ')}`);
  const config = {
    nLayer: o.nLayer ?? preset.nLayer, nHead: o.nHead ?? preset.nHead, nEmbd: o.nEmbd ?? preset.nEmbd,
    blockSize: o.blockSize ?? preset.blockSize, vocabSize: o.vocabSize ?? preset.vocabSize,
  };
  return { config, step: 0, weights: null, resumed: null };
}
