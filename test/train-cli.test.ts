// End to end: `npm run train`'s CLI on a tiny model and crafted shards — log.jsonl, loss.svg,
// checkpoints, --resume reproducing the uninterrupted run, and the clear errors it promises.
import { spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeTinyShards } from './helpers/tiny-data.js';

const root = join(import.meta.dirname, '..');
const cli = join(root, 'dist/train/cli.js');
const tiny = ['--n-layer', '1', '--n-head', '2', '--n-embd', '16', '--block-size', '16', '--vocab-size', '64',
  '--batch-size', '2', '--seq-len', '8', '--total-batch-size', '32', '--warmup-steps', '2', '--max-lr', '3e-3',
  '--eval-interval', '3', '--val-steps', '2', '--sample-interval', '0', '--backend', 'js'];

function run(args: string[]): { code: number; out: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}
function logOf(dir: string): { step: number; loss?: number; val_loss?: number; norm?: number }[] {
  return readFileSync(join(dir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
}

let work = '';
let data = '';
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'tapegrad-train-'));
  data = join(work, 'data');
  mkdirSync(data);
  // a learnable stream: a repeating pattern with some noise, tokens < 64
  writeTinyShards(data, { seed: 7, noise: 0.1, stride: 7, val: 200, train: [300, 300] });
});

describe('npm run train (CLI)', () => {
  it('trains, logs, plots, checkpoints; --resume reproduces the uninterrupted losses', () => {
    const full = join(work, 'full');
    const r = run([...tiny, '--data-dir', data, '--out-dir', full, '--max-steps', '7', '--checkpoint-interval', '3']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/step {5}0 \| loss: \d+\.\d{6} \| lr .* \| norm: .* \| dt: .*ms \| tok\/sec: /);
    const log = logOf(full);
    const steps = log.filter((e) => e.loss !== undefined);
    expect(steps.map((e) => e.step)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    for (const e of steps) expect(Object.keys(e).sort()).toEqual(['dt_ms', 'dtype', 'loss', 'lr', 'norm', 'step', 'tok_per_s']);
    expect(log.filter((e) => e.val_loss !== undefined).map((e) => e.step)).toEqual([0, 3, 6]);
    expect(steps[6]!.loss!).toBeLessThan(steps[0]!.loss!); // it learns the pattern
    expect(readFileSync(join(full, 'loss.svg'), 'utf8')).toContain('<polyline');
    for (const f of ['model_00003.json', 'model_00003.safetensors', 'optim_00003.safetensors', 'model_00006.json']) {
      expect(existsSync(join(full, f)), f).toBe(true);
    }

    // resume from step 3 in a fresh dir holding only that checkpoint and the log up to then
    const resumed = join(work, 'resumed');
    mkdirSync(resumed);
    for (const f of ['model_00003.json', 'model_00003.safetensors', 'optim_00003.safetensors', 'log.jsonl']) copyFileSync(join(full, f), join(resumed, f));
    const r2 = run([...tiny, '--data-dir', data, '--out-dir', resumed, '--max-steps', '7', '--checkpoint-interval', '3', '--resume']);
    expect(r2.code, r2.out).toBe(0);
    expect(r2.out).toContain('resuming from');
    const a = logOf(full).filter((e) => e.loss !== undefined);
    const b = logOf(resumed).filter((e) => e.loss !== undefined);
    expect(b.map((e) => e.step)).toEqual([0, 1, 2, 3, 4, 5, 6]);
    for (let s = 3; s < 7; s++) {
      expect(b[s]!.loss, `loss at step ${s}`).toBe(a[s]!.loss); // bit-identical: same weights, moments, tokens
      expect(b[s]!.norm, `norm at step ${s}`).toBe(a[s]!.norm);
    }
  });

  it('stops on a NaN loss, naming the step and the last good checkpoint', () => {
    const dir = join(work, 'nan');
    expect(run([...tiny, '--data-dir', data, '--out-dir', dir, '--max-steps', '4', '--checkpoint-interval', '3']).code).toBe(0);
    const r = run([...tiny, '--data-dir', data, '--out-dir', dir, '--max-steps', '8', '--checkpoint-interval', '3', '--resume', '--max-lr', '1e38', '--grad-clip', '1e38']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/loss is (NaN|Infinity|-Infinity) at step \d+; stopping\. The last good checkpoint is .*model_00003\.json/);
  });

  it('gives clear errors for bad data and configuration', () => {
    const out = join(work, 'err');
    let r = run([...tiny, '--data-dir', join(work, 'missing'), '--out-dir', out, '--max-steps', '1']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/missing/);
    const empty = join(work, 'empty');
    mkdirSync(empty);
    r = run([...tiny, '--data-dir', empty, '--out-dir', out, '--max-steps', '1']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/empty|no .*shard/i);

    r = run([...tiny, '--data-dir', data, '--out-dir', out, '--max-steps', '1', '--seq-len', '32']);
    expect(r.code).toBe(1);
    expect(r.out).toContain('--seq-len 32 is longer than the model\'s block size 16');

    r = run([...tiny, '--data-dir', data, '--out-dir', out, '--max-steps', '1', '--vocab-size', '32']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/token \d+ .*(>=|exceeds|out of range).*32|vocab/i);

    const bad = join(work, 'bad');
    mkdirSync(bad);
    // a 2-D float32 .npy is not a token shard
    const header = "{'descr': '<f4', 'fortran_order': False, 'shape': (2, 2), }";
    const pad = 64 - ((10 + header.length + 1) % 64);
    const hdr = Buffer.from(header + ' '.repeat(pad % 64) + '\n', 'latin1');
    const pre = Buffer.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, hdr.length & 255, hdr.length >> 8]);
    writeFileSync(join(bad, 'x_val_000000.npy'), Buffer.concat([pre, hdr, Buffer.alloc(16)]));
    writeFileSync(join(bad, 'x_train_000001.npy'), Buffer.concat([pre, hdr, Buffer.alloc(16)]));
    r = run([...tiny, '--data-dir', bad, '--out-dir', out, '--max-steps', '1']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/x_(val|train)_00000\d\.npy/);

    r = run([...tiny, '--data-dir', data, '--out-dir', out, '--max-steps', '1', '--total-batch-size', '33']);
    expect(r.code).toBe(1);
    expect(r.out).toContain('must be divisible by --batch-size * --seq-len = 16');
  });

  it('rejects an init dir whose shapes disagree with the config, naming the tensor', () => {
    const full = join(work, 'full');
    const initDir = join(work, 'init');
    mkdirSync(initDir);
    for (const f of ['model_00003.json', 'model_00003.safetensors']) copyFileSync(join(full, f), join(initDir, f));
    // corrupt the sidecar's config: claim a wider model than the weights hold
    const side = JSON.parse(readFileSync(join(initDir, 'model_00003.json'), 'utf8'));
    side.config.nEmbd = 32;
    writeFileSync(join(initDir, 'model_00003.json'), JSON.stringify(side));
    const r = run([...tiny, '--data-dir', data, '--out-dir', join(work, 'o2'), '--max-steps', '1', '--init-from', join(initDir, 'model_00003.json')]);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/transformer\.\S+|wte|wpe/);
    expect(r.out).toMatch(/\[\d+(, \d+)*\]/);
  });
});
