// The two document sources behind prepare-data: FineWeb-Edu parquet files from the Hub
// (fineweb.py's load_dataset("HuggingFaceFW/fineweb-edu", name="sample-10BT")) and the
// nlp-corpus npm package for an offline run. Both give texts in a fixed order.
import { readFileSync, readdirSync, realpathSync, statSync } from 'node:fs';
import { createRequire } from 'node:module';
import { basename, dirname, join } from 'node:path';
import { asyncBufferFromFile, parquetMetadataAsync, parquetReadObjects } from 'hyparquet';
import { compressors } from 'hyparquet-compressors';
import { listHubFiles, resolveRevision, type HubFile, type HubOptions } from './hub.js';
import { cachedCommit, cachedFile, cachedFiles, hubCacheDir, hubFile, hubOffline, repoFolder } from './hf-cache.js';
import { ProgressBar } from './progress.js';
import type { DocumentSource } from './shards.js';

// hyparquet decodes strings with a default TextDecoder, which drops a leading U+FEFF: a document
// starting with one would then tokenize differently from the Python pipeline (pyarrow keeps it).
const utf8KeepBom = new TextDecoder('utf-8', { ignoreBOM: true });
const parsers = { stringFromBytes: (bytes: Uint8Array | undefined) => bytes && utf8KeepBom.decode(bytes) };

/**
 * Texts of the `text` column of one parquet file, read one row group at a time so memory stays
 * bounded by the largest row group. The first `skip` rows are passed over (whole row groups
 * without reading them).
 */
export async function* parquetTexts(path: string, skip = 0, column = 'text'): AsyncGenerator<string, void, undefined> {
  const file = await asyncBufferFromFile(path);
  const metadata = await parquetMetadataAsync(file);
  const names = metadata.schema.slice(1).map((s) => s.name);
  if (!names.includes(column)) {
    throw new Error(`parquet: ${path} has no '${column}' column (columns: ${names.join(', ')})`);
  }
  let rowStart = 0;
  for (const rg of metadata.row_groups) {
    const n = Number(rg.num_rows);
    if (skip >= n) {
      skip -= n;
      rowStart += n;
      continue;
    }
    const rows = await parquetReadObjects({ file, metadata, columns: [column], rowStart, rowEnd: rowStart + n, compressors, parsers });
    for (let i = skip; i < rows.length; i++) {
      const text: unknown = rows[i]![column];
      if (typeof text !== 'string') {
        throw new Error(`parquet: ${path} row ${rowStart + i} has a ${text === null ? 'null' : typeof text} '${column}', expected a string`);
      }
      yield text;
    }
    skip = 0;
    rowStart += n;
  }
}

/** Rows in a parquet file, from its footer alone. */
export async function parquetRowCount(path: string): Promise<number> {
  const metadata = await parquetMetadataAsync(await asyncBufferFromFile(path));
  return Number(metadata.num_rows);
}

export interface FineWebOptions extends HubOptions {
  /** The Hugging Face cache the parquet files are kept in (shared with Python); default hubCacheDir(). */
  cacheDir?: string;
  /** Default "HuggingFaceFW/fineweb-edu". */
  repo?: string;
  /** Default "main". */
  revision?: string;
  /** Folder of the config's parquet files; default "sample/10BT" (config sample-10BT). */
  path?: string;
  /** Use only the first N files (sorted by path). */
  maxFiles?: number;
  /** Download progress bars; default true. */
  progress?: boolean;
  stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Read only the cache, never the network; default hubOffline() (HF_HUB_OFFLINE=1). */
  offline?: boolean;
}

/**
 * FineWeb-Edu sample-10BT as fineweb.py streams it: its parquet files in path order, rows in
 * file order, all at the commit the revision pointed to when the run started. Files are downloaded
 * when first needed (the next one in the background while the current one is tokenized) into the
 * Hugging Face cache, where Python's huggingface_hub finds them too (and we find its).
 */
export class FineWebEduSource implements DocumentSource {
  readonly name = 'edufineweb';
  private readonly repo: string;
  private readonly revision: string;
  private commit: string | null = null;
  private readonly path: string;
  private readonly cache: string;
  private readonly offline: boolean;

  constructor(private readonly opts: FineWebOptions) {
    this.repo = opts.repo ?? 'HuggingFaceFW/fineweb-edu';
    this.revision = opts.revision ?? 'main';
    this.path = opts.path ?? 'sample/10BT';
    this.cache = opts.cacheDir ?? hubCacheDir();
    this.offline = opts.offline ?? hubOffline();
  }

  /** Pins the revision to its commit, so that every file of this run and of a resume is the same version. */
  async open(): Promise<void> {
    if (this.commit) return;
    if (this.offline) {
      this.commit = cachedCommit('dataset', this.repo, this.revision, this.cache);
      if (!this.commit) {
        throw new Error(`HF_HUB_OFFLINE is set and the Hugging Face cache ${this.cache} has no ${this.repo}@${this.revision} ` +
          `(no ${join(repoFolder('dataset', this.repo, this.cache), 'refs', this.revision)}); run once with the network, or point HF_HUB_CACHE at a cache that has it`);
      }
    } else {
      this.commit = await resolveRevision(this.repo, this.revision, this.hubOptions());
    }
  }

  get identity(): string {
    const limit = this.opts.maxFiles !== undefined ? ` (first ${this.opts.maxFiles} files)` : '';
    return `hf:${this.repo}@${this.commit ?? this.revision}/${this.path}${limit}`;
  }

