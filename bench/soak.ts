// The soak benchmark (`npm run bench -- --soak SECONDS`): the default `npm run train` run for a
// while (its schedule stretched so the learning rate stays sane), reporting every minute the
// process's RSS, the JS heap and the wasm buffer pool; after the warm-up minute all of them
// should stay flat. Prints the table and one JSON line (the last line) for run.ts.
//   node dist-bench/bench/soak.js 600

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { getBackend } from '../src/tensor/backend.js';
import { train, TRAIN_DEFAULTS } from '../src/train/train.js';

interface Sample { minute: number; steps: number; rssMB: number; heapMB: number; poolTrackedMB: number | null; poolFreeMB: number | null }

async function main(): Promise<void> {
  const seconds = Number(process.argv[2] ?? 600);
  const out = mkdtempSync(join(tmpdir(), 'tapegrad-soak-'));
  const stop = new AbortController();
  const samples: Sample[] = [];
  let steps = 0;
  const t0 = Date.now();
  const sample = (): void => {
    const pool = (getBackend() as { poolStats?: () => { trackedBytes: number; freeBytes: number } }).poolStats?.();
    const s: Sample = {
      minute: Math.round((Date.now() - t0) / 60_000), steps, rssMB: process.memoryUsage().rss / 2 ** 20, heapMB: process.memoryUsage().heapUsed / 2 ** 20,
      poolTrackedMB: pool ? pool.trackedBytes / 2 ** 20 : null, poolFreeMB: pool ? pool.freeBytes / 2 ** 20 : null,
    };
    samples.push(s);
    console.error(`minute ${s.minute}: ${s.steps} steps, RSS ${s.rssMB.toFixed(0)} MB, heap ${s.heapMB.toFixed(0)} MB` +
      (s.poolTrackedMB !== null ? `, wasm pool tracked ${s.poolTrackedMB.toFixed(0)} MB + free ${s.poolFreeMB!.toFixed(0)} MB` : ''));
  };
  const timer = setInterval(sample, 60_000);
  const end = setTimeout(() => stop.abort('soak done'), seconds * 1000);
  try {
    await train({
      ...TRAIN_DEFAULTS, totalBatchSize: TRAIN_DEFAULTS.batchSize * TRAIN_DEFAULTS.seqLen, maxSteps: 1_000_000, warmupSteps: 20,
      evalInterval: 200, sampleInterval: 0, checkpointInterval: 0, outDir: out, resume: false, signal: stop.signal,
      print: (line) => { if (line.startsWith('step ')) steps++; },
    });
  } finally {
    clearInterval(timer);
    clearTimeout(end);
    rmSync(out, { recursive: true, force: true });
  }
  // flat: the growth of each measure over the minutes after the first (warm-up) one
  const after = samples.filter((s) => s.minute >= 2);
  const growth = (k: 'rssMB' | 'heapMB' | 'poolTrackedMB'): number | null => {
    const v = after.map((s) => s[k]).filter((x): x is number => x !== null);
    return v.length >= 2 ? Math.max(...v) / v[0]! - 1 : null;
  };
  const result = { seconds, steps, samples, rssGrowth: growth('rssMB'), heapGrowth: growth('heapMB'), poolGrowth: growth('poolTrackedMB') };
  console.log(JSON.stringify(result));
  process.exit(0);
}

main().catch((e: unknown) => { console.error(e); process.exit(1); });
