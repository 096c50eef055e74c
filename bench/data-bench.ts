// Tokenize throughput and peak memory of the prepare-data pipeline (parquet -> GPT-2 tokens -> shards),
// as fineweb.py would run on one FineWeb-Edu file. Builds a ~100 MB snappy parquet of English text
// (nlp-corpus sentences shuffled into documents, seeded) once under out/, then times one run.
//   npx tsc -p tsconfig.bench.json && node dist-bench/bench/data-bench.js --workers 2 [--mb 100]
// Run each worker count in its own process: peak RSS (process.resourceUsage().maxRSS) is per process
// and includes the worker threads.
import { existsSync, mkdirSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { ParquetWriter, fileWriter, schemaFromColumnData } from 'hyparquet-writer';
import { EmbeddedCorpusSource, parquetRowCount, parquetTexts } from '../src/data/sources.js';
import { writeShards, type DocumentSource } from '../src/data/shards.js';

const { values } = parseArgs({ options: { workers: { type: 'string', default: '2' }, mb: { type: 'string', default: '100' }, out: { type: 'string', default: 'out/data-bench' } } });
const workers = Number(values.workers);
const targetBytes = Number(values.mb) * 1024 * 1024;
const dir = values.out!;
mkdirSync(dir, { recursive: true });
const parquetPath = join(dir, `bench-${values.mb}mb.parquet`);

function mulberry32(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let t = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

async function makeParquet(): Promise<void> {
  const sentences: string[] = [];
  for await (const s of new EmbeddedCorpusSource().documents(0)) sentences.push(s);
  const rand = mulberry32(2024);
  const tmp = `${parquetPath}.tmp`;
  const writer = fileWriter(tmp);
  const sample = { columnData: [{ name: 'text', data: ['x'], type: 'STRING' as const }] };
  const pq = new ParquetWriter({ writer, schema: schemaFromColumnData(sample), codec: 'SNAPPY' });
  let docs = 0;
  // Write row groups of 2,000 documents until the file reaches the target size.
  while (statSync(tmp).size < targetBytes) {
    const texts: string[] = [];
    for (let i = 0; i < 2000; i++) {
      const n = 5 + Math.floor(rand() * 40);
      const parts: string[] = [];
      for (let j = 0; j < n; j++) parts.push(sentences[Math.floor(rand() * sentences.length)]!);
      texts.push(parts.join(rand() < 0.2 ? '\n\n' : ' '));
    }
    pq.write({ columnData: [{ name: 'text', data: texts }], rowGroupSize: 2000 });
    docs += texts.length;
  }
  pq.finish();
  renameSync(tmp, parquetPath);
  console.log(`built ${parquetPath}: ${docs} documents, ${(statSync(parquetPath).size / 1e6).toFixed(1)} MB`);
}

if (!existsSync(parquetPath)) await makeParquet();

const source: DocumentSource = { name: 'bench', identity: parquetPath, documents: (skip) => parquetTexts(parquetPath, skip) };
const outDir = join(dir, `shards-w${workers}`);
rmSync(outDir, { recursive: true, force: true });
let chars = 0;
const counted: DocumentSource = {
  ...source,
  async *documents(skip) {
    for await (const t of source.documents(skip)) {
      chars += t.length;
      yield t;
    }
  },
};
const t0 = performance.now();
const summary = await writeShards({ source: counted, outDir, workers, progress: false });
const seconds = (performance.now() - t0) / 1000;
const result = {
  workers,
  parquetMB: +(statSync(parquetPath).size / 1e6).toFixed(1),
  documents: summary.documents,
  rows: await parquetRowCount(parquetPath),
  textMB: +(chars / 1e6).toFixed(1),
  tokens: summary.tokens,
  seconds: +seconds.toFixed(1),
  tokensPerSecond: Math.round(summary.tokens / seconds),
  peakRssMB: Math.round(process.resourceUsage().maxRSS / 1024),
};
console.log(JSON.stringify(result));
writeFileSync(join(dir, `result-w${workers}.json`), JSON.stringify(result, null, 1) + '\n');
rmSync(outDir, { recursive: true, force: true });
