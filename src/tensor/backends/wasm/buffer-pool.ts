// The wasm backend's recycling of large host buffers (see BufferPool): training allocates the
// same large activations every step, and a fresh buffer costs the OS's first-touch page faults.

/** Buffers below this size are left to malloc, which recycles small blocks itself. */
const POOL_MIN_BYTES = 1 << 20;

/**
 * Recycles large host ArrayBuffers: a storage's buffer returns here when the storage is
 * garbage collected (FinalizationRegistry) or disposed, and the next allocation of the same
 * byte length takes it. Only buffers this backend allocated are recycled, and readSync hands
 * out copies of them, so no array a caller holds can change under it.
 *
 * The registry keeps a tracked buffer alive until its finalizer runs (after the step, when
 * the event loop turns), so tracked + free bytes together stay under `cap`: to make room the
 * oldest free buffers are dropped, then the oldest tracked ones are handed back to the GC
 * (parameters and optimizer state, allocated first and living forever, age out of the budget;
 * a step's short-lived activations are what it keeps). Unbounded, every buffer a step ever
 * touched would stay alive at once: about twice a GPT-2 124M step's working set.
 */
export class BufferPool {
  private readonly free = new Map<number, ArrayBuffer[]>();
  private freeBytes = 0;
  private trackedBytes = 0;
  /** Allocated here, not yet wrapped in a storage. */
  private readonly fresh = new WeakSet<ArrayBuffer>();
  /** Tracked buffers, oldest first, with their unregister tokens. */
  private readonly tracked = new Map<ArrayBuffer, object>();
  private readonly registry = new FinalizationRegistry<ArrayBuffer>((buf) => this.give(buf));
  readonly stats = { hits: 0, misses: 0, freeBytes: 0, trackedBytes: 0 };
  constructor(private readonly cap: number) {}

  /** Is `buf` a tracked (recyclable) buffer? Then readers get copies. */
  owns(buf: ArrayBufferLike): boolean { return buf instanceof ArrayBuffer && this.tracked.has(buf); }

  /** A buffer of `bytes` (recycled ones hold old data), or null below the pooling size. */
  take(bytes: number): { buf: ArrayBuffer; recycled: boolean } | null {
    if (this.cap === 0 || bytes < POOL_MIN_BYTES) return null;
    const buf = this.free.get(bytes)?.pop();
    if (buf) { this.freeBytes -= bytes; this.stats.hits++; } else this.stats.misses++;
    const out = buf ?? new ArrayBuffer(bytes);
    this.fresh.add(out);
    this.sync();
    return { buf: out, recycled: buf !== undefined };
  }
  /** Called when a storage wraps `buf`: from now on its lifetime is the storage's. */
  track(storage: object, buf: ArrayBufferLike): void {
    if (!(buf instanceof ArrayBuffer) || !this.fresh.has(buf)) return;
    this.fresh.delete(buf);
    const n = buf.byteLength;
    if (n > this.cap) return;
    const over = (): boolean => this.trackedBytes + this.freeBytes + n > this.cap;
    for (const [bytes, list] of this.free) { // drop the sizes freed longest ago (Map order = first insertion)
      if (!over()) break;
      while (list.length && over()) { list.shift(); this.freeBytes -= bytes; }
      if (!list.length) this.free.delete(bytes);
    }
    for (const [old, token] of this.tracked) { // then stop tracking the oldest live buffers
      if (!over()) break;
      this.registry.unregister(token);
      this.tracked.delete(old);
      this.trackedBytes -= old.byteLength;
    }
    const token = {};
    this.tracked.set(buf, token);
    this.trackedBytes += n;
    this.registry.register(storage, buf, token);
    this.sync();
  }
  release(buf: ArrayBufferLike): void {
    if (!(buf instanceof ArrayBuffer)) return;
    const token = this.tracked.get(buf);
    if (token && this.registry.unregister(token)) this.give(buf);
  }
  private give(buf: ArrayBuffer): void {
    if (!this.tracked.delete(buf)) return;
    this.trackedBytes -= buf.byteLength;
    const list = this.free.get(buf.byteLength);
    if (list) list.push(buf); else this.free.set(buf.byteLength, [buf]);
    this.freeBytes += buf.byteLength;
    this.sync();
  }
  private sync(): void { this.stats.freeBytes = this.freeBytes; this.stats.trackedBytes = this.trackedBytes; }
}
