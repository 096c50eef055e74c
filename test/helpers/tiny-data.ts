// Token shards for the CLI tests' tiny models: a learnable stream ((i * stride) % vocab, a share
// `noise` of positions replaced by random tokens), seeded, written as fineweb.py-named .npy files.

import { join } from 'node:path';
import { writeNpy } from '../../src/data/npy.js';
import { Generator } from '../../src/tensor/random.js';

export interface TinyShards {
  seed: number;
  /** Share of random tokens. */
  noise: number;
  stride: number;
  vocab?: number;
  /** Tokens in tiny_val_000000.npy, then in each of tiny_train_000001.npy, ... */
  val: number;
  train: number[];
}

export function writeTinyShards(dir: string, o: TinyShards): void {
  const vocab = o.vocab ?? 64, g = new Generator(o.seed);
  const shard = (n: number): Uint16Array => Uint16Array.from({ length: n }, (_, i) => (g.random() < o.noise ? g.randint(vocab) : (i * o.stride) % vocab));
  writeNpy(join(dir, 'tiny_val_000000.npy'), shard(o.val));
  o.train.forEach((n, k) => writeNpy(join(dir, `tiny_train_${String(k + 1).padStart(6, '0')}.npy`), shard(n)));
}
