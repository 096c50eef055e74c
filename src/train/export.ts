// `npm run export`: one of our checkpoints -> a Hugging Face GPT-2 directory (config.json for
// GPT2LMHeadModel + model.safetensors under HF names with Conv1D weights [in, out]), the layout of the
// hub's gpt2 files. The mapping and the writer live in hf-gpt2.ts; this is the command around them.

import { readdir } from 'node:fs/promises';
import { dirname, join, resolve } from 'node:path';
import { loadWeights } from './checkpoint.js';
import { makeDirs, writeFileAtomic } from '../data/fsutil.js';
import { EXPORTED_TOKENIZER_FILE, describeTokenizer, tokenizerFromSpec, type TokenizerSpec } from '../data/tokenizer-spec.js';
import { command, parseCommand, runMain } from './cli-args.js';
import { writeHfGpt2Dir, type Gpt2Config } from './hf-gpt2.js';
import { GPT2_VOCAB_SIZE } from '../data/tokenizer.js';

export interface ExportResult {
  /** The checkpoint actually read (sidecar or HF directory). */
  source: string;
  step: number | null;
  config: Gpt2Config;
  /** vocab_size written to config.json (rows of wte in model.safetensors). */
  vocabSize: number;
  /** The tokenizer the weights were trained with (a learned BPE is written as tapegrad_tokenizer.json). */
  tokenizer: TokenizerSpec;
  files: string[];
}

/**
 * Export `checkpoint` (model_<step>.json / .safetensors, a training out dir, or an HF directory) to `outDir`.
 * By default every wte row is written, so `--init-from outDir` gives back the very same arrays; `vocabSize`
 * 50257 drops our padding rows (50257..50303, never real tokens) so vocab_size matches the GPT-2 tokenizer.
 */
export async function exportHf(checkpoint: string, outDir: string, opts: { vocabSize?: number; overwrite?: boolean } = {}): Promise<ExportResult> {
  const lw = await loadWeights(checkpoint);
  const V = lw.config.vocabSize;
  const vocab = opts.vocabSize ?? V;
  const gpt2 = lw.tokenizer.type === 'gpt2';
  const tokens = gpt2 ? GPT2_VOCAB_SIZE : tokenizerFromSpec(lw.tokenizer).vocabSize; // real token ids: the rest is padding
  if (!Number.isSafeInteger(vocab) || vocab > V) {
    throw new Error(`--vocab-size ${vocab}: the checkpoint ${lw.path} has ${V} vocabulary rows; export can only drop padding rows, so use --vocab-size <= ${V}${V > tokens ? ` (e.g. ${tokens})` : ''}`);
  }
  if (vocab < Math.min(V, tokens)) {
    throw new Error(`--vocab-size ${vocab} would drop real tokens of ${describeTokenizer(lw.tokenizer)} (ids below ${Math.min(V, tokens)}); use --vocab-size ${Math.min(V, tokens)} or omit it`);
  }
  // config.json in a training out dir would make `--init-from` of that dir read the export, not the newest checkpoint.
  const out = resolve(outDir);
  const ckptDir = lw.source === 'checkpoint' ? dirname(resolve(lw.path)) : resolve(lw.path);
  const clash = out === ckptDir || (await readdir(out).catch(() => [] as string[])).some((n) => /^model_\d+\.json$/.test(n));
  if (clash) throw new Error(`--out-dir ${outDir}: holds training checkpoints (model_<step>.json) or is the source itself; export to a new directory, e.g. ${join(dirname(out), 'hf-export')}`);
  const existing = (await readdir(out).catch(() => [] as string[])).filter((n) => n === 'config.json' || n === 'model.safetensors' || n === EXPORTED_TOKENIZER_FILE);
  if (existing.length && !opts.overwrite) {
    throw new Error(`--out-dir ${outDir}: already holds ${existing.join(' and ')} (an earlier export?); pass --overwrite to replace them, or export to another directory`);
  }
  // a learned BPE goes beside the weights first (config.json, written last, marks the directory complete);
  // GPT-2's tokenizer files would lie about it, so none are written
  const files: string[] = [];
  makeDirs(outDir, '--out-dir');
  if (!gpt2) {
    writeFileAtomic(join(outDir, EXPORTED_TOKENIZER_FILE), JSON.stringify(lw.tokenizer));
    files.push(join(outDir, EXPORTED_TOKENIZER_FILE));
  }
  await writeHfGpt2Dir(outDir, lw.config, lw.weights, {
    cropVocabTo: vocab === V ? undefined : vocab,
    metadata: { tapegrad_exported_from: lw.path, ...(lw.step !== null ? { tapegrad_step: String(lw.step) } : {}) },
  });
  files.push(join(outDir, 'model.safetensors'), join(outDir, 'config.json'));
  return { source: lw.path, step: lw.step, config: lw.config, vocabSize: vocab, files, tokenizer: lw.tokenizer };
}

export const EXPORT_COMMAND = command({
  usage: 'npm run export -- --init-from NAME|PATH --out-dir DIR [--vocab-size N]',
  example: 'npm run export -- --init-from out --out-dir hf-gpt2 --vocab-size 50257',
  summary: `Writes a Hugging Face GPT-2 directory (config.json + model.safetensors, GPT2LMHeadModel layout) from one of
our checkpoints. --init-from DIR reads it back bit-exactly; transformers loads it with
GPT2LMHeadModel.from_pretrained(DIR) (tokenizer: GPT2TokenizerFast.from_pretrained("gpt2")).`,
  options: {
    'init-from': { kind: 'string', required: true, metavar: 'NAME|PATH', aliases: ['checkpoint'], help: 'model_<step>.json or model_<step>.safetensors, a training --out-dir (newest checkpoint), or a Hub model (gpt2, OWNER/NAME[@REV])' },
    'out-dir': { kind: 'string', required: true, metavar: 'DIR', aliases: ['out'], help: 'directory to write (created; must not hold training checkpoints)' },
    overwrite: { kind: 'flag', help: 'replace the config.json and model.safetensors of an earlier export in --out-dir' },
    'vocab-size': { kind: 'int', min: 1, help: `rows of wte to keep; ${GPT2_VOCAB_SIZE} drops our padding (50304 -> ${GPT2_VOCAB_SIZE}) so vocab_size matches the GPT-2 tokenizer (default: all rows, a bit-exact round trip)` },
  },
});

export async function main(argv: string[]): Promise<number> {
  const v = parseCommand(EXPORT_COMMAND, argv);
  if (!v) return 0;
  const r = await exportHf(v['init-from'], v['out-dir'], { vocabSize: v['vocab-size'], overwrite: v.overwrite });
  const c = r.config;
  console.log(`exported ${r.source}${r.step !== null ? ` (step ${r.step})` : ''}: ${c.nLayer} layers, ${c.nHead} heads, ${c.nEmbd} embd, ` +
    `block ${c.blockSize}, vocab ${r.vocabSize}${r.vocabSize !== c.vocabSize ? ` (of ${c.vocabSize})` : ''}`);
  for (const f of r.files) console.log(`wrote ${f}`);
  if (r.tokenizer.type !== 'gpt2') {
    console.log(`note: the model uses ${describeTokenizer(r.tokenizer)}, not GPT-2's: tapegrad reads it back (--init-from, GPT.fromPretrained, ` +
      `loadTokenizer); transformers gets the weights, and needs that tokenizer to make sense of them`);
  }
  return 0;
}

runMain(import.meta.url, main);
