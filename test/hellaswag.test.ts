// HellaSwag rendering and scoring against build-nanogpt's hellaswag.py: token ids from tiktoken
// (hellaswag_tokens.json) and tensors, losses and predictions from PyTorch (hellaswag_expected.json, by
// test/fixtures/make_hellaswag_fixture.py, on the tiny GPT in test/fixtures/hellaswag_tiny_gpt2).
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GPT } from '../src/nn/gpt.js';
import {
  evaluateHellaswag, main, readHellaswag, renderExample, scoreExample, HELLASWAG_VAL_URL, type HellaswagExample,
} from '../src/train/hellaswag.js';
import { loadModel } from '../src/train/sample.js';
import { loadWeights } from '../src/train/checkpoint.js';
import { worstRel } from './helpers/torch-gpt.js';

const FIX = join(import.meta.dirname, 'fixtures');
const DATA = join(FIX, 'hellaswag_examples.jsonl');
const MODEL = join(FIX, 'hellaswag_tiny_gpt2');

interface Expected {
  examples: {
    index: number; label: number; ctx_tokens: number[]; ending_tokens: number[][]; tokens: number[][]; mask: number[][];
    shift_losses: number[][]; sum_loss: number[]; avg_loss: number[]; pred: number; pred_norm: number;
  }[];
  n: number; num_correct: number; num_correct_norm: number; acc: number; acc_norm: number; printed: string[];
}
const expected = JSON.parse(readFileSync(join(FIX, 'hellaswag_expected.json'), 'utf8')) as Expected;
const tiktoken = JSON.parse(readFileSync(join(FIX, 'hellaswag_tokens.json'), 'utf8')) as { examples: { ctx_tokens: number[]; ending_tokens: number[][] }[] };
const examples: HellaswagExample[] = readFileSync(DATA, 'utf8').split('\n').filter((l) => l.trim()).map((l) => JSON.parse(l) as HellaswagExample);

let model: GPT;
let dir: string;
beforeAll(async () => {
  model = (await loadModel(MODEL)).model;
  dir = await mkdtemp(join(tmpdir(), 'hellaswag-test-'));
});
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

describe('render_example', () => {
  it('context and " " + ending tokens equal tiktoken gpt2 encode', () => {
    examples.forEach((ex, i) => {
      const r = renderExample(ex);
      expect(r.ctxTokens, `example ${i} ctx`).toEqual(tiktoken.examples[i]!.ctx_tokens);
      expect(r.endingTokens, `example ${i} endings`).toEqual(tiktoken.examples[i]!.ending_tokens);
    });
  });

  it('rows, zero padding and mask equal the torch tensors of hellaswag.py', () => {
    examples.forEach((ex, i) => {
      const r = renderExample(ex);
      expect(r.tokens, `example ${i} tokens`).toEqual(expected.examples[i]!.tokens);
      expect(r.mask, `example ${i} mask`).toEqual(expected.examples[i]!.mask);
      expect(r.label).toBe(expected.examples[i]!.label);
    });
  });
});

