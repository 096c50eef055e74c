// A key-value store for rendezvous that speaks torch's c10d TCPStore wire protocol, so a worker
// can meet its peers through torchrun's agent store, and our own launcher serves one that torch
// clients could use too. Messages: a u8 query type, then little-endian u64-length-prefixed keys
// and values (and i64 numbers for ADD). Two protocol generations exist:
//   v1 (torch <= 1.13; verified on the wire against Debian's python3-torch 1.13, see
//      test/fixtures/make_tcpstore_fixture.py): SET 0, COMPARE_SET 1, GET 2, ADD 3, CHECK 4,
//      WAIT 5, GETNUMKEYS 6, WATCH_KEY 7, DELETE_KEY 8;
//   v2 (torch 2.x): a first VALIDATE message (type 0, u32 magic 0x3C85F7CE), then SET 1,
//      COMPARE_SET 2, GET 3, ADD 4, CHECK 5, WAIT 6, GETNUMKEYS 7, DELETE_KEY 8, PING 13.
// The server tells them apart by the first message; the client probes (see StoreClient.connect).
// Like torch's client, ours stores user keys under a "/" prefix, so both see the same keys.

import net from 'node:net';

export const VALIDATE_MAGIC = 0x3c85f7ce;
type Proto = 'v1' | 'v2';
const Q = {
  v1: { SET: 0, COMPARE_SET: 1, GET: 2, ADD: 3, CHECK: 4, WAIT: 5, GETNUMKEYS: 6, DELETE_KEY: 8 },
  v2: { VALIDATE: 0, SET: 1, COMPARE_SET: 2, GET: 3, ADD: 4, CHECK: 5, WAIT: 6, GETNUMKEYS: 7, DELETE_KEY: 8, PING: 13 },
} as const;
/** Keys of the ops both generations share, and how a received type byte maps to one. */
type Op = 'SET' | 'COMPARE_SET' | 'GET' | 'ADD' | 'CHECK' | 'WAIT' | 'GETNUMKEYS' | 'DELETE_KEY' | 'PING';
const OPS: Record<Proto, Map<number, Op>> = {
  v1: new Map(Object.entries(Q.v1).map(([k, v]) => [v, k as Op])),
  v2: new Map(Object.entries(Q.v2).filter(([k]) => k !== 'VALIDATE').map(([k, v]) => [v, k as Op])),
};

// ---- bytes ------------------------------------------------------------------------------------

function u64(n: number): Buffer { const b = Buffer.alloc(8); b.writeBigUInt64LE(BigInt(n)); return b; }
function i64(n: bigint): Buffer { const b = Buffer.alloc(8); b.writeBigInt64LE(n); return b; }
function str(s: string | Uint8Array): Buffer {
  const body = typeof s === 'string' ? Buffer.from(s, 'utf8') : Buffer.from(s);
  return Buffer.concat([u64(body.length), body]);
}

