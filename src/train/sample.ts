// `npm run sample`: text from a trained GPT, as the sampling block of build-nanogpt's train_gpt2.py
// (a prompt repeated num_return_sequences times, top-k 50 sampling from a seeded generator), batched,
// with the KV cache so each new token costs one position, decoded as it streams.
//
// Streaming: sample 0 is printed live, token by token; the other rows are decoded as they go too (each
// row has its own UTF-8 stream decoder, since an emoji can be split across tokens) and are printed when
// they complete, which for a batch of equal-length rows is right after the last step.

import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { GPT } from '../nn/gpt.js';
import { Generator } from '../tensor/random.js';
import { EOT, GPT2_VOCAB_SIZE, gpt2Tokenizer, type Gpt2Tokenizer } from '../data/tokenizer.js';
import { loadWeights, type LoadedWeights } from './checkpoint.js';
import { useBackend, BACKENDS } from './backend.js';

/**
 * A GPT with the weights of `--init-from` (an HF GPT-2 directory, a checkpoint or a training output
 * directory), on the current backend, in eval mode. The vocabulary is what the weights have (50257 for
 * OpenAI's GPT-2, 50304 for our padded checkpoints): nothing is padded, so nothing new can be sampled.
 */
export async function loadModel(initFrom: string): Promise<{ model: GPT; loaded: LoadedWeights }> {
  const loaded = await loadWeights(initFrom);
  const model = new GPT(loaded.config, { init: false });
  model.loadStateDict(loaded.weights); // lm_head.weight is tied to wte: loading either fills both
  model.eval();
  return { model, loaded };
}

export interface SampleOptions {
  prompt: string;
  /** Rows sampled in one batch (train_gpt2.py: num_return_sequences = 4). */
  numSamples: number;
  /** New tokens per row (train_gpt2.py's max_length = 32 counts the prompt's 8 tokens too). */
  maxTokens: number;
  topK: number;
  temperature: number;
  /** Seed of the sampling generator (train_gpt2.py: 42 + ddp_rank). */
  seed: number;
  kvCache: boolean;
  /** Called with each piece of decoded text as it completes, per row (never splits a character). */
  onText?: (row: number, text: string) => void;
}

export interface SampleResult {
  /** Prompt + generated ids, per row. */
  tokens: number[][];
  /** Prompt + generated text, per row. */
  texts: string[];
  promptTokens: number;
  seconds: number;
}

/** Sample `numSamples` continuations of the prompt in one batch and decode them incrementally. */
export async function sample(model: GPT, o: SampleOptions, tok: Gpt2Tokenizer = gpt2Tokenizer()): Promise<SampleResult> {
  for (const [k, v] of [['numSamples', o.numSamples], ['maxTokens', o.maxTokens], ['topK', o.topK]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`sample: ${k} must be a positive integer, got ${v}`);
  }
  if (!(o.temperature > 0)) throw new Error(`sample: temperature must be > 0, got ${o.temperature}`);
  // An empty prompt starts from <|endoftext|>, the token every training document begins with.
  const ids = o.prompt === '' ? [EOT] : tok.encodeOrdinary(o.prompt);
  const decoders = Array.from({ length: o.numSamples }, () => tok.streamDecoder());
  const texts = Array.from({ length: o.numSamples }, () => o.prompt);
  const t0 = performance.now();
  const tokens = await model.generate(Array.from({ length: o.numSamples }, () => ids), {
    maxNewTokens: o.maxTokens, topK: o.topK, temperature: o.temperature, generator: new Generator(o.seed),
    kvCache: o.kvCache,
    // padded vocabulary rows (50257..50303) are no GPT-2 token
    vocabLimit: GPT2_VOCAB_SIZE,
    onToken: (next) => {
      next.forEach((t, row) => {
        const piece = decoders[row]!.push(t);
        if (piece) { texts[row] += piece; o.onText?.(row, piece); }
      });
    },
  });
  decoders.forEach((d, row) => {
    const rest = d.flush(); // bytes of a character the sampling stopped in the middle of: U+FFFD
    if (rest) { texts[row] += rest; o.onText?.(row, rest); }
  });
  return { tokens, texts, promptTokens: ids.length, seconds: (performance.now() - t0) / 1000 };
}

