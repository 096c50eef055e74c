// build-nanogpt's fineweb.py as a function (its CLI is src/train/prepare-data.ts): downloads
// FineWeb-Edu sample-10BT (or reads the embedded nlp-corpus), tokenizes it with GPT-2 BPE and
// writes 100M-token .npy shards.
import { availableParallelism } from 'node:os';
import { EmbeddedCorpusSource, FineWebEduSource } from './sources.js';
import { embeddedShardSize } from './embedded.js';
import { writeShards, type DocumentSource, type ShardSummary } from './shards.js';
import { formatAmount, formatDuration } from './progress.js';
import { makeDirs } from './fsutil.js';

export interface PrepareResult extends ShardSummary {
  outDir: string;
}

export interface PrepareOptions {
  source: 'fineweb-edu' | 'embedded';
  outDir: string;
  /** Hub revision of HuggingFaceFW/fineweb-edu (fineweb-edu only). */
  revision?: string;
  /** Only the first N parquet files of sample/10BT (fineweb-edu only). */
  maxFiles?: number;
  maxShards?: number;
  /** Tokens per shard (default 1e8 for fineweb-edu, ~10% of the corpus for embedded). */
  shardSize?: number;
  /** Tokenizer threads (default: cores / 2 as fineweb.py, at least 1). */
  workers?: number;
  /** Where progress goes (default stderr). */
  stream?: NodeJS.WritableStream & { isTTY?: boolean };
}

/** fineweb.py: documents of the source, tokenized, into shards under outDir; resumes an earlier run. */
export async function prepareData(o: PrepareOptions): Promise<PrepareResult> {
  const stream = o.stream ?? process.stderr;
  const { outDir, maxShards, maxFiles } = o;
  const workers = o.workers ?? Math.max(1, Math.floor(availableParallelism() / 2));
  let shardSize = o.shardSize;
  makeDirs(outDir, '--out-dir'); // first: a path that cannot be a directory is named with its flag

  let source: DocumentSource;
  if (o.source === 'fineweb-edu') {
    // the parquet files go to the Hugging Face cache ($HF_HUB_CACHE), shared with Python
    source = new FineWebEduSource({
      ...(o.revision !== undefined ? { revision: o.revision } : {}),
      ...(maxFiles !== undefined ? { maxFiles } : {}),
      stream,
    });
    shardSize ??= 100_000_000;
  } else {
    if (o.revision !== undefined || maxFiles !== undefined) throw new Error('prepare-data: --revision and --max-files apply to --source fineweb-edu only');
    const embedded = new EmbeddedCorpusSource();
    source = embedded;
    shardSize ??= embeddedShardSize(embedded);
  }

  await source.open?.(); // e.g. pin the Hub revision to a commit before printing what is used
  stream.write(`${source.identity} -> ${outDir} (shard size ${shardSize}, ${workers} worker(s))\n`);
  const summary = await writeShards({ source, outDir, shardSize, workers, stream, ...(maxShards !== undefined ? { maxShards } : {}) });
  const rate = summary.seconds > 0 ? summary.newTokens / summary.seconds : 0;
  stream.write(
    `done: ${summary.documents} documents, ${summary.tokens} tokens in ${summary.shards.length} shards` +
      (summary.resumedShards > 0 ? ` (${summary.resumedShards} from an earlier run)` : '') +
      `; ${formatAmount(summary.newTokens, 'tokens')} new in ${formatDuration(summary.seconds)}` +
      (rate > 0 ? ` (${formatAmount(rate, 'tokens')}/s)` : '') +
      '\n',
  );
  return { ...summary, outDir };
}