/** Reads a socket's bytes on demand: `take(n)` resolves with exactly n bytes, or rejects on close/timeout. */
class Reader {
  private chunks: Buffer[] = [];
  private have = 0;
  private wanted: { n: number; resolve: (b: Buffer) => void; reject: (e: Error) => void; timer: NodeJS.Timeout | null } | null = null;
  private ended: Error | null = null;
  constructor(private readonly what: string, socket: net.Socket) {
    socket.on('data', (d: Buffer) => { this.chunks.push(d); this.have += d.length; this.serve(); });
    const end = (why: string): void => { if (!this.ended) { this.ended = new Error(`${this.what}: ${why}`); this.serve(); } };
    socket.on('close', () => end('the connection closed'));
    socket.on('error', (e) => end(`connection error: ${e.message}`));
  }
  get buffered(): number { return this.have; }
  /** Put bytes back in front (read ahead by a parser that changed its mind). */
  unshift(b: Buffer): void { this.chunks.unshift(b); this.have += b.length; }
  take(n: number, timeoutMs: number | null = null, during = ''): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const timer = timeoutMs === null ? null : setTimeout(() => {
        this.wanted = null;
        reject(new Error(`${this.what}: no answer within ${(timeoutMs / 1000).toFixed(0)} s${during ? ` ${during}` : ''}`));
      }, timeoutMs);
      this.wanted = { n, resolve, reject, timer };
      this.serve();
    });
  }
  private serve(): void {
    const w = this.wanted;
    if (!w) return;
    if (this.have >= w.n) {
      const all = this.chunks.length === 1 ? this.chunks[0]! : Buffer.concat(this.chunks);
      const out = all.subarray(0, w.n);
      this.chunks = all.length > w.n ? [all.subarray(w.n)] : [];
      this.have -= w.n;
      this.wanted = null;
      if (w.timer) clearTimeout(w.timer);
      w.resolve(out);
    } else if (this.ended) {
      this.wanted = null;
      if (w.timer) clearTimeout(w.timer);
      w.reject(this.ended);
    }
  }
  async u8(t?: number | null, d?: string): Promise<number> { return (await this.take(1, t, d))[0]!; }
  async u32(t?: number | null, d?: string): Promise<number> { return (await this.take(4, t, d)).readUInt32LE(0); }
  async u64(t?: number | null, d?: string): Promise<number> {
    const v = (await this.take(8, t, d)).readBigUInt64LE(0);
    if (v > BigInt(MAX_ITEM)) throw new Error(`${this.what}: a length of ${v} bytes is beyond the ${MAX_ITEM}-byte limit of one key or value`);
    return Number(v);
  }
  async i64(t?: number | null, d?: string): Promise<bigint> { return (await this.take(8, t, d)).readBigInt64LE(0); }
  async bytes(t?: number | null, d?: string): Promise<Buffer> { return this.take(await this.u64(t, d), t, d); }
}

/** Largest key or value accepted (a peer's garbage length is refused, not allocated). */
const MAX_ITEM = 1 << 30;

// ---- server ------------------------------------------------------------------------------------

/** The store's server: keys and values in memory, waits answered when their keys are all set. */
export class StoreServer {
  private readonly data = new Map<string, Buffer>();
  private readonly waiters: { keys: string[]; done: () => void }[] = [];
  private readonly sockets = new Set<net.Socket>();

  private constructor(private readonly server: net.Server, readonly port: number) {}

  /** Listen on host:port (port 0: any free port). */
  static listen(host: string, port: number): Promise<StoreServer> {
    return new Promise((resolve, reject) => {
      const server = net.createServer();
      server.once('error', (e: NodeJS.ErrnoException) => reject(new Error(
        `rendezvous store: cannot listen on ${host}:${port}: ${e.code === 'EADDRINUSE' ? 'the port is in use (another job, or a store already running there); choose another --master-port' : e.message}`)));
      server.listen(port, host, () => {
        const s = new StoreServer(server, (server.address() as net.AddressInfo).port);
        server.on('connection', (c) => s.serve(c));
        resolve(s);
      });
    });
  }

  close(): Promise<void> {
    for (const c of this.sockets) c.destroy();
    return new Promise((r) => this.server.close(() => r()));
  }

  private serve(c: net.Socket): void {
    this.sockets.add(c);
    c.setNoDelay(true);
    c.on('close', () => this.sockets.delete(c));
    c.on('error', () => {});
    const rd = new Reader('rendezvous store client', c);
    void (async () => {
      let proto: Proto = 'v1';
      // a v2 client opens with VALIDATE (0) + the magic; a v1 client never sends a 0 first (its first is ADD "init/")
      const first = await rd.u8();
      let t = first;
      if (first === 0) {
        const magic = await rd.take(4);
        if (magic.readUInt32LE(0) === VALIDATE_MAGIC) { proto = 'v2'; t = await rd.u8(); } else { rd.unshift(magic); }
      }
      for (;;) {
        await this.handle(proto, t, rd, c);
        t = await rd.u8();
      }
    })().catch(() => c.destroy());
  }

