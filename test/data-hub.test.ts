// Hub downloads and the fineweb-edu source against a local imitation of the Hugging Face Hub on
// 127.0.0.1: tree API (paged), resolve with a 302 to a "CDN" on another port, Range requests, and
// injected faults. The parquet files are written here with hyparquet-writer (snappy and zstd);
// their texts are the tiktoken golden fixture, so the shards can be checked against tiktoken ids.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { Writable } from 'node:stream';
import { basename, dirname, join } from 'node:path';
import { parquetWriteBuffer } from 'hyparquet-writer';
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest';
import { downloadHubFile, listHubFiles, resolveRevision, type HubFile, type HubOptions } from '../src/data/hub.js';
import { readNpy } from '../src/data/npy.js';
import { main as prepareMain } from '../src/train/prepare-data.js';
import { parquetTexts } from '../src/data/sources.js';
import { shardFileName } from '../src/data/shards.js';

const REPO = 'HuggingFaceFW/fineweb-edu';
const SHA = '0123456789abcdef0123456789abcdef01234567'; // the commit "main" points at
const golden = JSON.parse(readFileSync(join(import.meta.dirname, 'fixtures', 'tok_gpt2_golden.json'), 'utf8')) as { cases: { text: string; tokens: number[] }[] };
const texts = golden.cases.map((c) => c.text);

/**
 * A zstd frame made of raw (stored) blocks: valid zstd (RFC 8878 section 3.1.1) that any decoder
 * must accept, so the zstd read path is exercised without a zstd compressor in JavaScript.
 */
function zstdRawFrame(input: Uint8Array): Uint8Array {
  const MAX_BLOCK = 128 * 1024;
  const nBlocks = Math.max(1, Math.ceil(input.length / MAX_BLOCK));
  const out = new Uint8Array(4 + 1 + 4 + nBlocks * 3 + input.length);
  const dv = new DataView(out.buffer);
  dv.setUint32(0, 0xfd2fb528, true); // magic
  out[4] = 0xa0; // Frame_Header_Descriptor: 4-byte Frame_Content_Size, Single_Segment, no checksum
  dv.setUint32(5, input.length, true);
  let p = 9;
  for (let b = 0; b < nBlocks; b++) {
    const chunk = input.subarray(b * MAX_BLOCK, Math.min(input.length, (b + 1) * MAX_BLOCK));
    const header = (chunk.length << 3) | (0 << 1) | (b === nBlocks - 1 ? 1 : 0); // Raw_Block
    out[p++] = header & 0xff;
    out[p++] = (header >> 8) & 0xff;
    out[p++] = (header >> 16) & 0xff;
    out.set(chunk, p);
    p += chunk.length;
  }
  return out;
}

function parquetFile(rows: string[], codec: 'SNAPPY' | 'ZSTD'): Uint8Array {
  const buf = parquetWriteBuffer({
    columnData: [
      { name: 'id', data: rows.map((_, i) => `<urn:doc:${i}>`), type: 'STRING' },
      { name: 'text', data: rows, type: 'STRING' },
    ],
    codec,
    compressors: { ZSTD: zstdRawFrame },
    rowGroupSize: 64, // several row groups per file, read one at a time
  });
  return new Uint8Array(buf);
}

type Fault = 'drop' | '500' | '429' | 'ignore-range' | 'truncate' | 'wrong-bytes' | '404';

interface Served {
  bytes: Uint8Array;
  sha256: string;
  faults: Fault[];
}

/** The imitation Hub (endpoint) and CDN (another origin), with request logs. */
class FakeHub {
  files = new Map<string, Served>();
  hubLog: { url: string; auth: string | undefined }[] = [];
  cdnLog: { url: string; auth: string | undefined; range: string | undefined }[] = [];
  private hub!: Server;
  private cdn!: Server;
  endpoint = '';
  cdnBase = '';

  add(path: string, bytes: Uint8Array, faults: Fault[] = []): HubFile {
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    this.files.set(path, { bytes, sha256, faults });
    return { path, size: bytes.length, sha256, etag: sha256 }; // an LFS file: its blob is named by its sha256
  }

