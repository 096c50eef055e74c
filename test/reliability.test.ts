// A training run that never lies, never hangs and never loses work: each case reproduces a
// failure a hostile user found, through the CLIs run as child processes on a tiny model.

import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeNpy } from '../src/data/npy.js';
import { readSafetensors, writeSafetensors } from '../src/data/safetensors.js';
import { Generator } from '../src/tensor/random.js';
import { writeTinyShards } from './helpers/tiny-data.js';

const root = join(import.meta.dirname, '..');
const dist = (f: string): string => join(root, 'dist', 'train', f);
const M = ['--n-layer', '1', '--n-head', '2', '--n-embd', '16', '--block-size', '32', '--vocab-size', '64', '--batch-size', '2',
  '--seq-len', '32', '--sample-interval', '0', '--backend', 'js', '--val-steps', '2'];

interface Run { code: number | null; signal: NodeJS.Signals | null; out: string; ms: number }
/** Run a CLI (asynchronously: the test worker keeps answering vitest); kill it after `timeoutMs`. */
function cli(file: string, args: string[], opts: { timeoutMs?: number; onOutput?: (text: string, child: ReturnType<typeof spawn>) => void } = {}): Promise<Run> {
  const t0 = Date.now();
  const child = spawn(process.execPath, [dist(file), ...args], { cwd: root });
  let out = '';
  const take = (d: Buffer): void => { out += d.toString(); opts.onOutput?.(out, child); };
  child.stdout.on('data', take);
  child.stderr.on('data', take);
  const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 60_000);
  return new Promise((resolve) => child.on('close', (code, signal) => { clearTimeout(timer); resolve({ code, signal, out, ms: Date.now() - t0 }); }));
}
const train = (args: string[], opts?: Parameters<typeof cli>[2]): Promise<Run> => cli('cli.js', [...M, '--data-dir', data, ...args], opts);
const logOf = (dir: string): { step: number; loss?: number; val_loss?: number }[] =>
  readFileSync(join(dir, 'log.jsonl'), 'utf8').trim().split('\n').filter(Boolean).map((l) => JSON.parse(l));
const steps = (dir: string): number[] => readdirSync(dir).map((f) => /^model_(\d+)\.json$/.exec(f)).filter((m) => m).map((m) => Number(m![1])).sort((a, b) => a - b);

let work = '', data = '';
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'tapegrad-reliability-'));
  data = join(work, 'data');
  mkdirSync(data);
  writeTinyShards(data, { seed: 11, noise: 0.1, stride: 5, val: 300, train: [600, 600] });
});

