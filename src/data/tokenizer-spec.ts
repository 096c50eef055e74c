// Which tokenizer made a set of shards or a checkpoint: the interface GPT-2's BPE and a learned
// BPE share, the small JSON spec stored beside shards (tokenizer.json) and in checkpoints, and
// the one function that turns a spec back into a tokenizer. No file access: browsers use it too.
import { BpeTokenizer, type BpeSpec } from './bpe.js';
import { gpt2Tokenizer, type StreamDecoder } from './tokenizer.js';

export interface Tokenizer {
  /** 'gpt2' or 'bpe'. */
  readonly name: string;
  /** <|endoftext|>: starts every document in the shards. */
  readonly eot: number;
  /** Ids are 0 .. vocabSize-1 (a model may have more rows: padding, never sampled). */
  readonly vocabSize: number;
  encode(text: string): number[];
  /** [eot, ...encode(text)], as the shards hold a document. */
  encodeDocument(text: string): Uint16Array;
  decode(tokens: ArrayLike<number>): string;
  tokenBytes(token: number): Uint8Array;
  /** For tokens arriving one at a time (sampling): never splits a character. */
  streamDecoder(): StreamDecoder;
}

/** GPT-2's tokenizer is named; a learned BPE carries its merges. */
export type TokenizerSpec = { type: 'gpt2' } | BpeSpec;

export const GPT2_SPEC: TokenizerSpec = { type: 'gpt2' };

export function tokenizerFromSpec(spec: TokenizerSpec): Tokenizer {
  if (spec?.type === 'gpt2') return gpt2Tokenizer();
  if (spec?.type === 'bpe') return new BpeTokenizer(spec);
  throw new Error(`tokenizer: unknown spec ${JSON.stringify(spec).slice(0, 80)}; expected { "type": "gpt2" } or { "type": "bpe", "merges": [...] }`);
}

/** The file beside exported weights (an HF directory, the page's download) that holds a learned BPE. */
export const EXPORTED_TOKENIZER_FILE = 'tapegrad_tokenizer.json';

/**
 * The tokenizer a file recorded (a sidecar's "tokenizer", an exported tokenizer file, or the JSON
 * text of a safetensors metadata entry), checked by rebuilding it; GPT-2's where none is recorded
 * (OpenAI's weights, and our checkpoints from before tokenizers were recorded).
 */
export function recordedTokenizer(value: unknown, where: string): TokenizerSpec {
  if (value === undefined || value === null) return GPT2_SPEC;
  try {
    const spec = (typeof value === 'string' ? JSON.parse(value) : value) as TokenizerSpec;
    tokenizerFromSpec(spec);
    return spec;
  } catch (e) {
    throw new Error(`${where}: its tokenizer cannot be rebuilt (${(e as Error).message}); the file was edited or is not ours`);
  }
}

/** A model's vocabulary for a tokenizer: its ids, padded to a multiple of 64 (GPT-2's 50257 -> 50304). */
export function paddedVocabSize(tok: Pick<Tokenizer, 'vocabSize'>): number {
  return Math.ceil(tok.vocabSize / 64) * 64;
}

export function specOf(tok: Tokenizer): TokenizerSpec {
  return tok instanceof BpeTokenizer ? tok.spec : GPT2_SPEC;
}

/** Same tokenizer? (Specs are small: compared as JSON.) */
export function sameTokenizer(a: TokenizerSpec, b: TokenizerSpec): boolean {
  return JSON.stringify(a) === JSON.stringify(b);
}

/** In words, for messages: "GPT-2's tokenizer" or "a 1024-token BPE". */
export function describeTokenizer(spec: TokenizerSpec): string {
  return spec.type === 'gpt2' ? "GPT-2's tokenizer (50,257 tokens)" : `a ${spec.merges.length + 257}-token BPE learned from its corpus`;
}
