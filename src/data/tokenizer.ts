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

/** The two methods of gpt-tokenizer's core the encoder calls piece by piece (its encodeNative spreads a piece's tokens into push()). */
export interface PieceCore {
  getBpeRankFromString(piece: string): number | undefined;
  bytePairEncode(piece: string): number[];
}

/**
 * Standard byte-pair merging of one piece: repeatedly merge the adjacent pair of lowest rank,
 * the leftmost among equal ranks (tiktoken's rule), with a heap over the pairs and a linked list
 * over the parts, so a 100k-byte run costs O(n log n) rather than a scan per merge. `bytes` has
 * one char per byte; `rankOf` maps such byte strings to tokens. Self-contained (the worker
 * threads of tokenize-pool.ts run it from its source).
 */
export function bpeMergeLong(bytes: string, rankOf: ReadonlyMap<string, number>): number[] {
  const n = bytes.length;
  const next = new Int32Array(n + 1), prev = new Int32Array(n + 1), version = new Int32Array(n + 1);
  for (let i = 0; i <= n; i++) { next[i] = i + 1; prev[i] = i - 1; }
  // a binary min-heap of (rank, start, version) in parallel arrays
  const hr: number[] = [], hs: number[] = [], hv: number[] = [];
  const less = (a: number, b: number): boolean => hr[a]! < hr[b]! || (hr[a] === hr[b] && hs[a]! < hs[b]!);
  const swap = (a: number, b: number): void => {
    [hr[a], hr[b]] = [hr[b]!, hr[a]!]; [hs[a], hs[b]] = [hs[b]!, hs[a]!]; [hv[a], hv[b]] = [hv[b]!, hv[a]!];
  };
  const push = (rank: number, start: number): void => {
    hr.push(rank); hs.push(start); hv.push(version[start]!);
    for (let c = hr.length - 1; c > 0;) { const p = (c - 1) >> 1; if (!less(c, p)) break; swap(c, p); c = p; }
  };
  const pop = (): void => {
    const last = hr.length - 1;
    swap(0, last); hr.pop(); hs.pop(); hv.pop();
    for (let p = 0; ;) {
      const l = 2 * p + 1, r = l + 1;
      let m = p;
      if (l < hr.length && less(l, m)) m = l;
      if (r < hr.length && less(r, m)) m = r;
      if (m === p) break;
      swap(p, m); p = m;
    }
  };
  /** Offer the pair of part i and the part after it, if their bytes together are a token. */
  const offer = (i: number): void => {
    const j = next[i]!;
    if (j >= n) return;
    const rank = rankOf.get(bytes.slice(i, next[j]!));
    if (rank !== undefined) push(rank, i);
  };
  for (let i = 0; i < n - 1; i++) offer(i);
  while (hr.length) {
    const i = hs[0]!, v = hv[0]!;
    pop();
    if (v !== version[i]) continue; // stale: part i or the part after it changed since
    const j = next[i]!;
    next[i] = next[j]!; // part j joins part i
    prev[next[j]!] = i;
    version[i]!++; version[j]!++;
    if (prev[i]! >= 0) { version[prev[i]!]!++; offer(prev[i]!); }
    offer(i);
  }
  const out: number[] = [];
  for (let i = 0; i < n; i = next[i]!) out.push(rankOf.get(bytes.slice(i, next[i]!))!);
  return out;
}

/**
 * tiktoken's encode_ordinary over gpt-tokenizer's BPE core: the pre-tokenizer regex, then each
 * piece's tokens appended one by one (a piece of any length: 100k spaces are 100k tokens), long
 * pieces merged by bpeMergeLong. Self-contained but for bpeMergeLong, so that tokenize-pool.ts's
 * worker threads run this very function from its source text.
 */
