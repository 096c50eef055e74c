// safetensors files on Node: the format (safetensors-format.ts) over file handles. Reading does one
// positional read per tensor, so loading a 500 MB checkpoint never holds the file twice in memory;
// writing streams tensors one by one into a temp file next to the target, then renames it into place.

import { open, type FileHandle } from 'node:fs/promises';
import { writeAtomicAsync } from './fsutil.js';
import {
  SafetensorsError, openSafetensorsSource, writeSafetensorsWith,
  type ByteSource, type SafetensorsFile, type SafetensorsTensor, type TensorsInput,
} from './safetensors-format.js';

export * from './safetensors-format.js';

async function readFully(fh: FileHandle, file: string, target: Uint8Array, position: number): Promise<void> {
  const CHUNK = 1 << 30; // a single read() is limited to 2 GiB
  let done = 0;
  while (done < target.length) {
    const len = Math.min(CHUNK, target.length - done);
    let bytesRead: number;
    try {
      ({ bytesRead } = await fh.read(target, done, len, position + done));
    } catch (e) {
      throw new SafetensorsError(file, 'io', `read failed at byte ${position + done}: ${(e as Error).message}`, { cause: e });
    }
    if (bytesRead === 0) throw new SafetensorsError(file, 'io', `unexpected end of file at byte ${position + done} (did the file change after it was opened?)`);
    done += bytesRead;
  }
}

/** Open a safetensors file and validate its header; tensors are read later, one at a time. */
export async function openSafetensors(path: string): Promise<SafetensorsFile> {
  let fh: FileHandle;
  try {
    fh = await open(path, 'r');
  } catch (e) {
    throw new SafetensorsError(path, 'io', `cannot open: ${(e as Error).message}`, { cause: e });
  }
  let size: number;
  try {
    size = (await fh.stat()).size;
  } catch (e) {
    await fh.close();
    throw new SafetensorsError(path, 'io', `cannot stat: ${(e as Error).message}`, { cause: e });
  }
  const src: ByteSource = { size, read: (target, position) => readFully(fh, path, target, position), close: () => fh.close() };
  return openSafetensorsSource(path, src);
}

/** Read every tensor of a file into memory (convenience for small files and tests). */
export async function readSafetensors(path: string): Promise<{ tensors: Map<string, SafetensorsTensor>; metadata: Record<string, string> }> {
  const f = await openSafetensors(path);
  try {
    const tensors = new Map<string, SafetensorsTensor>();
    for (const name of f.names) tensors.set(name, await f.read(name));
    return { tensors, metadata: { ...f.metadata } };
  } finally {
    await f.close();
  }
}

/**
 * Write tensors to `path` atomically (temp file in the same directory, fsync, rename), laid out as
 * the Rust crate's `serialize_to_file` (see safetensors-format.ts). Tensors whose `data` is a
 * function are produced one at a time while writing, so a caller never needs all of them in memory.
 */
export async function writeSafetensors(path: string, tensors: TensorsInput, metadata?: Record<string, string>): Promise<void> {
  await writeSafetensorsWith(path, tensors, metadata, (emit) =>
    writeAtomicAsync(path, emit, (what, cause) => new SafetensorsError(path, 'io', what, { cause })));
}