describe('reliability of a training run', () => {
  it('1. a diverged run saves no checkpoint with non-finite weights or losses, and never calls one good', async () => {
    const dir = join(work, 'diverged');
    const r = await train(['--out-dir', dir, '--eval-interval', '1', '--checkpoint-interval', '1', '--max-steps', '6', '--warmup-steps', '1', '--max-lr', '1e30']);
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/(loss|validation loss) is (NaN|Infinity|-Infinity) at step \d+; stopping/);
    for (const s of steps(dir)) {
      const side = JSON.parse(readFileSync(join(dir, `model_${String(s).padStart(5, '0')}.json`), 'utf8')) as { val_loss: number | null };
      // every step evaluates (--eval-interval 1), so each checkpoint records the finite val loss of its weights
      expect(typeof side.val_loss === 'number' && Number.isFinite(side.val_loss), `val_loss of checkpoint ${s}: ${side.val_loss}`).toBe(true);
      const { tensors } = await readSafetensors(join(dir, `model_${String(s).padStart(5, '0')}.safetensors`));
      for (const [name, t] of tensors) expect((t.data as Float32Array).every(Number.isFinite), `${name} of checkpoint ${s}`).toBe(true);
    }
    const named = /The last good checkpoint is (\S+)/.exec(r.out)?.[1];
    if (named) expect(steps(dir).map((s) => join(dir, `model_${String(s).padStart(5, '0')}.json`))).toContain(named.replace(/[().]+$/, ''));
  });

  it('3. --checkpoint-interval follows its own interval, not the evaluation interval', async () => {
    const dir = join(work, 'interval');
    const r = await train(['--out-dir', dir, '--eval-interval', '2', '--checkpoint-interval', '1', '--max-steps', '6']);
    expect(r.code, r.out).toBe(0);
    expect(steps(dir)).toEqual([1, 2, 3, 4, 5]);
  });

  it('4. a run has an identity: a fresh run into another run\'s dir refuses (unless --overwrite), --resume refuses a mismatch naming it', async () => {
    const dir = join(work, 'identity');
    expect((await train(['--out-dir', dir, '--max-steps', '4', '--checkpoint-interval', '2', '--seed', '1'])).code).toBe(0);
    expect(steps(dir)).toEqual([2, 3]);
    let r = await train(['--out-dir', dir, '--max-steps', '3', '--seed', '2']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/holds checkpoints of (another|a) run/);
    expect(r.out).toMatch(/seed: 1 there, 2 here/);
    expect(r.out).toMatch(/--resume.*--overwrite|--overwrite.*--resume/);
    r = await train(['--out-dir', dir, '--max-steps', '3', '--n-embd', '32', '--resume']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/nEmbd: 16 there, 32 here/);
    expect(logOf(dir).filter((e) => e.loss !== undefined).length, 'the log is untouched by a refused run').toBe(4);
    r = await train(['--out-dir', dir, '--max-steps', '3', '--seed', '2', '--overwrite']);
    expect(r.code, r.out).toBe(0);
    expect(steps(dir)).toEqual([2]); // only this run's checkpoints: the earlier run's step 3 is gone
  });

  it('5. an incomplete checkpoint is skipped, naming it; a failed resume never truncates the log', async () => {
    const dir = join(work, 'incomplete');
    expect((await train(['--out-dir', dir, '--max-steps', '4', '--checkpoint-interval', '2'])).code).toBe(0);
    expect(steps(dir)).toEqual([2, 3]);
    unlinkSync(join(dir, 'optim_00003.safetensors'));
    let r = await train(['--out-dir', dir, '--max-steps', '4', '--checkpoint-interval', '2', '--resume']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/skipping .*model_00003\.json.*optim_00003\.safetensors/);
    expect(r.out).toMatch(/resuming from .*model_00002\.json/);
    // now make every checkpoint unusable: the resume must fail and leave the log as it was
    writeFileSync(join(dir, 'optim_00002.safetensors'), 'not a safetensors file');
    unlinkSync(join(dir, 'optim_00003.safetensors'));
    const before = readFileSync(join(dir, 'log.jsonl'), 'utf8');
    r = await train(['--out-dir', dir, '--max-steps', '4', '--resume']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/no usable checkpoint/);
    expect(r.out).toMatch(/model_00002\.json/);
    expect(readFileSync(join(dir, 'log.jsonl'), 'utf8')).toBe(before);
  });

  it('6. a config.json with n_layer 3000000 is refused against the weights before anything is allocated', async () => {
    const dir = join(work, 'hf-huge');
    mkdirSync(dir);
    const fx = join(root, 'test', 'fixtures', 'hf_tiny_gpt2');
    writeFileSync(join(dir, 'model.safetensors'), readFileSync(join(fx, 'model.safetensors')));
    const cfg = JSON.parse(readFileSync(join(fx, 'config.json'), 'utf8')) as Record<string, unknown>;
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...cfg, n_layer: 3000000 }));
    const r = await cli('sample.js', ['--init-from', dir, '--backend', 'js'], { timeoutMs: 30_000 });
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/n_layer 3000000/);
    expect(r.out).toMatch(/holds 2 layers/);
    expect(r.ms).toBeLessThan(20_000);
  });

  it('7. NaN weights are an error naming the checkpoint (sample and eval:hellaswag used to exit 0)', async () => {
    const dir = join(work, 'nan-weights');
    expect((await train(['--out-dir', dir, '--max-steps', '2'])).code).toBe(0);
    const file = join(dir, 'model_00001.safetensors');
    const { tensors, metadata } = await readSafetensors(file);
    const wte = tensors.get('wte.weight')!.data as Float32Array;
    wte[5] = NaN;
    await writeSafetensors(file, [...tensors].map(([n, t]) => [n, { dtype: 'F32', shape: t.shape, data: t.data as Float32Array }] as const), metadata);
    let r = await cli('sample.js', ['--init-from', dir, '--backend', 'js', '--max-tokens', '2']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/model_00001\.safetensors.*wte\.weight.*(NaN|non-finite)/);
    const hs = join(work, 'hs.jsonl');
    writeFileSync(hs, readFileSync(join(root, 'test', 'fixtures', 'hellaswag_examples.jsonl')));
    r = await cli('hellaswag.js', ['--init-from', dir, '--data', hs, '--backend', 'js', '--limit', '2']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/model_00001\.safetensors.*wte\.weight.*(NaN|non-finite)/);
  });

  it('two training runs into one --out-dir at once: the second refuses, naming the first', async () => {
    const dir = join(work, 'two-runs');
    let second: Promise<Run> | null = null;
    const first = train(['--out-dir', dir, '--max-steps', '100000', '--eval-interval', '0'], {
      onOutput: (text, child) => {
        if (!second && /step +0 \|/.test(text)) second = train(['--out-dir', dir, '--max-steps', '2']).finally(() => child.kill('SIGINT'));
      },
    });
    await first;
    const r = await second!;
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/--out-dir .* is in use by another training run \(process \d+\)/);
  });

  it('9. a run killed while writing leaves only hidden temp files, and the next start removes the dead ones', async () => {
    const dir = join(work, 'temps');
    mkdirSync(dir);
    // what kill -9 mid-checkpoint leaves: the temp file of a process that is gone (pid 2^22 + 1 is beyond pid_max's default)
    const stale = join(dir, `.model_00003.safetensors.tmp-${2 ** 22 + 1}-ab12cd34`);
    const live = join(dir, `.model_00004.safetensors.tmp-${process.pid}-ab12cd35`);
    writeFileSync(stale, 'x'.repeat(1000));
    writeFileSync(live, 'y');
    const r = await train(['--out-dir', dir, '--max-steps', '1']);
    expect(r.code, r.out).toBe(0);
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(live), 'a live writer\'s temp file is left alone').toBe(true);
    expect(readdirSync(dir).filter((f) => /tmp-/.test(f) && !f.startsWith('.'))).toEqual([]);
  });

  it('smaller: an impossible --out-dir fails at once; a partial last log line does not block --resume', async () => {
    let r = await train(['--out-dir', '/proc/x/y', '--max-steps', '1'], { timeoutMs: 20_000 });
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/\/proc\/x\/y/);
    expect(r.ms).toBeLessThan(15_000);
    const dir = join(work, 'partial-log');
    expect((await train(['--out-dir', dir, '--max-steps', '3', '--checkpoint-interval', '1'])).code).toBe(0);
    writeFileSync(join(dir, 'log.jsonl'), readFileSync(join(dir, 'log.jsonl'), 'utf8') + '{"step": 3, "lo');
    r = await train(['--out-dir', dir, '--max-steps', '4', '--resume']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/log\.jsonl: dropping its partial last line/);
    expect(logOf(dir).filter((e) => e.loss !== undefined).map((e) => e.step)).toEqual([0, 1, 2, 3]);
  });

  it('smaller: hellaswag --output into an impossible path fails before the evaluation, naming it', async () => {
    const hs = join(work, 'hs2.jsonl');
    writeFileSync(hs, readFileSync(join(root, 'test', 'fixtures', 'hellaswag_examples.jsonl')));
    const r = await cli('hellaswag.js', ['--init-from', join(root, 'test', 'fixtures', 'hf_tiny_gpt2'), '--data', hs, '--backend', 'js',
      '--output', '/proc/nope/out.json']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/--output \/proc\/nope\/out\.json/);
    expect(r.out).not.toMatch(/acc_norm/); // refused before evaluating
  });

  it('Ctrl-C (SIGINT) and SIGTERM finish the step, write a checkpoint, say how to resume, and exit 130 / 143', async () => {
    for (const [signal, code] of [['SIGINT', 130], ['SIGTERM', 143]] as const) {
      const dir = join(work, `signal-${signal}`);
      let sent = false;
      const r = await train(['--out-dir', dir, '--max-steps', '100000', '--eval-interval', '0'], {
        onOutput: (text, child) => { if (!sent && /step +2 \|/.test(text)) { sent = true; child.kill(signal); } },
      });
      expect(r.code, r.out).toBe(code);
      expect(r.out).toMatch(/saved checkpoint .*model_\d+\.json/);
      expect(r.out).toMatch(/--resume/);
      const s = steps(dir);
      expect(s.length).toBe(1);
      const again = await train(['--out-dir', dir, '--max-steps', String(s[0]! + 2), '--eval-interval', '0', '--resume']);
      expect(again.code, again.out).toBe(0);
      expect(again.out).toMatch(new RegExp(`resuming from .*model_${String(s[0]).padStart(5, '0')}\\.json`));
    }
  });
});

