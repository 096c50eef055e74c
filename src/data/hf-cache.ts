// The Hugging Face cache as Python's huggingface_hub keeps it, read and written the same way, so
// a download by either serves both: <cache>/<type>s--OWNER--NAME/ holds blobs/<etag> (the bytes),
// snapshots/<commit>/<path> (a relative symlink to the blob) and refs/<revision> (the commit).
// $HF_HUB_CACHE, else $HF_HOME/hub; HF_HUB_OFFLINE=1 reads the cache and never the network.

import { existsSync, mkdirSync, readFileSync, readdirSync, readlinkSync, renameSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { basename, dirname, join, relative } from 'node:path';
import { acquireLock, writeFileAtomic } from './fsutil.js';
import { COMMIT, HubError, downloadUrl, fileMetadata, hfHome, hubEndpoint, resolveUrl, type DownloadOptions, type RepoType } from './hub.js';

/** huggingface_hub's HF_HUB_CACHE: $HF_HUB_CACHE, $HUGGINGFACE_HUB_CACHE (its old name), else $HF_HOME/hub. */
export function hubCacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return env['HF_HUB_CACHE'] || env['HUGGINGFACE_HUB_CACHE'] || join(hfHome(env), 'hub');
}

/** HF_HUB_OFFLINE (or TRANSFORMERS_OFFLINE) set to 1/ON/YES/TRUE, as huggingface_hub reads it. */
export function hubOffline(env: NodeJS.ProcessEnv = process.env): boolean {
  const truthy = (v: string | undefined): boolean => ['1', 'ON', 'YES', 'TRUE'].includes((v ?? '').toUpperCase());
  return truthy(env['HF_HUB_OFFLINE']) || truthy(env['TRANSFORMERS_OFFLINE']);
}

/** One repository's folder in the cache: models--openai-community--gpt2, datasets--HuggingFaceFW--fineweb-edu. */
export function repoFolder(type: RepoType, repo: string, cache = hubCacheDir()): string {
  return join(cache, `${type}s--${repo.split('/').join('--')}`);
}

/** The commit a revision names in the cache: itself when it is one, else refs/<revision>; null when unknown. */
export function cachedCommit(type: RepoType, repo: string, revision: string, cache = hubCacheDir()): string | null {
  if (COMMIT.test(revision)) return revision;
  try {
    const commit = readFileSync(join(repoFolder(type, repo, cache), 'refs', revision), 'utf8').trim();
    return COMMIT.test(commit) ? commit : null;
  } catch {
    return null;
  }
}

/** The folder of one commit's files (snapshots/<commit>). */
export function snapshotDir(type: RepoType, repo: string, commit: string, cache = hubCacheDir()): string {
  return join(repoFolder(type, repo, cache), 'snapshots', commit);
}

/** snapshots/<commit>/<path> when it leads to a whole file (a blob being written is never linked). */
export function cachedFile(type: RepoType, repo: string, commit: string, path: string, cache = hubCacheDir()): string | null {
  const p = join(snapshotDir(type, repo, commit, cache), path);
  try {
    return statSync(p).isFile() ? p : null;
  } catch {
    return null;
  }
}

/** Files under `folder` of one cached commit, relative to the snapshot (sorted): an offline listing. */
export function cachedFiles(type: RepoType, repo: string, commit: string, folder: string, cache = hubCacheDir()): string[] {
  const dir = join(snapshotDir(type, repo, commit, cache), folder);
  if (!existsSync(dir)) return [];
  return readdirSync(dir).sort().map((f) => `${folder}/${f}`).filter((p) => cachedFile(type, repo, commit, p, cache) !== null);
}

/** refs/<revision> = commit, written whole (temp + rename) as huggingface_hub does; nothing for a commit itself. */
export function writeRef(type: RepoType, repo: string, revision: string, commit: string, cache = hubCacheDir()): void {
  if (revision === commit) return;
  const ref = join(repoFolder(type, repo, cache), 'refs', revision);
  if (existsSync(ref) && readFileSync(ref, 'utf8') === commit) return;
  mkdirSync(dirname(ref), { recursive: true });
  writeFileAtomic(ref, commit);
}

/** snapshots/<commit>/<path> -> a relative link to blobs/<etag>, as huggingface_hub's _create_symlink makes it. */
function linkBlob(type: RepoType, repo: string, commit: string, path: string, etag: string, cache: string): string {
  const pointer = join(snapshotDir(type, repo, commit, cache), path);
  const blob = join(repoFolder(type, repo, cache), 'blobs', etag);
  mkdirSync(dirname(pointer), { recursive: true });
  const target = relative(dirname(pointer), blob);
  try {
    if (readlinkSync(pointer) === target) return pointer;
  } catch { /* not there yet */ }
  rmSync(pointer, { force: true });
  const tmp = `${pointer}.${process.pid}.tmp`;
  rmSync(tmp, { force: true });
  symlinkSync(target, tmp);
  renameSync(tmp, pointer);
  return pointer;
}

