// DataLoaderLite against build-nanogpt's own loader: the windows in data_loader_windows.json were
// produced by train_gpt2.py's DataLoaderLite (numpy for torch) on the shards in data_loader/.
import { mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { DataLoaderLite, listShards } from '../src/data/loader.js';
import { writeNpy } from '../src/data/npy.js';

const fixtures = join(import.meta.dirname, 'fixtures');
const dataDir = join(fixtures, 'data_loader');
interface Case {
  B: number;
  T: number;
  rank: number;
  nproc: number;
  split: 'train' | 'val';
  reset_at: number | null;
  windows: { x: number[]; y: number[]; shard: number }[];
}
const cases = JSON.parse(readFileSync(join(fixtures, 'data_loader_windows.json'), 'utf8')) as Case[];
const tmp = mkdtempSync(join(tmpdir(), 'data-loader-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('DataLoaderLite', () => {
  test.each(cases.map((c) => [`B=${c.B} T=${c.T} rank ${c.rank}/${c.nproc} ${c.split}${c.reset_at !== null ? ` reset@${c.reset_at}` : ''}`, c] as const))(
    '%s: windows equal build-nanogpt (shard advance and wrap-around)',
    (_, c) => {
      const loader = new DataLoaderLite({ dataDir, B: c.B, T: c.T, processRank: c.rank, numProcesses: c.nproc, split: c.split, vocabSize: 50257 });
      const shardsSeen = new Set<number>();
      c.windows.forEach((w, step) => {
        if (step === c.reset_at) loader.reset();
        const { x, y } = loader.nextBatch();
        expect(x).toBeInstanceOf(Int32Array);
        expect(Array.from(x), `x at step ${step}`).toEqual(w.x);
        expect(Array.from(y), `y at step ${step}`).toEqual(w.y);
        expect(loader.currentShard, `shard after step ${step}`).toBe(w.shard);
        shardsSeen.add(w.shard);
      });
      // The fixture really exercises advancing and wrapping back to shard 0.
      if (c.split === 'train') expect(shardsSeen.size).toBe(3);
    },
  );

  test('clear errors: missing dir, empty dir, no shard for the split, token >= vocabSize, shard too short', () => {
    expect(() => new DataLoaderLite({ dataDir: join(tmp, 'nope'), B: 1, T: 4, split: 'train' })).toThrow(/nope does not exist.*prepare-data/);
    const empty = join(tmp, 'empty');
    mkdirSync(empty);
    expect(() => new DataLoaderLite({ dataDir: empty, B: 1, T: 4, split: 'train' })).toThrow(/empty is empty/);
    const onlyVal = join(tmp, 'onlyval');
    mkdirSync(onlyVal);
    writeNpy(join(onlyVal, 'x_val_000000.npy'), new Uint16Array(100));
    writeFileSync(join(onlyVal, '.x_train_000001.npy.tmp-1-2'), 'a shard being written');
    expect(() => new DataLoaderLite({ dataDir: onlyVal, B: 1, T: 4, split: 'train' })).toThrow(/no shards found for split train/);
    const big = join(tmp, 'big');
    mkdirSync(big);
    const t = new Uint16Array(100);
    t[42] = 60000;
    writeNpy(join(big, 'x_train_000001.npy'), t);
    expect(() => new DataLoaderLite({ dataDir: big, B: 1, T: 4, split: 'train', vocabSize: 50257 })).toThrow(/x_train_000001\.npy holds token 60000 at index 42/);
    expect(() => new DataLoaderLite({ dataDir: big, B: 4, T: 32, split: 'train' })).toThrow(/has 100 tokens, too few for one batch of B\*T=128/);
    expect(() => new DataLoaderLite({ dataDir: big, B: 1, T: 4, processRank: 2, numProcesses: 2, split: 'train' })).toThrow(/processRank must be in \[0, 2\)/);
  });
});

test('a shard belongs to the split its name says last: x_train_val_000002.npy is val only', () => {
  const dir = mkdtempSync(join(tmpdir(), 'tapegrad-splits-'));
  for (const f of ['x_train_000001.npy', 'x_train_val_000002.npy', 'x_val_000000.npy', 'val-notes_train_000003.npy']) writeNpy(join(dir, f), new Uint16Array(10));
  expect(listShards(dir, 'train').map((p) => p.slice(dir.length + 1))).toEqual(['val-notes_train_000003.npy', 'x_train_000001.npy']);
  expect(listShards(dir, 'val').map((p) => p.slice(dir.length + 1))).toEqual(['x_train_val_000002.npy', 'x_val_000000.npy']);
  rmSync(dir, { recursive: true });
});