  private async handle(proto: Proto, t: number, rd: Reader, c: net.Socket): Promise<void> {
    const op = OPS[proto].get(t);
    const key = async (): Promise<string> => (await rd.bytes()).toString('utf8');
    switch (op) {
      case 'SET': { const k = await key(); this.put(k, await rd.bytes()); return; }
      case 'COMPARE_SET': {
        const k = await key(), expected = await rd.bytes(), desired = await rd.bytes();
        const cur = this.data.get(k);
        if (cur === undefined) { if (expected.length === 0) { this.put(k, desired); c.write(str(desired)); } else c.write(str(expected)); return; }
        if (cur.equals(expected)) { this.put(k, desired); c.write(str(desired)); } else c.write(str(cur));
        return;
      }
      case 'GET': {
        const k = await key();
        const v = this.data.get(k);
        // (clients WAIT before GET; a GET of a missing key answers an empty value rather than hanging)
        c.write(str(v ?? Buffer.alloc(0)));
        return;
      }
      case 'ADD': {
        const k = await key(), n = await rd.i64();
        const cur = this.data.get(k);
        const next = (cur === undefined ? 0n : BigInt(cur.toString('utf8') || '0')) + n;
        this.put(k, Buffer.from(String(next), 'utf8'));
        c.write(i64(next));
        return;
      }
      case 'CHECK': {
        const n = await rd.u64(); const keys: string[] = [];
        for (let i = 0; i < n; i++) keys.push(await key());
        c.write(Buffer.from([keys.every((k) => this.data.has(k)) ? 0 : 1]));
        return;
      }
      case 'WAIT': {
        const n = await rd.u64(); const keys: string[] = [];
        for (let i = 0; i < n; i++) keys.push(await key());
        const done = (): void => { c.write(Buffer.from([0])); }; // STOP_WAITING
        if (keys.every((k) => this.data.has(k))) done(); else this.waiters.push({ keys, done });
        return;
      }
      case 'GETNUMKEYS': c.write(i64(BigInt(this.data.size))); return;
      case 'DELETE_KEY': { const k = await key(); c.write(i64(this.data.delete(k) ? 1n : 0n)); return; }
      case 'PING': { c.write((await rd.take(4))); return; }
      default: throw new Error(`rendezvous store: unknown query type ${t} (${proto})`);
    }
  }

  private put(k: string, v: Buffer): void {
    this.data.set(k, v);
    for (let i = this.waiters.length - 1; i >= 0; i--) {
      const w = this.waiters[i]!;
      if (w.keys.every((key) => this.data.has(key))) { this.waiters.splice(i, 1); w.done(); }
    }
  }
}

// ---- client ------------------------------------------------------------------------------------

export interface StoreClientOptions {
  /** How long to keep trying to connect, and how long a wait may take (ms). */
  timeoutMs: number;
  /** Which protocol the server speaks; 'auto' probes (v1 first: a v2 server refuses it harmlessly). */
  protocol?: Proto | 'auto';
}

/** A client of a TCPStore server (ours or torch's). Requests go one at a time, in order. */
export class StoreClient {
  private queue: Promise<unknown> = Promise.resolve();
  private constructor(private readonly socket: net.Socket, private readonly rd: Reader, readonly protocol: Proto,
    private readonly timeoutMs: number, readonly address: string) {}

  /** The socket's local address: the address this machine is reached at from the store's host. */
  get localAddress(): string { return this.socket.localAddress ?? '127.0.0.1'; }

