// Hugging Face Hub access with Node's fetch, as huggingface_hub does it: the revision and tree APIs
// to pin and list, a HEAD of a resolve URL for a file's commit, etag and size, and downloads that
// resume after a dropped connection, back off on 429/5xx, keep the token from other hosts and are
// checked against the LFS sha256. (hf-cache.ts files them where Python's cache keeps them.)
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, readFileSync, renameSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';

export interface HubOptions {
  /** Default: $HF_ENDPOINT or https://huggingface.co. */
  endpoint?: string;
  /** Default: $HF_TOKEN. Sent only to the endpoint's own origin, never to a redirect target elsewhere. */
  token?: string;
  /** Attempts after a failure that made no progress (connection error, 408, 429, 5xx); default 8. */
  retries?: number;
  /** First backoff; doubles per failed attempt up to maxBackoffMs. Defaults 1000 / 60000. */
  backoffMs?: number;
  maxBackoffMs?: number;
  /** Injectable wait (tests record waits instead of sleeping). */
  sleep?: (ms: number) => Promise<void>;
  /** Notes about retries and restarts; default: none. */
  log?: (msg: string) => void;
  /** Aborts requests and waits (a partial download stays resumable). */
  signal?: AbortSignal;
}

export interface HubFile {
  /** Path inside the repository, e.g. "sample/10BT/000_00000.parquet". */
  path: string;
  size: number;
  /** sha256 of the content for LFS files (tree API `lfs.oid`). */
  sha256?: string;
  /** What huggingface_hub names its blob: the LFS sha256, else the git blob id. */
  etag?: string;
}

/** A failure that retrying will not fix (404, 401, checksum mismatch...). */
export class HubError extends Error {
  constructor(message: string, readonly retryable = false, readonly retryAfterMs?: number, readonly status?: number) {
    super(message);
    this.name = 'HubError';
  }
}

interface Resolved {
  endpoint: string;
  token: string | undefined;
  retries: number;
  backoffMs: number;
  maxBackoffMs: number;
  sleep: (ms: number) => Promise<void>;
  log: (msg: string) => void;
  signal: AbortSignal | undefined;
}

/** The token huggingface_hub would send: $HF_TOKEN, else the one `hf auth login` saved ($HF_TOKEN_PATH, $HF_HOME/token). */
export function hubToken(env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (env['HF_TOKEN']) return env['HF_TOKEN'];
  const file = env['HF_TOKEN_PATH'] || join(hfHome(env), 'token');
  try {
    return readFileSync(file, 'utf8').trim() || undefined;
  } catch {
    return undefined;
  }
}

/** $HF_HOME, else $XDG_CACHE_HOME/huggingface, else ~/.cache/huggingface (huggingface_hub's constants.py). */
export function hfHome(env: NodeJS.ProcessEnv = process.env): string {
  return env['HF_HOME'] || join(env['XDG_CACHE_HOME'] || join(homedir(), '.cache'), 'huggingface');
}

/** The Hub's address: the given one, else $HF_ENDPOINT (a mirror), else https://huggingface.co. */
export function hubEndpoint(endpoint?: string): string {
  return (endpoint ?? (process.env['HF_ENDPOINT'] || 'https://huggingface.co')).replace(/\/+$/, '');
}

function resolve(opts: HubOptions): Resolved {
  return {
    endpoint: hubEndpoint(opts.endpoint),
    token: opts.token ?? hubToken(),
    retries: opts.retries ?? 8,
    backoffMs: opts.backoffMs ?? 1000,
    maxBackoffMs: opts.maxBackoffMs ?? 60_000,
    sleep:
      opts.sleep ??
      ((ms) =>
        new Promise<void>((r) => {
          // An abort ends the wait at once; the next request then fails with the abort.
          const t = setTimeout(r, ms);
          opts.signal?.addEventListener('abort', () => (clearTimeout(t), r()), { once: true });
        })),
    log: opts.log ?? (() => {}),
    signal: opts.signal,
  };
}

