// GPT-2 BPE tokenizer equal to tiktoken's `gpt2` encode_ordinary, as fineweb.py uses it:
// our own pre-tokenizer regex feeding gpt-tokenizer's r50k BPE core, and our own byte-level decoder.
import { BytePairEncodingCore } from 'gpt-tokenizer/BytePairEncodingCore';
import r50kRanks from 'gpt-tokenizer/bpeRanks/r50k_base';

/** <|endoftext|>: the token fineweb.py puts before every document (`tokens = [eot]`). */
export const EOT = 50256;
/** Vocabulary of the GPT-2 tokenizer (50,000 merges + 256 bytes + <|endoftext|>). */
export const GPT2_VOCAB_SIZE = 50257;

/**
 * tiktoken's gpt2 pattern with every `\s` spelled `\p{White_Space}`. tiktoken runs it in Rust,
 * where `\s` is Unicode White_Space; JavaScript's `\s` also matches U+FEFF and misses U+0085,
 * which changes how text containing them is split. Exported so the worker threads build the
 * very same regex.
 */
export const GPT2_SPLIT_PATTERN = String.raw`'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\p{White_Space}\p{L}\p{N}]+|\p{White_Space}+(?!\P{White_Space})|\p{White_Space}+`;

export class Gpt2Tokenizer {
  private readonly core: BytePairEncodingCore;
  /** Bytes of every token, index = token id; built from the same rank table the BPE uses. */
  private readonly bytes: Uint8Array[];

  constructor() {
    // No special tokens are registered: encode_ordinary treats "<|endoftext|>" in a document as
    // plain text, and gpt-tokenizer only ever recognises special tokens at the start of a string.
    this.core = new BytePairEncodingCore({
      bytePairRankDecoder: r50kRanks,
      specialTokensEncoder: new Map(),
      tokenSplitRegex: new RegExp(GPT2_SPLIT_PATTERN, 'gu'),
    });
    const enc = new TextEncoder();
    this.bytes = r50kRanks.map((v) => (typeof v === 'string' ? enc.encode(v) : Uint8Array.from(v)));
    if (this.bytes.length !== EOT) {
      throw new Error(`tokenizer: gpt-tokenizer's r50k table has ${this.bytes.length} ranks, expected ${EOT}`);
    }
    this.bytes.push(enc.encode('<|endoftext|>'));
  }

  /** tiktoken `enc.encode_ordinary(text)`: no special tokens, "<|endoftext|>" is ordinary text. */
  encodeOrdinary(text: string): number[] {
    return this.core.encodeNative(text);
  }

  /** One fineweb.py document: [EOT, ...encode_ordinary(text)] as uint16. */
  encodeDocument(text: string): Uint16Array {
    const ids = this.core.encodeNative(text);
    const out = new Uint16Array(ids.length + 1);
    out[0] = EOT;
    out.set(ids, 1);
    return out;
  }

  /** The raw bytes of one token (tiktoken `decode_single_token_bytes`). */
  tokenBytes(token: number): Uint8Array {
    const b = this.bytes[token];
    if (b === undefined || !Number.isInteger(token)) {
      throw new Error(`tokenizer.decode: token ${token} is outside the GPT-2 vocabulary [0, ${GPT2_VOCAB_SIZE})`);
    }
    return b;
  }

  /**
   * tiktoken `enc.decode(tokens)`: invalid UTF-8 becomes U+FFFD (errors="replace"). ignoreBOM keeps
   * a leading U+FEFF, which TextDecoder would otherwise silently drop.
   */
  decode(tokens: ArrayLike<number>): string {
    let n = 0;
    for (let i = 0; i < tokens.length; i++) n += this.tokenBytes(tokens[i]!).length;
    const all = new Uint8Array(n);
    let p = 0;
    for (let i = 0; i < tokens.length; i++) {
      const b = this.tokenBytes(tokens[i]!);
      all.set(b, p);
      p += b.length;
    }
    return new TextDecoder('utf-8', { ignoreBOM: true }).decode(all);
  }

  /** A decoder for tokens arriving one at a time (sampling); see Gpt2StreamDecoder. */
  streamDecoder(): Gpt2StreamDecoder {
    return new Gpt2StreamDecoder(this);
  }
}

/**
 * Turns tokens into text as they are produced. A character may be split across tokens
 * (emoji often are), so the UTF-8 decoder keeps the unfinished bytes until the next push.
 * Each instance has its own state (gpt-tokenizer's decode shares one across all calls).
 */
export class Gpt2StreamDecoder {
  // ignoreBOM: a U+FEFF in the text is content and must come back out (TextDecoder drops a leading one by default).
  private readonly utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
  constructor(private readonly tok: Gpt2Tokenizer) {}

  /** Text completed by this token ('' while a character is still incomplete). */
  push(token: number): string {
    return this.utf8.decode(this.tok.tokenBytes(token), { stream: true });
  }

  /** Ends the stream: bytes of an unfinished character come out as U+FFFD. */
  flush(): string {
    return this.utf8.decode();
  }
}

let shared: Gpt2Tokenizer | undefined;
/** The process-wide tokenizer (building it parses 50k ranks, ~100 ms, so it is done once). */
export function gpt2Tokenizer(): Gpt2Tokenizer {
  shared ??= new Gpt2Tokenizer();
  return shared;
}