describe('reliability of the data', () => {
  it('8a. the directory lock admits one process at a time, also while a dead holder\'s lock is taken over', async () => {
    // CI once let two first runs in together: a waiter read the lock in the instant after its O_EXCL
    // create and before its pid was written, took the empty file for a dead holder's and removed it.
    const dir = join(work, 'lock');
    mkdirSync(dir);
    const lock = join(dir, '.x.lock');
    writeFileSync(lock, '999999999\n'); // a holder that is gone (no such pid)
    const script = `import('${join(root, 'dist', 'data', 'fsutil.js')}').then(async ({ acquireLock }) => {
      const fs = await import('node:fs');
      for (let i = 0; i < 15; i++) {
        const release = await acquireLock(process.argv[1], { waitMs: 30000, busy: (p) => 'busy ' + p });
        fs.writeFileSync(process.argv[2], String(process.pid), { flag: 'wx' }); // throws if another is inside
        await new Promise((r) => setTimeout(r, 2));
        fs.rmSync(process.argv[2]);
        release();
      }
      console.log('ok');
    }).catch((e) => { console.error('error: ' + e.message); process.exit(1); });`;
    const runs = await Promise.all(Array.from({ length: 6 }, () => new Promise<Run>((resolve) => {
      const c = spawn(process.execPath, ['-e', script, lock, join(dir, 'inside')], { cwd: root });
      let out = '';
      c.stdout.on('data', (d: Buffer) => { out += d; });
      c.stderr.on('data', (d: Buffer) => { out += d; });
      c.on('close', (code, signal) => resolve({ code, signal, out, ms: 0 }));
    })));
    for (const r of runs) expect(r.code, r.out).toBe(0);
    expect(readdirSync(dir)).toEqual([]); // no lock, no temp file left behind
  });

  it('8. two first-time runs in one directory do not break each other (embedded shards, prepare-data)', async () => {
    const dir = join(work, 'concurrent');
    mkdirSync(dir);
    const script = `import('${join(root, 'dist', 'data', 'embedded.js')}').then(async (m) => { const d = await m.ensureEmbeddedShards(process.argv[1]); console.log('ok', d); })
      .catch((e) => { console.error('error: ' + e.message); process.exit(1); });`;
    const runs = await Promise.all([0, 1].map(() => new Promise<Run>((resolve) => {
      const t0 = Date.now();
      const c = spawn(process.execPath, ['-e', script, join(dir, 'embedded')], { cwd: root });
      let out = '';
      c.stdout.on('data', (d: Buffer) => { out += d; });
      c.stderr.on('data', (d: Buffer) => { out += d; });
      c.on('close', (code, signal) => resolve({ code, signal, out, ms: Date.now() - t0 }));
    })));
    for (const r of runs) expect(r.code, r.out).toBe(0);
    const shards = readdirSync(join(dir, 'embedded')).filter((f) => f.endsWith('.npy'));
    expect(shards.length).toBeGreaterThanOrEqual(2);
    expect(readdirSync(join(dir, 'embedded')).filter((f) => /tmp-|\.lock$/.test(f))).toEqual([]);
    // prepare-data twice at once into one dir: the second says another run holds it (or both finish), never a crash
    const out = join(dir, 'prep');
    const [a, b] = await Promise.all([0, 1].map(() => cli('prepare-data.js', ['--source', 'embedded', '--out-dir', out, '--workers', '0'])));
    for (const r of [a!, b!]) expect(r.code === 0 || /another prepare-data .*is writing/.test(r.out), r.out).toBe(true);
    expect([a!, b!].some((r) => r.code === 0)).toBe(true);
    const again = await cli('prepare-data.js', ['--source', 'embedded', '--out-dir', out, '--workers', '0']);
    expect(again.code, again.out).toBe(0);
    rmSync(dir, { recursive: true, force: true });
  });

  it('shard names match exactly (interval_train is not val) and every shard is checked at the start', async () => {
    const dir = join(work, 'names');
    mkdirSync(dir);
    const g = new Generator(3);
    const shard = (n: number): Uint16Array => Uint16Array.from({ length: n }, () => g.randint(64));
    writeNpy(join(dir, 'x_val_000000.npy'), shard(300));
    writeNpy(join(dir, 'interval_train_000001.npy'), shard(300));
    writeNpy(join(dir, 'x_train_000002.npy'), shard(300));
    const { listShards } = await import('../src/data/loader.js');
    expect(listShards(dir, 'val').map((p) => p.split('/').pop())).toEqual(['x_val_000000.npy']);
    expect(listShards(dir, 'train').map((p) => p.split('/').pop())).toEqual(['interval_train_000001.npy', 'x_train_000002.npy']);
    // a broken third shard is reported when the loader starts, not when it is reached
    writeFileSync(join(dir, 'x_train_000003.npy'), 'not npy');
    const { DataLoaderLite } = await import('../src/data/loader.js');
    expect(() => new DataLoaderLite({ dataDir: dir, B: 2, T: 8, split: 'train' })).toThrow(/x_train_000003\.npy/);
  });

  it('19. a symlink loop as --out-dir or --init-from is named with its flag (it was a bare ELOOP from stat)', async () => {
    const loop = join(work, 'loop');
    symlinkSync(loop, loop);
    let r = await train(['--out-dir', loop, '--max-steps', '1']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/error: --out-dir: cannot use .*loop: ELOOP/);
    r = await train(['--out-dir', join(work, 'loop-ok'), '--init-from', loop, '--max-steps', '1']);
    expect(r.code).toBe(1);
    expect(r.out).toMatch(/error: --init-from .*loop: cannot read it: ELOOP/);
    r = await cli('sample.js', ['--init-from', loop]);
    expect(r.out).toMatch(/error: --init-from .*loop: cannot read it: ELOOP/);
    r = await cli('prepare-data.js', ['--source', 'embedded', '--out-dir', join(loop, 'x')]);
    expect(r.out).toMatch(/error: --out-dir: cannot use .*loop\/x: ELOOP/);
  });

  it('pre-flight: a bad token deep in a later shard stops the run within steps of the start, naming the file and index, long before its batch', async () => {
    const dir = join(work, 'bad-later');
    mkdirSync(dir);
    writeTinyShards(dir, { seed: 5, noise: 0.1, stride: 3, val: 300, train: [4000, 4000, 4000] });
    const g = new Generator(9);
    const third = Uint16Array.from({ length: 4000 }, () => g.randint(64));
    third[3210] = 60_000;
    writeNpy(join(dir, 'tiny_train_000003.npy'), third);
    // 64 tokens a step: shard 3 would be reached at step 125; the scan finds the token at the start
    const out = join(work, 'bad-later-out');
    const r = await cli('cli.js', [...M, '--data-dir', dir, '--out-dir', out, '--max-steps', '400', '--eval-interval', '0'], { timeoutMs: 120_000 });
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/tiny_train_000003\.npy holds token 60000 at index 3210, outside the model's vocabulary \[0, 64\).*found by the start-up scan.*Stopped at step \d+/);
    const stoppedAt = Number(/Stopped at step (\d+)/.exec(r.out)![1]);
    expect(stoppedAt).toBeLessThan(60);
  });
});

