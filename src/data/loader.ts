// DataLoaderLite from build-nanogpt's train_gpt2.py on Node: the .npy shards of a split in a
// folder, read as batches.ts batches them. It returns plain Int32Arrays; the trainer wraps them
// into tensors (the data module does not depend on the engine).
import { existsSync, readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { readNpyHeader, readTokens } from './npy.js';
import { BatchLoader } from './batches.js';

export type { Batch } from './batches.js';

export interface DataLoaderOptions {
  /** Folder of .npy shards (fineweb.py's output, or ensureEmbeddedShards()). */
  dataDir: string;
  /** Batch size and sequence length. */
  B: number;
  T: number;
  /** DDP rank and world size; default 0 and 1. */
  processRank?: number;
  numProcesses?: number;
  split: 'train' | 'val';
  /** If given, every token must be below it (e.g. 50257, or the padded 50304 of the model). */
  vocabSize?: number;
  /** Gets build-nanogpt's "found N shards for split S" line; default: silent. */
  log?: (msg: string) => void;
}

/**
 * Shards of a split, sorted. build-nanogpt keeps `[s for s in os.listdir(root) if split in s]`;
 * here the split must be a whole part of the name (`edufineweb_val_000000.npy`), so that
 * `interval_train_000001.npy` is not a val shard.
 */
export function listShards(dataDir: string, split: 'train' | 'val'): string[] {
  if (!existsSync(dataDir) || !statSync(dataDir).isDirectory()) {
    throw new Error(`DataLoaderLite: data dir ${dataDir} does not exist; run \`npm run prepare-data\` or use ensureEmbeddedShards()`);
  }
  const all = readdirSync(dataDir);
  if (all.length === 0) {
    throw new Error(`DataLoaderLite: data dir ${dataDir} is empty; run \`npm run prepare-data -- --out-dir ${dataDir}\``);
  }
  // Only finished .npy files: a shard being written is a hidden temp file that also contains the split name.
  // A file belongs to the split its name says last (x_train_val_000002.npy is val, not both).
  const splitOf = (stem: string): string | null => [...stem.matchAll(/(?:^|[_.-])(train|val)(?=[_.-]|$)/g)].at(-1)?.[1] ?? null;
  const shards = all.filter((s) => s.endsWith('.npy') && !s.startsWith('.') && splitOf(s.slice(0, -'.npy'.length)) === split).sort();
  if (shards.length === 0) {
    throw new Error(`DataLoaderLite: no shards found for split ${split} in ${dataDir} (expected files like *_${split}_000000.npy)`);
  }
  return shards.map((s) => join(dataDir, s));
}

/** build-nanogpt's DataLoaderLite over a folder of .npy shards (the batching itself is batches.ts's). */
export class DataLoaderLite extends BatchLoader {
  readonly shards: string[];

  constructor(opts: DataLoaderOptions) {
    const shards = listShards(opts.dataDir, opts.split);
    // every shard's header now, so a broken one is reported at the start, not hours in
    for (const s of shards) readNpyHeader(s);
    opts.log?.(`found ${shards.length} shards for split ${opts.split}`);
    super({ ...opts, shards: shards.map((path) => ({ name: path, tokens: () => readTokens(path) })) });
    this.shards = shards;
  }
}
