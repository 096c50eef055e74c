// `npm run sample`: text from a trained GPT, as the sampling block of build-nanogpt's train_gpt2.py
// (a prompt repeated num_return_sequences times, top-k 50 sampling from a seeded generator), batched,
// with the KV cache so each new token costs one position, decoded as it streams.
//
// Streaming: sample 0 is printed live, token by token; the other rows are decoded as they go too (each
// row has its own UTF-8 stream decoder, since an emoji can be split across tokens) and are printed when
// they complete, which for a batch of equal-length rows is right after the last step.

import { GPT } from '../nn/gpt.js';
import { loadWeights, type LoadedWeights } from './checkpoint.js';
import { useBackend, BACKENDS } from './choose-backend.js';
import { command, parseCommand, runMain } from './cli-args.js';
import { TRAIN_DTYPES } from './precision.js';
import { sample, type SampleOptions } from './generate-text.js';
import { describeTokenizer, tokenizerFromSpec } from '../data/tokenizer-spec.js';

/**
 * A GPT with the weights of `--init-from` (an HF GPT-2 directory, a checkpoint or a training output
 * directory), on the current backend, in eval mode. The vocabulary is what the weights have (50257 for
 * OpenAI's GPT-2, 50304 for our padded checkpoints): nothing is padded, so nothing new can be sampled.
 */
export async function loadModel(initFrom: string): Promise<{ model: GPT; loaded: LoadedWeights }> {
  const loaded = await loadWeights(initFrom).catch((e: Error) => { throw new Error(`--init-from ${e.message}`); });
  const model = new GPT(loaded.config, { init: false });
  model.loadStateDict(loaded.weights); // lm_head.weight is tied to wte: loading either fills both
  model.eval();
  return { model, loaded };
}

export { sample, type SampleOptions, type SampleResult } from './generate-text.js';

export const SAMPLE_COMMAND = command({
  usage: 'npm run sample -- --init-from NAME|PATH [flags]',
  example: 'npm run sample -- --init-from out --prompt "The meaning of life is" --temperature 0.8',
  summary: `Samples text from a GPT as build-nanogpt's train_gpt2.py does (top-k sampling, seeded), batched and with
a KV cache. Sample 0 streams live; the others print when they complete.`,
  options: {
    'init-from': { kind: 'string', required: true, metavar: 'NAME|PATH',
      help: 'gpt2, gpt2-medium, gpt2-large, gpt2-xl or OWNER/NAME[@REV] (the Hugging Face Hub, cached as Python caches it), an HF GPT-2 directory (config.json + model.safetensors), a checkpoint model_<step>.json or .safetensors, or a training --out-dir (its newest checkpoint)' },
    prompt: { kind: 'string', metavar: 'TEXT', default: "Hello, I'm a language model,", help: 'the text every row continues' },
    'num-samples': { kind: 'int', min: 1, max: 1024, default: 4, help: 'rows sampled together (a row holds a vocabulary of logits at each step)' },
    'max-tokens': { kind: 'int', min: 1, default: 32, help: 'new tokens per row' },
    'top-k': { kind: 'int', min: 1, default: 50, metavar: 'K', help: 'sample among the K most likely tokens' },
    temperature: { kind: 'number', min: 0, default: 1, metavar: 'T', help: 'divide the logits by T; 0 picks the most likely token (greedy)' },
    seed: { kind: 'int', default: 42, help: "the sampler's seed (train_gpt2.py: 42 + ddp_rank)" },
    'no-kv-cache': { kind: 'flag', help: 'recompute every position at each step (slower; same tokens)' },
    backend: { kind: 'choice', choices: BACKENDS, default: 'auto', help: 'compute backend' },
    dtype: { kind: 'choice', choices: TRAIN_DTYPES, default: 'float32', help: 'forward passes under autocast to this dtype (bfloat16, float16: mixed precision; weights stay float32)' },
    threads: { kind: 'int', min: 1, max: 256, help: 'worker threads of the wasm backend' },
  },
});

export async function main(argv: string[]): Promise<number> {
  const v = parseCommand(SAMPLE_COMMAND, argv);
  if (!v) return 0;
  const backend = await useBackend(v.backend, v.threads);
  const { model, loaded } = await loadModel(v['init-from']);
  const c = loaded.config;
  process.stderr.write(`loaded ${loaded.path} (${loaded.source}${loaded.step !== null ? `, step ${loaded.step}` : ''}): ` +
    `${c.nLayer} layers, ${c.nEmbd} embd, vocab ${c.vocabSize}, block ${c.blockSize}; ${describeTokenizer(loaded.tokenizer)}; backend ${backend.name}\n`);
  const o: SampleOptions = {
    prompt: v.prompt, numSamples: v['num-samples'], maxTokens: v['max-tokens'], topK: v['top-k'],
    temperature: v.temperature, seed: v.seed, kvCache: !v['no-kv-cache'], dtype: v.dtype,
    onText: (row, text) => { if (row === 0) process.stdout.write(text); },
  };
  process.stdout.write(`sample 0: ${o.prompt}`);
  const r = await sample(model, o, tokenizerFromSpec(loaded.tokenizer)).catch((e: unknown) => { throw new Error(`${loaded.path}: ${(e as Error).message}`, { cause: e }); });
  process.stdout.write('\n');
  for (let i = 1; i < r.texts.length; i++) process.stdout.write(`sample ${i}: ${r.texts[i]}\n`);
  const n = o.numSamples * o.maxTokens;
  process.stderr.write(`${o.numSamples} x ${o.maxTokens} tokens (prompt ${r.promptTokens}) in ${r.seconds.toFixed(2)} s, ` +
    `${(n / r.seconds).toFixed(1)} tok/s, kv cache ${o.kvCache ? 'on' : 'off'}\n`);
  return 0;
}

runMain(import.meta.url, main);