describe('scoring as hellaswag.py evaluate()', () => {
  it('per-token losses, sum/avg loss and both argmins match PyTorch (rel 1e-5)', async () => {
    for (const [i, ex] of examples.entries()) {
      const want = expected.examples[i]!;
      const s = await scoreExample(model, renderExample(ex));
      expect(s.cropped).toBe(0);
      expect(worstRel(s.shiftLosses.flat(), want.shift_losses.flat()), `example ${i} shift losses`).toBeLessThan(1e-5);
      expect(worstRel(s.sumLoss, want.sum_loss), `example ${i} sum_loss`).toBeLessThan(1e-5);
      expect(worstRel(s.avgLoss, want.avg_loss), `example ${i} avg_loss`).toBeLessThan(1e-5);
      expect([s.pred, s.predNorm], `example ${i} pred, pred_norm`).toEqual([want.pred, want.pred_norm]);
    }
  });

  it('evaluateHellaswag: acc from sum, acc_norm from avg, predictions per example', async () => {
    const lines: string[] = [];
    const r = await evaluateHellaswag(model, DATA, { progress: false, print: (s) => lines.push(s) });
    expect(r.n).toBe(expected.n);
    expect([r.numCorrect, r.numCorrectNorm]).toEqual([expected.num_correct, expected.num_correct_norm]);
    expect(r.acc).toBe(expected.acc);
    expect(r.accNorm).toBe(expected.acc_norm);
    // the fixture has examples where the two predictions differ, so acc and acc_norm are not mixed up
    expect(expected.examples.some((e) => e.pred !== e.pred_norm)).toBe(true);
    expect(r.predictions).toEqual(expected.examples.map((e) => ({ index: e.index, label: e.label, pred: e.pred, pred_norm: e.pred_norm })));
    expect(lines).toEqual([]);
  });

  it('works on a model whose vocabulary is padded to 50304 (the trainer\'s models)', async () => {
    const lw = await loadWeights(MODEL, { padVocabTo: 50304 });
    const m = new GPT(lw.config);
    const sd = new Map(lw.weights);
    m.loadStateDict(sd);
    const s = await scoreExample(m, renderExample(examples[0]!));
    // the zero padding rows add 47 logits of 0 to each softmax, so losses move a little but stay finite
    expect(s.sumLoss.every(Number.isFinite)).toBe(true);
  });

  it('rows longer than the block size lose leading context tokens, all rows alike', async () => {
    const lw = await loadWeights(MODEL);
    const small = new GPT({ ...lw.config, blockSize: 24 });
    const sd = new Map(lw.weights);
    const wpe = sd.get('transformer.wpe.weight')!;
    sd.set('transformer.wpe.weight', { shape: [24, wpe.shape[1]!], data: wpe.data.slice(0, 24 * wpe.shape[1]!) });
    small.loadStateDict(sd);
    const r = renderExample(examples[1]!);
    const L = r.tokens[0]!.length;
    expect(L).toBeGreaterThan(24);
    const s = await scoreExample(small, r);
    expect(s.cropped).toBe(L - 24);
    // same as scoring the cropped rows directly (context shortened from the left)
    const cropped = { ...r, ctxTokens: r.ctxTokens.slice(L - 24), tokens: r.tokens.map((x) => x.slice(L - 24)), mask: r.mask.map((x) => x.slice(L - 24)) };
    const direct = await scoreExample(small, cropped);
    expect(direct.cropped).toBe(0);
    expect(s.sumLoss).toEqual(direct.sumLoss);
    // an ending that cannot fit at all is refused with the sizes
    const tiny = new GPT({ ...lw.config, blockSize: 4 });
    await expect(scoreExample(tiny, r)).rejects.toThrow(/does not fit in the model's block size 4/);
  });
});

describe('data file', () => {
  it('a missing file names the download URL hellaswag.py uses', async () => {
    await expect(readHellaswag(join(dir, 'nope.jsonl'))).rejects.toThrow(HELLASWAG_VAL_URL);
  });

  it('bad lines are refused with file:line', async () => {
    const p = join(dir, 'bad.jsonl');
    await writeFile(p, JSON.stringify({ ctx: 'a', endings: ['x', 'y', 'z', 'w'], label: 1 }) + '\n' + JSON.stringify({ ctx: 'a', endings: ['x'], label: 0 }) + '\n');
    await expect(readHellaswag(p)).rejects.toThrow(`${p}:2: "endings" must be 4 strings`);
    await writeFile(p, JSON.stringify({ ctx: 'a', endings: ['x', 'y', 'z', 'w'], label: 4 }) + '\n');
    await expect(readHellaswag(p)).rejects.toThrow(`${p}:1: "label" must be 0, 1, 2 or 3`);
    // an empty context once scored NaN and counted as correct
    await writeFile(p, JSON.stringify({ ctx: ' ', endings: ['', '', '', ''], label: 0 }) + '\n');
    await expect(readHellaswag(p)).rejects.toThrow(`${p}:1: "ctx" is empty`);
  });
});

describe('npm run eval:hellaswag', () => {
  it('--limit, --show, hellaswag.py\'s printed line, and --output written atomically', async () => {
    const out = join(dir, 'res', 'hella.json');
    await mkdir(join(dir, 'res'));
    const logs: string[] = [];
    const orig = console.log;
    const origErr = process.stderr.write.bind(process.stderr);
    console.log = (s: string) => { logs.push(s); };
    process.stderr.write = (() => true) as typeof process.stderr.write; // the progress bar
    try {
      expect(await main(['--init-from', MODEL, '--data', DATA, '--limit', '5', '--show', '1', '--output', out])).toBe(0);
    } finally {
      console.log = orig;
      process.stderr.write = origErr;
    }
    const first5 = expected.examples.slice(0, 5);
    const j = JSON.parse(await readFile(out, 'utf8')) as Record<string, unknown>;
    expect(j.n).toBe(5);
    expect(j.num_correct).toBe(first5.filter((e) => e.pred === e.label).length);
    expect(j.num_correct_norm).toBe(first5.filter((e) => e.pred_norm === e.label).length);
    expect(j.acc_norm).toBe((j.num_correct_norm as number) / 5);
    expect(j.predictions).toEqual(first5.map((e) => ({ index: e.index, label: e.label, pred: e.pred, pred_norm: e.pred_norm })));
    expect(await readdir(join(dir, 'res'))).toEqual(['hella.json']); // no temp file left behind
    // the line hellaswag.py prints after its 5th example, byte for byte
    expect(logs).toContain(expected.printed[4]);
    // --show 1: hellaswag.py's debug block for the first example
    const i = logs.indexOf('---');
    expect(logs.slice(i, i + 8)).toEqual([
      '---', `Context:\n ${examples[0]!.ctx}`, 'Endings:',
      ...examples[0]!.endings.map((end, k) => `${k} (loss: ${expected.examples[0]!.avg_loss[k]!.toFixed(4)}) ${end}`),
      `predicted: ${expected.examples[0]!.pred_norm}, actual: ${examples[0]!.label}`,
    ]);
  });

  it('a missing data file fails before loading the model, with the URL', async () => {
    await expect(main(['--init-from', join(dir, 'no-model'), '--data', join(dir, 'missing.jsonl')])).rejects.toThrow(HELLASWAG_VAL_URL);
  });
});
