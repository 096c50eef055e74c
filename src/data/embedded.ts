// Offline training data for `npm run train`: nlp-corpus tokenized once into fineweb-style shards,
// sized so that the val shard (shard 0) holds about 10% of the tokens. The default tokenizer is a
// 1,024-token BPE learned from the corpus's training part; GPT-2's is one option away.
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { availableParallelism } from 'node:os';
import { EmbeddedCorpusSource } from './sources.js';
import { readDataTokenizer, shardFileName, shardIdentity, writeShards, type ShardSummary } from './shards.js';
import { acquireLock, makeDirs } from './fsutil.js';
import { BpeTokenizer, trainBpe } from './bpe.js';
import { GPT2_SPEC, type TokenizerSpec } from './tokenizer-spec.js';

/** The tokenizers the embedded corpus comes in. */
export const EMBEDDED_TOKENIZERS = ['bpe', 'gpt2'] as const;
export type EmbeddedTokenizer = (typeof EMBEDDED_TOKENIZERS)[number];

/** Vocabulary of the learned BPE: 256 bytes, 767 merges, <|endoftext|>. */
export const EMBEDDED_BPE_VOCAB = 1024;

/** Where `npm run train` keeps the embedded corpus's shards, per tokenizer. */
export function embeddedDir(tokenizer: EmbeddedTokenizer): string {
  return tokenizer === 'gpt2' ? 'data/embedded' : 'data/embedded-bpe';
}

/**
 * The BPE is learned from the documents after the first 15% of the corpus's characters: the val
 * shard (the first ~10% of tokens) never shapes the tokenizer it is measured with.
 */
export async function learnEmbeddedBpe(source = new EmbeddedCorpusSource(), vocabSize = EMBEDDED_BPE_VOCAB): Promise<TokenizerSpec> {
  const skipChars = 0.15 * source.totalChars();
  const texts: string[] = [];
  let chars = 0;
  for await (const d of source.documents(0)) {
    if (chars >= skipChars) texts.push(d);
    chars += d.length;
  }
  return trainBpe(texts, vocabSize);
}

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
  /** 'bpe' (default) or 'gpt2'. */
  tokenizer?: EmbeddedTokenizer;
}

/**
 * Makes `dir` hold the embedded corpus as shards (embedded_val_000000.npy, embedded_train_000001.npy...)
 * and returns it. The first call tokenizes (about a second or two); later calls find the finished
 * shards and return at once.
 */
export async function ensureEmbeddedShards(dir?: string, opts: EmbeddedOptions = {}): Promise<string> {
  dir ??= embeddedDir(opts.tokenizer ?? 'bpe');
  // two first runs at once: the second waits for the first's shards instead of deleting them
  makeDirs(dir, 'ensureEmbeddedShards');
  const release = await acquireLock(join(dir, '.embedded-setup.lock'), {
    waitMs: 300_000,
    onWait: (pid) => process.stderr.write(`waiting for process ${pid}, which is tokenizing the embedded corpus into ${dir}\n`),
    busy: (pid) => `ensureEmbeddedShards: process ${pid} has been tokenizing the embedded corpus into ${dir} for 5 minutes; is it stuck? (remove ${join(dir, '.embedded-setup.lock')} if it is gone)`,
  });
  try {
    return await ensureLocked(dir, opts.tokenizer ?? 'bpe', opts);
  } finally {
    release();
  }
}

async function ensureLocked(dir: string, kind: EmbeddedTokenizer, opts: EmbeddedOptions): Promise<string> {
  const source = new EmbeddedCorpusSource();
  const state = join(dir, `${source.name}_state.json`);
  if (existsSync(state)) {
    const s = JSON.parse(readFileSync(state, 'utf8')) as { finished?: { shards: number }; identity?: string };
    const n = s.finished?.shards ?? 0;
    const complete = n > 0 && Array.from({ length: n }, (_, i) => join(dir, shardFileName(source.name, i))).every((p) => existsSync(p));
    // the BPE is learned from the corpus, so the one beside shards of this corpus version is the one we would learn
    let made: TokenizerSpec | null = null;
    try { made = readDataTokenizer(dir); } catch { /* unreadable: redone below */ }
    if (complete && made && made.type === (kind === 'gpt2' ? 'gpt2' : 'bpe') && s.identity === shardIdentity(source.identity, made)) return dir;
  }
  // Anything else (interrupted, a shard deleted, another nlp-corpus version) is redone from scratch:
  // it takes seconds, and a partial resume has nothing to save here.
  if (existsSync(dir)) {
    for (const f of readdirSync(dir)) {
      if (f.startsWith(`${source.name}_`) || f.startsWith(`.${source.name}_`)) rmSync(join(dir, f), { force: true });
    }
  }
  let tokenizer = GPT2_SPEC, shardSize = embeddedShardSize(source);
  if (kind === 'bpe') {
    if (opts.progress !== false) process.stderr.write(`learning a ${EMBEDDED_BPE_VOCAB}-token BPE from the embedded corpus (once; a few seconds)\n`);
    tokenizer = await learnEmbeddedBpe(source);
    const tok = new BpeTokenizer(tokenizer as BpeTokenizer['spec']);
    let tokens = 0;
    for await (const d of source.documents(0)) tokens += tok.encode(d).length + 1;
    shardSize = Math.ceil(tokens * 0.1);
  }
  const summary: ShardSummary = await writeShards({
    source,
    outDir: dir,
    tokenizer,
    shardSize,
    // Two threads already make it ~2x faster; the corpus is too small to gain from more.
    workers: opts.workers ?? Math.min(2, availableParallelism()),
    progress: opts.progress ?? false,
  });
  if (summary.shards.length < 2) {
    throw new Error(`ensureEmbeddedShards: expected a val shard and train shards in ${dir}, got ${summary.shards.length}`);
  }
  return dir;
}