export function makeEncoder(core: PieceCore, ranks: readonly (string | readonly number[])[], pattern: string): (text: string) => number[] {
  const longPiece = 1024; // bytes
  const split = new RegExp(pattern, 'gu');
  const utf8 = new TextEncoder();
  const latin1 = (b: Uint8Array): string => {
    let s = '';
    for (let i = 0; i < b.length; i += 8192) s += String.fromCharCode(...b.subarray(i, i + 8192));
    return s;
  };
  let rankOfBytes: Map<string, number> | null = null;
  const encodeLong = (piece: string): number[] => {
    const bytes = utf8.encode(piece);
    if (bytes.length <= longPiece) return core.bytePairEncode(piece);
    if (!rankOfBytes) {
      rankOfBytes = new Map();
      ranks.forEach((r, rank) => { rankOfBytes!.set(latin1(typeof r === 'string' ? utf8.encode(r) : Uint8Array.from(r)), rank); });
    }
    return bpeMergeLong(latin1(bytes), rankOfBytes);
  };
  return (text) => {
    const out: number[] = [];
    for (const [piece] of text.matchAll(split)) {
      const one = core.getBpeRankFromString(piece);
      if (one !== undefined) { out.push(one); continue; }
      const tokens = piece.length > longPiece / 4 ? encodeLong(piece) : core.bytePairEncode(piece);
      for (const t of tokens) out.push(t);
    }
    return out;
  };
}

export class Gpt2Tokenizer {
  readonly name = 'gpt2';
  readonly eot = EOT;
  readonly vocabSize = GPT2_VOCAB_SIZE;
  private readonly core: BytePairEncodingCore;
  private readonly bpe: (text: string) => number[];
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
    const pieces = this.core as unknown as PieceCore;
    if (typeof pieces.getBpeRankFromString !== 'function' || typeof pieces.bytePairEncode !== 'function') {
      throw new Error('tokenizer: the installed gpt-tokenizer lacks BytePairEncodingCore.getBpeRankFromString/bytePairEncode (tested with 3.4)');
    }
    this.bpe = makeEncoder(pieces, r50kRanks, GPT2_SPLIT_PATTERN);
    const enc = new TextEncoder();
    this.bytes = r50kRanks.map((v) => (typeof v === 'string' ? enc.encode(v) : Uint8Array.from(v)));
    if (this.bytes.length !== EOT) {
      throw new Error(`tokenizer: gpt-tokenizer's r50k table has ${this.bytes.length} ranks, expected ${EOT}`);
    }
    this.bytes.push(enc.encode('<|endoftext|>'));
  }

  /**
   * tiktoken `enc.encode_ordinary(text)`: no special tokens, "<|endoftext|>" is ordinary text.
   * Any document: a piece of any length (100k spaces are 100k tokens; see makeEncoder).
   */
  encodeOrdinary(text: string): number[] {
    return this.bpe(text);
  }

  /** The token ids of `text` (tiktoken's encode_ordinary: "<|endoftext|>" in the text is plain text). */
  encode(text: string): number[] {
    return this.bpe(text);
  }

  /** One fineweb.py document: [EOT, ...encode_ordinary(text)] as uint16. */
  encodeDocument(text: string): Uint16Array {
    const ids = this.bpe(text);
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

  /** A decoder for tokens arriving one at a time (sampling); see StreamDecoder. */
  streamDecoder(): StreamDecoder {
    return new StreamDecoder(this);
  }
}

/**
 * Turns tokens into text as they are produced. A character may be split across tokens
 * (emoji often are), so the UTF-8 decoder keeps the unfinished bytes until the next push.
 * Each instance has its own state (gpt-tokenizer's decode shares one across all calls).
 */
export class StreamDecoder {
  // ignoreBOM: a U+FEFF in the text is content and must come back out (TextDecoder drops a leading one by default).
  private readonly utf8 = new TextDecoder('utf-8', { ignoreBOM: true });
  constructor(private readonly tok: { tokenBytes(token: number): Uint8Array }) {}

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
