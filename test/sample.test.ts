// Sampling (src/train/sample.ts, GPT.generate, sampleTopK): KV cache vs full recompute, top-k as a property
// (fast-check, fixed seed), seeded reproducibility, padded-vocabulary ids, and streaming decode of characters
// split across tokens (expected ids and text from tiktoken, npm devDependency, not from our tokenizer).
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { get_encoding } from 'tiktoken';
import { GPT, sampleTopK, type GenerateOptions } from '../src/nn/gpt.js';
import { Generator, manualSeed } from '../src/tensor/random.js';
import { noGrad } from '../src/tensor/tensor.js';
import { tensor } from '../src/tensor/creation.js';
import { main, sample, type SampleOptions } from '../src/train/sample.js';
import { SEED } from './helpers/prop.js';
import { join } from 'node:path';

const TINY = { nLayer: 2, nHead: 2, nEmbd: 16, blockSize: 16, vocabSize: 64 };

function tinyModel(seed = 7, config = TINY): GPT {
  manualSeed(seed);
  return new GPT(config).eval();
}

const tiktokenIds = (text: string): number[] => {
  const enc = get_encoding('gpt2');
  try { return Array.from(enc.encode(text)); } finally { enc.free(); }
};

/** True when some token's bytes (tiktoken's) are not whole UTF-8 characters on their own. */
const splitsACharacter = (ids: number[]): boolean => {
  const enc = get_encoding('gpt2');
  try {
    return ids.some((id) => {
      try { new TextDecoder('utf-8', { fatal: true }).decode(enc.decode_single_token_bytes(id)); return false; } catch { return true; }
    });
  } finally { enc.free(); }
};

const base: SampleOptions = { prompt: "Hello, I'm a language model,", numSamples: 3, maxTokens: 8, topK: 50, temperature: 1, seed: 42, kvCache: true };

describe('GPT.generate', () => {
  it('KV cache and full recompute give the same tokens for a fixed seed, also past the block size', async () => {
    const model = tinyModel();
    const prompt = [[1, 2, 3, 4, 5], [9, 8, 7, 6, 5], [0, 0, 0, 0, 0]];
    // 5 + 20 = 25 > blockSize 16: the window slides and the cache is rebuilt
    const opts = (kvCache: boolean): GenerateOptions => ({ maxNewTokens: 20, topK: 10, generator: new Generator(123), kvCache });
    const withCache = await model.generate(prompt, opts(true));
    const without = await model.generate(prompt, opts(false));
    expect(withCache).toEqual(without);
    expect(withCache.every((r) => r.length === 25)).toBe(true);
  });

  it('the cached last-position logits equal a full forward (the cache costs one position per token)', async () => {
    const model = tinyModel(3);
    const rows = [[4, 5, 6, 7], [1, 1, 2, 3]];
    const seen: number[][] = [];
    const out = await model.generate(rows, { maxNewTokens: 6, topK: 1, generator: new Generator(1), onToken: (t) => seen.push(t) });
    // topK 1 is greedy: each new token must be the argmax of a full (uncached) forward of the row so far
    for (let step = 0; step < 6; step++) {
      const ctx = out.map((r) => r.slice(0, 4 + step));
      const logits = noGrad(() => model.forward(tensor(Int32Array.from(ctx.flat()), { shape: [2, 4 + step] })).logits).dataSync();
      const V = TINY.vocabSize, T = 4 + step;
      for (let b = 0; b < 2; b++) {
        const last = Array.from(logits.subarray((b * T + T - 1) * V, (b * T + T) * V));
        expect(out[b]![4 + step], `row ${b} step ${step}`).toBe(last.indexOf(Math.max(...last)));
      }
      expect(seen[step]).toEqual(out.map((r) => r[4 + step]));
    }
  });

  it('vocabLimit: a vocabulary padded to 50304 never yields ids the tokenizer cannot decode', async () => {
    const model = tinyModel(5, { nLayer: 1, nHead: 2, nEmbd: 8, blockSize: 16, vocabSize: 50304 });
    // make the padding rows the most likely tokens by far
    noGrad(() => {
      const w = Float32Array.from(model.transformer.wte.weight.dataSync() as Float32Array);
      for (let i = 50257 * 8; i < w.length; i++) w[i] = (i % 2 ? 30 : -30);
      model.transformer.wte.weight.storage = tensor(w, { shape: [50304, 8] }).storage;
    });
    const run = (vocabLimit?: number): Promise<number[][]> =>
      model.generate([[464, 3290]], { maxNewTokens: 8, topK: 50, generator: new Generator(9), vocabLimit });
    expect((await run()).flat().some((t) => t >= 50257)).toBe(true); // what the limit is for
    expect((await run(50257)).flat().every((t) => t < 50257)).toBe(true);
  });
});

