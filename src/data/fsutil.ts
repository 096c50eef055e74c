// Crash-safe file writes, the one helper every writer uses: write a hidden temp file beside the
// target, fsync, then rename. rename() within one directory is atomic on POSIX, so a reader sees
// the old file or the whole new one; a process killed mid-write leaves only a hidden temp file,
// which the next run removes (removeStaleTemps).
import { closeSync, fsyncSync, openSync, readdirSync, renameSync, rmSync, writeSync } from 'node:fs';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join } from 'node:path';

/** A temp name in the target's directory (same filesystem, so rename stays atomic). */
export function tempPathFor(path: string): string {
  const rnd = Math.floor(Math.random() * 0x100000000).toString(16);
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${rnd}`);
}

export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  writeChunksAtomic(path, [typeof data === 'string' ? Buffer.from(data, 'utf8') : data]);
}

/**
 * Writes the chunks one after another (no concatenated copy: a 1e8-token shard is 200 MB),
 * fsyncs so that a renamed file is never empty after a crash, then renames into place.
 */
export function writeChunksAtomic(path: string, chunks: Uint8Array[]): void {
  const tmp = tempPathFor(path);
  try {
    const fd = openSync(tmp, 'w');
    try {
      for (const c of chunks) {
        let off = 0;
        while (off < c.length) off += writeSync(fd, c, off, c.length - off);
      }
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new Error(`writeFileAtomic: could not write ${path}: ${(e as Error).message}`);
  }
}

/**
 * The async twin for large files produced piece by piece (checkpoints): `fill` writes through
 * `put`; the file appears under `path` only when fill has finished and the data is on disk.
 * Errors name the path; `describe` turns them into the caller's error type.
 */
export async function writeAtomicAsync(path: string, fill: (put: (bytes: Uint8Array) => Promise<void>) => Promise<void>,
  describe: (what: string, cause: unknown) => Error = (what, cause) => new Error(`could not write ${path}: ${what}`, { cause })): Promise<void> {
  const tmp = tempPathFor(path);
  let fh: FileHandle | null = null;
  try {
    try {
      fh = await open(tmp, 'w');
    } catch (e) {
      throw describe(`cannot create temp file ${tmp}: ${(e as Error).message} (does the directory exist and is it writable?)`, e);
    }
    let pos = 0;
    await fill(async (bytes) => {
      let done = 0;
      while (done < bytes.length) {
        const { bytesWritten } = await fh!.write(bytes, done, Math.min(1 << 30, bytes.length - done), pos + done);
        done += bytesWritten;
      }
      pos += bytes.length;
    });
    await fh.sync();
    await fh.close();
    fh = null;
    await rename(tmp, path);
  } catch (e) {
    if (fh) await fh.close().catch(() => undefined);
    await unlink(tmp).catch(() => undefined);
    // a file-system error (it has an errno code) is described; the caller's own errors pass unchanged
    throw (e as NodeJS.ErrnoException).code !== undefined ? describe(`write failed: ${(e as Error).message}`, e) : e;
  }
}

const TEMP_NAME = /^\..+\.tmp-(\d+)-[0-9a-f]+$/;

/** Whether a process with this pid is alive (on this machine). */
function alive(pid: number): boolean {
  if (pid === process.pid) return true;
  try { process.kill(pid, 0); return true; } catch (e) { return (e as NodeJS.ErrnoException).code === 'EPERM'; }
}

/** Remove the temp files that killed writers left in `dir` (their pid is gone); returns their names. */
export function removeStaleTemps(dir: string): string[] {
  let names: string[];
  try { names = readdirSync(dir); } catch { return []; }
  const removed: string[] = [];
  for (const n of names) {
    const m = TEMP_NAME.exec(n);
    if (m && !alive(Number(m[1]))) {
      rmSync(join(dir, n), { force: true });
      removed.push(n);
    }
  }
  return removed;
}
