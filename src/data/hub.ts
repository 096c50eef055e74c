// Hugging Face Hub access with Node's fetch, as huggingface_hub does it for load_dataset:
// tree API to list files, resolve URLs to download them, resumable and checked against the LFS sha256.
import { createHash } from 'node:crypto';
import { createReadStream, existsSync, mkdirSync, renameSync, rmSync, statSync } from 'node:fs';
import { open } from 'node:fs/promises';
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
}

/** A failure that retrying will not fix (404, 401, checksum mismatch...). */
export class HubError extends Error {
  constructor(message: string, readonly retryable = false, readonly retryAfterMs?: number) {
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

function resolve(opts: HubOptions): Resolved {
  return {
    endpoint: (opts.endpoint ?? (process.env['HF_ENDPOINT'] || 'https://huggingface.co')).replace(/\/+$/, ''),
    token: opts.token ?? (process.env['HF_TOKEN'] || undefined),
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

export function treeUrl(endpoint: string, repo: string, revision: string, path: string): string {
  return `${endpoint}/api/datasets/${repo}/tree/${encodeURIComponent(revision)}/${encodePath(path)}`;
}

export function resolveUrl(endpoint: string, repo: string, revision: string, path: string): string {
  return `${endpoint}/datasets/${repo}/resolve/${encodeURIComponent(revision)}/${encodePath(path)}`;
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
  throw new HubError(`hub: ${what}: HTTP ${res.status}${hint}${body ? `: ${body}` : ''}`, retryable, retryAfterMs(res.headers.get('retry-after')));
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
export async function resolveRevision(repo: string, revision: string, opts: HubOptions = {}): Promise<string> {
  if (/^[0-9a-f]{40}$/.test(revision)) return revision;
  const r = resolve(opts);
  const url = `${r.endpoint}/api/datasets/${repo}/revision/${encodeURIComponent(revision)}`;
  return withRetries(r, `resolving ${repo}@${revision}`, async () => {
    const { res } = await fetchFollow(url, { accept: 'application/json' }, r);
    await checkStatus(res, `resolving ${url}`);
    const info = (await res.json()) as { sha?: unknown };
    if (typeof info.sha !== 'string' || !/^[0-9a-f]{40}$/.test(info.sha)) {
      throw new HubError(`hub: ${url} did not give a commit sha for ${repo}@${revision}`);
    }
    return info.sha;
  });
}

interface TreeEntry {
  type: string;
  path: string;
  size?: number;
  lfs?: { oid?: string; size?: number };
}

/** Files directly under `path` in a dataset repo at `revision`, sorted by path (tree API, paged by Link headers). */
export async function listHubFiles(repo: string, revision: string, path: string, opts: HubOptions = {}): Promise<HubFile[]> {
  const r = resolve(opts);
  const files: HubFile[] = [];
  let url: string | undefined = treeUrl(r.endpoint, repo, revision, path);
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
      files.push({ path: e.path, size, ...(e.lfs?.oid ? { sha256: e.lfs.oid } : {}) });
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
 * Downloads one file of a dataset repo to destDir/<file.path> and returns that path.
 * Bytes go to "<name>.incomplete", resumed with a Range request after an interruption; only a
 * file of the right size (and sha256, when the tree gave one) is renamed into place, and a file
 * already there with the right size is not downloaded again.
 */
export async function downloadHubFile(repo: string, revision: string, file: HubFile, destDir: string, opts: DownloadOptions = {}): Promise<string> {
  const r = resolve(opts);
  const dest = join(destDir, file.path);
  if (existsSync(dest) && statSync(dest).size === file.size) return dest;
  mkdirSync(dirname(dest), { recursive: true });
  const part = `${dest}.incomplete`;
  const url = resolveUrl(r.endpoint, repo, revision, file.path);
  const what = `downloading ${file.path}`;
  let failures = 0; // consecutive attempts that added no bytes

  for (;;) {
    let have = sizeOf(part);
    if (have > file.size) {
      r.log(`${what}: ${part} is larger than the expected ${file.size} bytes; starting over`);
      rmSync(part);
      have = 0;
    }
    if (have === file.size) break;
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
        const start = cr ? /bytes (\d+)-/.exec(cr)?.[1] : undefined;
        if (start === undefined || Number(start) !== have) {
          await res.body?.cancel();
          rmSync(part, { force: true });
          throw new HubError(`${what}: asked for bytes from ${have} but the server sent range "${cr}"; restarting from zero`, true);
        }
      } else if (have > 0) {
        // 200 to a Range request: the whole file is coming; start over rather than append.
        r.log(`${what}: server ignored the Range request; restarting from zero`);
        append = false;
        have = 0;
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
            if (have > file.size) throw new HubError(`${what}: server sent more than the expected ${file.size} bytes`, true);
            opts.onProgress?.(have, file.size);
          }
        } catch (e) {
          await reader?.cancel().catch(() => {});
          throw e;
        }
      } finally {
        await fh.close();
      }
      if (have < file.size) {
        throw new HubError(`${what}: response ended at ${have} of ${file.size} bytes`, true);
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
        `hub: ${file.path} downloaded from ${repo}@${revision} has sha256 ${got}, but the Hub lists ${file.sha256}; ` +
          'the partial file was deleted, run again to download it afresh',
      );
    }
  }
  renameSync(part, dest);
  return dest;
}