describe('sampleTopK', () => {
  it('never picks outside the k largest logits (property, fixed seed)', () => {
    fc.assert(fc.property(
      fc.array(fc.float({ min: -20, max: 20, noNaN: true, noDefaultInfinity: true }), { minLength: 1, maxLength: 80 }),
      fc.integer({ min: 1, max: 100 }), fc.double({ min: 0.05, max: 5, noNaN: true }), fc.integer(), fc.integer({ min: 0, max: 3 }),
      (logits, k, temperature, seed, pad) => {
        // the row sits at an offset inside a longer buffer, as rows of a (B, V) batch do
        const buf = [...new Array<number>(pad).fill(1e9), ...logits, 1e9];
        const gen = new Generator(seed);
        const kth = [...logits].sort((a, b) => b - a)[Math.min(k, logits.length) - 1]!; // oracle: k-th largest value
        for (let draw = 0; draw < 5; draw++) {
          const i = sampleTopK(buf, pad, logits.length, k, temperature, gen);
          expect(Number.isInteger(i) && i >= 0 && i < logits.length).toBe(true);
          expect(logits[i]!).toBeGreaterThanOrEqual(kth);
        }
      }), { seed: SEED, numRuns: 300 });
  });

  it('k = 1 is greedy and follows softmax(logits / T) otherwise (frequencies within 4 sigma)', () => {
    const logits = [0.5, 2, -1, 1.5, 0];
    const gen = new Generator(11);
    expect(sampleTopK(logits, 0, 5, 1, 1, gen)).toBe(1);
    // temperature 0 is greedy at any k (the first of tied maxima)
    expect(sampleTopK(logits, 0, 5, 50, 0, gen)).toBe(1);
    expect(sampleTopK([3, 1, 3], 0, 3, 3, 0, gen)).toBe(0);
    const n = 20000, counts = [0, 0, 0, 0, 0];
    for (let i = 0; i < n; i++) counts[sampleTopK(logits, 0, 5, 3, 0.7, gen)]!++;
    const top = [1, 3, 0];
    const z = top.map((j) => Math.exp(logits[j]! / 0.7));
    const total = z.reduce((a, b) => a + b, 0);
    top.forEach((j, m) => {
      const p = z[m]! / total;
      expect(Math.abs(counts[j]! / n - p)).toBeLessThan(4 * Math.sqrt(p * (1 - p) / n));
    });
    expect(counts[2]! + counts[4]!).toBe(0);
  });
});

