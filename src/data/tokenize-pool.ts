// Parallel document tokenization on worker threads, results in document order
// (fineweb.py's `pool.imap(tokenize, fw, chunksize=16)`, with node:worker_threads instead of multiprocessing).
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { EOT, GPT2_SPLIT_PATTERN, bpeMergeLong, gpt2Tokenizer, makeEncoder } from './tokenizer.js';
import type { Tokenizer } from './tokenizer-spec.js';

/** Several documents tokenized as fineweb.py does: each is [EOT, ...encode_ordinary(text)]. */
export interface TokenizedBatch {
  /** All documents' tokens back to back. */
  tokens: Uint16Array;
  /** Token count of each document (EOT included), in order; they sum to tokens.length. */
  docLens: Uint32Array;
  /** Characters of text in the batch (for throughput reports). */
  chars: number;
}

export interface TokenizeOptions {
  /** Worker threads; 0 tokenizes on the calling thread. */
  workers: number;
  /** A batch closes at this many documents... */
  batchDocs?: number;
  /** ...or at this many characters, whichever comes first (bounds memory per message). */
  batchChars?: number;
  /**
   * Another tokenizer than GPT-2's (a learned BPE): it runs on the calling thread, as a small
   * corpus needs no more (the workers run GPT-2's encoder only).
   */
  tokenizer?: Tokenizer;
}

