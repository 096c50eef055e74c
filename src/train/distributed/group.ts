// The collectives of data-parallel training, our own (no MPI, NCCL or gloo binding exists for
// Node): ranks form a ring of TCP connections (rank r sends to r+1 and receives from r-1), and
//   allReduce: ring reduce-scatter then all-gather over float32 buffers (each rank sends and
//              receives 2 (W-1)/W of the data), SUM or AVG (AVG is SUM then a divide, as in gloo);
//   broadcast: the root's bytes passed along the ring;
// every wait has a timeout, and a peer that closes its connection (it died) fails the collective
// at once, naming that rank and the collective. The result is bitwise the same on every rank
// (each chunk is reduced once, in ring order, then copied), and independent of timing.

import net from 'node:net';

export type ReduceOp = 'sum' | 'avg';

/** One peer connection and its incoming bytes, read exactly as the ring's schedule expects them. */
class Link {
  private chunks: Buffer[] = [];
  private have = 0;
  private wanted: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;
  /** Told when the peer goes away (set once the connection is known to be the ring's). */
  onFailure: (why: string) => void = () => {};
  constructor(readonly socket: net.Socket, readonly peer: string) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => { this.chunks.push(d); this.have += d.length; this.serve(); });
    socket.on('close', () => this.fail(`${peer} closed its connection (it has exited or died)`));
    socket.on('error', (e) => this.fail(`the connection to ${peer} failed: ${e.message}`));
  }
  private fail(why: string): void {
    if (this.failure) return;
    this.failure = new Error(why);
    this.onFailure(why);
    this.serve();
  }
  take(n: number): Promise<Buffer> {
    return new Promise((resolve, reject) => { this.wanted = { n, resolve, reject }; this.serve(); });
  }
  private serve(): void {
    const w = this.wanted;
    if (!w) return;
    if (this.have >= w.n) {
      const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      this.chunks = all.length > w.n ? [all.subarray(w.n)] : [];
      this.have -= w.n;
      this.wanted = null;
      w.resolve(all.subarray(0, w.n));
    } else if (this.failure) {
      this.wanted = null;
      w.reject(this.failure);
    }
  }
  send(b: Uint8Array): void { this.socket.write(Buffer.from(b)); } // a copy: the caller may change its buffer next
}

export interface GroupOptions {
  /** How long one collective may wait for a peer (ms). */
  timeoutMs: number;
}

/** A process group: this rank's place in the ring, and the collectives. */
export class ProcessGroup {
  private count = 0;
  private broken: string | null = null;

  constructor(readonly rank: number, readonly worldSize: number, private readonly next: Link | null, private readonly prev: Link | null,
    private readonly opts: GroupOptions, private readonly server: net.Server | null) {
    // a peer's death is reported even while this rank computes; the next collective fails with it
  }

  /** A group of one (no peers): every collective is the identity. */
  static single(): ProcessGroup { return new ProcessGroup(0, 1, null, null, { timeoutMs: 0 }, null); }

  /** Called by the links when a peer goes away. */
  markBroken(why: string): void { this.broken ??= why; }

