// Token shards exactly as build-nanogpt's fineweb.py writes them: one stream of [EOT, doc tokens...],
// cut every `shardSize` tokens into <name>_val_000000.npy, <name>_train_000001.npy, ... (uint16).
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readNpy, writeNpy } from './npy.js';
import { writeFileAtomic } from './fsutil.js';
import { ProgressBar } from './progress.js';
import { tokenizeDocuments } from './tokenize-pool.js';

/** Where documents come from: one interface, implemented by fineweb-edu (parquet) and nlp-corpus. */
export interface DocumentSource {
  /** Shard file prefix: fineweb.py uses "edufineweb". */
  readonly name: string;
  /** What the stream is (dataset, revision, ...); a resume refuses shards made from another. */
  readonly identity: string;
  /**
   * The documents' texts in a fixed order, leaving out the first `skip` (a resume uses this,
   * so a source should skip without reading what it can, e.g. whole parquet row groups).
   */
  documents(skip: number): AsyncIterable<string>;
}

export interface WriteShardsOptions {
  source: DocumentSource;
  outDir: string;
  /** Tokens per shard; fineweb.py: int(1e8). */
  shardSize?: number;
  /** Tokenizer worker threads (0 = this thread). fineweb.py: os.cpu_count()//2. */
  workers?: number;
  /** Stop after this many shards (the last partial shard is then not written). */
  maxShards?: number;
  /** Show progress (bar on a TTY, lines otherwise); default true. */
  progress?: boolean;
  /** Where progress and notes go; default process.stderr. */
  stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
}

export interface ShardSummary {
  /** Every shard of the dataset, in order (including those of earlier runs). */
  shards: string[];
  /** Documents and tokens in the shards (earlier runs included). */
  documents: number;
  tokens: number;
  /** Tokens produced by this run, and how long it took. */
  newTokens: number;
  seconds: number;
  /** Shards found complete from an earlier run. */
  resumedShards: number;
}

/** fineweb.py: f"{name}_{split}_{shard_index:06d}" + ".npy" (np.save adds it); shard 0 is val. */
export function shardFileName(name: string, index: number): string {
  const split = index === 0 ? 'val' : 'train';
  return `${name}_${split}_${String(index).padStart(6, '0')}.npy`;
}

/**
 * Resume point, rewritten (temp + rename) right after each full shard lands. Position counts
 * documents of the source and tokens of the document being split, so a rerun skips exactly
 * the tokens that are already in complete shards.
 */
interface ShardState {
  version: 1;
  name: string;
  identity: string;
  shardSize: number;
  /** Full shards 0..nextShard-1 are complete on disk. */
  nextShard: number;
  /** Documents entirely inside those shards, and tokens of the next one already in them. */
  docsDone: number;
  tokensIntoDoc: number;
  /** Tokens in the full shards. */
  tokens: number;
  /** Set when the source ran out and the final partial shard was written. */
  finished?: { shards: number; documents: number; tokens: number };
}

function statePath(outDir: string, name: string): string {
  return join(outDir, `${name}_state.json`);
}

function loadState(path: string): ShardState | undefined {
  if (!existsSync(path)) return undefined;
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as ShardState;
  } catch (e) {
    throw new Error(`shards: resume state ${path} is unreadable (${(e as Error).message}); delete it and the shards beside it to start over`);
  }
}

/**
 * Tokenizes the source into shards (fineweb.py's main loop). Docs that straddle a boundary
 * continue in the next shard; the last shard holds the rest. A rerun with the same outDir
 * resumes after the last complete shard. Unlike fineweb.py, a document longer than a whole
 * shard is split over several shards instead of failing (identical output otherwise).
 */