  async start(): Promise<void> {
    this.hub = createServer((req, res) => this.onHub(req, res));
    this.cdn = createServer((req, res) => this.onCdn(req, res));
    await Promise.all([listen(this.hub), listen(this.cdn)]);
    this.endpoint = `http://127.0.0.1:${(this.hub.address() as AddressInfo).port}`;
    this.cdnBase = `http://127.0.0.1:${(this.cdn.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    this.hub.closeAllConnections();
    this.cdn.closeAllConnections();
    await Promise.all([new Promise((r) => this.hub.close(r)), new Promise((r) => this.cdn.close(r))]);
  }

  private onHub(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url!, this.endpoint);
    this.hubLog.push({ url: url.pathname + url.search, auth: req.headers.authorization });
    const revision = /^\/api\/datasets\/([^/]+\/[^/]+)\/revision\/([^/]+)$/.exec(url.pathname);
    if (revision) {
      if (revision[1] !== REPO || !['main', SHA].includes(decodeURIComponent(revision[2]!))) return void res.writeHead(404).end('{"error":"Revision not found"}');
      return void res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify({ id: REPO, sha: SHA }));
    }
    const tree = /^\/api\/datasets\/([^/]+\/[^/]+)\/tree\/([^/]+)\/(.*)$/.exec(url.pathname);
    if (tree) {
      const [, repo, rev, dir] = tree.map(decodeURIComponent) as [string, string, string, string];
      if (repo !== REPO || !['main', SHA].includes(rev)) return void res.writeHead(404).end('{"error":"Repository not found"}');
      const entries = [...this.files.entries()]
        .filter(([p]) => p.startsWith(dir + '/'))
        .map(([path, f]) => ({ type: 'file', oid: 'gitsha', size: 133, path, lfs: { oid: f.sha256, size: f.bytes.length, pointerSize: 133 } }));
      entries.push({ type: 'directory', oid: 'x', size: 0, path: `${dir}/subdir` } as never);
      // Paged like the Hub: one entry per page, Link: <...>; rel="next".
      const page = Number(url.searchParams.get('cursor') ?? '0');
      const headers: Record<string, string> = { 'content-type': 'application/json' };
      if (page + 1 < entries.length) headers['link'] = `<${url.pathname}?cursor=${page + 1}>; rel="next"`;
      return void res.writeHead(200, headers).end(JSON.stringify(entries.slice(page, page + 1)));
    }
    const resolve = /^\/datasets\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.*)$/.exec(url.pathname);
    if (resolve) {
      const path = decodeURIComponent(resolve[3]!);
      if (!this.files.has(path)) return void res.writeHead(404).end('Entry not found');
      // LFS files are served from a CDN on another host.
      return void res.writeHead(302, { location: `${this.cdnBase}/cdn/${encodeURIComponent(path)}?X-Sig=abc` }).end();
    }
    res.writeHead(404).end('no route');
  }

  private onCdn(req: IncomingMessage, res: ServerResponse): void {
    const url = new URL(req.url!, this.cdnBase);
    this.cdnLog.push({ url: url.pathname, auth: req.headers.authorization, range: req.headers.range });
    const f = this.files.get(decodeURIComponent(url.pathname.replace(/^\/cdn\//, '')));
    if (!f) return void res.writeHead(404).end();
    const fault = f.faults.shift();
    const m = /^bytes=(\d+)-$/.exec(req.headers.range ?? '');
    let start = m && fault !== 'ignore-range' ? Number(m[1]) : 0;
    if (start > f.bytes.length) return void res.writeHead(416).end();
    let body = f.bytes.subarray(start);
    switch (fault) {
      case '500':
        return void res.writeHead(500).end('internal error');
      case '404':
        return void res.writeHead(404).end('gone');
      case '429':
        return void res.writeHead(429, { 'retry-after': '3' }).end('slow down');
      case 'drop': {
        // Promise the whole body, send part of it, then cut the connection.
        res.writeHead(start > 0 ? 206 : 200, this.rangeHeaders(start, f, body.length));
        res.write(body.subarray(0, Math.floor(body.length / 3)));
        setTimeout(() => res.socket?.destroy(), 100);
        return;
      }
      case 'truncate':
        // A clean end (chunked, no length) before the last bytes: only the size check can tell.
        res.writeHead(start > 0 ? 206 : 200, start > 0 ? { 'content-range': `bytes ${start}-${f.bytes.length - 1}/${f.bytes.length}` } : {});
        return void res.end(body.subarray(0, body.length - 10));
      case 'wrong-bytes': {
        const bad = Uint8Array.from(body);
        bad[bad.length >> 1] ^= 0xff;
        body = bad;
        break;
      }
      default:
    }
    if (fault === 'ignore-range') start = 0;
    res.writeHead(start > 0 ? 206 : 200, this.rangeHeaders(start, f, body.length));
    res.end(body);
  }

  private rangeHeaders(start: number, f: Served, len: number): Record<string, string> {
    const h: Record<string, string> = { 'content-length': String(len), 'accept-ranges': 'bytes' };
    if (start > 0) h['content-range'] = `bytes ${start}-${f.bytes.length - 1}/${f.bytes.length}`;
    return h;
  }
}

function listen(s: Server): Promise<void> {
  return new Promise((r) => s.listen(0, '127.0.0.1', () => r()));
}

const hub = new FakeHub();
const root = mkdtempSync(join(tmpdir(), 'data-hub-'));
const part0 = texts.slice(0, 300);
const part1 = texts.slice(300);
let file0: HubFile;
let file1: HubFile;
const waits: number[] = [];
let opts: HubOptions;

beforeAll(async () => {
  await hub.start();
  file0 = hub.add('sample/10BT/000_00000.parquet', parquetFile(part0, 'SNAPPY'));
  file1 = hub.add('sample/10BT/001_00000.parquet', parquetFile(part1, 'ZSTD'));
  hub.add('sample/100BT/000_00000.parquet', parquetFile(['not this config'], 'SNAPPY'));
});
afterAll(async () => {
  await hub.stop();
  rmSync(root, { recursive: true, force: true });
});
let n = 0;
let dest = '';
beforeEach(() => {
  waits.length = 0;
  hub.cdnLog.length = 0;
  hub.hubLog.length = 0;
  dest = join(root, `dl${n++}`);
  opts = { endpoint: hub.endpoint, token: 'hf_SECRET_token', backoffMs: 1, maxBackoffMs: 5, retries: 4, sleep: async (ms) => void waits.push(ms) };
});

const download = (f: HubFile, o: HubOptions = opts): Promise<string> => downloadHubFile(REPO, 'main', f, dest, o);
const expectIntact = (path: string, f: HubFile): void => {
  expect(createHash('sha256').update(readFileSync(path)).digest('hex')).toBe(f.sha256);
  expect(existsSync(`${path}.incomplete`)).toBe(false);
};

describe('hub', () => {
  test('lists files through the paged tree API, sorted, files only, in the asked folder', async () => {
    const files = await listHubFiles(REPO, 'main', 'sample/10BT', opts);
    expect(files).toEqual([file0, file1]);
    expect(hub.hubLog.filter((l) => l.url.includes('/tree/')).length).toBe(3); // 2 files + 1 directory, one per page
    await expect(listHubFiles(REPO, 'nope', 'sample/10BT', opts)).rejects.toThrow(/HTTP 404 \(check the repository, --revision and path\)/);
    expect(await resolveRevision(REPO, 'main', opts)).toBe(SHA);
    expect(await resolveRevision(REPO, SHA, opts)).toBe(SHA);
    await expect(resolveRevision(REPO, 'v9', opts)).rejects.toThrow(/HTTP 404/);
  });

  test('downloads through a 302 to another host that never receives the token', async () => {
    const p = await download(file0);
    expectIntact(p, file0);
    expect(p).toBe(join(dest, file0.path));
    expect(hub.hubLog.every((l) => l.auth === 'Bearer hf_SECRET_token')).toBe(true);
    expect(hub.cdnLog.length).toBe(1);
    expect(hub.cdnLog[0]!.auth).toBeUndefined();
    // A complete file is not fetched again.
    await download(file0);
    expect(hub.cdnLog.length).toBe(1);
    expect(hub.hubLog.length).toBe(1);
  });

  test('connection dropped mid-body: resumes with Range and ends intact', async () => {
    hub.files.get(file0.path)!.faults.push('drop', 'drop');
    const p = await download(file0);
    expectIntact(p, file0);
    // Two drops, then success; whatever had arrived before a drop was kept and resumed with Range
    // (how much arrives before the cut depends on timing, so only "some" resume is asserted).
    expect(hub.cdnLog.length).toBe(3);
    expect(hub.cdnLog[0]!.range).toBeUndefined();
    expect(hub.cdnLog.some((l) => /^bytes=[1-9]\d*-$/.test(l.range ?? ''))).toBe(true);
  });

  test('500s then success, with backoff waits', async () => {
    hub.files.get(file1.path)!.faults.push('500', '500');
    expectIntact(await download(file1), file1);
    expect(waits).toEqual([1, 2]);
  });

  test('429 honours Retry-After', async () => {
    hub.files.get(file1.path)!.faults.push('429');
    expectIntact(await download(file1), file1);
    expect(waits).toEqual([3000]);
  });

  test('a Range request answered with 200 restarts cleanly instead of appending', async () => {
    // A partial download from an earlier run: the first 1000 bytes.
    const p = join(dest, file0.path);
    mkdirSync(dirname(p), { recursive: true });
    writeFileSync(`${p}.incomplete`, hub.files.get(file0.path)!.bytes.subarray(0, 1000));
    hub.files.get(file0.path)!.faults.push('ignore-range');
    expectIntact(await download(file0), file0);
    expect(hub.cdnLog.map((l) => l.range)).toEqual(['bytes=1000-']);
  });

  test('a body that ends early without error is detected by size and completed', async () => {
    hub.files.get(file0.path)!.faults.push('truncate');
    expectIntact(await download(file0), file0);
    expect(hub.cdnLog[1]!.range).toBe(`bytes=${file0.size - 10}-`);
  });

  test('wrong sha256: clear error, nothing left that could be mistaken for the file', async () => {
    hub.files.get(file0.path)!.faults.push('wrong-bytes');
    await expect(download(file0)).rejects.toThrow(/000_00000\.parquet .* has sha256 [0-9a-f]{64}, but the Hub lists [0-9a-f]{64}.*run again/);
    expect(existsSync(join(dest, file0.path))).toBe(false);
    expect(existsSync(join(dest, `${file0.path}.incomplete`))).toBe(false);
    // The rerun it suggests works.
    expectIntact(await download(file0), file0);
  });

  test('persistent 5xx ends in an error after the retries; 404 fails at once; token never printed', async () => {
    hub.files.get(file1.path)!.faults.push('500', '500', '500', '500', '500', '500');
    const err = await download(file1).catch((e: Error) => e);
    expect(String(err)).toMatch(/downloading sample\/10BT\/001_00000\.parquet failed after 5 attempt\(s\): .*HTTP 500/);
    expect(String(err)).not.toContain('hf_SECRET_token');
    hub.files.get(file1.path)!.faults.length = 0;
    hub.files.get(file1.path)!.faults.push('404');
    await expect(download(file1)).rejects.toThrow(/HTTP 404/);
    expect(waits.length).toBe(4);
  });

  test('parquet texts come back in order from snappy and zstd files, row group by row group', async () => {
    const p0 = await download(file0);
    const p1 = await download(file1);
    const got: string[] = [];
    for await (const t of parquetTexts(p0)) got.push(t);
    for await (const t of parquetTexts(p1)) got.push(t);
    expect(got).toEqual(texts);
    const skipped: string[] = [];
    for await (const t of parquetTexts(p1, 130)) skipped.push(t);
    expect(skipped).toEqual(part1.slice(130));
    await expect(parquetTexts(p0, 0, 'content').next()).rejects.toThrow(/has no 'content' column \(columns: id, text\)/);
  });

  test('npm run prepare-data -- --source fineweb-edu: shards equal the tiktoken stream, with HF_ENDPOINT/HF_TOKEN; the parquet files in the Hugging Face cache, offline too', async () => {
    hub.files.get(file0.path)!.faults.push('drop');
    const saved = { e: process.env['HF_ENDPOINT'], t: process.env['HF_TOKEN'], h: process.env['HF_HOME'], o: process.env['HF_HUB_OFFLINE'] };
    process.env['HF_ENDPOINT'] = hub.endpoint;
    process.env['HF_TOKEN'] = 'hf_SECRET_token';
    let log = '';
    const sink = Object.assign(new Writable({ write: (c, _e, cb) => ((log += String(c)), cb()) }), { isTTY: false });
    try {
      const out = join(dest, 'out');
      const r = (await prepareMain(['--source', 'fineweb-edu', '--out-dir', out, '--shard-size', '3001', '--workers', '2'], sink))!;
      const stream = golden.cases.flatMap((c) => [50256, ...c.tokens]);
      const nShards = Math.ceil(stream.length / 3001);
      expect(r.shards.length).toBe(nShards);
      expect(r.documents).toBe(texts.length);
      for (let i = 0; i < nShards; i++) {
        const got = readNpy(join(out, shardFileName('edufineweb', i))) as Uint16Array;
        expect(Array.from(got), `shard ${i}`).toEqual(stream.slice(i * 3001, (i + 1) * 3001));
      }
      expect(readdirSync(out).filter((f) => f.endsWith('.npy'))[0]).toBe('edufineweb_train_000001.npy');
      // "main" was pinned to its commit: every listing and download used the sha.
      expect(hub.hubLog.filter((l) => l.url.includes('/tree/') || l.url.includes('/resolve/')).every((l) => l.url.includes(`/${SHA}/`))).toBe(true);
      expect(hub.hubLog.filter((l) => l.url.includes('/resolve/')).length).toBe(3); // 2 files, one dropped once
      expect(hub.cdnLog.every((l) => l.auth === undefined)).toBe(true);
      expect(hub.hubLog.every((l) => l.auth === 'Bearer hf_SECRET_token')).toBe(true);
      expect(log).toMatch(/done: 554 documents, \d+ tokens in \d+ shards/);
      expect(log).not.toContain('hf_SECRET_token');
      // A rerun finds everything done and downloads nothing.
      const before = hub.cdnLog.length;
      const again = (await prepareMain(['--source', 'fineweb-edu', '--out-dir', out, '--shard-size', '3001'], sink))!;
      expect(again.newTokens).toBe(0);
      expect(hub.cdnLog.length).toBe(before);
      // The parquet files sit in the Hugging Face cache as huggingface_hub keeps them (blobs named by
      // their LFS sha256, relative snapshot links, refs/main), so a run with the network off and
      // HF_HUB_OFFLINE=1 makes the same shards from the cache alone.
      const folder = join(process.env['HF_HOME']!, 'hub', 'datasets--HuggingFaceFW--fineweb-edu');
      expect(readFileSync(join(folder, 'refs', 'main'), 'utf8')).toBe(SHA);
      expect(readlinkSync(join(folder, 'snapshots', SHA, file0.path))).toBe(`../../../../blobs/${file0.sha256}`);
      expect(readdirSync(join(folder, 'blobs')).sort()).toEqual([file0.sha256, file1.sha256].sort());
      process.env['HF_ENDPOINT'] = 'http://127.0.0.1:9';
      process.env['HF_HUB_OFFLINE'] = '1';
      const offline = join(dest, 'offline');
      const off = (await prepareMain(['--source', 'fineweb-edu', '--out-dir', offline, '--shard-size', '3001', '--workers', '0'], sink))!;
      expect(off.documents).toBe(texts.length);
      for (const f of readdirSync(out).filter((n) => n.endsWith('.npy'))) expect(readFileSync(join(offline, f)).equals(readFileSync(join(out, f))), f).toBe(true);
      process.env['HF_HOME'] = mkdtempSync(join(tmpdir(), 'tapegrad-empty-hf-'));
      await expect(prepareMain(['--source', 'fineweb-edu', '--out-dir', join(dest, 'none')], sink))
        .rejects.toThrow(/HF_HUB_OFFLINE is set and the Hugging Face cache .* has no HuggingFaceFW\/fineweb-edu@main \(no .*refs\/main\)/);
    } finally {
      for (const [k, v] of [['HF_ENDPOINT', saved.e], ['HF_TOKEN', saved.t], ['HF_HOME', saved.h], ['HF_HUB_OFFLINE', saved.o]] as const) {
        if (v === undefined) delete process.env[k];
        else process.env[k] = v;
      }
    }
  });

  test('--max-shards stops early (the background download of the next file is abandoned) and --max-files limits files', async () => {
    const saved = process.env['HF_ENDPOINT'];
    process.env['HF_ENDPOINT'] = hub.endpoint;
    const quiet = Object.assign(new Writable({ write: (_c, _e, cb) => cb() }), { isTTY: false });
    try {
      const out = join(dest, 'max');
      const r = (await prepareMain(['--source', 'fineweb-edu', '--out-dir', out, '--shard-size', '1000', '--max-shards', '2', '--workers', '1'], quiet))!;
      expect(r.shards.map((p) => basename(p))).toEqual(['edufineweb_val_000000.npy', 'edufineweb_train_000001.npy']);
      expect(readdirSync(out).filter((f) => f.endsWith('.npy')).length).toBe(2);
      const one = (await prepareMain(['--source', 'fineweb-edu', '--out-dir', join(dest, 'one'), '--shard-size', '100000', '--max-files', '1', '--workers', '0'], quiet))!;
      expect(one.documents).toBe(part0.length);
      expect(one.tokens).toBe(golden.cases.slice(0, part0.length).reduce((a, c) => a + 1 + c.tokens.length, 0));
    } finally {
      if (saved === undefined) delete process.env['HF_ENDPOINT'];
      else process.env['HF_ENDPOINT'] = saved;
    }
  });

  test('prepare-data refuses bad arguments with the usage', async () => {
    await expect(prepareMain(['--source', 'web', '--out-dir', dest])).rejects.toThrow(/--source: expected one of fineweb-edu, embedded, got 'web'/);
    await expect(prepareMain(['--source', 'embedded'])).rejects.toThrow(/--out-dir is required/);
    await expect(prepareMain(['--source', 'embedded', '--out-dir', dest, '--shard-size', '0'])).rejects.toThrow(/--shard-size: expected an integer >= 1, got '0'/);
    await expect(prepareMain(['--source', 'embedded', '--out-dir', dest, '--shard'])).rejects.toThrow(/unknown flag --shard; did you mean --shard-size\?/);
  });
});

describe('fineweb-edu source without a network', () => {
  test('says each retry and its wait (it once waited minutes in silence)', async () => {
    const { FineWebEduSource } = await import('../src/data/sources.js');
    let said = '';
    const stream = new Writable({ write(chunk, _enc, done) { said += String(chunk); done(); } });
    // port 1 on loopback: nothing listens, every attempt is refused at once
    const src = new FineWebEduSource({ cacheDir: mkdtempSync(join(tmpdir(), 'tapegrad-nonet-')), endpoint: 'http://127.0.0.1:1', retries: 2,
      backoffMs: 1, maxBackoffMs: 2, sleep: async () => {}, stream: stream as unknown as NodeJS.WritableStream, progress: false });
    await expect(src.open()).rejects.toThrow(/failed after 3 attempt\(s\)/);
    expect(said).toMatch(/retry 1\/2 in [\d.]+ s/);
    expect(said).toMatch(/retry 2\/2 in [\d.]+ s/);
  });
});
