// Crash-safe file writes, the one helper every writer uses: write a hidden temp file beside the
// target, fsync, then rename. rename() within one directory is atomic on POSIX, so a reader sees
// the old file or the whole new one; a process killed mid-write leaves only a hidden temp file,
// which the next run removes (removeStaleTemps).
import { accessSync, closeSync, constants as fsConstants, fsyncSync, linkSync, mkdirSync, openSync, readFileSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, writeSync } from 'node:fs';
import { open, rename, unlink, type FileHandle } from 'node:fs/promises';
import { basename, dirname, join, resolve as resolvePath } from 'node:path';

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
    try { rmSync(tmp, { force: true }); } catch { /* the real error is the write's, reported below */ }
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

/**
 * When process `pid` started (Linux: the boot's id and the start time in /proc), so a lock can tell
 * its holder from a later process that got the same pid (a restarted container's PID 1); null
 * where /proc does not say.
 */
function processStart(pid: number): string | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]; // field 22, after "pid (comm) "
    const boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim();
    return start ? `${boot}:${start}` : null;
  } catch {
    return null;
  }
}

/** Whether the process a lock file names (`pid [start]`) still runs: the same pid and, where known, the same start. */
function holderAlive(lock: string): boolean {
  const [p, start] = lock.trim().split(/\s+/);
  const pid = Number.parseInt(p ?? '', 10);
  if (!Number.isInteger(pid)) return false;
  if (start) return processStart(pid) === start; // a recycled pid starts at another time
  return pid !== process.pid && alive(pid); // an older lock (pid only): never ourselves, we are asking for it
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

/**
 * mkdir -p that fails with the path instead of hanging: Node's recursive mkdirSync spins on some
 * paths (under /proc), so each missing directory from the top is made on its own.
 */
export function makeDirs(dir: string, what = dir): void {
  const missing: string[] = [];
  for (let p = resolvePath(dir); ; p = dirname(p)) {
    let st;
    try { st = statSync(p); } catch (e) {
      // only a missing directory is made; a symlink loop or a denied stat is named with the flag
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new Error(`${what}: cannot use ${dir}: ${(e as Error).message}`);
      missing.push(p);
      if (dirname(p) === p) break;
      continue;
    }
    if (!st.isDirectory()) throw new Error(`${what}: cannot create ${dir}: ${p} is not a directory`);
    break;
  }
  for (const p of missing.reverse()) {
    try { mkdirSync(p); } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'EEXIST' && statSync(p).isDirectory()) continue; // made by a concurrent run
      throw new Error(`${what}: cannot create ${dir}: ${(e as Error).message}`);
    }
  }
}

/**
 * An exclusive lock on `lockPath` (a file holding our pid), for work two processes must not do at
 * once in one directory. A lock whose process is gone is taken over. While another live process
 * holds it: wait up to `waitMs` (0: fail at once), then throw `busy(pid)`. Returns the release
 * function (also run if the process exits).
 *
 * The pid is written to a temp file first and hard-linked into place (link fails if the lock
 * exists), so no process ever sees a lock file without its pid: an O_EXCL create followed by a
 * write has a moment where the file is empty, and a waiter reading it then took the lock for a
 * dead one's and removed it, letting two processes in.
 */
export async function acquireLock(lockPath: string, opts: { waitMs: number; busy: (pid: number) => string; onWait?: (pid: number) => void }): Promise<() => void> {
  const deadline = Date.now() + opts.waitMs;
  let told = false;
  for (;;) {
    if (tryLink(lockPath)) {
      const release = (): void => { process.off('exit', release); rmSync(lockPath, { force: true }); };
      process.on('exit', release);
      return release;
    }
    let held: string;
    try { held = readFileSync(lockPath, 'utf8'); } catch { continue; } // released meanwhile
    const pid = Number.parseInt(held, 10);
    if (!Number.isInteger(pid) || !holderAlive(held)) { removeStaleLock(lockPath, pid); continue; } // its holder died
    if (Date.now() >= deadline) throw new Error(`${opts.busy(pid)} (lock file ${lockPath}; delete it only if that process is not running)`);
    if (!told) { opts.onWait?.(pid); told = true; }
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Creates `lockPath` holding our pid, atomically; false if it exists. */
function tryLink(lockPath: string): boolean {
  const tmp = tempPathFor(lockPath);
  try {
    writeFileSync(tmp, `${process.pid} ${processStart(process.pid) ?? ''}\n`, { flag: 'wx' });
    linkSync(tmp, lockPath);
    return true;
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw new Error(`cannot create the lock ${lockPath}: ${(e as Error).message}`);
  } finally {
    rmSync(tmp, { force: true });
  }
}

/**
 * Removes a dead holder's lock without removing a live one: two waiters can both see the dead pid,
 * and the slower one must not delete the lock the faster one has just made. Renaming it aside is
 * atomic; if what was moved is not the dead holder's, it is linked back.
 */
function removeStaleLock(lockPath: string, deadPid: number): void {
  const aside = tempPathFor(lockPath);
  try { renameSync(lockPath, aside); } catch { return; } // someone else removed it
  let moved = NaN, text = '';
  try { text = readFileSync(aside, 'utf8'); moved = Number.parseInt(text, 10); } catch { /* unreadable: stale */ }
  if (Number.isInteger(moved) && moved !== deadPid && holderAlive(text)) {
    try { linkSync(aside, lockPath); } catch { /* a third process holds it now; its lock stands */ }
  }
  rmSync(aside, { force: true });
}

/** Fail now, naming `flag`, if `path` could not be written later (its directory is missing or read-only). */
export function checkWritable(path: string, flag: string): void {
  const dir = dirname(resolvePath(path));
  try {
    if (!statSync(dir).isDirectory()) throw new Error(`${dir} is not a directory`);
    accessSync(dir, fsConstants.W_OK);
  } catch (e) {
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? `its directory ${dir} does not exist` : (e as Error).message;
    throw new Error(`${flag} ${path}: cannot be written: ${why}`);
  }
}
