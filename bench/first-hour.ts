// The newcomer's first `npm run train`, measured: the default command, unchanged, once per seed,
// in a fresh folder (so the first run also learns the BPE and tokenizes the corpus). Reported per
// run: wall time, tokens/s, the count baselines and validation in bits per byte, and the samples.
// `npm run bench -- --only=first` (about five minutes per seed; --seeds=N, default 3). The README's
// "What a newcomer sees" figures come from this.

import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface FirstRun {
  seed: number;
  seconds: number;
  tokPerSec: number;
  unigramBpb: number;
  bigramBpb: number;
  /** Validation bits per byte at each evaluation, in order. */
  valBpb: number[];
  finalValLoss: number;
  samples: string[];
}

function runCli(cli: string, args: string[], cwd: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [cli, ...args], { cwd });
    let out = '';
    c.stdout.on('data', (d: Buffer) => { out += d; });
    c.stderr.on('data', (d: Buffer) => { out += d; });
    c.on('close', (code) => (code === 0 ? resolve(out) : reject(new Error(`npm run train exited with ${code}:\n${out.slice(-2000)}`))));
  });
}

function num(text: string, re: RegExp): number {
  const m = re.exec(text);
  if (!m) throw new Error(`first-hour bench: ${re} not found in the run's output`);
  return Number(m[1]);
}

/** `seeds` default runs (the first with the default seed 1337), each in its own fresh folder. */
export async function benchFirstHour(repo: string, seeds: number, report: (r: FirstRun) => void): Promise<FirstRun[]> {
  const cli = join(repo, 'dist', 'train', 'cli.js');
  const runs: FirstRun[] = [];
  for (let i = 0; i < seeds; i++) {
    const seed = i === 0 ? 1337 : i;
    const cwd = mkdtempSync(join(tmpdir(), 'tapegrad-first-hour-'));
    try {
      const t0 = performance.now();
      const text = await runCli(cli, i === 0 ? [] : ['--seed', String(seed)], cwd);
      const r: FirstRun = {
        seed,
        seconds: (performance.now() - t0) / 1000,
        tokPerSec: num(text, /, (\d+) tok\/s \(last step\)/),
        unigramBpb: num(text, /unigram ([\d.]+) bpb/),
        bigramBpb: num(text, /bigram ([\d.]+) bpb/),
        valBpb: [...text.matchAll(/validation loss: [\d.]+ \| ([\d.]+) bpb/g)].map((m) => Number(m[1])),
        finalValLoss: num(text, /val loss ([\d.]+)/),
        samples: [...text.matchAll(/^sample \d: ([^]*?)(?=^sample \d: |^done: |^step |^saved )/gm)].map((m) => m[1]!.trim()).slice(-4),
      };
      runs.push(r);
      report(r);
    } finally {
      rmSync(cwd, { recursive: true, force: true });
    }
  }
  return runs;
}