const encodePath = (p: string): string => p.split('/').map(encodeURIComponent).join('/');

/** The Hub's two kinds of repository here: models (GPT-2's weights) and datasets (FineWeb-Edu). */
export type RepoType = 'model' | 'dataset';
const apiBase = (endpoint: string, type: RepoType, repo: string): string => `${endpoint}/api/${type}s/${repo}`;

export function treeUrl(endpoint: string, repo: string, revision: string, path: string, type: RepoType = 'dataset'): string {
  return `${apiBase(endpoint, type, repo)}/tree/${encodeURIComponent(revision)}/${encodePath(path)}`;
}

export function resolveUrl(endpoint: string, repo: string, revision: string, path: string, type: RepoType = 'dataset'): string {
  return `${endpoint}/${type === 'dataset' ? 'datasets/' : ''}${repo}/resolve/${encodeURIComponent(revision)}/${encodePath(path)}`;
}

/** Retry-After is either delay-seconds or an HTTP date. */
function retryAfterMs(h: string | null): number | undefined {
  if (h === null) return undefined;
  if (/^\d+$/.test(h.trim())) return Number(h.trim()) * 1000;
  const t = Date.parse(h);
  return Number.isNaN(t) ? undefined : Math.max(0, t - Date.now());
}

/**
 * fetch that follows redirects itself so the Authorization header goes only to the endpoint's
 * origin (the Hub redirects LFS downloads to a CDN on another host, which must not see the token).
 */
async function fetchFollow(url: string, headers: Record<string, string>, r: Resolved): Promise<{ res: Response; url: string }> {
  const origin = new URL(r.endpoint).origin;
  let current = url;
  for (let hop = 0; hop < 10; hop++) {
    const h: Record<string, string> = { ...headers };
    if (r.token !== undefined && new URL(current).origin === origin) h['authorization'] = `Bearer ${r.token}`;
    const res = await fetch(current, { headers: h, redirect: 'manual', ...(r.signal ? { signal: r.signal } : {}) });
    if (res.status >= 300 && res.status < 400 && res.headers.has('location')) {
      await res.body?.cancel();
      current = new URL(res.headers.get('location')!, current).href;
      continue;
    }
    return { res, url: current };
  }
  throw new HubError(`hub: more than 10 redirects starting at ${url}`);
}

/** Throws HubError for a response that is not a success, retryable for 408/429/5xx. */
async function checkStatus(res: Response, what: string): Promise<void> {
  if (res.ok || res.status === 206) return;
  const body = (await res.text().catch(() => '')).slice(0, 200);
  const retryable = res.status === 408 || res.status === 429 || res.status >= 500;
  let hint = '';
  if (res.status === 401 || res.status === 403) hint = ' (a gated or private repository needs HF_TOKEN set to a token with access)';
  if (res.status === 404) hint = ' (check the repository, --revision and path)';
  throw new HubError(`hub: ${what}: HTTP ${res.status}${hint}${body ? `: ${body}` : ''}`, retryable, retryAfterMs(res.headers.get('retry-after')), res.status);
}

function isRetryable(e: unknown, r: Resolved): boolean {
  if (r.signal?.aborted) return false;
  if (e instanceof HubError) return e.retryable;
  // fetch rejects with TypeError("fetch failed") on connection errors, and a body stream cut
  // mid-way errors with "terminated" / ECONNRESET: all worth another try.
  return true;
}

function backoff(r: Resolved, attempt: number, e: unknown): number {
  const base = Math.min(r.maxBackoffMs, r.backoffMs * 2 ** attempt);
  const after = e instanceof HubError ? e.retryAfterMs : undefined;
  return after !== undefined ? Math.max(after, base) : base;
}