// The worker is created from a string (`eval: true`) so that the same code runs under vitest,
// which serves .ts sources that a Worker cannot load, and from the compiled dist/. It requires
// gpt-tokenizer by absolute path and runs Gpt2Tokenizer's very encoder (makeEncoder and
// bpeMergeLong, from their source text); a test checks that both give identical tokens.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const { BytePairEncodingCore } = require(workerData.corePath);
const ranks = require(workerData.ranksPath).default;
${bpeMergeLong.toString()}
${makeEncoder.toString()}
const core = new BytePairEncodingCore({
  bytePairRankDecoder: ranks,
  specialTokensEncoder: new Map(),
  tokenSplitRegex: new RegExp(workerData.pattern, 'gu'),
});
const encode = makeEncoder(core, ranks, workerData.pattern);
parentPort.on('message', (msg) => {
  try {
    const ids = msg.docs.map((d) => encode(d));
    let total = 0;
    for (const a of ids) total += a.length + 1;
    const tokens = new Uint16Array(total);
    const docLens = new Uint32Array(ids.length);
    let p = 0;
    for (let i = 0; i < ids.length; i++) {
      const a = ids[i];
      tokens[p++] = workerData.eot;
      for (let j = 0; j < a.length; j++) {
        const t = a[j];
        if (t < 0 || t >= 65536) throw new Error('token ' + t + ' does not fit uint16');
        tokens[p++] = t;
      }
      docLens[i] = a.length + 1;
    }
    parentPort.postMessage({ seq: msg.seq, tokens, docLens, chars: msg.chars }, [tokens.buffer, docLens.buffer]);
  } catch (e) {
    parentPort.postMessage({ seq: msg.seq, error: String((e && e.stack) || e) });
  }
});
`;

interface WorkerReply {
  seq: number;
  tokens?: Uint16Array;
  docLens?: Uint32Array;
  chars?: number;
  error?: string;
}

function tokenizeHere(docs: string[], chars: number, tok: Tokenizer = gpt2Tokenizer()): TokenizedBatch {
  const parts = docs.map((d) => tok.encodeDocument(d));
  const docLens = Uint32Array.from(parts, (p) => p.length);
  const tokens = new Uint16Array(docLens.reduce((a, b) => a + b, 0));
  let p = 0;
  for (const part of parts) {
    tokens.set(part, p);
    p += part.length;
  }
  return { tokens, docLens, chars };
}

/**
 * Tokenizes a stream of documents, yielding batches in the order the documents came in.
 * With workers > 0 up to 2 batches per worker are in flight, so reading the source overlaps
 * tokenizing it while memory stays bounded. Stopping the iteration early ends the workers.
 */
export async function* tokenizeDocuments(
  docs: AsyncIterable<string> | Iterable<string>,
  opts: TokenizeOptions,
): AsyncGenerator<TokenizedBatch, void, undefined> {
  const batchDocs = opts.batchDocs ?? 256;
  const batchChars = opts.batchChars ?? 1 << 20;
  const source: AsyncIterator<string> | Iterator<string> =
    Symbol.asyncIterator in docs ? docs[Symbol.asyncIterator]() : docs[Symbol.iterator]();
  let sourceDone = false;
  const readBatch = async (): Promise<{ docs: string[]; chars: number }> => {
    const batch: string[] = [];
    let chars = 0;
    while (!sourceDone && batch.length < batchDocs && chars < batchChars) {
      const r = await source.next();
      if (r.done) {
        sourceDone = true;
        break;
      }
      if (typeof r.value !== 'string') {
        throw new Error(`tokenizeDocuments: document ${batch.length} of a batch is ${typeof r.value}, expected a string`);
      }
      batch.push(r.value);
      chars += r.value.length;
    }
    return { docs: batch, chars };
  };

  if (!Number.isInteger(opts.workers) || opts.workers < 0) {
    throw new Error(`tokenizeDocuments: workers must be an integer >= 0, got ${opts.workers}`);
  }
  try {
    if (opts.workers === 0 || (opts.tokenizer && opts.tokenizer.name !== 'gpt2')) {
      for (;;) {
        const b = await readBatch();
        if (b.docs.length > 0) yield tokenizeHere(b.docs, b.chars, opts.tokenizer);
        if (sourceDone) return;
      }
    }
    yield* tokenizeOnWorkers(readBatch, () => sourceDone, opts.workers);
  } finally {
    if (!sourceDone) await source.return?.();
  }
}

async function* tokenizeOnWorkers(
  readBatch: () => Promise<{ docs: string[]; chars: number }>,
  isSourceDone: () => boolean,
  nWorkers: number,
): AsyncGenerator<TokenizedBatch, void, undefined> {
  const req = createRequire(import.meta.url);
  const workerData = {
    corePath: req.resolve('gpt-tokenizer/BytePairEncodingCore'),
    ranksPath: req.resolve('gpt-tokenizer/bpeRanks/r50k_base'),
    pattern: GPT2_SPLIT_PATTERN,
    eot: EOT,
  };
  const done = new Map<number, TokenizedBatch>();
  let failure: Error | undefined;
  let closing = false;
  let wake: (() => void) | undefined;
  const notify = (): void => {
    const w = wake;
    wake = undefined;
    w?.();
  };
  const workers: Worker[] = [];
  for (let i = 0; i < nWorkers; i++) {
    const w = new Worker(WORKER_SOURCE, { eval: true, workerData });
    w.on('message', (m: WorkerReply) => {
      if (m.error !== undefined) failure ??= new Error(`tokenize worker ${i}: ${m.error}`);
      else done.set(m.seq, { tokens: m.tokens!, docLens: m.docLens!, chars: m.chars ?? 0 });
      notify();
    });
    w.on('error', (e) => {
      failure ??= new Error(`tokenize worker ${i} crashed: ${e.message}`);
      notify();
    });
    w.on('exit', (code) => {
      if (!closing) failure ??= new Error(`tokenize worker ${i} exited with code ${code}`);
      notify();
    });
    workers.push(w);
  }
  let sent = 0;
  let next = 0;
  const maxInFlight = 2 * nWorkers;
  try {
    for (;;) {
      if (failure) throw failure;
      // Round-robin: each worker answers its messages in order, and with at most 2 queued
      // per worker none of them idles while the next batch is read.
      while (!isSourceDone() && sent - next < maxInFlight) {
        const b = await readBatch();
        if (b.docs.length === 0) break;
        workers[sent % nWorkers]!.postMessage({ seq: sent, docs: b.docs, chars: b.chars });
        sent++;
      }
      if (failure) throw failure;
      const ready = done.get(next);
      if (ready) {
        done.delete(next++);
        yield ready;
        continue;
      }
      if (isSourceDone() && next === sent) return;
      await new Promise<void>((resolve) => (wake = resolve));
    }
  } finally {
    closing = true;
    await Promise.all(workers.map((w) => w.terminate()));
  }
}
