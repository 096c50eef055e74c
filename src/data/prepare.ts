// `npm run prepare-data`: build-nanogpt's fineweb.py as a CLI. Downloads FineWeb-Edu sample-10BT
// (or reads the embedded nlp-corpus), tokenizes it with GPT-2 BPE and writes 100M-token .npy shards.
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { EmbeddedCorpusSource, FineWebEduSource } from './sources.js';
import { embeddedShardSize } from './embedded.js';
import { writeShards, type DocumentSource, type ShardSummary } from './shards.js';
import { formatAmount, formatDuration } from './progress.js';

const USAGE = `usage: npm run prepare-data -- --source fineweb-edu|embedded --out-dir DIR
  [--revision REV]     Hub revision of HuggingFaceFW/fineweb-edu (default main)
  [--max-files N]      use only the first N parquet files of sample/10BT
  [--max-shards N]     stop after N shards
  [--shard-size N]     tokens per shard (default 1e8 for fineweb-edu, ~10% of the corpus for embedded)
  [--workers N]        tokenizer threads (default: cores/2 like fineweb.py, at least 1)
environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (sent only to HF_ENDPOINT)`;

function positiveInt(name: string, v: string | undefined, allowZero = false): number | undefined {
  if (v === undefined) return undefined;
  // Accept 1e8 as fineweb.py writes it.
  const n = Number(v);
  if (!Number.isInteger(n) || n < (allowZero ? 0 : 1)) {
    throw new Error(`prepare-data: --${name} must be ${allowZero ? 'a non-negative' : 'a positive'} integer, got "${v}"\n${USAGE}`);
  }
  return n;
}

export interface PrepareResult extends ShardSummary {
  outDir: string;
}

/** Runs the CLI with these arguments (without node and script); returns the summary. */
export async function main(argv: string[], stream: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr): Promise<PrepareResult> {
  const { values } = parseArgs({
    args: argv,
    options: {
      source: { type: 'string' },
      'out-dir': { type: 'string' },
      revision: { type: 'string' },
      'max-files': { type: 'string' },
      'max-shards': { type: 'string' },
      'shard-size': { type: 'string' },
      workers: { type: 'string' },
      help: { type: 'boolean', short: 'h' },
    },
    strict: true,
  });
  if (values.help) {
    stream.write(USAGE + '\n');
    return { outDir: '', shards: [], documents: 0, tokens: 0, newTokens: 0, seconds: 0, resumedShards: 0 };
  }
  const outDir = values['out-dir'];
  if (values.source === undefined || outDir === undefined) throw new Error(`prepare-data: --source and --out-dir are required\n${USAGE}`);
  const workers = positiveInt('workers', values.workers, true) ?? Math.max(1, Math.floor(availableParallelism() / 2));
  const maxShards = positiveInt('max-shards', values['max-shards']);
  const maxFiles = positiveInt('max-files', values['max-files']);
  let shardSize = positiveInt('shard-size', values['shard-size']);

  let source: DocumentSource;
  if (values.source === 'fineweb-edu') {
    source = new FineWebEduSource({
      cacheDir: join(outDir, 'parquet'),
      ...(values.revision !== undefined ? { revision: values.revision } : {}),
      ...(maxFiles !== undefined ? { maxFiles } : {}),
      stream,
    });
    shardSize ??= 100_000_000;
  } else if (values.source === 'embedded') {
    if (values.revision !== undefined || maxFiles !== undefined) throw new Error('prepare-data: --revision and --max-files apply to --source fineweb-edu only');
    const embedded = new EmbeddedCorpusSource();
    source = embedded;
    shardSize ??= embeddedShardSize(embedded);
  } else {
    throw new Error(`prepare-data: unknown --source "${values.source}"; use fineweb-edu or embedded\n${USAGE}`);
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

// Run when executed as a script (node dist/data/prepare.js), not when imported by tests.
if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.message : String(e)}\n`);
    process.exit(1);
  });
}
