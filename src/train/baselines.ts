// What "learned" means: the unigram and the bigram count models of the training tokens, scored on
// the tokens validation reads. A model below the bigram knows more than which token follows which.
// Bits per byte (nats per token / ln 2 / bytes per token) compare across tokenizers.
import type { Tokenizer } from '../data/tokenizer-spec.js';
import { listShards } from '../data/loader.js';
import { readTokens } from '../data/npy.js';

export interface Baselines {
  /** Nats per validation token. */
  unigram: number;
  bigram: number;
  /** UTF-8 bytes per validation token (<|endoftext|> counts as one: the boundary, like a newline). */
  bytesPerToken: number;
  /** Training tokens counted, and validation tokens scored. */
  trainTokens: number;
  valTokens: number;
}

/** Nats per token to bits per byte. */
export function bitsPerByte(natsPerToken: number, bytesPerToken: number): number {
  return natsPerToken / Math.LN2 / bytesPerToken;
}

/**
 * Counts unigrams and bigrams of `train` and scores each `val` token given the one before it.
 * Unigram: add-one (Laplace) over the tokenizer's vocabulary. Bigram: Witten-Bell, which backs
 * off to the unigram in proportion to how many different tokens followed the previous one
 * (p(b|a) = (c(a,b) + d(a) p(b)) / (c(a) + d(a)), d(a) distinct followers of a): no constant
 * to tune, and an unseen pair still gets a probability.
 */
export function countBaselines(train: ArrayLike<number>, val: ArrayLike<number>, tok: Pick<Tokenizer, 'vocabSize' | 'eot' | 'tokenBytes'>): Baselines {
  const V = tok.vocabSize;
  const uni = new Float64Array(V);
  const pair = new Map<number, number>();
  const after = new Float64Array(V); // c(a): tokens that follow a
  const distinct = new Float64Array(V); // d(a)
  for (let i = 0; i < train.length; i++) {
    const b = train[i]!;
    uni[b]!++;
    if (i === 0) continue;
    const a = train[i - 1]!, k = a * V + b;
    const c = pair.get(k) ?? 0;
    if (c === 0) distinct[a]!++;
    pair.set(k, c + 1);
    after[a]!++;
  }
  const N = train.length;
  const pUni = (t: number): number => (uni[t]! + 1) / (N + V);
  let nllUni = 0, nllBi = 0, bytes = 0;
  for (let i = 1; i < val.length; i++) {
    const a = val[i - 1]!, b = val[i]!;
    const pu = pUni(b);
    nllUni -= Math.log(pu);
    const d = distinct[a]!;
    nllBi -= Math.log(d === 0 ? pu : ((pair.get(a * V + b) ?? 0) + d * pu) / (after[a]! + d));
    bytes += b === tok.eot ? 1 : tok.tokenBytes(b).length;
  }
  const n = Math.max(1, val.length - 1);
  return { unigram: nllUni / n, bigram: nllBi / n, bytesPerToken: bytes / n, trainTokens: N, valTokens: val.length - 1 };
}

/**
 * The count baselines of the data: bigrams of up to 20M training tokens (enough to be a fair
 * bigram; a FineWeb shard has 100M), scored on the validation's first `valTokens` tokens.
 */
export function measureBaselines(dataDir: string, tok: Tokenizer, valTokens: number): Baselines {
  const take = (split: 'train' | 'val', n: number): Uint16Array | Int32Array => {
    const parts: (Uint16Array | Int32Array)[] = [];
    let got = 0;
    for (const shard of listShards(dataDir, split)) {
      const t = readTokens(shard);
      parts.push(t.subarray(0, n - got));
      got += parts.at(-1)!.length;
      if (got >= n) break;
    }
    if (parts.length === 1) return parts[0]!;
    const out = new Int32Array(got);
    let p = 0;
    for (const part of parts) { out.set(part, p); p += part.length; }
    return out;
  };
  return countBaselines(take('train', 20_000_000), take('val', valTokens), tok);
}