async function withRetries<T>(r: Resolved, what: string, fn: () => Promise<T>): Promise<T> {
  for (let attempt = 0; ; attempt++) {
    try {
      return await fn();
    } catch (e) {
      if (!isRetryable(e, r) || attempt >= r.retries) throw wrap(e, what, attempt);
      const wait = backoff(r, attempt, e);
      r.log(`${what}: ${(e as Error).message}; retry ${attempt + 1}/${r.retries} in ${(wait / 1000).toFixed(1)} s`);
      await r.sleep(wait);
    }
  }
}

function wrap(e: unknown, what: string, attempts: number): Error {
  if (e instanceof HubError && !e.retryable) return e;
  const cause = e instanceof Error ? `${e.message}${e.cause instanceof Error ? ` (${e.cause.message})` : ''}` : String(e);
  return new HubError(`hub: ${what} failed after ${attempts + 1} attempt(s): ${cause}`);
}

/**
 * The commit a revision (branch, tag or commit) points at, via /api/datasets/{repo}/revision/{rev}.
 * Pinning it keeps a long run, and its resumes, on one version of the dataset.
 */
export async function resolveRevision(repo: string, revision: string, opts: HubOptions = {}, type: RepoType = 'dataset'): Promise<string> {
  if (COMMIT.test(revision)) return revision;
  const r = resolve(opts);
  const url = `${apiBase(r.endpoint, type, repo)}/revision/${encodeURIComponent(revision)}`;
  return withRetries(r, `resolving ${repo}@${revision}`, async () => {
    const { res } = await fetchFollow(url, { accept: 'application/json' }, r);
    await checkStatus(res, `resolving ${url}`);
    const info = (await res.json()) as { sha?: unknown };
    if (typeof info.sha !== 'string' || !COMMIT.test(info.sha)) {
      throw new HubError(`hub: ${url} did not give a commit sha for ${repo}@${revision}`);
    }
    return info.sha;
  });
}

/** A full git commit hash (a revision that needs no resolving). */
export const COMMIT = /^[0-9a-f]{40}$/;

interface TreeEntry {
  type: string;
  path: string;
  size?: number;
  oid?: string;
  lfs?: { oid?: string; size?: number };
}

/** Files directly under `path` in a dataset repo at `revision`, sorted by path (tree API, paged by Link headers). */
export async function listHubFiles(repo: string, revision: string, path: string, opts: HubOptions = {}, type: RepoType = 'dataset'): Promise<HubFile[]> {
  const r = resolve(opts);
  const files: HubFile[] = [];
  let url: string | undefined = treeUrl(r.endpoint, repo, revision, path, type);
  while (url !== undefined) {
    const pageUrl: string = url;
    const { entries, next } = await withRetries(r, `listing ${repo}@${revision}/${path}`, async () => {
      const { res } = await fetchFollow(pageUrl, { accept: 'application/json' }, r);
      await checkStatus(res, `listing ${pageUrl}`);
      const entries = (await res.json()) as TreeEntry[];
      if (!Array.isArray(entries)) throw new HubError(`hub: ${pageUrl} did not answer a JSON array of files`);
      const link = res.headers.get('link');
      const m = link ? /<([^>]+)>;\s*rel="next"/.exec(link) : null;
      return { entries, next: m ? new URL(m[1]!, pageUrl).href : undefined };
    });
    for (const e of entries) {
      if (e.type !== 'file') continue;
      const size = e.lfs?.size ?? e.size;
      if (size === undefined) throw new HubError(`hub: tree entry ${e.path} has no size`);
      const etag = e.lfs?.oid ?? e.oid;
      files.push({ path: e.path, size, ...(e.lfs?.oid ? { sha256: e.lfs.oid } : {}), ...(etag ? { etag } : {}) });
    }
    url = next;
  }
  return files.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

export interface DownloadOptions extends HubOptions {
  /** Called with bytes on disk so far and the expected total. */
  onProgress?: (bytes: number, total: number) => void;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(path)) h.update(chunk as Buffer);
  return h.digest('hex');
}