describe('sample()', () => {
  const model = tinyModel(1, { nLayer: 1, nHead: 2, nEmbd: 8, blockSize: 32, vocabSize: 50257 });

  it('same seed, same text; another seed, other text; no KV cache, same text', async () => {
    const a = await sample(model, base);
    const b = await sample(model, base);
    const c = await sample(model, { ...base, seed: 43 });
    const d = await sample(model, { ...base, kvCache: false });
    expect(b.texts).toEqual(a.texts);
    expect(c.texts).not.toEqual(a.texts);
    expect(d.tokens).toEqual(a.tokens);
    expect(a.promptTokens).toBe(tiktokenIds(base.prompt).length);
    expect(a.tokens.every((r) => r.length === a.promptTokens + base.maxTokens)).toBe(true);
    for (const t of a.texts) expect(t.startsWith(base.prompt)).toBe(true);
  });

  it('streams per row: pieces concatenate to the text, a character split across tokens arrives whole', async () => {
    // rows whose emoji are split across tokens at different steps (ids by tiktoken)
    const rowsText = [' wave 👋🏽 done', ' 🎈🎈 party', ' café 中文字符 ok'];
    const ids = rowsText.map(tiktokenIds);
    const steps = Math.max(...ids.map((r) => r.length));
    // a stand-in model that emits the scripted tokens; sample() only uses generate()
    const scripted = {
      generate: async (idx: number[][], o: GenerateOptions): Promise<number[][]> => {
        const out = idx.map((r) => [...r]);
        for (let s = 0; s < o.maxNewTokens; s++) {
          const next = ids.map((r) => r[s] ?? 13); // "." once a row's script is over
          next.forEach((t, b) => out[b]!.push(t));
          o.onToken?.(next);
        }
        return out;
      },
    } as unknown as GPT;
    expect(ids.map(splitsACharacter)).toEqual([true, true, true]); // each row really has a character split across tokens
    const pieces: string[][] = [[], [], []];
    const r = await sample(scripted, { ...base, prompt: 'Hi', maxTokens: steps, onText: (row, t) => pieces[row]!.push(t) });
    rowsText.forEach((want, b) => {
      const full = want + '.'.repeat(steps - ids[b]!.length);
      expect(r.texts[b]).toBe('Hi' + full);
      expect(pieces[b]!.join('')).toBe(full);
      expect(pieces[b]!.every((p) => !p.includes('\uFFFD'))).toBe(true);
    });
    expect(pieces[0]!.some((p) => p.includes('👋'))).toBe(true);
    expect(pieces[1]!.filter((p) => p.includes('🎈')).join('')).toContain('🎈🎈');
  });

  it('a row cut in the middle of a character ends with U+FFFD, as tiktoken decode(errors="replace")', async () => {
    const ids = tiktokenIds(' 👋');
    expect(ids.length).toBeGreaterThan(1);
    const scripted = {
      generate: async (idx: number[][], o: GenerateOptions): Promise<number[][]> => {
        o.onToken?.([ids[0]!]);
        return [[...idx[0]!, ids[0]!]];
      },
    } as unknown as GPT;
    const r = await sample(scripted, { ...base, numSamples: 1, prompt: 'x', maxTokens: 1 });
    expect(r.texts[0]).toBe('x \uFFFD');
  });
});

describe('npm run sample', () => {
  it('streams sample 0 live and prints the other rows, same text as sample() with the same seed', async () => {
    const dir = join(import.meta.dirname, 'fixtures', 'hellaswag_tiny_gpt2');
    let out = '';
    const origOut = process.stdout.write.bind(process.stdout), origErr = process.stderr.write.bind(process.stderr);
    const writes: string[] = [];
    process.stdout.write = ((s: string) => { out += s; writes.push(s); return true; }) as typeof process.stdout.write;
    process.stderr.write = (() => true) as typeof process.stderr.write;
    try {
      expect(await main(['--init-from', dir, '--num-samples', '2', '--max-tokens', '6', '--seed', '5', '--prompt', 'The cat'])).toBe(0);
    } finally {
      process.stdout.write = origOut;
      process.stderr.write = origErr;
    }
    const { loadModel } = await import('../src/train/sample.js');
    const { model } = await loadModel(dir);
    const r = await sample(model, { ...base, prompt: 'The cat', numSamples: 2, maxTokens: 6, seed: 5 });
    expect(out).toBe(`sample 0: ${r.texts[0]}\nsample 1: ${r.texts[1]}\n`);
    expect(writes.length).toBeGreaterThan(3); // row 0 arrived in pieces
  });
});
