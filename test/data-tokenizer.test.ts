// GPT-2 tokenizer against tiktoken: token ids from test/fixtures/tok_gpt2_golden.json, made by
// make_tokenizer_fixture.mjs with OpenAI's tiktoken (WASM), never by the code under test.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, test } from 'vitest';
import { encode as stockEncode } from 'gpt-tokenizer/encoding/r50k_base';
import { BytePairEncodingCore } from 'gpt-tokenizer/BytePairEncodingCore';
import r50kRanks from 'gpt-tokenizer/bpeRanks/r50k_base';
import { EOT, bpeMergeLong, gpt2Tokenizer } from '../src/data/tokenizer.js';
import { tokenizeDocuments } from '../src/data/tokenize-pool.js';

interface Golden {
  cases: { text: string; tokens: number[] }[];
  tokenBytes: Record<string, string>;
}
const golden = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'tok_gpt2_golden.json'), 'utf8')) as Golden;
const tok = gpt2Tokenizer();

interface LongRun { parts: [string, number][]; count: number; head: number[]; tail: number[]; sha256: string }
const longRuns = (JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'tok_gpt2_long_runs.json'), 'utf8')) as { cases: LongRun[] }).cases;

describe('gpt2 tokenizer', () => {
  test('documents with very long runs of one character equal tiktoken (130k spaces once overflowed the call stack)', () => {
    expect(longRuns.length).toBeGreaterThanOrEqual(10);
    for (const c of longRuns) {
      const text = c.parts.map(([p, n]) => p.repeat(n)).join('');
      const what = c.parts.map(([p, n]) => `${JSON.stringify(p)} x ${n}`).join(' + ');
      const ids = Uint16Array.from(tok.encodeOrdinary(text));
      expect(ids.length, what).toBe(c.count);
      expect(Array.from(ids.slice(0, 16)), what).toEqual(c.head);
      expect(Array.from(ids.slice(-16)), what).toEqual(c.tail);
      expect(createHash('sha256').update(Buffer.from(ids.buffer)).digest('hex'), what).toBe(c.sha256);
      expect(tok.encodeDocument(text).length, what).toBe(c.count + 1);
    }
  });

  test('the O(n log n) merge of long pieces equals gpt-tokenizer\'s byte-pair merge (fast-check)', () => {
    const core = new BytePairEncodingCore({ bytePairRankDecoder: r50kRanks, specialTokensEncoder: new Map(), tokenSplitRegex: /x/gu }) as unknown as
      { bytePairEncode(s: string): number[] };
    const enc = new TextEncoder();
    const bin = (b: Uint8Array): string => Array.from(b, (x) => String.fromCharCode(x)).join('');
    const rankOf = new Map(r50kRanks.map((r, i) => [bin(typeof r === 'string' ? enc.encode(r) : Uint8Array.from(r)), i] as const));
    fc.assert(fc.property(fc.array(fc.constantFrom('a', 'b', 'ab', ' ', 'e', 'th', 'in', '1', '0', '.', 'é', '🙂', 'ing'), { minLength: 300, maxLength: 900 }),
      (parts) => {
        const piece = parts.join('');
        expect(bpeMergeLong(bin(enc.encode(piece)), rankOf)).toEqual(core.bytePairEncode(piece));
      }), { seed: 20261201, numRuns: 30 });
  });

  test('encode_ordinary equals tiktoken on every fixture text (tricky, random and corpus)', () => {
    expect(golden.cases.length).toBeGreaterThan(500);
    const wrong = golden.cases.filter((c) => JSON.stringify(tok.encodeOrdinary(c.text)) !== JSON.stringify(c.tokens));
    expect(wrong.map((c) => c.text)).toEqual([]);
  });

  test('the fixture catches the JavaScript \\s pitfall: stock gpt-tokenizer gets U+0085/U+FEFF cases wrong', () => {
    // gpt-tokenizer's own r50k regex uses \s, which matches U+FEFF and misses U+0085.
    const stockWrong = golden.cases.filter(
      (c) => JSON.stringify(stockEncode(c.text, { disallowedSpecial: new Set() })) !== JSON.stringify(c.tokens),
    );
    expect(stockWrong.length).toBeGreaterThanOrEqual(3);
    expect(stockWrong.every((c) => /[\u0085\ufeff]/.test(c.text))).toBe(true);
    const mine = golden.cases.find((c) => c.text.startsWith('space then NEL'))!;
    expect(stockWrong).toContain(mine);
    expect(tok.encodeOrdinary(mine.text)).toEqual(mine.tokens);
  });

  test('"<|endoftext|>" inside a document is ordinary text; encodeDocument puts 50256 first', () => {
    const c = golden.cases.find((x) => x.text === 'literal <|endoftext|> inside a document')!;
    expect(c.tokens).not.toContain(EOT);
    expect(Array.from(tok.encodeDocument(c.text))).toEqual([50256, ...c.tokens]);
    const start = golden.cases.find((x) => x.text === '<|endoftext|> at the start')!;
    expect(tok.encodeOrdinary(start.text)).toEqual(start.tokens);
    expect(Array.from(tok.encodeDocument(''))).toEqual([50256]);
  });

  test('token bytes and decode equal tiktoken', () => {
    for (const [t, hex] of Object.entries(golden.tokenBytes)) {
      expect(Buffer.from(tok.tokenBytes(Number(t))).toString('hex'), `token ${t}`).toBe(hex);
    }
    for (const c of golden.cases) expect(tok.decode(c.tokens)).toBe(c.text);
    expect(() => tok.decode([50257])).toThrow(/token 50257 is outside the GPT-2 vocabulary/);
  });

  test('stream decoder: text split into single tokens comes out whole, emoji split across tokens included', () => {
    for (const c of golden.cases) {
      const d = tok.streamDecoder();
      let out = '';
      for (const t of c.tokens) out += d.push(t);
      out += d.flush();
      expect(out).toBe(c.text);
    }
    // 12859 is the first two bytes of a 3-byte character: nothing may come out until it completes.
    const d = tok.streamDecoder();
    const emoji = golden.cases.find((c) => c.text === 'end with emoji 🤖')!.tokens;
    const parts = emoji.map((t) => d.push(t));
    expect(parts.join('')).toBe('end with emoji 🤖');
    expect(parts.some((p) => p === '')).toBe(true); // at least one token held back a partial character
    // An unfinished character at the end becomes U+FFFD, like tiktoken decode(errors="replace").
    const e = tok.streamDecoder();
    expect(e.push(12859)).toBe('');
    expect(e.flush()).toBe('\ufffd');
    // Independent decoders do not share state.
    const a = tok.streamDecoder();
    const b = tok.streamDecoder();
    a.push(12859);
    expect(b.push(220)).toBe(' ');
  });

  test('worker threads (1 and 2) and this thread give identical documents, in order', async () => {
    const docs = golden.cases.map((c) => c.text);
    const expected = docs.map((d) => [EOT, ...golden.cases.find((c) => c.text === d)!.tokens]);
    for (const workers of [0, 1, 2]) {
      const got: number[][] = [];
      for await (const b of tokenizeDocuments(docs, { workers, batchDocs: 7 })) {
        let off = 0;
        for (const len of b.docLens) {
          got.push(Array.from(b.tokens.subarray(off, off + len)));
          off += len;
        }
        expect(off).toBe(b.tokens.length);
      }
      expect(got, `workers=${workers}`).toEqual(expected);
    }
    // long runs in the workers too: the worker runs the same encoder (prepare-data once died here)
    const long = longRuns.slice(0, 4).map((c) => c.parts.map(([p, n]) => p.repeat(n)).join(''));
    for await (const b of tokenizeDocuments(long, { workers: 2, batchDocs: 1 })) {
      const c = longRuns[long.findIndex((_, i) => b.docLens[0] === longRuns[i]!.count + 1)]!;
      expect(c, 'a long-run document came back with its tiktoken length').toBeDefined();
      expect(createHash('sha256').update(Buffer.from(b.tokens.slice(1).buffer)).digest('hex')).toBe(c.sha256);
    }
  });

  test('decode(encode(s)) === s for arbitrary unicode strings (fast-check, seed 7)', () => {
    fc.assert(
      fc.property(fc.string({ unit: 'grapheme', maxLength: 40 }), (s) => {
        expect(tok.decode(tok.encodeOrdinary(s))).toBe(s);
      }),
      { seed: 7, numRuns: 300 },
    );
  });
});
