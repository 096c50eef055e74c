// HellaSwag evaluation as build-nanogpt's hellaswag.py: render_example (context + " " + ending, four rows
// padded with 0, mask over the ending) and evaluate() (per-token cross-entropy of the shifted logits over
// the ending; pred = argmin of the summed loss, pred_norm = argmin of the mean). Completion style, as the
// script: the model scores each ending as a continuation, it never sees the four side by side.
// Used by the trainer at each eval interval (--hellaswag) and as `npm run eval:hellaswag`.

import { existsSync, mkdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { dirname, join } from 'node:path';
import type { GPT } from '../nn/gpt.js';
import { gpt2Tokenizer } from '../data/tokenizer.js';
import type { Tokenizer } from '../data/tokenizer-spec.js';
import { ProgressBar } from '../data/progress.js';
import { acquireLock, checkWritable, writeFileAtomic } from '../data/fsutil.js';
import { downloadUrl } from '../data/hub.js';
import { hubOffline } from '../data/hf-cache.js';
import { noGrad, tensor, ops, F } from '../tensor/index.js';
import { TRAIN_DTYPES, withDtype, type TrainDtype } from './precision.js';
import { BACKENDS, useBackend } from './choose-backend.js';
import { command, parseCommand, runMain } from './cli-args.js';

/** Where hellaswag.py downloads the validation split from (10,042 examples). */
export const HELLASWAG_VAL_URL = 'https://raw.githubusercontent.com/rowanz/hellaswag/master/data/hellaswag_val.jsonl';

/** Where hellaswag.py keeps it (a hellaswag/ folder beside the script; here, of the working directory). */
export const HELLASWAG_DEFAULT_FILE = join('hellaswag', 'hellaswag_val.jsonl');

/**
 * The HellaSwag file to read: `path` as given, except that the default one is downloaded first
 * when missing, from hellaswag.py's URL ($TAPEGRAD_HELLASWAG_URL: a mirror), resumably; with
 * HF_HUB_OFFLINE=1 a missing one is an error that names the URL.
 */
export async function hellaswagFile(path: string, log: (s: string) => void = (s) => process.stderr.write(`${s}\n`)): Promise<string> {
  if (path !== HELLASWAG_DEFAULT_FILE || existsSync(path)) return path;
  const url = process.env['TAPEGRAD_HELLASWAG_URL'] || HELLASWAG_VAL_URL;
  if (hubOffline()) {
    throw new Error(`${path} is not here and HF_HUB_OFFLINE is set: download ${url} to ${path} (or give --data / --hellaswag FILE)`);
  }
  mkdirSync(dirname(path), { recursive: true });
  // ranks of one machine share the file: one downloads, the others wait for it
  const release = await acquireLock(`${path}.lock`, { waitMs: 3_600_000, busy: (pid) => `${path}: process ${pid} has been downloading it for an hour`,
    onWait: (pid) => log(`${path}: process ${pid} is downloading it; waiting`) });
  try {
    if (existsSync(path)) return path;
    log(`downloading HellaSwag's validation split ${url} to ${path}`);
    let bar: ProgressBar | null = null;
    await downloadUrl(url, path, { name: 'hellaswag_val.jsonl', source: url }, {
      log, onProgress: (b, total) => (bar ??= new ProgressBar({ label: 'download hellaswag_val.jsonl', total, unit: 'bytes', stream: process.stderr })).update(b),
    }).catch((e: Error) => { throw new Error(`${e.message}; download ${url} to ${path} by hand, or give --data / --hellaswag FILE`); });
    (bar as ProgressBar | null)?.done();
  } finally {
    release();
  }
  return path;
}

/** The fields of a HellaSwag jsonl line that the evaluation reads. */
export interface HellaswagExample {
  ctx: string;
  endings: string[];
  /** Index of the correct ending, 0..3. */
  label: number;
}

export interface HellaswagResult {
  n: number; acc: number; accNorm: number; numCorrect: number; numCorrectNorm: number;
  predictions: { index: number; label: number; pred: number; pred_norm: number }[];
  /** Examples whose rows were longer than the model's block size and lost their first tokens (see scoreExample). */
  numCropped: number;
}

/** render_example's output: tokens and mask are 4 rows, padded with 0 to the longest. */
export interface RenderedExample {
  ctxTokens: number[];
  endingTokens: number[][];
  tokens: number[][];
  mask: number[][];
  label: number;
}

/** hellaswag.py render_example: rows = enc(ctx) + enc(" " + ending), mask 0 over the context, 1 over the ending. */
export function renderExample(example: HellaswagExample, tok: Tokenizer = gpt2Tokenizer()): RenderedExample {
  const ctxTokens = tok.encode(example.ctx);
  // the " " is there because GPT-2's tokenizer attaches a word's leading space to the word
  const endingTokens = example.endings.map((end) => tok.encode(' ' + end));
  const rows = endingTokens.map((e) => [...ctxTokens, ...e]);
  const maskRows = endingTokens.map((e) => [...ctxTokens.map(() => 0), ...e.map(() => 1)]);
  const maxLen = Math.max(...rows.map((r) => r.length));
  const pad = (r: number[]): number[] => [...r, ...new Array<number>(maxLen - r.length).fill(0)];
  return { ctxTokens, endingTokens, tokens: rows.map(pad), mask: maskRows.map(pad), label: example.label };
}

export interface ExampleScore {
  /** Per-token cross-entropy of the shifted rows (4, L - 1), before masking. */
  shiftLosses: number[][];
  sumLoss: number[];
  avgLoss: number[];
  pred: number;
  predNorm: number;
  /** Leading positions dropped to fit the block size (0 for every HellaSwag example with GPT-2's 1024). */
  cropped: number;
}

/**
 * hellaswag.py evaluate() for one rendered example. Rows longer than the model's block size lose their
 * first tokens (the same number in all four, context only), a deviation for small models: GPT-2's 1024
 * positions hold every HellaSwag example, so the script never needs it.
 */
export async function scoreExample(model: GPT, r: RenderedExample, dtype: TrainDtype = 'float32'): Promise<ExampleScore> {
  const L0 = r.tokens[0]!.length;
  const cropped = Math.max(0, L0 - model.config.blockSize);
  if (cropped >= r.ctxTokens.length && cropped > 0) {
    throw new Error(`hellaswag: an ending does not fit in the model's block size ${model.config.blockSize} ` +
      `(context ${r.ctxTokens.length} + ending up to ${L0 - r.ctxTokens.length} tokens); use a model with a larger block size`);
  }
  const tokens = r.tokens.map((row) => row.slice(cropped));
  const mask = r.mask.map((row) => row.slice(cropped));
  const B = tokens.length, L = tokens[0]!.length;
  const backend = model.transformer.wte.weight.backend;
  const wasTraining = model.training;
  model.eval();
  try {
    // the whole scoring under the run's autocast: the cross-entropy then computes in float32
    const { shiftLosses, sumLoss, avgLoss } = noGrad(() => withDtype(dtype, () => {
      const x = tensor(Int32Array.from(tokens.flat()), { shape: [B, L], backend });
      const logits = model.forward(x).logits; // (4, L, V)
      // shift: the logits at position t predict the token at t + 1 (logits[..., :-1, :] vs tokens[..., 1:]).
      // The losses of all L positions are computed, against a dummy 0 after the last token, and the last
      // column dropped: the same numbers as slicing the (4, L, V) logits first, without copying them.
      const nextTokens = tensor(Int32Array.from(tokens.flatMap((row) => [...row.slice(1), 0])), { shape: [B, L], backend });
      const shiftLosses = ops.narrow(F.crossEntropy(logits, nextTokens, { reduction: 'none' }), 1, 0, L - 1); // (4, L - 1)
      // mask[..., 1:]: shifted too, so the first scored prediction is made at the last context token
      const shiftMask = tensor(Float32Array.from(mask.flatMap((row) => row.slice(1))), { shape: [B, L - 1], backend });
      const sumLoss = ops.sum(ops.mul(shiftLosses, shiftMask), 1); // (4)
      const avgLoss = ops.div(sumLoss, ops.sum(shiftMask, 1)); // (4): normalised by the ending's length
      return { shiftLosses, sumLoss, avgLoss };
    }));
    const [sl, s, a] = await Promise.all([shiftLosses.data(), sumLoss.data(), avgLoss.data()]);
    for (const v of s) if (v - v !== 0) throw new Error(`hellaswag: an ending's loss is ${v}; the model's weights or activations are not finite`);
    const rows = Array.from({ length: B }, (_, i) => Array.from(sl.subarray(i * (L - 1), (i + 1) * (L - 1))));
    return { shiftLosses: rows, sumLoss: Array.from(s), avgLoss: Array.from(a), pred: argmin(s), predNorm: argmin(a), cropped };
  } finally {
    model.train(wasTraining);
  }
}

/** torch's argmin: the first index of the smallest value. */
function argmin(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! < v[best]!) best = i;
  return best;
}

