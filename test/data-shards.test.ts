// Sharding as fineweb.py does it. Oracles: shards written by fineweb.py's own loop with np.save
// (make_npy_fixtures.py), and tiktoken's token ids (tok_gpt2_golden.json) concatenated and cut
// every shard_size tokens, which is all the sharding amounts to.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, test } from 'vitest';
import { readNpy } from '../src/data/npy.js';
import { ShardWriter, shardFileName, writeShards, type DocumentSource } from '../src/data/shards.js';
import { ensureEmbeddedShards } from '../src/data/embedded.js';
import { BpeTokenizer, type BpeSpec } from '../src/data/bpe.js';

const fixtures = join(import.meta.dirname, 'fixtures');
const root = mkdtempSync(join(tmpdir(), 'data-shards-'));
afterAll(() => rmSync(root, { recursive: true, force: true }));
let dirs = 0;
const freshDir = (): string => join(root, `run${dirs++}`);

const golden = JSON.parse(readFileSync(join(fixtures, 'tok_gpt2_golden.json'), 'utf8')) as { cases: { text: string; tokens: number[] }[] };
const texts = golden.cases.map((c) => c.text);
/** The whole token stream fineweb.py would produce: [eot] + encode_ordinary(doc) for each doc. */
const stream = golden.cases.flatMap((c) => [50256, ...c.tokens]);

/** Documents from an array; optionally fails after `failAfter` documents (an interrupted run). */
class ArraySource implements DocumentSource {
  readonly name = 'tst';
  skips: number[] = [];
  constructor(private readonly docs: string[], private readonly failAfter = Infinity, readonly identity = 'test-array') {}
  async *documents(skip: number): AsyncGenerator<string> {
    this.skips.push(skip);
    for (let i = skip; i < this.docs.length; i++) {
      if (i - skip >= this.failAfter) throw new Error('simulated crash');
      yield this.docs[i]!;
    }
  }
}

function expectedShards(tokens: number[], size: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i < tokens.length; i += size) out.push(tokens.slice(i, i + size));
  return out;
}

function shardFiles(dir: string, name = 'tst'): string[] {
  return readdirSync(dir).filter((f) => f.startsWith(`${name}_`) && f.endsWith('.npy')).sort((a, b) => a.slice(-10).localeCompare(b.slice(-10)));
}

function readAll(dir: string): Buffer[] {
  return shardFiles(dir).map((f) => readFileSync(join(dir, f)));
}

