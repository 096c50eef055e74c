// What torch's DistributedDataParallel does for train_gpt2.py, over our collectives: rank 0's
// parameters broadcast at the start, gradients averaged once per optimizer step in ~25 MB
// buckets (parameters in reverse order, as DDP's buckets fill during backward), and the
// optimizer state of a resumed run sent from rank 0, which alone reads checkpoints.

import { Tensor, keep, ops } from '../../tensor/index.js';
import { replaceGrad } from '../../tensor/autograd.js';
import type { AdamW } from '../../optim/adamw.js';
import type { Job } from './init.js';

/** DDP's default bucket size. */
export const BUCKET_BYTES = 25 * 2 ** 20;

/** Parameters grouped into buckets of about `size` bytes (a bigger tensor is a bucket of its own). */
function buckets(ts: readonly Tensor[], size = BUCKET_BYTES): Tensor[][] {
  const out: Tensor[][] = [];
  let cur: Tensor[] = [], bytes = 0;
  for (const t of ts) {
    cur.push(t);
    bytes += t.size * 4;
    if (bytes >= size) { out.push(cur); cur = []; bytes = 0; }
  }
  if (cur.length) out.push(cur);
  return out;
}

/** A tensor's own float32 array where its backend keeps it on the host (no copy), else null. */
function hostFloats(t: Tensor): Float32Array | null {
  return t.dtype === 'float32' && t.backend.hostView ? (t.backend.hostView(t.storage) as Float32Array) : null;
}

/** The tensors' float32 values side by side, in `into` when given (its length must match). */
async function flatten(ts: readonly Tensor[], into?: Float32Array): Promise<Float32Array> {
  const flat = into ?? new Float32Array(ts.reduce((n, t) => n + t.size, 0));
  let at = 0;
  for (const t of ts) {
    flat.set(hostFloats(t) ?? (await (t.dtype === 'float32' ? t : t.float()).data() as Float32Array), at);
    at += t.size;
  }
  return flat;
}

/** A tensor like `t` (its backend; its shape unless given) holding `values` (taken, not copied, by host backends). */
function like(t: Tensor, values: Float32Array, shape: readonly number[] = t.shape): Tensor {
  return new Tensor(t.backend.fromHost(values, 'float32'), shape, t.backend);
}

/** Each job's gradient buckets, allocated once: a fresh 100 MB buffer every step costs its page faults. */
const bucketMemory = new WeakMap<Job, Float32Array[]>();

/** What travels between the ranks: float32, or bfloat16 as torch DDP's bf16_compress_hook (half the bytes). */
export type GradWireDtype = 'float32' | 'bfloat16';

/**
 * Average every gradient over the ranks, in ~25 MB buckets (parameters in reverse order, as DDP's
 * buckets fill during backward). Host memory is averaged in place; a device's gradients are
 * concatenated on the device and read back once per bucket (every bucket's readback started
 * before the first is awaited), and written back once per bucket, split on the device.
 */
export async function allReduceGradients(job: Job, params: readonly Tensor[], wire: GradWireDtype = 'float32'): Promise<void> {
  if (job.worldSize === 1) return;
  const withGrad = params.filter((p) => p.grad !== null).reverse();
  // one gradient's memory may serve two parameters (the inputs of an add): it is averaged once
  const grads = [...new Map(withGrad.map((p) => [p.grad!.storage, p.grad!] as const)).values()];
  const bs = buckets(grads);
  if (grads.every((g) => hostFloats(g))) {
    for (let b = 0; b < bs.length; b++) {
      const flat = await flatten(bs[b]!, bucketBuffer(job, b, bs[b]!));
      await allReduceWire(job, flat, wire, `the gradient all-reduce (bucket ${b + 1} of ${bs.length})`);
      let at = 0;
      for (const g of bs[b]!) { hostFloats(g)!.set(flat.subarray(at, at + g.size)); at += g.size; }
    }
    return;
  }
  const reads = bs.map(readBucket);
  for (const r of reads) r.catch(() => {}); // (each is awaited in exchangeDeviceBuckets, in order)
  await exchangeDeviceBuckets(job, wire, bs, reads, withGrad);
}

/**
 * A device's buckets, in order: each readback awaited, averaged over the ranks, uploaded once and
 * split on the device into the new gradient of every parameter whose gradient it held.
 */
async function exchangeDeviceBuckets(job: Job, wire: GradWireDtype, bs: readonly (readonly Tensor[])[], reads: readonly Promise<Float32Array>[],
  params: readonly Tensor[]): Promise<void> {
  for (let b = 0; b < bs.length; b++) {
    const values = await reads[b]!;
    await allReduceWire(job, values, wire, `the gradient all-reduce (bucket ${b + 1} of ${bs.length})`);
    const gs = bs[b]!;
    const pieces = ops.split(like(gs[0]!, values, [values.length]), gs.map((g) => g.size));
    gs.forEach((g, i) => {
      const avg = g.dtype === 'float32' ? pieces[i]! : pieces[i]!.to(g.dtype);
      for (const p of params) if (p.grad?.storage === g.storage) replaceGrad(p, ops.reshape(avg, p.grad.shape));
    });
  }
}

/** One bucket of gradients concatenated on their device and read back (one copy, one readback). */
function readBucket(grads: readonly Tensor[]): Promise<Float32Array> {
  const flat = keep(ops.cat(grads.map((g) => ops.reshape(g.dtype === 'float32' ? g : g.float(), [g.size]))));
  const read = flat.data() as Promise<Float32Array>; // (the copy is queued now, behind the kernels that made the gradients)
  return read.finally(() => flat.backend.dispose(flat.storage));
}