/** Read and check a HellaSwag jsonl file (hellaswag_val.jsonl); the first `limit` examples when given. */
export async function readHellaswag(path: string, limit?: number): Promise<HellaswagExample[]> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new Error(`${path}: no such file. HellaSwag is not bundled; download the validation split (the file hellaswag.py uses, ~11 MB):\n` +
        `  mkdir -p hellaswag && curl -L -o hellaswag/hellaswag_val.jsonl ${HELLASWAG_VAL_URL}\n` +
        'then pass --data hellaswag/hellaswag_val.jsonl');
    }
    throw new Error(`${path}: cannot read: ${(e as Error).message}`, { cause: e });
  }
  const out: HellaswagExample[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length && (limit === undefined || out.length < limit); i++) {
    const line = lines[i]!;
    if (!line.trim()) continue;
    const where = `${path}:${i + 1}`;
    let o: unknown;
    try {
      o = JSON.parse(line);
    } catch (e) {
      throw new Error(`${where}: not valid JSON (${(e as Error).message}); expected one HellaSwag example per line`, { cause: e });
    }
    const ex = (typeof o === 'object' && o !== null ? o : {}) as Record<string, unknown>;
    if (typeof ex.ctx !== 'string') throw new Error(`${where}: "ctx" must be a string`);
    // an empty context leaves an ending's first token predicted from nothing: its loss would be NaN (and count as correct)
    if (ex.ctx.trim() === '') throw new Error(`${where}: "ctx" is empty; an ending is scored by how well the context predicts it`);
    const ends = ex.endings;
    if (!Array.isArray(ends) || ends.length !== 4 || !ends.every((e) => typeof e === 'string')) {
      throw new Error(`${where}: "endings" must be 4 strings (the test split has no labels; use hellaswag_val.jsonl)`);
    }
    if (!Number.isInteger(ex.label) || (ex.label as number) < 0 || (ex.label as number) > 3) {
      throw new Error(`${where}: "label" must be 0, 1, 2 or 3, got ${JSON.stringify(ex.label)} (the test split has no labels; use hellaswag_val.jsonl)`);
    }
    out.push({ ctx: ex.ctx, endings: ends as string[], label: ex.label as number });
  }
  return out;
}