export interface CacheDownload extends DownloadOptions {
  type: RepoType;
  repo: string;
  /** A branch, tag or commit; default main. */
  revision?: string;
  /** Default hubCacheDir(). */
  cache?: string;
  /** Default hubOffline(). */
  offline?: boolean;
  /** Known already (a tree listing): no HEAD request is made. */
  known?: { commit: string; etag: string; size: number; sha256?: string | undefined };
}

/**
 * One file of a Hub repository, from the cache or downloaded into it (hf_hub_download): returns
 * the snapshot path. A revision the cache already holds the file for is used without a request;
 * offline, a file not in the cache is an error that names it and the cache.
 */
export async function hubFile(path: string, o: CacheDownload): Promise<string> {
  const cache = o.cache ?? hubCacheDir();
  const revision = o.revision ?? 'main';
  const where = `${o.type === 'dataset' ? 'dataset ' : ''}${o.repo}@${revision}: ${path}`;
  const commit = o.known?.commit ?? cachedCommit(o.type, o.repo, revision, cache);
  const hit = commit ? cachedFile(o.type, o.repo, commit, path, cache) : null;
  if (hit) {
    writeRef(o.type, o.repo, revision, commit!, cache);
    return hit;
  }
  if (o.offline ?? hubOffline()) {
    throw new HubError(`HF_HUB_OFFLINE is set and ${where} is not in the Hugging Face cache ${cache} ` +
      `(no ${join(repoFolder(o.type, o.repo, cache), commit ? `snapshots/${commit}/${path}` : `refs/${revision}`)}); ` +
      'run once with the network (unset HF_HUB_OFFLINE), or point HF_HUB_CACHE at a cache that has it');
  }
  const meta = o.known ? { ...o.known, lfs: o.known.sha256 !== undefined } : await fileMetadata(o.type, o.repo, revision, path, o);
  const folder = repoFolder(o.type, o.repo, cache);
  const blob = join(folder, 'blobs', meta.etag);
  const whole = (): boolean => existsSync(blob) && (meta.size === undefined || statSync(blob).size === meta.size);
  if (!whole()) {
    tagCache(cache);
    // one writer per blob (two ranks starting from gpt2 at once would append to one .incomplete)
    const lock = join(cache, '.locks', basename(folder), `${meta.etag}.tapegrad.lock`);
    mkdirSync(dirname(lock), { recursive: true });
    const release = await acquireLock(lock, {
      waitMs: BLOB_LOCK_WAIT_MS, busy: (pid) => `${where}: process ${pid} has been downloading it for over ${BLOB_LOCK_WAIT_MS / 3_600_000} h`,
      onWait: (pid) => o.log?.(`${where}: process ${pid} is downloading it; waiting for it to finish`),
    });
    try {
      if (!whole()) {
        // the commit's own URL: a branch that moves meanwhile cannot mix two versions
        const url = resolveUrl(hubEndpoint(o.endpoint), o.repo, meta.commit, path, o.type);
        const sha256 = o.known?.sha256 ?? (meta.lfs && /^[0-9a-f]{64}$/.test(meta.etag) ? meta.etag : undefined);
        await downloadUrl(url, blob, { size: meta.size, sha256, name: path, source: `${o.repo}@${revision}` }, o);
      }
    } finally {
      release();
    }
  }
  const pointer = linkBlob(o.type, o.repo, meta.commit, path, meta.etag, cache);
  writeRef(o.type, o.repo, revision, meta.commit, cache);
  return pointer;
}

/** How long a download waits for another process downloading the same blob. */
const BLOB_LOCK_WAIT_MS = 6 * 3_600_000;

/** huggingface_hub's CACHEDIR.TAG (backup tools skip the folder), written once, as it writes it. */
function tagCache(cache: string): void {
  const tag = join(cache, 'CACHEDIR.TAG');
  if (existsSync(tag)) return;
  mkdirSync(cache, { recursive: true });
  writeFileAtomic(tag, 'Signature: 8a477f597d28d172789f06886806bc55\n# This file is a cache directory tag created by huggingface_hub.\n' +
    '# For information about cache directory tags, see:\n#\thttps://bford.info/cachedir/\n');
}