/**
 * DDP's overlap of communication with the backward pass, on a device backend: hooks on the
 * parameters (registerPostAccumulateGradHook) start a bucket's readback as soon as the last
 * micro-step's backward has finished every gradient in it, so the device copies it out while the
 * backward of earlier layers is still running; reduce() then exchanges the buckets in order.
 * (Host backends gain nothing: their backward is synchronous JavaScript, and they are averaged in
 * place by allReduceGradients.)
 */
export class GradientReducer {
  private readonly buckets: Tensor[][];
  private readonly hooks: { remove(): void }[];
  private readonly ready = new Set<Tensor>();
  private reads: (Promise<Float32Array> | null)[] = [];
  private armed = false;

  constructor(private readonly job: Job, private readonly params: readonly Tensor[], private readonly wire: GradWireDtype = 'float32', bucketBytes = BUCKET_BYTES) {
    this.buckets = buckets([...params].reverse(), bucketBytes);
    const bucketOf = new Map<Tensor, number>();
    this.buckets.forEach((b, i) => { for (const p of b) bucketOf.set(p, i); });
    this.hooks = params.map((p) => p.registerPostAccumulateGradHook((t) => this.onGrad(t, bucketOf.get(t)!)));
  }

  /** The next backward is the step's last micro-step (as DDP's require_backward_grad_sync): its gradients are exchanged. */
  arm(): void {
    this.armed = true;
    this.ready.clear();
    this.reads = this.buckets.map(() => null);
  }

  private onGrad(p: Tensor, b: number): void {
    if (!this.armed) return;
    this.ready.add(p);
    const bucket = this.buckets[b]!;
    if (this.reads[b] === null && bucket.every((q) => this.ready.has(q))) {
      this.reads[b] = readBucket(bucket.map((q) => q.grad!));
      this.reads[b]!.catch(() => {}); // (awaited in reduce())
    }
  }

  /** Every gradient averaged over the ranks: the buckets the hooks started, then any left. */
  async reduce(): Promise<void> {
    this.armed = false;
    const grads = this.params.map((p) => p.grad);
    // a parameter without a gradient, or two sharing one: the general path (which reads after backward)
    if (grads.some((g) => g === null) || new Set(grads.map((g) => g!.storage)).size !== grads.length) {
      return allReduceGradients(this.job, this.params, this.wire);
    }
    const gradBuckets = this.buckets.map((ps) => ps.map((p) => p.grad!));
    const reads = gradBuckets.map((gs, b) => this.reads[b] ?? readBucket(gs));
    this.reads = [];
    await exchangeDeviceBuckets(this.job, this.wire, gradBuckets, reads, this.params);
  }

  /** How many buckets' readbacks the hooks have started since arm() (for tests and the curious). */
  get started(): number {
    return this.reads.filter((r) => r !== null).length;
  }

  /** Unregister the hooks. */
  close(): void {
    for (const h of this.hooks) h.remove();
  }
}

/** One bucket's float32 values averaged over the ranks, sent as float32 or bfloat16. */
async function allReduceWire(job: Job, values: Float32Array, wire: GradWireDtype, what: string): Promise<void> {
  if (wire === 'float32') return job.group.allReduce(values, 'avg', what);
  return job.group.allReduceBf16(values, 'avg', what);
}

/** A job's reusable host buffer for bucket b (a fresh 100 MB buffer every step costs its page faults). */
function bucketBuffer(job: Job, b: number, ts: readonly Tensor[]): Float32Array {
  let memory = bucketMemory.get(job);
  if (!memory) bucketMemory.set(job, memory = []);
  const n = ts.reduce((k, t) => k + t.size, 0);
  if (memory[b]?.length !== n) memory[b] = new Float32Array(n);
  return memory[b]!;
}

/** Make every rank's tensors rank 0's (in place: their storage is replaced). */
export async function broadcastTensors(job: Job, ts: readonly Tensor[], what: string): Promise<void> {
  if (job.worldSize === 1) return;
  const bs = buckets(ts);
  for (let b = 0; b < bs.length; b++) {
    const flat = await flatten(bs[b]!);
    await job.group.broadcast(new Uint8Array(flat.buffer), 0, `${what} (bucket ${b + 1} of ${bs.length})`);
    if (job.isMaster) continue;
    let at = 0;
    for (const t of bs[b]!) {
      const v = like(t, flat.subarray(at, at + t.size));
      t.storage = (t.dtype === 'float32' ? v : v.to(t.dtype)).storage;
      at += t.size;
    }
  }
}

/** A resumed run: rank 0's AdamW moments (and step) to every rank. */
export async function broadcastOptimizerState(job: Job, optimizer: AdamW, params: readonly Tensor[], step: number): Promise<void> {
  if (job.worldSize === 1) return;
  const states = params.map((p) => {
    let st = optimizer.getState(p);
    if (!st) {
      st = { step, expAvg: like(p, new Float32Array(p.size)), expAvgSq: like(p, new Float32Array(p.size)) };
      optimizer.setState(p, st);
    }
    return st;
  });
  await broadcastTensors(job, states.flatMap((s) => [s.expAvg, s.expAvgSq]), 'the optimizer state broadcast');
  for (let i = 0; i < params.length; i++) optimizer.setState(params[i]!, { ...states[i]!, step });
}

/** The mean over ranks of some numbers (loss, validation loss) and the sum of others (flags, counts). */
export async function reduceNumbers(job: Job, values: number[], op: 'avg' | 'sum', what: string): Promise<number[]> {
  if (job.worldSize === 1) return values;
  const a = Float32Array.from(values);
  await job.group.allReduce(a, op, what);
  return Array.from(a);
}