  /** Connect to host:port, retrying until the timeout (the server may not be up yet). */
  static async connect(host: string, port: number, opts: StoreClientOptions): Promise<StoreClient> {
    const deadline = Date.now() + opts.timeoutMs;
    const address = `${host}:${port}`;
    const open = async (): Promise<net.Socket> => {
      let last = '';
      while (Date.now() < deadline) {
        try {
          return await new Promise<net.Socket>((resolve, reject) => {
            const s = net.connect({ host, port });
            s.once('connect', () => { s.setNoDelay(true); resolve(s); });
            s.once('error', reject);
          });
        } catch (e) {
          last = (e as Error).message;
          await new Promise((r) => setTimeout(r, 200));
        }
      }
      throw new Error(`rendezvous: could not reach the store at ${address} within ${(opts.timeoutMs / 1000).toFixed(0)} s (${last}); ` +
        'is rank 0 (or the launcher) running there, and MASTER_ADDR / MASTER_PORT the same on every rank?');
    };
    const want = opts.protocol ?? 'auto';
    let client: StoreClient | null = null;
    if (want !== 'v2') {
      const s = await open();
      client = new StoreClient(s, new Reader(`rendezvous store at ${address}`, s), 'v1', opts.timeoutMs, address);
      if (want === 'auto') {
        // probe: GETNUMKEYS is one byte in v1 and answers at once; a v2 server (expecting VALIDATE) does not
        s.write(Buffer.from([Q.v1.GETNUMKEYS]));
        try { await client.rd.take(8, 2000); } catch { s.destroy(); client = null; }
      }
    }
    if (!client) {
      const s = await open();
      s.write(Buffer.concat([Buffer.from([Q.v2.VALIDATE]), (() => { const b = Buffer.alloc(4); b.writeUInt32LE(VALIDATE_MAGIC); return b; })()]));
      client = new StoreClient(s, new Reader(`rendezvous store at ${address}`, s), 'v2', opts.timeoutMs, address);
    }
    // as torch's client does on connecting: count itself in "init/" (a torch master may wait for it)
    await client.addRaw('init/', 1);
    return client;
  }

  private q(op: Exclude<Op, 'PING'>): number { return Q[this.protocol][op]; }
  private request<T>(fn: () => Promise<T>): Promise<T> {
    const p = this.queue.then(fn);
    this.queue = p.catch(() => undefined);
    return p;
  }

  set(key: string, value: string | Uint8Array): Promise<void> {
    return this.request(async () => { this.socket.write(Buffer.concat([Buffer.from([this.q('SET')]), str(`/${key}`), str(value)])); });
  }
  /** The value of `key`, waiting (up to the timeout) until some rank sets it. */
  get(key: string, timeoutMs = this.timeoutMs): Promise<Buffer> {
    return this.request(async () => {
      await this.waitNow([key], timeoutMs);
      this.socket.write(Buffer.concat([Buffer.from([this.q('GET')]), str(`/${key}`)]));
      return this.rd.bytes(timeoutMs, `getting ${key}`);
    });
  }
  add(key: string, n: number): Promise<number> { return this.addRaw(`/${key}`, n); }
  /** ADD on a key as it is on the wire (no "/" prefix). */
  private addRaw(rawKey: string, n: number): Promise<number> {
    return this.request(async () => {
      this.socket.write(Buffer.concat([Buffer.from([this.q('ADD')]), str(rawKey), i64(BigInt(n))]));
      return Number(await this.rd.i64(this.timeoutMs, `adding to ${rawKey}`));
    });
  }
  /** Wait until every key is set; rejects after `timeoutMs` (the message says which keys). */
  wait(keys: string[], timeoutMs = this.timeoutMs): Promise<void> {
    return this.request(() => this.waitNow(keys, timeoutMs));
  }
  private async waitNow(keys: string[], timeoutMs: number): Promise<void> {
    this.socket.write(Buffer.concat([Buffer.from([this.q('WAIT')]), u64(keys.length), ...keys.map((k) => str(`/${k}`))]));
    try {
      await this.rd.u8(timeoutMs, `waiting for ${keys.join(', ')}`);
    } catch (e) {
      // the pending WAIT would answer later and desynchronise the stream: this client is done
      this.socket.destroy();
      throw e;
    }
  }
  numKeys(): Promise<number> {
    return this.request(async () => { this.socket.write(Buffer.from([this.q('GETNUMKEYS')])); return Number(await this.rd.i64(this.timeoutMs)); });
  }
  compareSet(key: string, expected: string, desired: string): Promise<Buffer> {
    return this.request(async () => {
      this.socket.write(Buffer.concat([Buffer.from([this.q('COMPARE_SET')]), str(`/${key}`), str(expected), str(desired)]));
      return this.rd.bytes(this.timeoutMs);
    });
  }
  deleteKey(key: string): Promise<boolean> {
    return this.request(async () => {
      this.socket.write(Buffer.concat([Buffer.from([this.q('DELETE_KEY')]), str(`/${key}`)]));
      return (await this.rd.i64(this.timeoutMs)) > 0n;
    });
  }
  close(): void { this.socket.destroy(); }
}
