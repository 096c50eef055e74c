// The collectives of data-parallel training, our own (no MPI, NCCL or gloo binding exists for
// Node): ranks form a ring of connections (rank r sends to r+1 and receives from r-1; TCP, or a
// Unix socket between ranks on one machine), and
//   allReduce: ring reduce-scatter then all-gather over float32 buffers (each rank sends and
//              receives 2 (W-1)/W of the data), SUM or AVG (AVG is SUM then a divide, as in gloo);
//   broadcast: the root's bytes passed along the ring;
// every wait has a timeout, and a peer that closes its connection (it died) fails the collective
// at once, naming that rank and the collective. The result is bitwise the same on every rank
// (each chunk is reduced once, in ring order, then copied), and independent of timing.

import { existsSync, mkdtempSync, readFileSync, readlinkSync, rmSync } from 'node:fs';
import net from 'node:net';
import { hostname, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';

export type ReduceOp = 'sum' | 'avg';

/** One peer connection: its incoming bytes are handed, as they arrive, to the one reader the ring's schedule expects. */
class Link {
  /** Bytes that arrived before anyone asked for them. */
  private early: Buffer[] = [];
  private reader: { left: number; sink: (piece: Buffer) => void; resolve: () => void; reject: (e: Error) => void } | null = null;
  private failure: Error | null = null;
  /** Told when the peer goes away (set once the connection is known to be the ring's). */
  onFailure: (why: string) => void = () => {};
  constructor(readonly socket: net.Socket, readonly peer: string) {
    socket.setNoDelay(true);
    socket.on('data', (d: Buffer) => this.feed(d));
    socket.on('close', () => this.fail(`${peer} closed its connection (it has exited or died)`));
    socket.on('error', (e) => this.fail(`the connection to ${peer} failed: ${e.message}`));
  }
  private fail(why: string): void {
    if (this.failure) return;
    this.failure = new Error(why);
    this.onFailure(why);
    this.settle();
  }
  private feed(d: Buffer): void {
    const r = this.reader;
    if (!r) { this.early.push(d); return; }
    const n = Math.min(r.left, d.length);
    r.left -= n;
    r.sink(n === d.length ? d : d.subarray(0, n));
    if (n < d.length) this.early.push(d.subarray(n));
    this.settle();
  }
  private settle(): void {
    const r = this.reader;
    if (!r) return;
    if (r.left === 0) { this.reader = null; r.resolve(); } else if (this.failure) { this.reader = null; r.reject(this.failure); }
  }
  /** Hand the next `n` bytes to `sink`, in order, in the pieces they arrive in (no copies). */
  receive(n: number, sink: (piece: Buffer) => void): Promise<void> {
    return new Promise((resolve, reject) => {
      this.reader = { left: n, sink, resolve, reject };
      const early = this.early;
      this.early = [];
      for (const d of early) this.feed(d);
      this.settle();
    });
  }
  /** The next `n` bytes, as one buffer. */
  async take(n: number): Promise<Buffer> {
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    await this.receive(n, (p) => { out.set(p, at); at += p.length; });
    return out;
  }
  /**
   * Queue bytes without copying them; the promise settles when they have left this process. The
   * ring's schedule never rewrites a region before its send has finished (a chunk comes back only
   * after the peer received it), and a collective returns only once its sends are done.
   */
  send(b: Uint8Array): Promise<void> {
    return new Promise((resolve) => { this.socket.write(Buffer.from(b.buffer, b.byteOffset, b.byteLength), () => resolve()); });
  }
}

/** A sink that adds little-endian float32 bytes, arriving in pieces of any length, into `dst` (exported for its test). */
export function adder(dst: Float32Array): (piece: Buffer) => void {
  const carry = new Uint8Array(4), carried = new Float32Array(carry.buffer);
  let nc = 0, i = 0; // bytes of a float split across pieces; the next float of dst
  return (p) => {
    let o = 0;
    if (nc > 0) {
      while (nc < 4 && o < p.length) carry[nc++] = p[o++]!;
      if (nc < 4) return;
      dst[i++]! += carried[0]!;
      nc = 0;
    }
    const nf = (p.length - o) >> 2, at = p.byteOffset + o;
    if (nf > 0) {
      // socket reads start 8-byte aligned; a misaligned piece (after a split float) is copied
      const src = at % 4 === 0 ? new Float32Array(p.buffer, at, nf) : new Float32Array(p.buffer.slice(at, at + nf * 4));
      for (let k = 0; k < nf; k++) dst[i + k]! += src[k]!;
      i += nf;
      o += nf * 4;
    }
    while (o < p.length) carry[nc++] = p[o++]!;
  };
}

export interface GroupOptions {
  /** How long one collective may wait for a peer (ms). */
  timeoutMs: number;
}

/** A process group: this rank's place in the ring, and the collectives. */
export class ProcessGroup {
  private count = 0;
  private broken: string | null = null;
  /** allReduceBf16's wire buffers, by length (a job's buckets have a few fixed lengths). */
  private readonly bf16Buffers = new Map<number, { scatter: Uint16Array; gather: Uint16Array; incoming: Uint16Array; decoded: Float32Array }>();

  constructor(readonly rank: number, readonly worldSize: number, private readonly next: Link | null, private readonly prev: Link | null,
    private readonly opts: GroupOptions, private readonly servers: net.Server[] = [],
    /** How this rank reaches the next: a Unix socket when it is on the same machine, else TCP. */
    readonly transport: 'tcp' | 'unix' | 'none' = 'none') {
    // a peer's death is reported even while this rank computes; the next collective fails with it
  }

  /** A group of one (no peers): every collective is the identity. */
  static single(): ProcessGroup { return new ProcessGroup(0, 1, null, null, { timeoutMs: 0 }); }

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
    const sends: Promise<void>[] = [];
    // reduce-scatter: after W-1 steps this rank holds the full sum of chunk (r + 1) mod W
    for (let s = 0; s < W - 1; s++) {
      const sendC = (r - s + W) % W, recvC = (r - s - 1 + 2 * W) % W;
      sends.push(next.send(bytes(sendC)));
      // each piece is added as it arrives, while the rest is still on the wire
      await this.step(label, prev.receive(bytes(recvC).length, adder(view(recvC))));
    }
    // all-gather: pass the reduced chunks around
    for (let s = 0; s < W - 1; s++) {
      const sendC = (r + 1 - s + W) % W, recvC = (r - s + W) % W;
      sends.push(next.send(bytes(sendC)));
      const dst = bytes(recvC);
      let at = 0;
      await this.step(label, prev.receive(dst.length, (p) => { dst.set(p, at); at += p.length; }));
    }
    await this.step(label, Promise.all(sends));
    if (op === 'avg') scale(data, 1 / W);
  }

  /**
   * allReduce with bfloat16 on the wire, as torch DDP's bf16_compress_hook: half the bytes. Values
   * travel rounded to bfloat16 (nearest even); each rank adds what arrives into its float32
   * partial sums; the reduced chunks are rounded to bfloat16 before they go round, so the result
   * is the same bits on every rank.
   */
  async allReduceBf16(data: Float32Array, op: ReduceOp = 'sum', what = 'all-reduce'): Promise<void> {
    const W = this.worldSize;
    if (W === 1 || data.length === 0) { if (op === 'avg' && W > 1) scale(data, 1 / W); return; }
    const label = `${what} (collective #${++this.count}, bfloat16)`;
    if (this.broken) throw new Error(`rank ${this.rank}: ${label} cannot run: ${this.broken}; stopping`);
    const n = data.length;
    const start = (c: number): number => Math.floor((c * n) / W);
    // separate wire buffers per phase: a chunk's bytes stay put until its send has finished
    // (kept between calls: the same buckets come every step, and fresh memory costs page faults)
    let buffers = this.bf16Buffers.get(n);
    if (!buffers) {
      const most = Math.ceil(n / W) + 1;
      this.bf16Buffers.set(n, buffers = { scatter: new Uint16Array(n), gather: new Uint16Array(n), incoming: new Uint16Array(most), decoded: new Float32Array(most) });
    }
    const { scatter, gather, incoming, decoded } = buffers;
    const bytes = (w: Uint16Array, c: number): Uint8Array => new Uint8Array(w.buffer, start(c) * 2, (start(c + 1) - start(c)) * 2);
    const r = this.rank, next = this.next!, prev = this.prev!;
    const sends: Promise<void>[] = [];
    const receive = async (c: number): Promise<Uint16Array> => {
      const len = start(c + 1) - start(c), into = new Uint8Array(incoming.buffer, 0, len * 2);
      let at = 0;
      await this.step(label, prev.receive(len * 2, (p) => { into.set(p, at); at += p.length; }));
      return incoming.subarray(0, len);
    };
    for (let s = 0; s < W - 1; s++) {
      const sendC = (r - s + W) % W, recvC = (r - s - 1 + 2 * W) % W;
      toBf16(data, scatter, start(sendC), start(sendC + 1));
      sends.push(next.send(bytes(scatter, sendC)));
      addBf16(await receive(recvC), data, start(recvC), decoded);
    }
    const own = (r + 1) % W; // this rank's fully reduced chunk, rounded as everyone else will see it
    toBf16(data, gather, start(own), start(own + 1));
    fromBf16(gather.subarray(start(own), start(own + 1)), data, start(own));
    for (let s = 0; s < W - 1; s++) {
      const sendC = (r + 1 - s + W) % W, recvC = (r - s + W) % W;
      sends.push(next.send(bytes(gather, sendC)));
      const got = await receive(recvC);
      gather.set(got, start(recvC));
      fromBf16(got, data, start(recvC));
    }
    await this.step(label, Promise.all(sends));
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
    let at = 0;
    if (pos > 0) await this.step(label, this.prev!.receive(data.length, (p) => { data.set(p, at); at += p.length; }));
    if (pos < W - 1) await this.step(label, this.next!.send(data));
  }

  /** Wait until every rank has arrived here. */
  async barrier(what = 'barrier'): Promise<void> {
    await this.allReduce(new Float32Array(1), 'sum', what);
  }

  close(): void {
    this.next?.socket.destroy();
    this.prev?.socket.destroy();
    for (const s of this.servers) s.close();
  }
}