describe('reliability, round 3 (issue 28)', () => {
  it('4, 5. --resume past --max-steps, a sidecar step that is not its file name, a negative step: refused, naming them', async () => {
    const dir = join(work, 'round3-resume');
    expect((await train(['--out-dir', dir, '--max-steps', '4', '--eval-interval', '0'])).code).toBe(0);
    const r = await train(['--out-dir', dir, '--max-steps', '3', '--eval-interval', '0', '--resume']);
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/model_00003\.json is at step 3|model_00004\.json is at step 4/);
    expect(r.out).toMatch(/and --max-steps 3 leaves nothing to train; give --max-steps above/);
    const side = join(dir, `model_${String(steps(dir).at(-1)).padStart(5, '0')}.json`);
    const j = JSON.parse(readFileSync(side, 'utf8'));
    for (const bad of [-5, 1e12]) {
      writeFileSync(side, JSON.stringify({ ...j, step: bad }));
      const s = await cli('sample.js', ['--init-from', side, '--max-tokens', '1', '--backend', 'js']);
      expect(s.code, s.out).toBe(1);
      expect(s.out).toMatch(bad < 0 ? /"step" must be an integer >= 0, got -5/ : /"step" is 1000000000000 but the file is named for step \d+/);
    }
  });

  it('2. --hellaswag is checked at the start of a resumed run, not at its next evaluation', async () => {
    const dir = join(work, 'round3-hella');
    expect((await train(['--out-dir', dir, '--max-steps', '2', '--eval-interval', '0'])).code).toBe(0);
    const r = await train(['--out-dir', dir, '--max-steps', '4', '--eval-interval', '0', '--resume', '--hellaswag', join(work, 'no-such.jsonl')]);
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/no-such\.jsonl/);
    expect(r.out).not.toMatch(/step +2 \|/); // refused before training on
  });

  it('12. a model too big for this machine is refused at once with the figures, not killed minutes in', async () => {
    const r = await train(['--out-dir', join(work, 'round3-huge'), '--n-embd', '20000', '--max-steps', '1'], { timeoutMs: 30_000 });
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/the model needs about [\d.]+ GB of memory to train \(\d+M parameters: .*but this machine has [\d.]+ GB/);
    expect(r.ms).toBeLessThan(20_000);
  });

  it('retention: the newest --keep-checkpoints N complete checkpoints and the best validation one stay, the rest go', async () => {
    const dir = join(work, 'round3-keep');
    const r = await train(['--out-dir', dir, '--max-steps', '9', '--checkpoint-interval', '1', '--eval-interval', '1', '--keep-checkpoints', '2']);
    expect(r.code, r.out).toBe(0);
    const vals = logOf(dir).filter((e) => e.val_loss !== undefined);
    const kept = steps(dir);
    expect(kept.slice(-2)).toEqual([7, 8]);
    expect(kept.length).toBeLessThanOrEqual(3);
    // the best validation checkpoint survives (its step's val_loss is the lowest of those saved)
    const best = vals.filter((e) => e.step >= 1).reduce((a, b) => (b.val_loss! < a.val_loss! ? b : a));
    expect(kept).toContain(best.step);
    expect(readdirSync(dir).filter((f) => /^(model|optim)_\d+\.safetensors$/.test(f)).length).toBe(2 * kept.length);
  });

  it('9, 18. an optimizer file with tensors this model has no parameter for makes --resume fall back to the older checkpoint, saying why', async () => {
    const dir = join(work, 'round3-optim');
    expect((await train(['--out-dir', dir, '--max-steps', '3', '--eval-interval', '0', '--checkpoint-interval', '1'])).code).toBe(0);
    const newest = steps(dir).at(-1)!, older = steps(dir).at(-2)!;
    const file = join(dir, `optim_${String(newest).padStart(5, '0')}.safetensors`);
    const { tensors, metadata } = await readSafetensors(file);
    const entries = [...tensors].map(([n, t]) => [n, { dtype: 'F32', shape: t.shape, data: t.data as Float32Array }] as const);
    await writeSafetensors(file, [...entries, ['transformer.h.1.ln_1.weight.exp_avg', { dtype: 'F32', shape: [16], data: new Float32Array(16) }] as const], metadata);
    const r = await train(['--out-dir', dir, '--max-steps', '5', '--eval-interval', '0', '--resume']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toMatch(/skipping .*model_0000\d\.json: its optimizer file holds 'transformer\.h\.1\.ln_1\.weight\.exp_avg' .*belongs to another model/);
    expect(r.out).toMatch(new RegExp(`resuming from .*model_${String(older).padStart(5, '0')}\\.json`));
  });

  it('6, 7, 8, 16. conflicting model flags with --init-from, an empty --out-dir, a seed past 32 bits; the README\'s 2-rank command', async () => {
    const src = join(work, 'round3-src');
    expect((await train(['--out-dir', src, '--max-steps', '2'])).code).toBe(0);
    const r = await train(['--init-from', src, '--n-layer', '4', '--out-dir', join(work, 'round3-init'), '--max-steps', '1']); // the last --n-layer wins
    expect(r.code, r.out).toBe(1);
    expect(r.out).toMatch(/holds a model with --n-layer 1, but --n-layer 4 was given/);
    const e = await train(['--out-dir', '', '--max-steps', '1']);
    expect(e.code, e.out).toBe(1);
    expect(e.out).toMatch(/outDir \(--out-dir\) is empty/);
    const s = await train(['--out-dir', join(work, 'round3-seed'), '--seed', '4294967296']);
    expect(s.code).toBe(1);
    expect(s.out).toMatch(/--seed: expected an integer >= 0 and <= 4294967295, got '4294967296'/);
    // two ranks with the default total batch: one micro-batch per rank (it used to demand 2x B*T)
    const d = await train(['--out-dir', join(work, 'round3-ddp'), '--max-steps', '1', '--nproc-per-node', '2', '--threads', '1'], { timeoutMs: 120_000 });
    expect(d.code, d.out).toBe(0);
    expect(d.out).toMatch(/total desired batch size: 128 => calculated gradient accumulation steps: 1/);
  });
});