export interface HellaswagOptions {
  /** Evaluate the first N examples only. */
  limit?: number;
  /** Where human lines go (default console.log). */
  print?: (s: string) => void;
  /** Draw a progress bar on stderr (default true). */
  progress?: boolean;
  /** Print context, endings and losses of the first N examples, as hellaswag.py does for 9 (default 0). */
  show?: number;
  /** Score only examples i with i % worldSize == rank (a distributed run; the caller sums the counts). */
  rank?: number;
  worldSize?: number;
  /** Score under autocast to this dtype (as train_gpt2.py's HellaSwag under bfloat16); default float32. */
  dtype?: TrainDtype;
  /** The tokenizer the model was trained with (default GPT-2's). */
  tokenizer?: Tokenizer;
}

/** Evaluate `model` on the HellaSwag jsonl at `path`: accuracy from the summed loss (acc) and the mean (acc_norm). */
export async function evaluateHellaswag(model: GPT, path: string, opts: HellaswagOptions = {}): Promise<HellaswagResult> {
  const print = opts.print ?? ((s: string) => console.log(s));
  const examples = await readHellaswag(path, opts.limit);
  if (examples.length === 0) throw new Error(`${path}: no examples${opts.limit !== undefined ? ` (limit ${opts.limit})` : ''}`);
  const tok = opts.tokenizer ?? gpt2Tokenizer();
  const bar = opts.progress === false ? null : new ProgressBar({ label: 'hellaswag', total: examples.length, unit: 'items' });
  const predictions: HellaswagResult['predictions'] = [];
  let numCorrect = 0, numCorrectNorm = 0, numCropped = 0;
  const rank = opts.rank ?? 0, W = opts.worldSize ?? 1;
  for (let i = 0; i < examples.length; i++) {
    if (i % W !== rank) continue;
    const ex = examples[i]!;
    const rendered = renderExample(ex, tok);
    const s = await scoreExample(model, rendered, opts.dtype);
    numCorrect += Number(s.pred === ex.label);
    numCorrectNorm += Number(s.predNorm === ex.label);
    numCropped += Number(s.cropped > 0);
    predictions.push({ index: i, label: ex.label, pred: s.pred, pred_norm: s.predNorm });
    if (i < (opts.show ?? 0)) {
      print('---');
      print(`Context:\n ${ex.ctx}`);
      print('Endings:');
      ex.endings.forEach((end, j) => print(`${j} (loss: ${s.avgLoss[j]!.toFixed(4)}) ${end}`));
      print(`predicted: ${s.predNorm}, actual: ${ex.label}`);
    }
    bar?.update(i + 1);
  }
  bar?.done();
  if (numCropped > 0) print(`hellaswag: ${numCropped} of ${examples.length} examples were longer than the block size ${model.config.blockSize} and lost their first context tokens`);
  const n = predictions.length;
  return { n, acc: numCorrect / n, accNorm: numCorrectNorm / n, numCorrect, numCorrectNorm, predictions, numCropped };
}