/** dst[i] = bfloat16 bits of src[i] for i in [from, to), rounded to nearest even (NaN stays NaN). */
export function toBf16(src: Float32Array, dst: Uint16Array, from = 0, to = src.length): void {
  const u = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = from; i < to; i++) {
    const x = u[i]!;
    dst[i] = (x & 0x7fffffff) > 0x7f800000 ? (x >>> 16) | 0x40 : (x + 0x7fff + ((x >>> 16) & 1)) >>> 16;
  }
}

/** dst[at + i] = the float32 of bfloat16 bits w[i]. */
function fromBf16(w: Uint16Array, dst: Float32Array, at: number): void {
  const u = new Uint32Array(dst.buffer, dst.byteOffset, dst.length);
  for (let i = 0; i < w.length; i++) u[at + i] = w[i]! << 16;
}

/** dst[at + i] += the float32 of bfloat16 bits w[i] (decoded into `scratch` first: two tight loops). */
function addBf16(w: Uint16Array, dst: Float32Array, at: number, scratch: Float32Array): void {
  const f = scratch.subarray(0, w.length), u = new Uint32Array(f.buffer, f.byteOffset, w.length);
  for (let i = 0; i < w.length; i++) u[i] = w[i]! << 16;
  const d = dst.subarray(at, at + w.length);
  for (let i = 0; i < w.length; i++) d[i]! += f[i]!;
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
 * Which machine (and network namespace) this process is on: ranks that share it reach each other
 * through a Unix socket, ~1.3x the bytes per second of TCP over loopback here (the filesystem
 * path also crosses network namespaces, so those count as other machines).
 */
function machineId(): string {
  let boot = '', netns = '';
  try { boot = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim(); } catch { /* not Linux */ }
  try { netns = readlinkSync('/proc/self/ns/net'); } catch { /* not Linux */ }
  return `${hostname()}/${boot}/${netns}`;
}

/** "host:port", and for peers on this machine a Unix socket: "host:port|unix=<path>|id=<machine>". */
function parseAddress(a: string): { host: string; port: number; unix: string | null; id: string | null } {
  const [hp, ...rest] = a.split('|');
  const field = (k: string): string | null => rest.find((x) => x.startsWith(`${k}=`))?.slice(k.length + 1) ?? null;
  return { host: hp!.slice(0, hp!.lastIndexOf(':')), port: Number(hp!.slice(hp!.lastIndexOf(':') + 1)), unix: field('unix'), id: field('id') };
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
  const server = net.createServer(), local = net.createServer();
  const accepted = new Promise<Link>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`rank ${rank}: rank ${prevRank} did not connect within ${(opts.timeoutMs / 1000).toFixed(0)} s`)), opts.timeoutMs);
    const onConnection = (s: net.Socket): void => {
      const link = new Link(s, `rank ${prevRank}`);
      link.take(256).then((b) => {
        let h: { rank?: unknown; job?: unknown } = {};
        try { h = JSON.parse(b.toString('utf8').trim()) as typeof h; } catch { /* not ours */ }
        if (h.job !== job || h.rank !== prevRank) { s.destroy(); return; } // a stray connection
        clearTimeout(timer);
        link.onFailure = onFailure;
        resolve(link);
      }, () => s.destroy());
    };
    server.on('connection', onConnection);
    local.on('connection', onConnection);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, ep.listenHost, () => resolve());
  });
  // the Unix socket: a private folder, so no other user can connect or squat the name
  let unix: string | null = null;
  try {
    const dir = mkdtempSync(join(tmpdir(), 'tapegrad-ring-'));
    unix = join(dir, `rank${rank}.sock`);
    await new Promise<void>((resolve, reject) => { local.once('error', reject); local.listen(unix!, () => resolve()); });
    const path = unix;
    local.on('close', () => rmSync(dir, { recursive: true, force: true }));
    process.once('exit', () => rmSync(dirname(path), { recursive: true, force: true }));
  } catch {
    unix = null; // (TCP alone, then)
  }
  const me = machineId();
  await ep.publish(`${ep.advertiseHost}:${(server.address() as net.AddressInfo).port}` + (unix ? `|unix=${unix}|id=${me}` : ''));
  const nextAddr = parseAddress(await ep.lookupNext());
  const viaUnix = nextAddr.unix !== null && nextAddr.id === me && existsSync(nextAddr.unix);
  const where = viaUnix ? nextAddr.unix! : `${nextAddr.host}:${nextAddr.port}`;
  const out = await new Promise<net.Socket>((resolve, reject) => {
    const s = viaUnix ? net.connect(nextAddr.unix!) : net.connect({ host: nextAddr.host, port: nextAddr.port });
    s.once('connect', () => resolve(s));
    s.once('error', (e) => reject(new Error(`rank ${rank}: cannot connect to rank ${nextRank} at ${where}: ${e.message}`)));
  });
  const next = new Link(out, `rank ${nextRank}`);
  next.onFailure = onFailure;
  await next.send(hello);
  const prev = await accepted;
  group = new ProcessGroup(rank, worldSize, next, prev, opts, [server, local], viaUnix ? 'unix' : 'tcp');
  return group;
}
