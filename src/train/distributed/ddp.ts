// What torch's DistributedDataParallel does for train_gpt2.py, over our collectives: rank 0's
// parameters broadcast at the start, gradients averaged once per optimizer step in ~25 MB
// buckets (parameters in reverse order, as DDP's buckets fill during backward), and the
// optimizer state of a resumed run sent from rank 0, which alone reads checkpoints.

import { Tensor } from '../../tensor/index.js';
import { replaceGrad } from '../../tensor/autograd.js';
import type { AdamW } from '../../optim/adamw.js';
import type { Job } from './init.js';

/** DDP's default bucket size. */
export const BUCKET_BYTES = 25 * 2 ** 20;

/** Parameters grouped into buckets of about BUCKET_BYTES (a bigger tensor is a bucket of its own). */
function buckets(ts: readonly Tensor[]): Tensor[][] {
  const out: Tensor[][] = [];
  let cur: Tensor[] = [], bytes = 0;
  for (const t of ts) {
    cur.push(t);
    bytes += t.size * 4;
    if (bytes >= BUCKET_BYTES) { out.push(cur); cur = []; bytes = 0; }
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

/** A tensor like `t` (shape, backend) holding `values` (taken, not copied, by host backends). */
function like(t: Tensor, values: Float32Array): Tensor {
  return new Tensor(t.backend.fromHost(values, 'float32'), t.shape, t.backend);
}

/** Each job's gradient buckets, allocated once: a fresh 100 MB buffer every step costs its page faults. */
const bucketMemory = new WeakMap<Job, Float32Array[]>();

/** Average every parameter's gradient over the ranks (after the last micro-step's backward). */
export async function allReduceGradients(job: Job, params: readonly Tensor[]): Promise<void> {
  if (job.worldSize === 1) return;
  const withGrad = params.filter((p) => p.grad !== null).reverse();
  const bs = buckets(withGrad.map((p) => p.grad!));
  const owners = buckets(withGrad);
  let memory = bucketMemory.get(job);
  const sizes = bs.map((b) => b.reduce((n, t) => n + t.size, 0));
  if (!memory || memory.length !== sizes.length || memory.some((m, i) => m.length !== sizes[i])) {
    memory = sizes.map((n) => new Float32Array(n));
    bucketMemory.set(job, memory);
  }
  // every bucket is read before any gradient is written (two parameters may share one gradient's memory)
  for (let b = 0; b < bs.length; b++) await flatten(bs[b]!, memory[b]);
  for (let b = 0; b < bs.length; b++) await job.group.allReduce(memory[b]!, 'avg', `the gradient all-reduce (bucket ${b + 1} of ${bs.length})`);
  for (let b = 0; b < bs.length; b++) {
    let at = 0;
    for (const p of owners[b]!) {
      const g = p.grad!, values = memory[b]!.subarray(at, at + g.size);
      const own = hostFloats(g);
      // in place where the gradient's memory is on the host (DDP, too, averages grads in place);
      // otherwise a new tensor (a copy: the bucket is reused next step)
      if (own) own.set(values);
      else replaceGrad(p, g.dtype === 'float32' ? like(g, values.slice()) : like(g, values.slice()).to(g.dtype));
      at += g.size;
    }
  }
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