const sizeOf = (p: string): number => (existsSync(p) ? statSync(p).size : 0);

/**
 * Downloads one file of a dataset repo to destDir/<file.path> and returns that path (see downloadUrl);
 * a file already there with the right size is not downloaded again.
 */
export async function downloadHubFile(repo: string, revision: string, file: HubFile, destDir: string, opts: DownloadOptions = {}): Promise<string> {
  const dest = join(destDir, file.path);
  if (existsSync(dest) && statSync(dest).size === file.size) return dest;
  const url = resolveUrl(resolve(opts).endpoint, repo, revision, file.path);
  await downloadUrl(url, dest, { size: file.size, sha256: file.sha256, name: file.path, source: `${repo}@${revision}` }, opts);
  return dest;
}

export interface Expected {
  /** Bytes; when not known, the first response's length says it. */
  size?: number | undefined;
  sha256?: string | undefined;
  /** For messages: the file's name, and where it comes from. */
  name: string;
  source: string;
}

/**
 * Downloads `url` to `dest`. Bytes go to "<dest>.incomplete" (huggingface_hub's name, so either
 * resumes the other's), resumed with a Range request after an interruption; only a file of the
 * right size (and sha256, when known) is renamed into place, so nothing half-written is ever read.
 */
export async function downloadUrl(url: string, dest: string, file: Expected, opts: DownloadOptions = {}): Promise<void> {
  const r = resolve(opts);
  mkdirSync(dirname(dest), { recursive: true });
  const part = `${dest}.incomplete`;
  const what = `downloading ${file.name}`;
  let size = file.size;
  let failures = 0; // consecutive attempts that added no bytes

  for (;;) {
    let have = sizeOf(part);
    if (size !== undefined && have > size) {
      r.log(`${what}: ${part} is larger than the expected ${size} bytes; starting over`);
      rmSync(part);
      have = 0;
    }
    if (size !== undefined && have === size) break;
    const before = have;
    try {
      // identity: byte offsets and sizes must be those of the file itself, not of a compressed transfer.
      const headers: Record<string, string> = { 'accept-encoding': 'identity' };
      if (have > 0) headers['range'] = `bytes=${have}-`;
      const { res } = await fetchFollow(url, headers, r);
      if (res.status === 416) {
        // The server cannot serve our range: the partial file is not a prefix of its file.
        await res.body?.cancel();
        rmSync(part, { force: true });
        throw new HubError(`${what}: server refused range bytes=${have}- (416), restarting from zero`, true);
      }
      await checkStatus(res, what);
      let append = true;
      if (res.status === 206) {
        const cr = res.headers.get('content-range');
        const m = cr ? /bytes (\d+)-(?:\d+\/(\d+))?/.exec(cr) : null; // (a total of * says no size)
        if (!m || Number(m[1]) !== have) {
          await res.body?.cancel();
          rmSync(part, { force: true });
          throw new HubError(`${what}: asked for bytes from ${have} but the server sent range "${cr}"; restarting from zero`, true);
        }
        if (m[2] !== undefined) size ??= Number(m[2]);
      } else {
        if (have > 0) {
          // 200 to a Range request: the whole file is coming; start over rather than append.
          r.log(`${what}: server ignored the Range request; restarting from zero`);
          append = false;
          have = 0;
        }
        const length = res.headers.get('content-length');
        if (size === undefined && length !== null && /^\d+$/.test(length)) size = Number(length);
      }
      const fh = await open(part, append ? 'a' : 'w');
      try {
        const reader = res.body?.getReader();
        try {
          for (;;) {
            const chunk = reader ? await reader.read() : { done: true as const, value: undefined };
            if (chunk.done) break;
            await fh.write(chunk.value);
            have += chunk.value.length;
            if (size !== undefined && have > size) throw new HubError(`${what}: server sent more than the expected ${size} bytes`, true);
            opts.onProgress?.(have, size ?? have);
          }
        } catch (e) {
          await reader?.cancel().catch(() => {});
          throw e;
        }
      } finally {
        await fh.close();
      }
      if (size === undefined) break; // no length given: the clean end of the body is the end
      if (have < size) {
        throw new HubError(`${what}: response ended at ${have} of ${size} bytes`, true);
      }
    } catch (e) {
      if (e instanceof HubError && !e.retryable) throw e;
      if (sizeOf(part) > before) failures = 0; // progress was made: the budget starts again
      if (!isRetryable(e, r) || failures >= r.retries) throw wrap(e, what, failures);
      const wait = backoff(r, failures, e);
      r.log(`${what}: ${(e as Error).message}; retry ${failures + 1}/${r.retries} in ${(wait / 1000).toFixed(1)} s`);
      failures++;
      await r.sleep(wait);
    }
  }
  if (file.sha256 !== undefined) {
    const got = await sha256File(part);
    if (got !== file.sha256) {
      rmSync(part, { force: true });
      throw new HubError(
        `hub: ${file.name} downloaded from ${file.source} has sha256 ${got}, but the Hub lists ${file.sha256}; ` +
          'the partial file was deleted, run again to download it afresh',
      );
    }
  }
  renameSync(part, dest);
}