export async function writeShards(opts: WriteShardsOptions): Promise<ShardSummary> {
  const t0 = performance.now();
  const { source, outDir } = opts;
  const shardSize = opts.shardSize ?? 100_000_000;
  const workers = opts.workers ?? 1;
  const maxShards = opts.maxShards ?? Infinity;
  const out = opts.stream ?? process.stderr;
  const showProgress = opts.progress ?? true;
  if (!Number.isInteger(shardSize) || shardSize < 1) {
    throw new Error(`shards: shardSize must be a positive integer, got ${shardSize}`);
  }
  mkdirSync(outDir, { recursive: true });
  const name = source.name;
  const sPath = statePath(outDir, name);
  const shardPattern = new RegExp(`^${name}_(val|train)_(\\d{6})\\.npy$`);
  const existing = readdirSync(outDir).filter((f) => shardPattern.test(f));

  let state = loadState(sPath);
  if (state === undefined) {
    if (existing.length > 0) {
      throw new Error(
        `shards: ${outDir} already holds ${existing.length} ${name} shard(s) but no ${name}_state.json, so it is unknown ` +
          'how they were made; delete them or choose another --out-dir',
      );
    }
    state = { version: 1, name, identity: source.identity, shardSize, nextShard: 0, docsDone: 0, tokensIntoDoc: 0, tokens: 0 };
    writeFileAtomic(sPath, JSON.stringify(state, null, 1));
  } else {
    if (state.identity !== source.identity || state.shardSize !== shardSize) {
      throw new Error(
        `shards: ${outDir} holds shards made from ${state.identity} with shard size ${state.shardSize}; ` +
          `this run is ${source.identity} with shard size ${shardSize}. Use the same settings to resume, or another --out-dir`,
      );
    }
    // A finished dataset is returned as is (to make more or fewer shards, use another --out-dir).
    const done = state.finished;
    if (done !== undefined) {
      const shards = Array.from({ length: done.shards }, (_, i) => join(outDir, shardFileName(name, i)));
      if (shards.every((s) => existsSync(s))) {
        return { shards, documents: done.documents, tokens: done.tokens, newTokens: 0, seconds: (performance.now() - t0) / 1000, resumedShards: done.shards };
      }
    }
  }
  // Complete shards must all be there with exactly shardSize tokens; anything after them is an
  // interrupted run's leftovers (or a final partial shard) and is redone.
  for (let i = 0; i < state.nextShard; i++) {
    const p = join(outDir, shardFileName(name, i));
    const n = existsSync(p) ? readNpy(p).length : -1;
    if (n !== shardSize) {
      throw new Error(`shards: ${p} should be a complete shard of ${shardSize} tokens but ${n < 0 ? 'is missing' : `has ${n}`}; delete ${outDir} to start over`);
    }
  }
  for (const f of existing) {
    if (Number(shardPattern.exec(f)![2]) >= state.nextShard) rmSync(join(outDir, f));
  }
  for (const f of readdirSync(outDir)) {
    if (f.startsWith(`.${name}_`) && f.includes('.tmp-')) rmSync(join(outDir, f), { force: true });
  }
  const resumedShards = state.nextShard;
  if (resumedShards > 0 && showProgress) out.write(`${name}: resuming after ${resumedShards} complete shard(s) in ${outDir}\n`);

  const buf = new Uint16Array(shardSize);
  let count = 0;
  let shardIndex = state.nextShard;
  let docIndex = state.docsDone;
  let skipTokens = state.tokensIntoDoc;
  let totalTokens = state.tokens;
  let newTokens = 0;
  const shards = Array.from({ length: shardIndex }, (_, i) => join(outDir, shardFileName(name, i)));
  let bar: ProgressBar | undefined;
  const newBar = (): ProgressBar | undefined =>
    showProgress ? new ProgressBar({ label: `shard ${shardIndex}`, total: shardSize, unit: 'tokens', stream: out }) : undefined;
  bar = newBar();

  const writeShard = (tokens: Uint16Array): string => {
    const p = join(outDir, shardFileName(name, shardIndex));
    writeNpy(p, tokens);
    shards.push(p);
    bar?.done(tokens.length);
    shardIndex++;
    return p;
  };

  let stopped = false;
  if (shardIndex < maxShards) {
    outer: for await (const batch of tokenizeDocuments(source.documents(state.docsDone), { workers })) {
      let off = 0;
      for (let d = 0; d < batch.docLens.length; d++) {
        const len = batch.docLens[d]!;
        let doc = batch.tokens.subarray(off, off + len);
        off += len;
        if (skipTokens > 0) {
          // Resuming in the middle of this document: its first tokens are in the last full shard.
          doc = doc.subarray(skipTokens);
          skipTokens = 0;
        }
        let pos = 0; // tokens of `doc` already placed
        for (;;) {
          const rest = doc.length - pos;
          if (count + rest < shardSize) {
            buf.set(doc.subarray(pos), count);
            count += rest;
            break;
          }
          // The shard fills up: take what fits, write it, carry the remainder (fineweb.py's else: branch).
          const fit = shardSize - count;
          buf.set(doc.subarray(pos, pos + fit), count);
          pos += fit;
          count = 0;
          totalTokens += shardSize;
          newTokens += shardSize;
          writeShard(buf);
          const into = (len - doc.length) + pos; // tokens of this document now in full shards
          state = {
            ...state,
            nextShard: shardIndex,
            docsDone: into === len ? docIndex + 1 : docIndex,
            tokensIntoDoc: into === len ? 0 : into,
            tokens: totalTokens,
          };
          writeFileAtomic(sPath, JSON.stringify(state, null, 1));
          if (shardIndex >= maxShards) {
            stopped = true;
            break outer;
          }
          bar = newBar();
        }
        docIndex++;
        bar?.update(count);
      }
    }
  } else {
    stopped = true;
  }
  if (!stopped) {
    // The source ran out: the last shard holds the rest (fineweb.py: `if token_count != 0`).
    if (count > 0) {
      totalTokens += count;
      newTokens += count;
      writeShard(buf.slice(0, count));
    } else {
      bar?.done(0);
    }
    state = { ...state, finished: { shards: shardIndex, documents: docIndex, tokens: totalTokens } };
    writeFileAtomic(sPath, JSON.stringify(state, null, 1));
  }
  return {
    shards,
    documents: stopped ? state.docsDone : docIndex,
    tokens: totalTokens,
    newTokens,
    seconds: (performance.now() - t0) / 1000,
    resumedShards,
  };
}