const HELP = `usage: npm run sample -- --init-from DIR|CHECKPOINT [flags]

Samples text from a GPT as build-nanogpt's train_gpt2.py does (top-k sampling, seeded), batched and with
a KV cache. Sample 0 streams live; the others print when they complete.

  --init-from PATH      HF GPT-2 directory (config.json + model.safetensors), checkpoint model_<step>.json
                        or .safetensors, or a training --out-dir (its newest checkpoint)   (required)
  --prompt TEXT         default "Hello, I'm a language model,"
  --num-samples N       rows sampled together (default 4)
  --max-tokens N        new tokens per row (default 32)
  --top-k K             default 50
  --temperature T       default 1
  --seed N              default 42 (train_gpt2.py: 42 + ddp_rank)
  --no-kv-cache         recompute every position at each step (slower; same tokens)
  --backend NAME        ${BACKENDS.join(' | ')} (default auto)
  --threads N           worker threads for the wasm backend
`;

export async function main(argv: string[]): Promise<number> {
  const { values } = parseArgs({
    args: argv,
    options: {
      help: { type: 'boolean', short: 'h' },
      'init-from': { type: 'string' }, prompt: { type: 'string' },
      'num-samples': { type: 'string' }, 'max-tokens': { type: 'string' }, 'top-k': { type: 'string' },
      temperature: { type: 'string' }, seed: { type: 'string' }, 'no-kv-cache': { type: 'boolean' },
      backend: { type: 'string' }, threads: { type: 'string' },
    },
    strict: true,
  });
  if (values.help) { process.stdout.write(HELP); return 0; }
  if (!values['init-from']) throw new Error('--init-from is required: an HF GPT-2 directory, a checkpoint, or a training --out-dir (see --help)');
  const num = (flag: string, v: string | undefined, dflt: number, integer = true): number => {
    if (v === undefined) return dflt;
    const n = Number(v);
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new Error(`--${flag}: expected ${integer ? 'an integer' : 'a number'}, got '${v}'`);
    return n;
  };
  const backend = await useBackend(values.backend ?? 'auto', values.threads === undefined ? undefined : num('threads', values.threads, 0));
  const { model, loaded } = await loadModel(values['init-from']);
  const c = loaded.config;
  process.stderr.write(`loaded ${loaded.path} (${loaded.source}${loaded.step !== null ? `, step ${loaded.step}` : ''}): ` +
    `${c.nLayer} layers, ${c.nEmbd} embd, vocab ${c.vocabSize}, block ${c.blockSize}; backend ${backend.name}\n`);
  const o: SampleOptions = {
    prompt: values.prompt ?? "Hello, I'm a language model,",
    numSamples: num('num-samples', values['num-samples'], 4),
    maxTokens: num('max-tokens', values['max-tokens'], 32),
    topK: num('top-k', values['top-k'], 50),
    temperature: num('temperature', values.temperature, 1, false),
    seed: num('seed', values.seed, 42),
    kvCache: !values['no-kv-cache'],
    onText: (row, text) => { if (row === 0) process.stdout.write(text); },
  };
  process.stdout.write(`sample 0: ${o.prompt}`);
  const r = await sample(model, o);
  process.stdout.write('\n');
  for (let i = 1; i < r.texts.length; i++) process.stdout.write(`sample ${i}: ${r.texts[i]}\n`);
  const n = o.numSamples * o.maxTokens;
  process.stderr.write(`${o.numSamples} x ${o.maxTokens} tokens (prompt ${r.promptTokens}) in ${r.seconds.toFixed(2)} s, ` +
    `${(n / r.seconds).toFixed(1)} tok/s, kv cache ${o.kvCache ? 'on' : 'off'}\n`);
  return 0;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).then((code) => process.exit(code), (e: unknown) => {
    console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}
