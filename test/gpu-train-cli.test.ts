// `npm run train -- --backend gpu` end to end on a real WebGPU adapter (a GPU, or SwiftShader:
// test/setup.ts points the CLI child at it through the environment): the same losses as
// `--backend wasm` from the same seed, a checkpoint written, samples printed.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { realWebGpu } from './helpers/webgpu.js';
import { writeTinyShards } from './helpers/tiny-data.js';

const root = join(import.meta.dirname, '..');
const cli = join(root, 'dist/train/cli.js');
const gpu = await realWebGpu();

let work = '', data = '';
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'tapegrad-gpu-train-'));
  data = join(work, 'data');
  mkdirSync(data);
  // a vocabulary of 16384 GPT-2 ids holds the sampler's prompt ("Hello, I'm a language model,":
  // ids up to 15496) at a third of GPT-2's lm_head cost (SwiftShader computes slowly)
  writeTinyShards(data, { seed: 3, noise: 0.2, stride: 7919, vocab: VOCAB, val: 400, train: [800] });
  mkdirSync(join(work, 'small'));
  writeTinyShards(join(work, 'small'), { seed: 5, noise: 0.2, stride: 7, vocab: 64, val: 400, train: [4000] });
});

const VOCAB = 16384;
const args = ['--n-layer', '2', '--n-head', '2', '--n-embd', '16', '--block-size', '16', '--vocab-size', String(VOCAB),
  '--batch-size', '1', '--seq-len', '16', '--total-batch-size', '32', '--max-steps', '4', '--warmup-steps', '2',
  '--eval-interval', '2', '--val-steps', '2', '--sample-interval', '3', '--checkpoint-interval', '2'];

type LogLine = { step: number; loss?: number; val_loss?: number; norm?: number; device_bytes?: number };
// the resident memory when training is done: the process's peak (~600 MB on SwiftShader, ~380 MB
// after training, the same for 1 and 8 micro-steps) comes from more than the steps, and it once
// jumped by a third in CI
const REPORT_RSS = 'process.on("exit", () => process.stderr.write(`rss at exit: ${process.memoryUsage.rss()}\\n`));';
const exitRss = (text: string): number => Number(/rss at exit: (\d+)/.exec(text)?.[1]);
/** Run the CLI as a child (asynchronously: the test worker must keep answering vitest). */
async function train(backend: string, out: string, flags = args, dataDir = data): Promise<{ code: number; text: string; log: LogLine[] }> {
  // the child reports its resident memory as it exits
  const child = spawn(process.execPath, ['--import', `data:text/javascript,${encodeURIComponent(REPORT_RSS)}`, cli, ...flags, '--backend', backend,
    '--data-dir', dataDir, '--out-dir', out], { cwd: root });
  let text = '';
  child.stdout.on('data', (d: Buffer) => { text += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { text += d.toString(); });
  const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
  const code = await new Promise<number>((resolve) => child.on('close', (c) => resolve(c ?? -1)));
  clearTimeout(timer);
  const log = existsSync(join(out, 'log.jsonl')) ? readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as LogLine) : [];
  return { code, text, log };
}

describe.skipIf(!gpu)('npm run train -- --backend gpu (real WebGPU adapter)', { timeout: 300_000 }, () => {
  it('matches --backend wasm step for step (loss, norm, val loss to 1e-4), writes checkpoints and prints samples', async () => {
    const w = await train('wasm', join(work, 'wasm'));
    expect(w.code, w.text).toBe(0);
    const gOut = join(work, 'gpu');
    const g = await train('gpu', gOut);
    expect(g.code, g.text).toBe(0);
    expect(g.text).toMatch(/backend: gpu/);
    expect(g.text).toMatch(/sample 0: Hello, I'm a language model,/);
    for (const f of ['model_00002.json', 'model_00002.safetensors', 'optim_00002.safetensors', 'model_00003.json']) {
      expect(existsSync(join(gOut, f)), f).toBe(true);
    }
    expect(g.log.map((e) => e.step)).toEqual(w.log.map((e) => e.step));
    for (let i = 0; i < w.log.length; i++) {
      for (const k of ['loss', 'norm', 'val_loss'] as const) {
        const a = w.log[i]![k], b = g.log[i]![k];
        if (a === undefined) { expect(b).toBeUndefined(); continue; }
        expect(Math.abs(b! - a) / Math.abs(a), `${k} at step ${w.log[i]!.step}: gpu ${b}, wasm ${a}`).toBeLessThan(1e-4);
      }
    }
  });

  it('8 micro-steps take the device memory and resident memory of 1, and match --backend wasm step for step', async () => {
    const small = ['--n-layer', '2', '--n-head', '2', '--n-embd', '32', '--block-size', '32', '--vocab-size', '64', '--batch-size', '4',
      '--seq-len', '32', '--max-steps', '3', '--warmup-steps', '1', '--eval-interval', '0', '--val-steps', '1', '--sample-interval', '0',
      '--checkpoint-interval', '0'];
    const dir = join(work, 'small');
    const run = (backend: string, micro: number): ReturnType<typeof train> =>
      train(backend, join(work, `${backend}-${micro}`), [...small, '--total-batch-size', String(4 * 32 * micro)], dir);
    const [one, eight] = [await run('gpu', 1), await run('gpu', 8)];
    for (const r of [one, eight]) expect(r.code, r.text).toBe(0);
    const device = (r: { log: LogLine[] }): number => Math.max(...r.log.map((e) => e.device_bytes ?? 0));
    // the buffer pool's high-water mark: the same but for one gradient per parameter in flight while
    // backward() sums it into .grad, each in a buffer rounded up to 256 bytes (116,736 bytes on
    // SwiftShader); a micro-step's activations surviving into the next would add all of them
    // again, seven times: megabytes. Nothing is left to the garbage collector (the marks once
    // moved with its timing), so the bound is tight.
    const params = 4 * (64 * 32 + 32 * 32 + 2 * (12 * 32 * 32 + 13 * 32) + 2 * 32), tensors = 2 + 2 * 12 + 2;
    expect(device(one)).toBeGreaterThan(params);
    expect(device(eight) - device(one), `device memory ${device(eight)} vs ${device(one)}`).toBeLessThanOrEqual(params + 256 * tensors);
    expect(Math.abs(exitRss(eight.text) - exitRss(one.text)) / exitRss(one.text), `RSS at exit ${exitRss(eight.text)} vs ${exitRss(one.text)}`).toBeLessThan(0.15);
    const w = await run('wasm', 8);
    expect(w.code, w.text).toBe(0);
    const steps = (r: { log: LogLine[] }): LogLine[] => r.log.filter((e) => e.loss !== undefined);
    expect(steps(eight).map((e) => e.step)).toEqual([0, 1, 2]);
    steps(w).forEach((e, i) => {
      for (const k of ['loss', 'norm'] as const) {
        expect(Math.abs(steps(eight)[i]![k]! - e[k]!) / e[k]!, `${k} at step ${e.step}: gpu ${steps(eight)[i]![k]}, wasm ${e[k]}`).toBeLessThan(1e-4);
      }
    });
  });
});