/**
 * The --output file: {n, acc, acc_norm, ..., predictions: [{index, label, pred, pred_norm}]} as JSON text,
 * one prediction per line (10,042 of them stay greppable without a JSON viewer).
 */
export function resultJson(r: HellaswagResult, extra: Record<string, unknown> = {}): string {
  const head: Record<string, unknown> = {
    n: r.n, acc: r.acc, acc_norm: r.accNorm, num_correct: r.numCorrect, num_correct_norm: r.numCorrectNorm,
    num_cropped: r.numCropped, ...extra,
  };
  const lines = Object.entries(head).map(([k, v]) => `  ${JSON.stringify(k)}: ${JSON.stringify(v)},`);
  const preds = r.predictions.map((p) => `    ${JSON.stringify(p)}`).join(',\n');
  return `{\n${lines.join('\n')}\n  "predictions": [\n${preds}\n  ]\n}\n`;
}

export const HELLASWAG_COMMAND = command({
  usage: 'npm run eval:hellaswag -- --init-from NAME|PATH [--data FILE] [flags]',
  example: 'npm run eval:hellaswag -- --init-from out --data hellaswag_val.jsonl --limit 100',
  summary: `HellaSwag accuracy as build-nanogpt's hellaswag.py (completion style): acc from the summed loss of each
ending, acc_norm from its per-token mean (the number build-nanogpt reports).`,
  options: {
    'init-from': { kind: 'string', required: true, metavar: 'NAME|PATH', help: 'gpt2 (gpt2-medium, ..., OWNER/NAME[@REV]: from the Hugging Face Hub), an HF GPT-2 directory, a checkpoint model_<step>.json/.safetensors, or a training --out-dir' },
    data: { kind: 'string', metavar: 'FILE', default: HELLASWAG_DEFAULT_FILE, help: `hellaswag_val.jsonl; the default one is downloaded when missing, as hellaswag.py does (${HELLASWAG_VAL_URL}, or $TAPEGRAD_HELLASWAG_URL)` },
    limit: { kind: 'int', min: 1, help: 'first N examples only' },
    output: { kind: 'string', metavar: 'FILE', help: 'write {n, acc, acc_norm, predictions: [{index, label, pred, pred_norm}]} as JSON' },
    show: { kind: 'int', min: 0, help: 'print context, endings and losses of the first N examples (hellaswag.py shows 9)' },
    backend: { kind: 'choice', choices: BACKENDS, default: 'auto', help: 'compute backend' },
    dtype: { kind: 'choice', choices: TRAIN_DTYPES, default: 'float32', help: 'forward passes under autocast to this dtype (bfloat16, float16: mixed precision; weights stay float32)' },
    threads: { kind: 'int', min: 1, max: 256, help: 'worker threads of the wasm backend' },
  },
});

export async function main(argv: string[]): Promise<number> {
  const v = parseCommand(HELLASWAG_COMMAND, argv);
  if (!v) return 0;
  const data = await hellaswagFile(v.data);
  await readHellaswag(data, 1); // a missing file is reported before minutes of model loading
  if (v.output) checkWritable(v.output, '--output'); // and an impossible --output before minutes of evaluation
  const { loadModel } = await import('./sample.js');
  const backend = await useBackend(v.backend, v.threads);
  const { model, loaded } = await loadModel(v['init-from']);
  console.log(`model ${loaded.path} (${loaded.source}${loaded.step !== null ? `, step ${loaded.step}` : ''}), backend ${backend.name}, data ${data}`);
  const { tokenizerFromSpec } = await import('../data/tokenizer-spec.js');
  const r = await evaluateHellaswag(model, data, { limit: v.limit, show: v.show, dtype: v.dtype, tokenizer: tokenizerFromSpec(loaded.tokenizer) })
    .catch((e: unknown) => { throw new Error(`${loaded.path}: ${(e as Error).message}`, { cause: e }); });
  // hellaswag.py's running line after the last example, then the summary format of its docstring
  console.log(`${r.n} acc_norm: ${r.numCorrectNorm}/${r.n}=${r.accNorm.toFixed(4)}`);
  console.log(`${r.n} acc: ${r.acc.toFixed(4)} acc_norm: ${r.accNorm.toFixed(4)}`);
  if (v.output) {
    writeFileAtomic(v.output, resultJson(r, { init_from: loaded.path, data }));
    console.log(`wrote ${v.output}`);
  }
  return 0;
}

runMain(import.meta.url, main);
