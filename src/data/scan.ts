// A background check of every shard's tokens against the vocabulary. The loader reads shards
// lazily (FineWeb's shard 47 is opened hours in); this reads them all at the start, a chunk at a
// time between the training's own awaits, so a token the model cannot embed stops the run within
// minutes, naming the file and the index, instead of when its batch comes up.
import { open } from 'node:fs/promises';
import { readNpyHeader } from './npy.js';

export interface ShardScan {
  /** The first bad token found (a sentence naming the file and the index), else null. */
  readonly failure: Error | null;
  /** Resolves when every shard has been read, or the scan stopped (a failure or stop()). */
  readonly done: Promise<void>;
  stop(): void;
}

const CHUNK_BYTES = 8 << 20;

/** Starts scanning `paths` for tokens outside [0, vocabSize); returns at once. */
export function scanShards(paths: readonly string[], vocabSize: number): ShardScan {
  let failure: Error | null = null;
  let stopped = false;
  const scanOne = async (path: string): Promise<void> => {
    const h = readNpyHeader(path);
    const width = h.dtype === 'uint16' ? 2 : h.dtype === 'int32' ? 4 : 8;
    const f = await open(path, 'r');
    try {
      const buf = Buffer.alloc(CHUNK_BYTES - (CHUNK_BYTES % width));
      for (let first = 0; first < h.length && !stopped;) {
        const n = Math.min(buf.length / width, h.length - first);
        const { bytesRead } = await f.read(buf, 0, n * width, h.dataOffset + first * width);
        if (bytesRead < n * width) throw new Error(`${path} ends at token ${first + bytesRead / width}, before the ${h.length} its header promises (truncated?)`);
        // (a view of the chunk: npy is little-endian, as every machine Node runs on)
        const view = width === 2 ? new Uint16Array(buf.buffer, buf.byteOffset, n) : width === 4 ? new Int32Array(buf.buffer, buf.byteOffset, n) : new BigInt64Array(buf.buffer, buf.byteOffset, n);
        for (let i = 0; i < n; i++) {
          const v = Number(view[i]!);
          if (v < 0 || v >= vocabSize) {
            throw new Error(`${path} holds token ${v} at index ${first + i}, outside the model's vocabulary [0, ${vocabSize}); ` +
              'was it made with another tokenizer? (found by the start-up scan of every shard, before training reached it)');
          }
        }
        first += n;
        await new Promise((r) => setImmediate(r)); // the training's turn
      }
    } finally {
      await f.close();
    }
  };
  const done = (async () => {
    for (const p of paths) {
      if (stopped) return;
      try { await scanOne(p); } catch (e) { failure = e as Error; return; }
    }
  })();
  return { get failure() { return failure; }, done, stop: () => { stopped = true; } };
}