  async listFiles(): Promise<HubFile[]> {
    await this.open();
    const commit = this.commit!;
    const all = this.offline
      ? cachedFiles('dataset', this.repo, commit, this.path, this.cache).map((p) => {
        const blob = realpathSync(cachedFile('dataset', this.repo, commit, p, this.cache)!); // blobs/<etag>
        return { path: p, size: statSync(blob).size, etag: basename(blob) };
      })
      : await listHubFiles(this.repo, commit, this.path, this.hubOptions());
    const parquet = all.filter((f) => f.path.endsWith('.parquet'));
    if (parquet.length === 0) throw new Error(`fineweb: no .parquet files under ${this.repo}@${commit}/${this.path}${this.offline ? ` in the cache ${this.cache} (HF_HUB_OFFLINE is set)` : ''}`);
    return this.opts.maxFiles !== undefined ? parquet.slice(0, this.opts.maxFiles) : parquet;
  }

  /** The hub calls' options: each retry and its wait said on the stream (not a silent minute per retry). */
  private hubOptions(): FineWebOptions {
    const stream = this.opts.stream ?? process.stderr;
    return { ...this.opts, log: this.opts.log ?? ((m) => stream.write(m + '\n')) };
  }

  /** The file in the foreground gets a bar; one fetched in the background would fight over the line. */
  private async download(f: HubFile, foreground: boolean, signal: AbortSignal): Promise<string> {
    const stream = this.opts.stream ?? process.stderr;
    let bar: ProgressBar | undefined;
    const p = await hubFile(f.path, {
      ...this.hubOptions(), type: 'dataset', repo: this.repo, revision: this.revision, cache: this.cache, offline: this.offline, signal,
      known: { commit: this.commit!, etag: etagOf(f), size: f.size, sha256: f.sha256 },
      onProgress: (b) => {
        if (this.opts.progress !== false && foreground) bar ??= new ProgressBar({ label: `download ${f.path.split('/').pop()}`, total: f.size, unit: 'bytes', stream });
        bar?.update(b);
      },
    });
    bar?.done();
    return p;
  }

  async *documents(skip: number): AsyncGenerator<string, void, undefined> {
    const files = await this.listFiles();
    // Ends a background download when the consumer stops early (--max-shards), so the process
    // can exit; its .incomplete file stays for a later resume.
    const abort = new AbortController();
    const download = (f: HubFile, foreground: boolean): Promise<string> => this.download(f, foreground, abort.signal);
    let pending: Promise<string> | undefined = download(files[0]!, true);
    try {
      for (let i = 0; i < files.length; i++) {
        const local = await pending!;
        pending = i + 1 < files.length ? download(files[i + 1]!, false) : undefined;
        // An unobserved rejection would crash the process before we get to await it.
        pending?.catch(() => {});
        if (skip > 0) {
          const rows = await parquetRowCount(local);
          if (skip >= rows) {
            skip -= rows;
            continue;
          }
        }
        yield* parquetTexts(local, skip);
        skip = 0;
      }
    } finally {
      abort.abort();
    }
  }
}

/** The name huggingface_hub gives a listed file's blob: its LFS sha256, else its git blob id. */
function etagOf(f: HubFile): string {
  const etag = f.etag ?? f.sha256;
  if (!etag || !/^[0-9a-f]{40,64}$/.test(etag)) throw new Error(`fineweb: the Hub listed ${f.path} without a usable blob id (${etag ?? 'none'}); cannot place it in the Hugging Face cache`);
  return etag;
}

/** The sentences of the npm package nlp-corpus (100 files of ~1000), each one a document. */
export class EmbeddedCorpusSource implements DocumentSource {
  readonly name = 'embedded';
  readonly identity: string;
  private readonly dir: string;

  constructor() {
    // nlp-corpus's own all() reads builds/doc-0..99.json; read them directly so the order is
    // explicit and the files can be read lazily.
    const req = createRequire(import.meta.url);
    const main = req.resolve('nlp-corpus');
    this.dir = join(dirname(main), '..', '..', 'builds');
    const pkg = JSON.parse(readFileSync(join(dirname(main), '..', '..', 'package.json'), 'utf8')) as { version: string };
    this.identity = `npm:nlp-corpus@${pkg.version}`;
  }

  /** builds/doc-N.json in numeric order of N. */
  files(): string[] {
    return readdirSync(this.dir)
      .filter((f) => /^doc-\d+\.json$/.test(f))
      .sort((a, b) => Number(a.slice(4, -5)) - Number(b.slice(4, -5)))
      .map((f) => join(this.dir, f));
  }

  /** Total characters, cheap to know before tokenizing (used to pick a shard size). */
  totalChars(): number {
    let n = 0;
    for (const f of this.files()) for (const s of JSON.parse(readFileSync(f, 'utf8')) as string[]) n += s.length;
    return n;
  }

  async *documents(skip: number): AsyncGenerator<string, void, undefined> {
    for (const f of this.files()) {
      const sentences = JSON.parse(readFileSync(f, 'utf8')) as unknown;
      if (!Array.isArray(sentences)) throw new Error(`embedded: ${f} is not a JSON array of sentences`);
      if (skip >= sentences.length) {
        skip -= sentences.length;
        continue;
      }
      for (let i = skip; i < sentences.length; i++) yield String(sentences[i]);
      skip = 0;
    }
  }
}
