// Offline training data for `npm run train`: nlp-corpus tokenized once into fineweb-style shards,
// sized so that the val shard (shard 0) holds about 10% of the tokens.
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { EmbeddedCorpusSource } from './sources.js';
import { shardFileName, writeShards, type ShardSummary } from './shards.js';
import { acquireLock, makeDirs } from './fsutil.js';

/**
 * Characters per GPT-2 token in nlp-corpus 4.4.0 (8,798,430 chars / 2,050,151 tokens, one EOT
 * per sentence included, measured with this tokenizer). Knowing it lets the shard size be picked
 * before tokenizing; if the corpus changes, val is still close to 10%.
 */
export const EMBEDDED_CHARS_PER_TOKEN = 4.29;

/** Shard size that makes shard 0 (val) about `valFraction` of the embedded corpus. */
export function embeddedShardSize(source = new EmbeddedCorpusSource(), valFraction = 0.1): number {
  return Math.ceil((source.totalChars() / EMBEDDED_CHARS_PER_TOKEN) * valFraction);
}

export interface EmbeddedOptions {
  workers?: number;
  progress?: boolean;
}

/**
 * Makes `dir` hold the embedded corpus as shards (embedded_val_000000.npy, embedded_train_000001.npy...)
 * and returns it. The first call tokenizes (about a second or two); later calls find the finished
 * shards and return at once.
 */
export async function ensureEmbeddedShards(dir = 'data/embedded', opts: EmbeddedOptions = {}): Promise<string> {
  // two first runs at once: the second waits for the first's shards instead of deleting them
  makeDirs(dir, 'ensureEmbeddedShards');
  const release = await acquireLock(join(dir, '.embedded-setup.lock'), {
    waitMs: 300_000,
    onWait: (pid) => process.stderr.write(`waiting for process ${pid}, which is tokenizing the embedded corpus into ${dir}\n`),
    busy: (pid) => `ensureEmbeddedShards: process ${pid} has been tokenizing the embedded corpus into ${dir} for 5 minutes; is it stuck? (remove ${join(dir, '.embedded-setup.lock')} if it is gone)`,
  });
  try {
    return await ensureLocked(dir, opts);
  } finally {
    release();
  }
}

async function ensureLocked(dir: string, opts: EmbeddedOptions): Promise<string> {
  const source = new EmbeddedCorpusSource();
  const state = join(dir, `${source.name}_state.json`);
  if (existsSync(state)) {
    const s = JSON.parse(readFileSync(state, 'utf8')) as { finished?: { shards: number }; identity?: string };
    const n = s.finished?.shards ?? 0;
    const complete = n > 0 && Array.from({ length: n }, (_, i) => join(dir, shardFileName(source.name, i))).every((p) => existsSync(p));
    if (complete && s.identity === source.identity) return dir;
  }
  // Anything else (interrupted, a shard deleted, another nlp-corpus version) is redone from scratch:
  // it takes seconds, and a partial resume has nothing to save here.
  if (existsSync(dir)) {
    for (const f of readdirSync(dir)) {
      if (f.startsWith(`${source.name}_`) || f.startsWith(`.${source.name}_`)) rmSync(join(dir, f), { force: true });
    }
  }
  const summary: ShardSummary = await writeShards({
    source,
    outDir: dir,
    shardSize: embeddedShardSize(source),
    // Two threads already make it ~2x faster; the corpus is too small to gain from more.
    workers: opts.workers ?? Math.min(2, availableParallelism()),
    progress: opts.progress ?? false,
  });
  if (summary.shards.length < 2) {
    throw new Error(`ensureEmbeddedShards: expected a val shard and train shards in ${dir}, got ${summary.shards.length}`);
  }
  return dir;
}