  /** Run one collective step with the timeout, naming the collective in errors. */
  private async step<T>(what: string, p: Promise<T>): Promise<T> {
    let timer: NodeJS.Timeout | null = null;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new Error(`no data from rank ${(this.rank - 1 + this.worldSize) % this.worldSize} within ` +
        `${(this.opts.timeoutMs / 1000).toFixed(0)} s (it is stuck, or far behind)`)), this.opts.timeoutMs);
    });
    try {
      return await Promise.race([p, timeout]);
    } catch (e) {
      throw new Error(`rank ${this.rank}: ${what} failed: ${(e as Error).message}; stopping`, { cause: e });
    } finally {
      if (timer) clearTimeout(timer);
    }
  }

  /**
   * In place: `data` becomes the elementwise SUM (or AVG) of every rank's `data` (same length
   * on every rank). `what` names it in errors (e.g. 'gradients, bucket 2 of 5').
   */
  async allReduce(data: Float32Array, op: ReduceOp = 'sum', what = 'all-reduce'): Promise<void> {
    const W = this.worldSize;
    if (W === 1 || data.length === 0) { if (op === 'avg' && W > 1) scale(data, 1 / W); return; }
    const label = `${what} (collective #${++this.count})`;
    if (this.broken) throw new Error(`rank ${this.rank}: ${label} cannot run: ${this.broken}; stopping`);
    // chunk c covers [start(c), start(c + 1)): sizes differ by at most one element
    const n = data.length;
    const start = (c: number): number => Math.floor((c * n) / W);
    const view = (c: number): Float32Array => data.subarray(start(c), start(c + 1));
    const bytes = (c: number): Uint8Array => new Uint8Array(data.buffer, data.byteOffset + start(c) * 4, (start(c + 1) - start(c)) * 4);
    const r = this.rank, next = this.next!, prev = this.prev!;
    // reduce-scatter: after W-1 steps this rank holds the full sum of chunk (r + 1) mod W
    for (let s = 0; s < W - 1; s++) {
      const sendC = (r - s + W) % W, recvC = (r - s - 1 + 2 * W) % W;
      next.send(bytes(sendC));
      const got = await this.step(label, prev.take(bytes(recvC).length));
      const dst = view(recvC);
      const src = new Float32Array(got.buffer.slice(got.byteOffset, got.byteOffset + got.length));
      for (let i = 0; i < dst.length; i++) dst[i]! += src[i]!;
    }
    // all-gather: pass the reduced chunks around
    for (let s = 0; s < W - 1; s++) {
      const sendC = (r + 1 - s + W) % W, recvC = (r - s + W) % W;
      next.send(bytes(sendC));
      const got = await this.step(label, prev.take(bytes(recvC).length));
      bytes(recvC).set(got);
    }
    if (op === 'avg') scale(data, 1 / W);
  }

  /** In place: every rank's `data` becomes the root's (same length everywhere). */
  async broadcast(data: Uint8Array, root = 0, what = 'broadcast'): Promise<void> {
    const W = this.worldSize;
    if (W === 1 || data.length === 0) return;
    const label = `${what} (collective #${++this.count})`;
    if (this.broken) throw new Error(`rank ${this.rank}: ${label} cannot run: ${this.broken}; stopping`);
    // along the ring from the root: root sends, each other rank receives then forwards (but the last)
    const pos = (this.rank - root + W) % W;
    if (pos > 0) data.set(await this.step(label, this.prev!.take(data.length)));
    if (pos < W - 1) this.next!.send(data);
  }

  /** Wait until every rank has arrived here. */
  async barrier(what = 'barrier'): Promise<void> {
    await this.allReduce(new Float32Array(1), 'sum', what);
  }

  close(): void {
    this.next?.socket.destroy();
    this.prev?.socket.destroy();
    this.server?.close();
  }
}

function scale(a: Float32Array, f: number): void {
  for (let i = 0; i < a.length; i++) a[i]! *= f;
}

/** How this rank listens for its ring predecessor and reaches its successor. */
export interface RingEndpoints {
  /** Listen here (port 0: any) for rank r-1. */
  listenHost: string;
  /** Publish the address peers reach us at; called with the port actually bound. */
  publish(address: string): Promise<void>;
  /** The address rank r+1 published. */
  lookupNext(): Promise<string>;
  /** The address this machine is reached at (e.g. the local address of the store connection). */
  advertiseHost: string;
}

/**
 * Form the ring: listen, publish our address, connect to the next rank, accept the previous one.
 * Each side sends a small hello (its rank and the job's id) so a stray connection is refused.
 */
export async function formRing(rank: number, worldSize: number, job: string, ep: RingEndpoints, opts: GroupOptions): Promise<ProcessGroup> {
  if (worldSize === 1) return ProcessGroup.single();
  const prevRank = (rank - 1 + worldSize) % worldSize, nextRank = (rank + 1) % worldSize;
  let group: ProcessGroup | null = null;
  const onFailure = (why: string): void => { group?.markBroken(why); };
  const hello = Buffer.from(JSON.stringify({ rank, job }).padEnd(256));
  const server = net.createServer();
  const accepted = new Promise<Link>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`rank ${rank}: rank ${prevRank} did not connect within ${(opts.timeoutMs / 1000).toFixed(0)} s`)), opts.timeoutMs);
    server.on('connection', (s) => {
      const link = new Link(s, `rank ${prevRank}`);
      link.take(256).then((b) => {
        let h: { rank?: unknown; job?: unknown } = {};
        try { h = JSON.parse(b.toString('utf8').trim()) as typeof h; } catch { /* not ours */ }
        if (h.job !== job || h.rank !== prevRank) { s.destroy(); return; } // a stray connection
        clearTimeout(timer);
        link.onFailure = onFailure;
        resolve(link);
      }, () => s.destroy());
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, ep.listenHost, () => resolve());
  });
  await ep.publish(`${ep.advertiseHost}:${(server.address() as net.AddressInfo).port}`);
  const nextAddr = await ep.lookupNext();
  const [host, port] = [nextAddr.slice(0, nextAddr.lastIndexOf(':')), Number(nextAddr.slice(nextAddr.lastIndexOf(':') + 1))];
  const out = await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host, port });
    s.once('connect', () => resolve(s));
    s.once('error', (e) => reject(new Error(`rank ${rank}: cannot connect to rank ${nextRank} at ${nextAddr}: ${e.message}`)));
  });
  const next = new Link(out, `rank ${nextRank}`);
  next.onFailure = onFailure;
  next.send(hello);
  const prev = await accepted;
  group = new ProcessGroup(rank, worldSize, next, prev, opts, server);
  return group;
}
