// A small byte-level BPE learned from the training text itself (minbpe's idea, GPT-2's recipe):
// split text with GPT-2's regex, start from the 256 bytes, and merge the most frequent adjacent
// pair until the vocabulary is full. The default run uses it: ~1k tokens make the embedding and
// the head cheap, so a tiny model spends its few minutes on language, not on a 50k-row softmax.
import { GPT2_SPLIT_PATTERN, StreamDecoder } from './tokenizer.js';

/** What a tokenizer file and a checkpoint store: enough to rebuild the very same tokenizer. */
export interface BpeSpec {
  type: 'bpe';
  /** merges[i] = [a, b]: token 256 + i is token a followed by token b. */
  merges: [number, number][];
}

const utf8 = new TextEncoder();

/** Pieces of `text` (GPT-2's pre-tokenizer): merges never cross a piece's edge. */
function pieces(text: string): string[] {
  return text.match(new RegExp(GPT2_SPLIT_PATTERN, 'gu')) ?? [];
}

/**
 * Learns `vocabSize - 257` merges from `texts` (256 bytes + merges + <|endoftext|>). Every piece
 * type is kept once with its count; each round merges the most frequent pair (the smallest ids
 * among ties, so the result does not depend on Map order) and updates the counts of the pieces
 * that contain it.
 */
export function trainBpe(texts: Iterable<string>, vocabSize: number): BpeSpec {
  if (!Number.isInteger(vocabSize) || vocabSize < 257 || vocabSize > 65536) {
    throw new Error(`trainBpe: vocabSize must be an integer in [257, 65536] (256 bytes + merges + <|endoftext|>), got ${vocabSize}`);
  }
  const counts = new Map<string, number>();
  for (const text of texts) for (const p of pieces(text)) counts.set(p, (counts.get(p) ?? 0) + 1);
  const words: number[][] = [], freq: number[] = [];
  for (const [p, c] of counts) { words.push(Array.from(utf8.encode(p))); freq.push(c); }
  const key = (a: number, b: number): number => a * 65536 + b;
  const pairs = new Map<number, number>();
  const addPairs = (w: number[], f: number): void => {
    for (let i = 0; i + 1 < w.length; i++) { const k = key(w[i]!, w[i + 1]!); pairs.set(k, (pairs.get(k) ?? 0) + f); }
  };
  words.forEach((w, i) => addPairs(w, freq[i]!));
  const merges: [number, number][] = [];
  for (let id = 256; id < vocabSize - 1; id++) {
    let best = -1, bestCount = 0;
    for (const [k, c] of pairs) if (c > bestCount || (c === bestCount && k < best)) { best = k; bestCount = c; }
    if (bestCount < 2) break; // nothing repeats: more merges would only memorise single pieces
    const a = Math.floor(best / 65536), b = best % 65536;
    merges.push([a, b]);
    words.forEach((w, i) => {
      let has = false;
      for (let j = 0; j + 1 < w.length && !has; j++) has = w[j] === a && w[j + 1] === b;
      if (!has) return;
      addPairs(w, -freq[i]!);
      const merged: number[] = [];
      for (let j = 0; j < w.length; j++) {
        if (j + 1 < w.length && w[j] === a && w[j + 1] === b) { merged.push(id); j++; } else merged.push(w[j]!);
      }
      words[i] = merged;
      addPairs(merged, freq[i]!);
    });
    for (const [k, c] of pairs) if (c === 0) pairs.delete(k);
  }
  return { type: 'bpe', merges };
}

/** Encodes and decodes with a learned BpeSpec; ids: bytes 0-255, merges 256.., then <|endoftext|>. */
export class BpeTokenizer {
  readonly name = 'bpe';
  /** <|endoftext|>, the last id: it starts every document, as in fineweb.py's shards; decodes as "\n". */
  readonly eot: number;
  readonly vocabSize: number;
  private readonly rank = new Map<number, number>(); // pair key -> merged id
  private readonly bytes: Uint8Array[] = [];
  private readonly cache = new Map<string, number[]>();

  constructor(readonly spec: BpeSpec) {
    if (spec?.type !== 'bpe' || !Array.isArray(spec.merges)) throw new Error('BpeTokenizer: expected { type: "bpe", merges: [[a, b], ...] }');
    for (let i = 0; i < 256; i++) this.bytes.push(Uint8Array.of(i));
    spec.merges.forEach((m, i) => {
      const id = 256 + i;
      const [a, b] = Array.isArray(m) ? m : [];
      if (!Number.isInteger(a) || !Number.isInteger(b) || a! < 0 || b! < 0 || a! >= id || b! >= id) {
        throw new Error(`BpeTokenizer: merge ${i} is ${JSON.stringify(m)}; each merge joins two earlier ids (below ${id})`);
      }
      this.rank.set(a! * 65536 + b!, id);
      const ab = new Uint8Array(this.bytes[a!]!.length + this.bytes[b!]!.length);
      ab.set(this.bytes[a!]!); ab.set(this.bytes[b!]!, this.bytes[a!]!.length);
      this.bytes.push(ab);
    });
    this.eot = 256 + spec.merges.length;
    this.vocabSize = this.eot + 1;
    // it decodes as a newline: the embedded corpus's documents are sentences, and a sample reads
    // best with one per line (GPT-2's tokenizer spells it out, as tiktoken does)
    this.bytes.push(Uint8Array.of(10));
  }

  /** The ids of `text`: each piece's bytes, merged in the order the merges were learned. */
  encode(text: string): number[] {
    const out: number[] = [];
    for (const p of pieces(text)) {
      let ids = this.cache.get(p);
      if (!ids) {
        ids = this.encodePiece(Array.from(utf8.encode(p)));
        if (this.cache.size < 100_000) this.cache.set(p, ids);
      }
      for (const t of ids) out.push(t);
    }
    return out;
  }

  private encodePiece(w: number[]): number[] {
    for (;;) {
      let best = Infinity, at = -1;
      for (let j = 0; j + 1 < w.length; j++) {
        const id = this.rank.get(w[j]! * 65536 + w[j + 1]!);
        if (id !== undefined && id < best) { best = id; at = j; }
      }
      if (at < 0) return w;
      w.splice(at, 2, best);
    }
  }

  /** One document as the shards hold it: [<|endoftext|>, ...encode(text)]. */
  encodeDocument(text: string): Uint16Array {
    const ids = this.encode(text);
    const out = new Uint16Array(ids.length + 1);
    out[0] = this.eot;
    out.set(ids, 1);
    return out;
  }

  tokenBytes(token: number): Uint8Array {
    const b = this.bytes[token];
    if (b === undefined || !Number.isInteger(token)) throw new Error(`tokenizer.decode: token ${token} is outside this BPE's vocabulary [0, ${this.vocabSize})`);
    return b;
  }

  streamDecoder(): StreamDecoder {
    return new StreamDecoder(this);
  }

  decode(tokens: ArrayLike<number>): string {
    const d = new TextDecoder('utf-8', { ignoreBOM: true });
    let s = '';
    for (let i = 0; i < tokens.length; i++) s += d.decode(this.tokenBytes(tokens[i]!), { stream: true });
    return s + d.decode();
  }
}