describe('the directory lock and recycled pids (issue 28, 14)', () => {
  it('a lock left by a killed process whose pid is now ours (a container restarted as PID 1) is taken over', async () => {
    const { acquireLock } = await import('../src/data/fsutil.js');
    const dir = mkdtempSync(join(tmpdir(), 'tapegrad-pidlock-'));
    const lock = join(dir, '.train.lock');
    for (const held of [`${process.pid}\n`, `${process.pid} not-this-boot:12345\n`]) {
      writeFileSync(lock, held);
      const release = await acquireLock(lock, { waitMs: 0, busy: (pid) => `busy ${pid}` });
      expect(readFileSync(lock, 'utf8')).toMatch(new RegExp(`^${process.pid}( |\\n)`));
      release();
    }
    // a live holder is still respected, and the message names the lock file
    const held = await acquireLock(lock, { waitMs: 0, busy: (pid) => `busy ${pid}` });
    await expect(acquireLock(lock, { waitMs: 0, busy: (pid) => `busy ${pid}` })).rejects.toThrow(`busy ${process.pid} (lock file ${lock};`);
    held();
    rmSync(dir, { recursive: true });
  });
});

describe('messages that name the flag (issue 28, 19)', () => {
  it('--vocab-size below the checkpoint\'s rows and --num-samples past 1024 are refused naming their flags', async () => {
    const { loadWeights } = await import('../src/train/checkpoint.js');
    const { parseCommand } = await import('../src/train/cli-args.js');
    const { SAMPLE_COMMAND } = await import('../src/train/sample.js');
    await expect(loadWeights(join(root, 'test', 'fixtures', 'hf_tiny_gpt2'), { padVocabTo: 3 })).rejects.toThrow(/than the 3 asked for \(--vocab-size\); give --vocab-size >= \d+/);
    expect(() => parseCommand(SAMPLE_COMMAND, ['--init-from', 'x', '--num-samples', '100000'])).toThrow(/--num-samples: expected an integer >= 1 and <= 1024, got '100000'/);
  });
});
