// The learned BPE and the count baselines. Oracles: merges and probabilities worked out by hand
// on tiny inputs, and BPE's textbook definitions written out naively here (recount every pair
// each round; encode by applying each merge, in learned order, everywhere), which the fast
// incremental versions in src must agree with.
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { BpeTokenizer, trainBpe } from '../src/data/bpe.js';
import { GPT2_SPLIT_PATTERN } from '../src/data/tokenizer.js';
import { tokenizerFromSpec } from '../src/data/tokenizer-spec.js';
import { bitsPerByte, countBaselines } from '../src/train/baselines.js';

const utf8 = new TextEncoder();
const pieces = (t: string): string[] => t.match(new RegExp(GPT2_SPLIT_PATTERN, 'gu')) ?? [];

/** BPE training as defined: count every adjacent pair of every piece, merge the top one everywhere, repeat. */
function naiveTrain(texts: string[], vocabSize: number): [number, number][] {
  let words = texts.flatMap(pieces).map((p) => Array.from(utf8.encode(p)));
  const merges: [number, number][] = [];
  for (let id = 256; id < vocabSize - 1; id++) {
    const counts = new Map<string, number>();
    for (const w of words) for (let i = 0; i + 1 < w.length; i++) counts.set(`${w[i]},${w[i + 1]}`, (counts.get(`${w[i]},${w[i + 1]}`) ?? 0) + 1);
    let best: [number, number] | null = null, bestCount = 0;
    for (const [k, c] of counts) {
      const [a, b] = k.split(',').map(Number) as [number, number];
      if (c > bestCount || (c === bestCount && best && (a < best[0] || (a === best[0] && b < best[1])))) { best = [a, b]; bestCount = c; }
    }
    if (!best || bestCount < 2) break;
    merges.push(best);
    words = words.map((w) => applyMerge(w, best!, id));
  }
  return merges;
}

function applyMerge(w: number[], [a, b]: [number, number], id: number): number[] {
  const out: number[] = [];
  for (let i = 0; i < w.length; i++) {
    if (i + 1 < w.length && w[i] === a && w[i + 1] === b) { out.push(id); i++; } else out.push(w[i]!);
  }
  return out;
}

/** Encoding as defined: every merge, in the order learned, applied to each piece. */
function naiveEncode(text: string, merges: [number, number][]): number[] {
  return pieces(text).flatMap((p) => merges.reduce((w, m, i) => applyMerge(w, m, 256 + i), Array.from(utf8.encode(p))));
}

describe('learned BPE', () => {
  test('merges of a tiny text, worked out by hand', () => {
    // pieces "aaab" and " aaab": (a,a) occurs 4 times -> 256; then "ab" and "<256>a" tie at 2 and
    // the smaller pair (97,98) wins -> 257; then (256,257) occurs twice -> 258; nothing else repeats
    const spec = trainBpe(['aaab aaab'], 300);
    expect(spec.merges).toEqual([[97, 97], [97, 98], [256, 257]]);
    const tok = new BpeTokenizer(spec);
    expect(tok.vocabSize).toBe(260);
    expect(tok.eot).toBe(259);
    expect(tok.encode('aaab aaab')).toEqual([258, 32, 258]);
    expect(tok.decode([258, 32, 258])).toBe('aaab aaab');
    expect(Array.from(tok.encodeDocument('ab'))).toEqual([259, 257]);
    expect(tok.decode([257, 259, 257])).toBe('ab\nab'); // the document boundary reads as a line break
  });

  test('training and encoding agree with the naive definitions (random texts, fixed seed)', () => {
    const text = fc.string({ unit: fc.constantFrom('a', 'b', 'c', ' ', 'ab', 'é', '🙂', '.', '\n', '1'), maxLength: 60 });
    fc.assert(fc.property(fc.array(text, { minLength: 1, maxLength: 8 }), fc.integer({ min: 257, max: 300 }), (texts, V) => {
      const spec = trainBpe(texts, V);
      expect(spec.merges).toEqual(naiveTrain(texts, V));
      expect(spec.merges.length).toBeLessThanOrEqual(V - 257);
      const tok = new BpeTokenizer(spec);
      for (const t of texts) {
        expect(tok.encode(t)).toEqual(naiveEncode(t, spec.merges));
        expect(tok.decode(tok.encode(t))).toBe(t);
      }
    }), { seed: 42, numRuns: 150 });
  });

  test('any text round-trips, including text unlike what the merges were learned from', () => {
    const tok = new BpeTokenizer(trainBpe(['the cat sat on the mat. the end.'], 280));
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 80 }), (t) => {
      expect(tok.decode(tok.encode(t))).toBe(t);
    }), { seed: 7, numRuns: 200 });
  });

  test('bad specs and sizes are named', () => {
    expect(() => trainBpe(['x'], 100)).toThrow(/vocabSize must be an integer in \[257, 65536\]/);
    expect(() => new BpeTokenizer({ type: 'bpe', merges: [[300, 1]] })).toThrow(/merge 0 is \[300,1\]; each merge joins two earlier ids \(below 256\)/);
    expect(() => tokenizerFromSpec({ type: 'sentencepiece' } as never)).toThrow(/unknown spec/);
    expect(() => new BpeTokenizer(trainBpe(['ab ab'], 260)).decode([9999])).toThrow(/token 9999 is outside this BPE's vocabulary \[0, 258\)/);
  });
});

describe('count baselines', () => {
  test('unigram (add-one) and bigram (Witten-Bell) on a tiny stream, by hand', () => {
    // train 0 1 0 1 2: counts 0:2 1:2 2:1 (N 5, V 3) -> p(0)=p(1)=3/8, p(2)=2/8
    // pairs (0,1):2 (1,0):1 (1,2):1; followers c(0)=2 d(0)=1, c(1)=2 d(1)=2
    // val 0 1 2: p(1|0) = (2 + 1*3/8)/(2+1) = 19/24; p(2|1) = (1 + 2*2/8)/(2+2) = 3/8
    const tok = { vocabSize: 3, eot: 2, tokenBytes: (t: number) => new Uint8Array(t === 0 ? 1 : 3) };
    const b = countBaselines([0, 1, 0, 1, 2], [0, 1, 2], tok);
    expect(b.unigram).toBeCloseTo(-(Math.log(3 / 8) + Math.log(2 / 8)) / 2, 12);
    expect(b.bigram).toBeCloseTo(-(Math.log(19 / 24) + Math.log(3 / 8)) / 2, 12);
    expect(b.bytesPerToken).toBe((3 + 1) / 2); // token 1 is 3 bytes; <|endoftext|> counts 1
    expect([b.trainTokens, b.valTokens]).toEqual([5, 2]);
    expect(bitsPerByte(Math.LN2 * 6, 3)).toBeCloseTo(2, 12);
  });

  test('a token never seen before a pair backs off to the unigram', () => {
    const tok = { vocabSize: 4, eot: 3, tokenBytes: () => new Uint8Array(1) };
    const b = countBaselines([0, 0, 1], [2, 1], tok); // nothing ever followed 2
    expect(b.bigram).toBeCloseTo(-Math.log((1 + 1) / (3 + 4)), 12);
  });
});
