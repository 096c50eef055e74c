// Crash-safe file writes for the data module: write a temp file beside the target, then rename.
// rename() within one directory is atomic on POSIX, so a reader sees the old file or the whole new one.
import { renameSync, rmSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** A temp name in the target's directory (same filesystem, so rename stays atomic). */
export function tempPathFor(path: string): string {
  const rnd = Math.floor(Math.random() * 0x100000000).toString(16);
  return join(dirname(path), `.${basename(path)}.tmp-${process.pid}-${rnd}`);
}

export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const tmp = tempPathFor(path);
  try {
    writeFileSync(tmp, data);
    renameSync(tmp, path);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new Error(`writeFileAtomic: could not write ${path}: ${(e as Error).message}`);
  }
}
