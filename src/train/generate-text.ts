// Sampling text from a GPT as train_gpt2.py's sampling block does it (a prompt repeated in a batch,
// top-k sampling from a seeded generator, the KV cache), decoded row by row as it streams. No
// file or process access: `npm run sample` (sample.ts) and the browser playground both call it.

import type { GPT } from '../nn/gpt.js';
import { Generator } from '../tensor/random.js';
import { gpt2Tokenizer } from '../data/tokenizer.js';
import type { Tokenizer } from '../data/tokenizer-spec.js';
import { withDtype, type TrainDtype } from './precision.js';

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
  /** Sample under autocast to this dtype (default float32). */
  dtype?: TrainDtype;
}

export interface SampleResult {
  /** Prompt + generated ids, per row. */
  tokens: number[][];
  /** Prompt + generated text, per row. */
  texts: string[];
  promptTokens: number;
  seconds: number;
}

/**
 * Sample `numSamples` continuations of the prompt in one batch and decode them incrementally, with
 * the tokenizer the model was trained with (GPT-2's by default).
 */
export async function sample(model: GPT, o: SampleOptions, tok: Tokenizer = gpt2Tokenizer()): Promise<SampleResult> {
  for (const [k, v] of [['numSamples', o.numSamples], ['maxTokens', o.maxTokens], ['topK', o.topK]] as const) {
    if (!Number.isInteger(v) || v < 1) throw new Error(`sample: ${k} must be a positive integer, got ${v}`);
  }
  if (!(o.temperature >= 0)) throw new Error(`sample: temperature must be >= 0 (0: greedy), got ${o.temperature}`);
  // An empty prompt starts from <|endoftext|>, the token every training document begins with.
  const ids = o.prompt === '' ? [tok.eot] : tok.encode(o.prompt);
  const decoders = Array.from({ length: o.numSamples }, () => tok.streamDecoder());
  const texts = Array.from({ length: o.numSamples }, () => o.prompt);
  const t0 = performance.now();
  const tokens = await withDtype(o.dtype ?? 'float32', () => model.generate(Array.from({ length: o.numSamples }, () => ids), {
    maxNewTokens: o.maxTokens, topK: o.topK, temperature: o.temperature, generator: new Generator(o.seed),
    kvCache: o.kvCache,
    // padded vocabulary rows (GPT-2: 50257..50303) are no token (generate keeps it within the model's rows)
    vocabLimit: tok.vocabSize,
    onToken: (next) => {
      next.forEach((t, row) => {
        const piece = decoders[row]!.push(t);
        if (piece) { texts[row] += piece; o.onText?.(row, piece); }
      });
    },
  }));
  decoders.forEach((d, row) => {
    const rest = d.flush(); // bytes of a character the sampling stopped in the middle of: U+FFFD
    if (rest) { texts[row] += rest; o.onText?.(row, rest); }
  });
  return { tokens, texts, promptTokens: ids.length, seconds: (performance.now() - t0) / 1000 };
}
