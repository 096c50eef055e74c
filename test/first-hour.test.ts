// What a newcomer's first `npm run train` shows, end to end: the default configuration (its
// schedule shortened to fit the suite) on the embedded corpus learns a BPE, prints the count
// baselines, and ends below the bigram in bits per byte; the tokenizer travels with the
// checkpoint, so `npm run sample`, `npm run export` and the library decode with it.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const dist = (f: string): string => join(root, 'dist', 'train', f);
const work = mkdtempSync(join(tmpdir(), 'tapegrad-first-hour-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** A CLI of dist/train, run in `cwd` (asynchronously: a long synchronous wait would stall vitest's worker). */
function run(script: string, args: string[], timeoutMs: number): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [dist(script), ...args], { cwd: work });
    let stdout = '', stderr = '';
    c.stdout.on('data', (d: Buffer) => { stdout += d; });
    c.stderr.on('data', (d: Buffer) => { stderr += d; });
    const timer = setTimeout(() => { c.kill('SIGKILL'); reject(new Error(`${script} ${args.join(' ')}: no exit within ${timeoutMs / 1000} s\n${stdout.slice(-2000)}`)); }, timeoutMs);
    c.on('close', (code) => { clearTimeout(timer); resolve({ code, stdout, stderr }); });
  });
}

/**
 * The default run, shortened to 3,000 of its 5,000 steps (the cosine then ends at step 3,000):
 * only --max-steps and the intervals differ from `npm run train`.
 */
const STEPS = 3000;
let out = '';
let text = '';
beforeAll(async () => {
  // cwd: a fresh folder, so the embedded corpus is tokenized (and its BPE learned) as on a fresh clone
  const r = await run('cli.js', ['--max-steps', String(STEPS), '--eval-interval', '1000', '--sample-interval', String(STEPS)], 900_000);
  text = `${r.stdout}${r.stderr}`;
  expect(r.code, text.slice(-3000)).toBe(0);
  out = join(work, 'out');
}, 960_000);

const number = (re: RegExp): number => {
  const m = re.exec(text);
  if (!m) throw new Error(`no match for ${re} in the run's output:\n${text.slice(0, 2000)}`);
  return Number(m[1]);
};

describe('the first npm run train', () => {
  it('learns a BPE from the corpus, prints the count baselines, and ends clearly below the bigram', () => {
    expect(existsSync(join(work, 'data', 'embedded-bpe', 'tokenizer.json'))).toBe(true);
    expect(text).toMatch(/tokenizer: a 1024-token BPE learned from its corpus, [\d.]+ bytes per token/);
    const unigram = number(/unigram ([\d.]+) bpb/), bigram = number(/bigram ([\d.]+) bpb/);
    expect(unigram).toBeGreaterThan(bigram);
    const vals = [...text.matchAll(/validation loss: [\d.]+ \| ([\d.]+) bpb/g)].map((m) => Number(m[1]));
    expect(vals.length).toBeGreaterThanOrEqual(3);
    // below the bigram by a margin (this shortened run ends ~0.09 bits per byte below it; the full
    // default run ~0.3, see the README)
    expect(vals.at(-1)!, text.slice(-2000)).toBeLessThan(bigram - 0.05);
    // no spike after warm-up: the clipped norm stays small and the loss never jumps back toward the start
    const steps = readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss?: number; norm?: number; val_bpb?: number })
      .filter((r) => r.loss !== undefined);
    expect(steps).toHaveLength(STEPS);
    const after = steps.filter((r) => r.step >= 100);
    expect(Math.max(...after.map((r) => r.norm!))).toBeLessThan(5);
    expect(Math.max(...after.map((r) => r.loss!))).toBeLessThan(steps[0]!.loss! - 1);
    // samples: text of the corpus's kind, one document per line, no <|endoftext|> markers
    const samples = [...text.matchAll(/^sample \d: (.*)$/gm)].map((m) => m[1]!);
    expect(samples).toHaveLength(4);
    for (const s of samples) expect(s).toMatch(/^Hello, I'm a language model,/);
    expect(text).not.toContain('<|endoftext|>');
  });

  it('carries the tokenizer: the checkpoint records it, sample and export use it, the library reads it back', async () => {
    const sidecar = JSON.parse(readFileSync(join(out, `model_${String(STEPS - 1).padStart(5, '0')}.json`), 'utf8')) as { tokenizer: { type: string; merges: unknown[] }; val_loss: number };
    expect(sidecar.tokenizer.type).toBe('bpe');
    expect(sidecar.tokenizer.merges).toHaveLength(1024 - 257);
    const s = await run('sample.js', ['--init-from', out, '--prompt', 'The city', '--temperature', '0', '--max-tokens', '12', '--num-samples', '1'], 120_000);
    expect(s.code, s.stderr).toBe(0);
    expect(s.stderr).toMatch(/a 1024-token BPE learned from its corpus/);
    expect(s.stdout).toMatch(/^sample 0: The city\S*( \S+){2,}/);
    const e = await run('export.js', ['--init-from', out, '--out-dir', join(work, 'hf')], 120_000);
    expect(e.code, e.stderr).toBe(0);
    expect(e.stdout).toMatch(/not GPT-2's/);
    const tg = await import('tapegrad');
    for (const from of [out, join(work, 'hf')]) {
      const tok = await tg.loadTokenizer(from);
      expect(tok.vocabSize).toBe(1024);
      const model = await tg.GPT.fromPretrained(from);
      const [row] = await model.generate([tok.encode('The city')], { maxNewTokens: 12, temperature: 0, vocabLimit: tok.vocabSize });
      // greedy from the same weights: the CLI's greedy sample, token for token
      expect(`sample 0: ${tok.decode(row!)}`).toBe(s.stdout.trim());
    }
  });

  it('refuses weights and data of different tokenizers, and a vocabulary smaller than the tokenizer, naming both', async () => {
    const bpeData = join(work, 'data', 'embedded-bpe');
    let r = await run('cli.js', ['--data-dir', bpeData, '--tokenizer', 'gpt2', '--out-dir', join(work, 'x1'), '--max-steps', '1'], 120_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--tokenizer gpt2: the shards in .*embedded-bpe were made with a 1024-token BPE learned from its corpus; the data decides the tokenizer/);
    r = await run('cli.js', ['--init-from', out, '--tokenizer', 'gpt2', '--out-dir', join(work, 'x2'), '--max-steps', '1'], 300_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--init-from .*out was trained with a 1024-token BPE learned from its corpus, but the data in data\/embedded uses GPT-2's tokenizer \(50,257 tokens\)/);
    // OpenAI-style weights (GPT-2's tokenizer, recorded nowhere) and no data named: the embedded corpus in GPT-2 tokens
    // (this tiny fixture's 11-row vocabulary then cannot embed them, which names the data it picked)
    r = await run('cli.js', ['--init-from', join(root, 'test', 'fixtures', 'hf_tiny_gpt2'), '--seq-len', '8', '--batch-size', '2', '--out-dir', join(work, 'x4'), '--max-steps', '1'], 120_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/data\/embedded\/embedded_(train|val)_\d+\.npy holds token \d+ at index \d+, outside the (model's )?vocabulary \[0, 11\)/);
    r = await run('cli.js', ['--vocab-size', '512', '--out-dir', join(work, 'x3'), '--max-steps', '1'], 120_000);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/--vocab-size 512 is below the data's tokenizer \(a 1024-token BPE learned from its corpus\); give at least 1024/);
  });
});
