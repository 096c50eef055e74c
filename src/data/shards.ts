// Token shards exactly as build-nanogpt's fineweb.py writes them: one stream of [EOT, doc tokens...],
// cut every `shardSize` tokens into <name>_val_000000.npy, <name>_train_000001.npy, ... (uint16).
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, readdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { readNpy, writeNpy } from './npy.js';
import { acquireLock, makeDirs, writeFileAtomic } from './fsutil.js';
import { ProgressBar } from './progress.js';
import { tokenizeDocuments } from './tokenize-pool.js';
import { GPT2_SPEC, tokenizerFromSpec, type TokenizerSpec } from './tokenizer-spec.js';

/** Where documents come from: one interface, implemented by fineweb-edu (parquet) and nlp-corpus. */
export interface DocumentSource {
  /** Shard file prefix: fineweb.py uses "edufineweb". */
  readonly name: string;
  /** What the stream is (dataset, revision, ...); a resume refuses shards made from another. */
  readonly identity: string;
  /** Called once before `identity` is read, for a source that must look something up first. */
  open?(): Promise<void>;
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
  /** Documents per tokenizer message (default 256); smaller means less read-ahead. */
  batchDocs?: number;
  /** Stop after this many shards (the last partial shard is then not written). */
  maxShards?: number;
  /** The tokenizer (default GPT-2's, as fineweb.py); another is written to outDir/tokenizer.json. */
  tokenizer?: TokenizerSpec;
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

/**
 * fineweb.py's shard buffer: documents' tokens go in one after another; when a document does not
 * fit, what fits completes the shard, the shard is written, and the rest starts the next one.
 */
export class ShardWriter {
  private readonly buf: Uint16Array;
  private count = 0;
  private index: number;
  readonly written: string[] = [];

  /**
   * @param onShard called after each full shard is on disk, with its path and how many tokens
   *   of the current document are in full shards by then (the resume point).
   */
  constructor(
    private readonly outDir: string,
    private readonly name: string,
    private readonly shardSize: number,
    startShard = 0,
    private readonly onShard?: (path: string, tokensOfDocDone: number) => void,
  ) {
    this.buf = new Uint16Array(shardSize);
    this.index = startShard;
  }

  /** Index of the shard being filled. */
  get shardIndex(): number {
    return this.index;
  }
  /** Tokens in the shard being filled. */
  get pending(): number {
    return this.count;
  }

  /**
   * Adds one document. Stops early, returning false, once `maxShards` shards exist; the
   * tokens after the cut are then dropped (they will be redone by a resume).
   */
  addDocument(doc: Uint16Array, maxShards = Infinity): boolean {
    let pos = 0;
    for (;;) {
      const rest = doc.length - pos;
      if (this.count + rest < this.shardSize) {
        // fineweb.py: `if token_count + len(tokens) < shard_size` (strictly less: a document
        // that exactly fills the buffer goes through the write branch).
        this.buf.set(doc.subarray(pos), this.count);
        this.count += rest;
        return true;
      }
      const fit = this.shardSize - this.count;
      this.buf.set(doc.subarray(pos, pos + fit), this.count);
      pos += fit;
      this.count = 0;
      const path = this.write(this.buf);
      this.onShard?.(path, pos);
      if (this.index >= maxShards) return false;
    }
  }

  /** The last shard holds the rest (fineweb.py: `if token_count != 0`). */
  finish(): string | undefined {
    if (this.count === 0) return undefined;
    const path = this.write(this.buf.subarray(0, this.count));
    this.count = 0;
    return path;
  }

