// Pretrained models by name (--init-from OWNER/NAME, gpt2) through the Hugging Face cache shared with
// Python. A local hub answers as the real one does (resolve URLs with X-Repo-Commit and ETag, the LFS
// file redirected to a CDN on another origin with X-Linked-Etag / X-Linked-Size), serving the tiny
// GPT-2 of test/fixtures/make_hub_fixtures.py. The oracles come from Python: the greedy tokens from
// PyTorch, and the cache layout from the real huggingface_hub downloading the same repo.

import { spawn } from 'node:child_process';
import { cpSync, existsSync, lstatSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, readlinkSync, writeFileSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { gpt2Tokenizer } from '../src/data/tokenizer.js';
import { parseHubModel } from '../src/train/pretrained.js';
import { writeTinyShards } from './helpers/tiny-data.js';

const ROOT = join(import.meta.dirname, '..');
const FIX = join(import.meta.dirname, 'fixtures', 'hub');
interface Served { lfs: boolean; git_oid: string; sha256: string; size: number }
type Entry = { path: string; type: 'dir' } | { path: string; type: 'link'; target: string } | { path: string; type: 'file'; size: number; sha256: string };
const python = JSON.parse(readFileSync(join(FIX, 'python-cache.json'), 'utf8')) as { repo: string; commit: string; served: Record<string, Served>; layout: Entry[] };
const greedy = JSON.parse(readFileSync(join(FIX, 'greedy.json'), 'utf8')) as { prompt: string; prompt_ids: number[]; tokens: number[] };
const REPO = python.repo, COMMIT = python.commit;
const PYTHON_CACHE = join(FIX, 'python-cache');
const blobOf = (name: string): Buffer => {
  const f = python.served[name]!;
  return readFileSync(join(PYTHON_CACHE, `models--${REPO.replace('/', '--')}`, 'blobs', f.lfs ? f.sha256 : f.git_oid));
};

type Fault = 'drop' | '503';
/** The imitation Hub and its CDN on another origin, with what each was asked. */
class LocalHub {
  hubLog: { method: string; url: string; auth: string | undefined }[] = [];
  cdnLog: { url: string; auth: string | undefined; range: string | undefined }[] = [];
  faults: Fault[] = [];
  /** Repositories beyond the fixture's: name -> files (for the pytorch_model.bin-only case). */
  extra = new Map<string, Map<string, Buffer>>();
  private hub!: Server;
  private cdn!: Server;
  endpoint = '';
  private cdnBase = '';

  async start(): Promise<void> {
    this.hub = createServer((q, s) => this.onHub(q, s));
    this.cdn = createServer((q, s) => this.onCdn(q, s));
    await Promise.all([listen(this.hub), listen(this.cdn)]);
    this.endpoint = `http://127.0.0.1:${(this.hub.address() as AddressInfo).port}`;
    this.cdnBase = `http://127.0.0.1:${(this.cdn.address() as AddressInfo).port}`;
  }

  async stop(): Promise<void> {
    for (const s of [this.hub, this.cdn]) s.closeAllConnections();
    await Promise.all([new Promise((r) => this.hub.close(r)), new Promise((r) => this.cdn.close(r))]);
  }

  private onHub(req: IncomingMessage, res: ServerResponse): void {
    this.hubLog.push({ method: req.method!, url: req.url!, auth: req.headers.authorization });
    const m = /^\/([^/]+\/[^/]+)\/resolve\/([^/]+)\/(.+)$/.exec(req.url!.split('?')[0]!);
    if (!m) return void res.writeHead(404).end();
    const [, repo, rev, file] = m.map(decodeURIComponent) as [string, string, string, string];
    const extra = this.extra.get(repo);
    if (extra) {
      const b = extra.get(file);
      if (!b) return void res.writeHead(404, { 'x-error-code': 'EntryNotFound' }).end();
      return void res.writeHead(200, { 'x-repo-commit': COMMIT, etag: `"${createHash('sha1').update(b).digest('hex')}"`, 'content-length': b.length }).end(req.method === 'GET' ? b : undefined);
    }
    if (repo !== REPO) return void res.writeHead(401, { 'x-error-code': 'RepoNotFound' }).end('Repository not found');
    const f = python.served[file];
    if (!['main', COMMIT].includes(rev) || !f) return void res.writeHead(404, { 'x-error-code': 'EntryNotFound' }).end();
    if (f.lfs) {
      return void res.writeHead(302, {
        location: `${this.cdnBase}/lfs/${file}?X-Amz-Signature=x`, 'x-repo-commit': COMMIT, etag: `"${f.git_oid}"`,
        'x-linked-etag': `"${f.sha256}"`, 'x-linked-size': String(f.size), 'content-length': '0',
      }).end();
    }
    const b = blobOf(file);
    res.writeHead(200, { 'x-repo-commit': COMMIT, etag: `"${f.git_oid}"`, 'content-length': b.length }).end(req.method === 'GET' ? b : undefined);
  }

  private onCdn(req: IncomingMessage, res: ServerResponse): void {
    this.cdnLog.push({ url: req.url!, auth: req.headers.authorization, range: req.headers.range });
    const body = blobOf(decodeURIComponent(req.url!.split('?')[0]!.replace('/lfs/', '')));
    const fault = this.faults.shift();
    if (fault === '503') return void res.writeHead(503, { 'retry-after': '0' }).end('busy');
    const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
    const part = body.subarray(start);
    res.writeHead(start > 0 ? 206 : 200, { 'content-length': part.length, ...(start > 0 ? { 'content-range': `bytes ${start}-${body.length - 1}/${body.length}` } : {}) });
    if (fault === 'drop') { // a third of the bytes, then the connection cut
      res.write(part.subarray(0, Math.floor(part.length / 3)));
      setTimeout(() => res.socket?.destroy(), 50);
      return;
    }
    res.end(part);
  }
}

function listen(s: Server): Promise<void> {
  return new Promise((r) => s.listen(0, '127.0.0.1', () => r()));
}

/** A CLI as a child process with the given environment (asynchronously: the test's hub must keep answering). */
function cli(script: string, args: string[], env: Record<string, string | undefined>, cwd = ROOT): Promise<{ code: number; out: string; err: string }> {
  const child = spawn(process.execPath, [join(ROOT, 'dist/train', script), ...args], { cwd, env: { ...process.env, ...env } });
  let out = '', err = '';
  child.stdout.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr.on('data', (d: Buffer) => { err += d.toString(); });
  const timer = setTimeout(() => child.kill('SIGKILL'), 120_000);
  child.on('error', (e) => { err += String(e); });
  return new Promise((resolve) => child.on('close', (code) => { clearTimeout(timer); resolve({ code: code ?? -1, out, err }); }));
}

/** Every entry under `root`, as make_hub_fixtures.py describes a cache (path, type, link target, content hash). */
function describeTree(root: string): Entry[] {
  const out: Entry[] = [];
  const walk = (dir: string): void => {
    for (const n of readdirSync(dir).sort()) {
      const p = join(dir, n), path = relative(root, p), st = lstatSync(p);
      if (st.isSymbolicLink()) out.push({ path, type: 'link', target: readlinkSync(p) });
      else if (st.isDirectory()) { out.push({ path, type: 'dir' }); walk(p); }
      else { const b = readFileSync(p); out.push({ path, type: 'file', size: b.length, sha256: createHash('sha256').update(b).digest('hex') }); }
    }
  };
  walk(root);
  return out.sort((a, b) => (a.path < b.path ? -1 : 1));
}
/** The cache without the lock files (huggingface_hub's .locks/*.lock are its filelock's; ours are gone once released). */
const withoutLocks = (t: Entry[]): Entry[] => t.filter((e) => !e.path.startsWith('.locks'));

const hub = new LocalHub();
const work = mkdtempSync(join(tmpdir(), 'tapegrad-hub-models-'));
const expectedText = gpt2Tokenizer().decode([...greedy.prompt_ids, ...greedy.tokens]);
const sampleArgs = (initFrom: string): string[] => ['--init-from', initFrom, '--prompt', greedy.prompt, '--top-k', '1', '--max-tokens', String(greedy.tokens.length),
  '--num-samples', '1', '--backend', 'js'];

beforeAll(async () => {
  await hub.start();
});
afterAll(async () => {
  await hub.stop();
});

describe('--init-from a Hub model, through the Hugging Face cache', { timeout: 120_000 }, () => {
  const cache = join(work, 'ours');

  it('the prompt encodes to the ids PyTorch decoded from (GPT-2 ids 262, 11, 257, 13)', () => {
    expect(gpt2Tokenizer().encode(greedy.prompt)).toEqual(greedy.prompt_ids);
  });

  it('sample --init-from OWNER/NAME --top-k 1: downloads through a dropped connection and a 503, prints PyTorch\'s greedy tokens; the CDN never sees the token', async () => {
    hub.faults.push('drop', '503');
    const r = await cli('sample.js', sampleArgs(REPO), { HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: cache, HF_TOKEN: 'hf_SECRET_token' });
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(expectedText);
    expect(r.err).toMatch(/retry 1\//);
    expect(hub.cdnLog.length).toBeGreaterThanOrEqual(3);
    expect(hub.cdnLog.some((l) => /^bytes=[1-9]\d*-$/.test(l.range ?? ''))).toBe(true); // resumed, not restarted
    expect(hub.cdnLog.every((l) => l.auth === undefined)).toBe(true);
    expect(hub.hubLog.every((l) => l.auth === 'Bearer hf_SECRET_token')).toBe(true);
    expect(r.out + r.err).not.toContain('hf_SECRET_token');
  });

  it('leaves the cache huggingface_hub leaves: the same blobs, snapshot links, ref and CACHEDIR.TAG', () => {
    expect(withoutLocks(describeTree(cache))).toEqual(withoutLocks(python.layout).sort((a, b) => (a.path < b.path ? -1 : 1)));
    expect(readdirSync(join(cache, `models--${REPO.replace('/', '--')}`, 'blobs')).some((f) => f.endsWith('.incomplete'))).toBe(false);
  });

  it('a second run makes no request, and one with the hub gone and HF_HUB_OFFLINE=1 gives the same text', async () => {
    const before = hub.hubLog.length + hub.cdnLog.length;
    const again = await cli('sample.js', sampleArgs(REPO), { HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: cache });
    expect(again.out).toContain(expectedText);
    expect(hub.hubLog.length + hub.cdnLog.length).toBe(before);
    const off = await cli('sample.js', sampleArgs(REPO), { HF_ENDPOINT: 'http://127.0.0.1:9', HF_HUB_CACHE: cache, HF_HUB_OFFLINE: '1' });
    expect(off.code, off.err).toBe(0);
    expect(off.out).toContain(expectedText);
  });

  it('HF_HUB_OFFLINE=1 with the model not cached: an error naming the repo, the file and the cache', async () => {
    const empty = join(work, 'empty');
    const r = await cli('sample.js', sampleArgs(REPO), { HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: empty, HF_HUB_OFFLINE: '1' });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(new RegExp(`HF_HUB_OFFLINE is set and ${REPO}@main: config\\.json is not in the Hugging Face cache ${empty}`));
  });

  it('a cache Python filled (the fixture) is used without any request, by branch or by commit', async () => {
    const py = join(work, 'python');
    cpSync(PYTHON_CACHE, py, { recursive: true, verbatimSymlinks: true });
    const before = hub.hubLog.length + hub.cdnLog.length;
    for (const name of [REPO, `${REPO}@${COMMIT}`]) {
      const r = await cli('sample.js', sampleArgs(name), { HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: py });
      expect(r.code, r.err).toBe(0);
      expect(r.out).toContain(expectedText);
    }
    expect(hub.hubLog.length + hub.cdnLog.length).toBe(before);
  });

  it('HF_HOME/hub is the cache when HF_HUB_CACHE is unset, and GPT.fromPretrained takes the name too', async () => {
    const home = join(work, 'home');
    mkdirSync(join(home, 'hub'), { recursive: true });
    cpSync(PYTHON_CACHE, join(home, 'hub'), { recursive: true, verbatimSymlinks: true });
    const r = await cli('sample.js', sampleArgs(REPO), { HF_ENDPOINT: 'http://127.0.0.1:9', HF_HUB_CACHE: undefined, HF_HOME: home, HF_HUB_OFFLINE: '1' });
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(expectedText);
    const saved = { ...process.env };
    Object.assign(process.env, { HF_HUB_CACHE: join(home, 'hub'), HF_HUB_OFFLINE: '1' });
    try {
      const { GPT } = await import('../src/nn/gpt.js');
      const m = await GPT.fromPretrained(REPO);
      expect(m.config).toMatchObject({ nLayer: 2, nHead: 2, nEmbd: 16, vocabSize: 512 });
    } finally {
      process.env = saved;
    }
  });

  it('train and export take the name too (from the Python cache, offline)', async () => {
    const py = join(work, 'python-train');
    cpSync(PYTHON_CACHE, py, { recursive: true, verbatimSymlinks: true });
    const data = join(work, 'tiny-data');
    mkdirSync(data, { recursive: true });
    writeTinyShards(data, { seed: 3, noise: 0.2, stride: 7, vocab: 512, val: 400, train: [2000] });
    const env = { HF_ENDPOINT: 'http://127.0.0.1:9', HF_HUB_CACHE: py, HF_HUB_OFFLINE: '1' };
    const t = await cli('cli.js', ['--init-from', REPO, '--data-dir', data, '--out-dir', join(work, 'ft'), '--batch-size', '2', '--seq-len', '16',
      '--total-batch-size', '32', '--max-steps', '2', '--eval-interval', '1', '--val-steps', '1', '--sample-interval', '0', '--backend', 'js'], env);
    expect(t.code, t.err).toBe(0);
    expect(t.out).toMatch(/model: 2 layers, 2 heads, 16 embd, block 32, vocab 512/);
    const x = await cli('export.js', ['--init-from', `${REPO}@${COMMIT}`, '--out-dir', join(work, 'exported')], env);
    expect(x.code, x.err).toBe(0);
    expect(JSON.parse(readFileSync(join(work, 'exported', 'config.json'), 'utf8'))).toMatchObject({ n_layer: 2, n_embd: 16, vocab_size: 512 });
  });

  it('a repo with only pytorch_model.bin: an error saying so and how to convert; an unknown repo: the Hub\'s answer and what --init-from takes', async () => {
    hub.extra.set('someone/pickled', new Map([['config.json', blobOf('config.json')], ['pytorch_model.bin', Buffer.from('not really a pickle')]]));
    const r = await cli('sample.js', sampleArgs('someone/pickled'), { HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: join(work, 'pickle') });
    expect(r.code).toBe(1);
    expect(r.err).toMatch(/someone\/pickled@main has no model\.safetensors, only pytorch_model\.bin .*save_pretrained\("DIR", safe_serialization=True\), then --init-from DIR/);
    const u = await cli('sample.js', sampleArgs('nobody/nothing'), { HF_ENDPOINT: hub.endpoint, HF_HUB_CACHE: join(work, 'none') });
    expect(u.code).toBe(1);
    expect(u.err).toMatch(/nobody\/nothing: no such file or folder here, and the Hugging Face Hub has no model nobody\/nothing@main .*HTTP 401/);
  });

  it('names: gpt2..gpt2-xl map to openai-community, OWNER/NAME[@REV] to itself; a local path wins', () => {
    expect(parseHubModel('gpt2')).toEqual({ repo: 'openai-community/gpt2', revision: 'main' });
    expect(parseHubModel('gpt2-xl@v1')).toEqual({ repo: 'openai-community/gpt2-xl', revision: 'v1' });
    expect(parseHubModel('me/model@refs/pr/1')).toEqual({ repo: 'me/model', revision: 'refs/pr/1' });
    expect(parseHubModel('gpt3')).toBeNull();
    expect(parseHubModel('../x/y')).toBeNull();
    const local = join(work, 'gpt2');
    mkdirSync(local, { recursive: true });
    const cwd = process.cwd();
    process.chdir(work);
    try { expect(parseHubModel('gpt2')).toBeNull(); } finally { process.chdir(cwd); }
  });
});

describe('HellaSwag data as hellaswag.py fetches it', { timeout: 120_000 }, () => {
  it('eval:hellaswag without --data downloads hellaswag_val.jsonl (resuming a dropped transfer) into hellaswag/, then reuses it; offline, a missing one names the URL', async () => {
    const jsonl = readFileSync(join(import.meta.dirname, 'fixtures', 'hellaswag_examples.jsonl'));
    let drops = 1;
    const ranges: (string | undefined)[] = [];
    const server = createServer((req, res) => {
      ranges.push(req.headers.range);
      const start = Number(/^bytes=(\d+)-$/.exec(req.headers.range ?? '')?.[1] ?? 0);
      const part = jsonl.subarray(start);
      res.writeHead(start ? 206 : 200, { 'content-length': part.length, ...(start ? { 'content-range': `bytes ${start}-${jsonl.length - 1}/${jsonl.length}` } : {}) });
      if (drops-- > 0) { res.write(part.subarray(0, 100)); setTimeout(() => res.socket?.destroy(), 50); return; }
      res.end(part);
    });
    await listen(server);
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/data/hellaswag_val.jsonl`;
    const cwd = join(work, 'hs');
    mkdirSync(cwd, { recursive: true });
    const model = join(import.meta.dirname, 'fixtures', 'hellaswag_tiny_gpt2');
    try {
      const args = ['--init-from', model, '--limit', '2', '--backend', 'js'];
      const r = await cli('hellaswag.js', args, { TAPEGRAD_HELLASWAG_URL: url }, cwd);
      expect(r.code, r.err).toBe(0);
      expect(readFileSync(join(cwd, 'hellaswag', 'hellaswag_val.jsonl')).equals(jsonl)).toBe(true);
      expect(ranges).toEqual([undefined, 'bytes=100-']);
      expect(r.out).toMatch(/2 acc: [\d.]+ acc_norm: [\d.]+/);
      const again = await cli('hellaswag.js', args, { TAPEGRAD_HELLASWAG_URL: url }, cwd);
      expect(again.code, again.err).toBe(0);
      expect(ranges.length).toBe(2);
      mkdirSync(join(work, 'hs-off'));
      const off = await cli('hellaswag.js', args, { TAPEGRAD_HELLASWAG_URL: url, HF_HUB_OFFLINE: '1' }, join(work, 'hs-off'));
      expect(off.code).toBe(1);
      expect(off.err).toContain(`download ${url} to hellaswag/hellaswag_val.jsonl`);
    } finally {
      server.closeAllConnections();
      await new Promise((r) => server.close(r));
    }
  });
});

// (for a reader: the fixture cache must hold real symlinks, as git keeps them)
it('the committed Python cache holds symlinks', () => {
  const link = join(PYTHON_CACHE, `models--${REPO.replace('/', '--')}`, 'snapshots', COMMIT, 'config.json');
  expect(lstatSync(link).isSymbolicLink()).toBe(true);
  expect(existsSync(link)).toBe(true);
  writeFileSync(join(work, 'ok'), '');
});
