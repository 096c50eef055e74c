// Steady-state training speed through the real loop: `train()` (what `npm run train` runs) on a
// model config, timed by the wall clock between its step lines, so everything the loop does
// between steps counts. Warm-up steps first, then steps until a time budget is spent; the median.
// Spawned by run.ts, prints one JSON line:
//   node dist-bench/bench/train-steady.js '{"nLayer":4,"nHead":4,"nEmbd":128,"T":128,"B":8,"threads":2,"warmup":3,"budgetS":15}'

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { train, TRAIN_DEFAULTS } from '../src/train/train.js';
import { median } from './stats.js';

export interface SteadyConfig {
  nLayer: number; nHead: number; nEmbd: number; T: number; B: number;
  threads: number;
  /** Steps before timing. */
  warmup: number;
  /** Seconds of timed steps (at least 3 steps). */
  budgetS: number;
}
export interface SteadyResult {
  ok: boolean;
  note?: string;
  tokensPerSec?: number;
  msPerStep?: number;
  timedSteps?: number;
  peakRssMB?: number;
  /** CPU seconds this process used (all its threads), to tell its load from other processes'. */
  cpuS?: number;
}


async function main(): Promise<SteadyResult> {
  const c = JSON.parse(process.argv[2] ?? '{}') as SteadyConfig;
  const out = mkdtempSync(join(tmpdir(), 'tapegrad-steady-'));
  const stop = new AbortController();
  const marks: number[] = [];
  let timed = 0, peakMB = 0;
  try {
    await train({
      ...TRAIN_DEFAULTS, model: 'tiny', nLayer: c.nLayer, nHead: c.nHead, nEmbd: c.nEmbd, blockSize: c.T, vocabSize: 50304,
      batchSize: c.B, seqLen: c.T, totalBatchSize: c.B * c.T, maxSteps: 1_000_000, warmupSteps: 10,
      evalInterval: 0, sampleInterval: 0, checkpointInterval: 0, outDir: out, backend: 'wasm', threads: c.threads, signal: stop.signal,
      print: (line) => {
        if (!/^step +\d+ \|/.test(line)) return;
        marks.push(performance.now());
        // marks[w] is the end of the last warm-up step: timed steps are the intervals after it
        if (marks.length > c.warmup + 1) timed += marks[marks.length - 1]! - marks[marks.length - 2]!;
        if (marks.length - 1 - c.warmup >= 3 && timed >= c.budgetS * 1000) {
          // the peak of the steps, as PyTorch's side measures it; not the checkpoint train() writes on stopping
          peakMB = process.resourceUsage().maxRSS / 1024;
          stop.abort('benchmark budget spent');
        }
      },
    });
  } finally {
    rmSync(out, { recursive: true, force: true });
  }
  const steps = marks.slice(c.warmup).map((t, i, a) => (i ? t - a[i - 1]! : NaN)).slice(1);
  const ms = median(steps);
  const cpu = process.cpuUsage();
  return { ok: true, msPerStep: ms, tokensPerSec: (c.B * c.T * 1000) / ms, timedSteps: steps.length,
    peakRssMB: peakMB, cpuS: (cpu.user + cpu.system) / 1e6 };
}

main().then((r) => { console.log(JSON.stringify(r)); process.exit(0); },
  (e: unknown) => { console.log(JSON.stringify({ ok: false, note: String((e as Error).message ?? e).slice(0, 300) })); process.exit(0); });