  private write(tokens: Uint16Array): string {
    const path = join(this.outDir, shardFileName(this.name, this.index));
    writeNpy(path, tokens);
    this.written.push(path);
    this.index++;
    return path;
  }
}

/**
 * What a set of shards is: the source, and the tokenizer when it is not GPT-2's (shards made
 * with another tokenizer are another dataset; GPT-2's keep the identity they always had).
 */
export function shardIdentity(sourceIdentity: string, spec: TokenizerSpec): string {
  if (spec.type === 'gpt2') return sourceIdentity;
  return `${sourceIdentity} tokenized by a ${spec.merges.length + 257}-token BPE ${createHash('sha256').update(JSON.stringify(spec)).digest('hex').slice(0, 16)}`;
}

export const TOKENIZER_FILE = 'tokenizer.json';

/**
 * The tokenizer of a shard directory: its tokenizer.json, or GPT-2's where there is none (shards
 * made by fineweb.py or by an earlier prepare-data).
 */
export function readDataTokenizer(dataDir: string): TokenizerSpec {
  const file = join(dataDir, TOKENIZER_FILE);
  if (!existsSync(file)) return GPT2_SPEC;
  let spec: TokenizerSpec;
  try {
    spec = JSON.parse(readFileSync(file, 'utf8')) as TokenizerSpec;
    tokenizerFromSpec(spec);
  } catch (e) {
    throw new Error(`${file}: not a tokenizer file (${(e as Error).message}); remake the data with npm run prepare-data, or delete it if these are GPT-2 shards`);
  }
  return spec;
}

export function writeDataTokenizer(dataDir: string, spec: TokenizerSpec): void {
  writeFileAtomic(join(dataDir, TOKENIZER_FILE), JSON.stringify(spec));
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
  makeDirs(opts.outDir, 'shards');
  // one writer per directory: a second run would delete the first's temp files and shards
  const release = await acquireLock(join(opts.outDir, `.${opts.source.name}.lock`), {
    waitMs: 0,
    busy: (pid) => `shards: another prepare-data (process ${pid}) is writing ${opts.source.name} shards into ${opts.outDir}; wait for it to finish or use another --out-dir`,
  });
  try {
    return await writeShardsLocked(opts);
  } finally {
    release();
  }
}

async function writeShardsLocked(opts: WriteShardsOptions): Promise<ShardSummary> {
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
  await source.open?.();
  const name = source.name;
  const spec = opts.tokenizer ?? { type: 'gpt2' };
  const tokenizer = tokenizerFromSpec(spec);
  // shards made with another tokenizer are another dataset (GPT-2's keeps the identity it always had)
  const identity = shardIdentity(source.identity, spec);
  const sPath = statePath(outDir, name);
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  const shardPattern = new RegExp(`^${escaped}_(val|train)_(\\d{6})\\.npy$`);
  const existing = readdirSync(outDir).filter((f) => shardPattern.test(f));

  let state = loadState(sPath);
  if (state === undefined) {
    if (existing.length > 0) {
      throw new Error(
        `shards: ${outDir} already holds ${existing.length} ${name} shard(s) but no ${name}_state.json, so it is unknown ` +
          'how they were made; delete them or choose another --out-dir',
      );
    }
    if (spec.type !== 'gpt2') writeDataTokenizer(outDir, spec);
    state = { version: 1, name, identity, shardSize, nextShard: 0, docsDone: 0, tokensIntoDoc: 0, tokens: 0 };
    writeFileAtomic(sPath, JSON.stringify(state, null, 1));
  } else {
    if (state.identity !== identity || state.shardSize !== shardSize) {
      throw new Error(
        `shards: ${outDir} holds shards made from ${state.identity} with shard size ${state.shardSize}; ` +
          `this run is ${identity} with shard size ${shardSize}. Use the same settings to resume, or another --out-dir`,
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

  let docIndex = state.docsDone;
  let skipTokens = state.tokensIntoDoc;
  let totalTokens = state.tokens;
  let newTokens = 0;
  const shards = Array.from({ length: state.nextShard }, (_, i) => join(outDir, shardFileName(name, i)));
  let bar: ProgressBar | undefined;
  const newBar = (index: number): ProgressBar | undefined =>
    showProgress ? new ProgressBar({ label: `shard ${index}`, total: shardSize, unit: 'tokens', stream: out }) : undefined;

  let docLen = 0; // tokens of the current document, before a resume's skip
  let skipped = 0; // of those, tokens left out because an earlier run has them
  const writer = new ShardWriter(outDir, name, shardSize, state.nextShard, (path, placed) => {
    shards.push(path);
    bar?.done(shardSize);
    totalTokens += shardSize;
    newTokens += shardSize;
    const into = skipped + placed; // tokens of this document now in full shards
    state = {
      ...state!,
      nextShard: writer.shardIndex,
      docsDone: into === docLen ? docIndex + 1 : docIndex,
      tokensIntoDoc: into === docLen ? 0 : into,
      tokens: totalTokens,
    };
    writeFileAtomic(sPath, JSON.stringify(state, null, 1));
    bar = newBar(writer.shardIndex);
  });

  let stopped = writer.shardIndex >= maxShards;
  if (!stopped) {
    bar = newBar(writer.shardIndex);
    outer: for await (const batch of tokenizeDocuments(source.documents(state.docsDone), { workers, tokenizer, ...(opts.batchDocs !== undefined ? { batchDocs: opts.batchDocs } : {}) })) {
      let off = 0;
      for (let d = 0; d < batch.docLens.length; d++) {
        docLen = batch.docLens[d]!;
        let doc = batch.tokens.subarray(off, off + docLen);
        off += docLen;
        // Resuming in the middle of this document: its first tokens are in the last full shard.
        skipped = Math.min(skipTokens, docLen);
        doc = doc.subarray(skipped);
        skipTokens = 0;
        if (!writer.addDocument(doc, maxShards)) {
          stopped = true;
          break outer;
        }
        docIndex++;
        bar?.update(writer.pending);
      }
    }
  }
  if (!stopped) {
    const count = writer.pending;
    const last = writer.finish();
    if (last !== undefined) {
      shards.push(last);
      totalTokens += count;
      newTokens += count;
      bar?.done(count);
    } else if (bar !== undefined && (out as { isTTY?: boolean }).isTTY) {
      out.write('\r\x1b[K'); // clear the empty bar of a shard that never started
    }
    state = { ...state, finished: { shards: writer.shardIndex, documents: docIndex, tokens: totalTokens } };
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
