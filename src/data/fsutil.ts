// Crash-safe file writes for the data module: write a temp file beside the target, then rename.
// rename() within one directory is atomic on POSIX, so a reader sees the old file or the whole new one.
import { closeSync, fsyncSync, openSync, renameSync, rmSync, writeSync } from 'node:fs';
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
