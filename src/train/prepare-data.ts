// `npm run prepare-data -- --source fineweb-edu|embedded --out-dir DIR`: fineweb.py as a CLI
// (the pipeline itself is src/data/prepare.ts).

import { prepareData, type PrepareResult } from '../data/prepare.js';
import { command, parseCommand, runMain } from './cli-args.js';

export const PREPARE_COMMAND = command({
  usage: 'npm run prepare-data -- --source fineweb-edu|embedded --out-dir DIR [flags]',
  example: 'npm run prepare-data -- --source fineweb-edu --out-dir edu_fineweb10B --max-shards 2',
  summary: `build-nanogpt's fineweb.py: FineWeb-Edu sample-10BT (or the embedded corpus), GPT-2 BPE, 100M-token
uint16 .npy shards (the first one val). A rerun resumes: complete shards are kept, downloads continue.`,
  options: {
    source: { kind: 'choice', choices: ['fineweb-edu', 'embedded'], required: true, help: 'where documents come from' },
    'out-dir': { kind: 'string', required: true, metavar: 'DIR', help: 'the shards (fineweb-edu parquet files go to the Hugging Face cache, $HF_HUB_CACHE or ~/.cache/huggingface/hub, shared with Python)' },
    revision: { kind: 'string', metavar: 'REV', help: 'Hub revision of HuggingFaceFW/fineweb-edu (default main, pinned to its commit)' },
    'max-files': { kind: 'int', min: 1, help: 'use only the first N parquet files of sample/10BT' },
    'max-shards': { kind: 'int', min: 1, help: 'stop after N shards' },
    'shard-size': { kind: 'int', min: 1, help: 'tokens per shard (default 1e8 for fineweb-edu, ~10% of the corpus for embedded)' },
    workers: { kind: 'int', min: 0, help: 'tokenizer threads, 0: on this thread (default: cores / 2 like fineweb.py, at least 1)' },
  },
  epilog: 'environment: HF_ENDPOINT (default https://huggingface.co), HF_TOKEN (sent only to HF_ENDPOINT)',
});

/** Runs the CLI with these arguments (without node and script); the summary, or null after --help. */
export async function main(argv: string[], stream: NodeJS.WritableStream & { isTTY?: boolean } = process.stderr): Promise<PrepareResult | null> {
  const v = parseCommand(PREPARE_COMMAND, argv, process.stdout); // --help on stdout, as every CLI's
  if (!v) return null;
  return prepareData({
    source: v.source, outDir: v['out-dir'], revision: v.revision, maxFiles: v['max-files'],
    maxShards: v['max-shards'], shardSize: v['shard-size'], workers: v.workers, stream,
  });
}

runMain(import.meta.url, async (argv) => { await main(argv); });