describe('shards', () => {
  test("ShardWriter writes byte-identical files to fineweb.py's loop + np.save", () => {
    const fx = JSON.parse(readFileSync(join(fixtures, 'data_fw_docs.json'), 'utf8')) as { shard_size: number; docs: number[][]; shards: string[] };
    const dir = freshDir();
    mkdirSync(dir, { recursive: true });
    const w = new ShardWriter(dir, 'data_fw', fx.shard_size);
    for (const d of fx.docs) w.addDocument(Uint16Array.from(d));
    w.finish();
    expect(shardFiles(dir, 'data_fw')).toEqual([...fx.shards].sort((a, b) => a.slice(-10).localeCompare(b.slice(-10))));
    for (const f of fx.shards) expect(readFileSync(join(dir, f)).equals(readFileSync(join(fixtures, f))), f).toBe(true);
  });

  test('file names follow fineweb.py: shard 0 is val, the rest train, 6 digits', () => {
    expect(shardFileName('edufineweb', 0)).toBe('edufineweb_val_000000.npy');
    expect(shardFileName('edufineweb', 1)).toBe('edufineweb_train_000001.npy');
    expect(shardFileName('edufineweb', 123456)).toBe('edufineweb_train_123456.npy');
  });

  test.each([
    [997, 2, texts.length],
    [40, 0, 80], // many documents longer than a whole shard (fineweb.py would fail; we split them on)
    [stream.length, 0, texts.length], // exactly one full shard, no partial one
  ])('shard size %i (workers %i, %i docs): the stream of tiktoken ids cut every shard_size tokens', async (size, workers, nDocs) => {
    const dir = freshDir();
    const docs = texts.slice(0, nDocs);
    const tokens = golden.cases.slice(0, nDocs).flatMap((c) => [50256, ...c.tokens]);
    const summary = await writeShards({ source: new ArraySource(docs), outDir: dir, shardSize: size, workers, progress: false });
    const want = expectedShards(tokens, size);
    expect(shardFiles(dir)).toEqual(want.map((_, i) => shardFileName('tst', i)));
    want.forEach((w, i) => expect(Array.from(readNpy(join(dir, shardFileName('tst', i))) as Uint16Array), `shard ${i}`).toEqual(w));
    expect(summary.tokens).toBe(tokens.length);
    expect(summary.documents).toBe(nDocs);
    expect(summary.shards.length).toBe(want.length);
    // No temp files are left behind.
    expect(readdirSync(dir).filter((f) => f.startsWith('.'))).toEqual([]);
  });

  test('1 and 2 workers give byte-identical shards', async () => {
    const a = freshDir();
    const b = freshDir();
    await writeShards({ source: new ArraySource(texts), outDir: a, shardSize: 997, workers: 1, progress: false });
    await writeShards({ source: new ArraySource(texts), outDir: b, shardSize: 997, workers: 2, progress: false });
    const fa = readAll(a);
    const fb = readAll(b);
    expect(fa.length).toBeGreaterThan(10);
    expect(fb.length).toBe(fa.length);
    fa.forEach((x, i) => expect(x.equals(fb[i]!), `shard ${i}`).toBe(true));
  });

  test('an interrupted run, resumed, gives the same shards and skips the documents already done', async () => {
    const size = 1499;
    const full = freshDir();
    await writeShards({ source: new ArraySource(texts), outDir: full, shardSize: size, workers: 1, progress: false });

    const dir = freshDir();
    const crashing = new ArraySource(texts, 450);
    // Small batches: the pool reads ahead up to 2 batches per worker, which a crash loses.
    await expect(writeShards({ source: crashing, outDir: dir, shardSize: size, workers: 2, batchDocs: 8, progress: false })).rejects.toThrow(/simulated crash/);
    const state = JSON.parse(readFileSync(join(dir, 'tst_state.json'), 'utf8')) as { nextShard: number; docsDone: number; tokensIntoDoc: number };
    expect(state.nextShard).toBeGreaterThan(2);
    // Leftovers of a crash: a temp file and a shard written after the last state update.
    writeFileSync(join(dir, '.tst_train_000099.npy.tmp-1-abc'), 'partial');
    writeFileSync(join(dir, shardFileName('tst', state.nextShard)), 'garbage from a crash');

    const resumed = new ArraySource(texts);
    const summary = await writeShards({ source: resumed, outDir: dir, shardSize: size, workers: 1, progress: false });
    expect(resumed.skips).toEqual([state.docsDone]);
    expect(state.docsDone).toBeGreaterThan(0);
    expect(summary.resumedShards).toBe(state.nextShard);
    expect(summary.tokens).toBe(stream.length);
    const want = readAll(full);
    const got = readAll(dir);
    expect(got.length).toBe(want.length);
    got.forEach((x, i) => expect(x.equals(want[i]!), `shard ${i}`).toBe(true));
    expect(readdirSync(dir).filter((f) => f.startsWith('.'))).toEqual([]);

    // A finished dataset is not redone.
    const again = new ArraySource(texts);
    const s2 = await writeShards({ source: again, outDir: dir, shardSize: size, workers: 1, progress: false });
    expect(again.skips).toEqual([]);
    expect(s2.newTokens).toBe(0);
    expect(s2.shards.length).toBe(want.length);
  });

  test('a resume in the middle of a document, stopped by maxShards, continues exactly', async () => {
    const size = 797;
    const dir = freshDir();
    const first = await writeShards({ source: new ArraySource(texts), outDir: dir, shardSize: size, workers: 0, maxShards: 5, progress: false });
    expect(first.shards.length).toBe(5);
    const state = JSON.parse(readFileSync(join(dir, 'tst_state.json'), 'utf8')) as { tokensIntoDoc: number };
    expect(state.tokensIntoDoc).toBeGreaterThan(0); // shard 4 ended inside a document
    const rest = await writeShards({ source: new ArraySource(texts), outDir: dir, shardSize: size, workers: 2, progress: false });
    const want = expectedShards(stream, size);
    expect(rest.shards.length).toBe(want.length);
    want.forEach((w, i) => expect(Array.from(readNpy(join(dir, shardFileName('tst', i))) as Uint16Array), `shard ${i}`).toEqual(w));
  });

  test('refuses to resume with another shard size or source, or over foreign shards', async () => {
    const dir = freshDir();
    await writeShards({ source: new ArraySource(texts), outDir: dir, shardSize: 500, workers: 0, maxShards: 1, progress: false });
    await expect(writeShards({ source: new ArraySource(texts), outDir: dir, shardSize: 400, progress: false })).rejects.toThrow(/shard size 500.*shard size 400/);
    await expect(writeShards({ source: new ArraySource(texts, Infinity, 'other'), outDir: dir, shardSize: 500, progress: false })).rejects.toThrow(/made from test-array/);
    rmSync(join(dir, 'tst_state.json'));
    await expect(writeShards({ source: new ArraySource(texts), outDir: dir, shardSize: 500, progress: false })).rejects.toThrow(/no tst_state\.json/);
  });

  test('ensureEmbeddedShards: val about 10% of nlp-corpus tokens, starting with tiktoken ids of its first sentences; cached', async () => {
    const dir = freshDir();
    const t0 = performance.now();
    expect(await ensureEmbeddedShards(dir, { tokenizer: 'gpt2' })).toBe(dir);
    const firstSeconds = (performance.now() - t0) / 1000;
    const files = readdirSync(dir).filter((f) => f.endsWith('.npy')).sort();
    expect(files[files.length - 1]).toBe('embedded_val_000000.npy');
    const sizes = files.map((f) => readNpy(join(dir, f)).length);
    const total = sizes.reduce((a, b) => a + b, 0);
    const val = readNpy(join(dir, 'embedded_val_000000.npy')) as Uint16Array;
    expect(val.length / total).toBeGreaterThan(0.09);
    expect(val.length / total).toBeLessThan(0.11);
    // The corpus cases of the golden fixture are the first 400 sentences of doc-0.json.
    const corpus = golden.cases.slice(golden.cases.length - 400).flatMap((c) => [50256, ...c.tokens]);
    expect(Array.from(val.subarray(0, corpus.length))).toEqual(corpus);
    const t1 = performance.now();
    await ensureEmbeddedShards(dir, { tokenizer: 'gpt2' });
    expect((performance.now() - t1) / 1000).toBeLessThan(Math.max(0.5, firstSeconds / 5));
    expect(existsSync(join(dir, 'embedded_train_000001.npy'))).toBe(true);
    // A deleted shard is noticed and the set is made again, identical.
    const before = readFileSync(join(dir, 'embedded_train_000003.npy'));
    rmSync(join(dir, 'embedded_train_000003.npy'));
    await ensureEmbeddedShards(dir, { tokenizer: 'gpt2' });
    expect(readFileSync(join(dir, 'embedded_train_000003.npy')).equals(before)).toBe(true);
  });

  test('ensureEmbeddedShards with the learned BPE (the default): its tokenizer.json beside the shards, val ~10%, decoding to the corpus text; cached', async () => {
    const dir = freshDir();
    const t0 = performance.now();
    expect(await ensureEmbeddedShards(dir)).toBe(dir);
    const firstSeconds = (performance.now() - t0) / 1000;
    const spec = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as { type: string; merges: [number, number][] };
    expect(spec.type).toBe('bpe');
    expect(spec.merges).toHaveLength(1024 - 257);
    const files = readdirSync(dir).filter((f) => f.endsWith('.npy'));
    const total = files.reduce((n, f) => n + readNpy(join(dir, f)).length, 0);
    const val = readNpy(join(dir, 'embedded_val_000000.npy')) as Uint16Array;
    expect(val.length / total).toBeGreaterThan(0.09);
    expect(val.length / total).toBeLessThan(0.11);
    // the oracle: nlp-corpus's own sentences; each document is <|endoftext|> (a line break) + its text
    const sentences = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'node_modules', 'nlp-corpus', 'builds', 'doc-0.json'), 'utf8')) as string[];
    const tok = new BpeTokenizer(spec as BpeSpec);
    const want = sentences.slice(0, 300).map((t) => '\n' + t).join('');
    expect(tok.decode(val.subarray(0, tok.encode(want).length + 300))).toContain(want);
    expect(val.reduce((m, v) => Math.max(m, v), 0)).toBeLessThan(1024);
    const t1 = performance.now();
    await ensureEmbeddedShards(dir);
    expect((performance.now() - t1) / 1000).toBeLessThan(Math.max(0.5, firstSeconds / 5));
  });
});