/** What a HEAD of a resolve URL tells (huggingface_hub's get_hf_file_metadata). */
export interface FileMetadata {
  commit: string;
  /** The LFS sha256 (X-Linked-Etag) or the git blob id (ETag), unquoted. */
  etag: string;
  size: number | undefined;
  /** Whether the file is in LFS (its etag is then its sha256). */
  lfs: boolean;
}

/**
 * HEAD of a file's resolve URL, as huggingface_hub does before it downloads: the commit the
 * revision points at (X-Repo-Commit), the etag its blob is named by, the size. A redirect to
 * another host (LFS files, to the CDN) is not followed: its headers already say all of it.
 */
export async function fileMetadata(type: RepoType, repo: string, revision: string, path: string, opts: HubOptions = {}): Promise<FileMetadata> {
  const r = resolve(opts);
  const url = resolveUrl(r.endpoint, repo, revision, path, type);
  return withRetries(r, `asking the Hub for ${repo}@${revision}: ${path}`, async () => {
    const origin = new URL(r.endpoint).origin;
    let current = url;
    for (let hop = 0; hop < 10; hop++) {
      const h: Record<string, string> = { 'accept-encoding': 'identity' };
      if (r.token !== undefined && new URL(current).origin === origin) h['authorization'] = `Bearer ${r.token}`;
      const res = await fetch(current, { method: 'HEAD', headers: h, redirect: 'manual', ...(r.signal ? { signal: r.signal } : {}) });
      const location = res.headers.get('location');
      const redirect = res.status >= 300 && res.status < 400 && location !== null;
      if (redirect && new URL(location, current).origin === new URL(current).origin && !res.headers.has('x-linked-etag')) {
        current = new URL(location, current).href; // a renamed repo: same host
        continue;
      }
      if (!redirect) await checkStatus(res, `${url}`);
      const commit = res.headers.get('x-repo-commit');
      const linked = res.headers.get('x-linked-etag');
      const etag = (linked ?? res.headers.get('etag'))?.replace(/^W\//, '').replace(/^"|"$/g, '');
      if (!commit || !COMMIT.test(commit) || !etag) {
        throw new HubError(`hub: ${url} answered without X-Repo-Commit and ETag; is ${r.endpoint} a Hugging Face Hub (HF_ENDPOINT)?`);
      }
      const sizeHeader = res.headers.get('x-linked-size') ?? (redirect ? null : res.headers.get('content-length'));
      return { commit, etag, size: sizeHeader !== null && /^\d+$/.test(sizeHeader) ? Number(sizeHeader) : undefined, lfs: linked !== null };
    }
    throw new HubError(`hub: more than 10 redirects starting at ${url}`);
  });
}
