// Joining a data-parallel job as torchrun's workers do: the environment says who we are
// (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT; or
// Slurm's SLURM_PROCID / SLURM_NTASKS / SLURM_LOCALID when RANK is unset), the ranks meet in a
// TCPStore (torchrun's agent store when TORCHELASTIC_USE_AGENT_STORE=True, else one served by
// rank 0 at MASTER_PORT), publish their addresses, and form the ring of group.ts.

import { StoreClient, StoreServer } from './store.js';
import { formRing, ProcessGroup } from './group.js';

export interface DistEnv {
  rank: number;
  worldSize: number;
  localRank: number;
  localWorldSize: number;
  groupRank: number;
  masterAddr: string;
  masterPort: number;
  /** The store belongs to torchrun's agent (connect to it; do not serve one). */
  agentStore: boolean;
  /** The job's id (TORCHELASTIC_RUN_ID, or the master's address) and restart attempt. */
  runId: string;
  attempt: number;
}

function intEnv(env: NodeJS.ProcessEnv, name: string): number | undefined {
  const v = env[name];
  if (v === undefined || v === '') return undefined;
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new Error(`${name}=${JSON.stringify(v)}: expected a non-negative integer`);
  return n;
}

/** The distributed environment, or null for a single-process run (no RANK / SLURM_PROCID). */
export function readDistEnv(env: NodeJS.ProcessEnv = process.env): DistEnv | null {
  const slurm = env.RANK === undefined && env.SLURM_PROCID !== undefined;
  const rank = slurm ? intEnv(env, 'SLURM_PROCID') : intEnv(env, 'RANK');
  if (rank === undefined) return null;
  const worldSize = slurm ? intEnv(env, 'SLURM_NTASKS') : intEnv(env, 'WORLD_SIZE');
  if (worldSize === undefined || worldSize < 1) throw new Error(`${slurm ? 'SLURM_NTASKS' : 'WORLD_SIZE'} must be set to the number of ranks (RANK is ${rank})`);
  if (rank >= worldSize) throw new Error(`RANK ${rank} must be below WORLD_SIZE ${worldSize}`);
  const localRank = (slurm ? intEnv(env, 'SLURM_LOCALID') : intEnv(env, 'LOCAL_RANK')) ?? 0;
  const localWorldSize = (slurm ? intEnv(env, 'SLURM_NTASKS_PER_NODE') : intEnv(env, 'LOCAL_WORLD_SIZE')) ?? 1;
  const masterAddr = env.MASTER_ADDR ?? (slurm ? env.SLURM_LAUNCH_NODE_IPADDR : undefined) ?? '127.0.0.1';
  const masterPort = intEnv(env, 'MASTER_PORT') ?? 29500;
  if (masterPort < 1 || masterPort > 65535) throw new Error(`MASTER_PORT ${masterPort} is not a TCP port`);
  return {
    rank, worldSize, localRank, localWorldSize,
    groupRank: intEnv(env, 'GROUP_RANK') ?? (slurm ? intEnv(env, 'SLURM_NODEID') : undefined) ?? 0,
    masterAddr, masterPort,
    agentStore: (env.TORCHELASTIC_USE_AGENT_STORE ?? '').toLowerCase() === 'true',
    runId: env.TORCHELASTIC_RUN_ID ?? env.SLURM_JOB_ID ?? `${masterAddr}:${masterPort}`,
    attempt: intEnv(env, 'TORCHELASTIC_RESTART_COUNT') ?? 0,
  };
}

/** A joined job: the group for collectives, and the store for small exchanges. */
export class Job {
  constructor(readonly env: DistEnv, readonly group: ProcessGroup, private readonly store: StoreClient | null,
    private readonly server: StoreServer | null, private readonly prefix: string, private readonly timeoutMs: number) {}

  get rank(): number { return this.env.rank; }
  get worldSize(): number { return this.env.worldSize; }
  get isMaster(): boolean { return this.env.rank === 0; }

  /** Every rank's `value` for `name`, in rank order (each rank sets its own, then reads all). */
  async exchange(name: string, value: string): Promise<string[]> {
    if (!this.store) return [value];
    const key = (r: number): string => `${this.prefix}exchange/${name}/${r}`;
    await this.store.set(key(this.rank), value);
    const keys = Array.from({ length: this.worldSize }, (_, r) => key(r));
    const t0 = Date.now();
    await this.store.wait(keys, this.timeoutMs).catch((e: unknown) => {
      const waited = (Date.now() - t0) / 1000;
      // the timeout is named only when it ran out: a store that drops early means a rank has gone
      throw new Error(waited * 1000 >= this.timeoutMs * 0.99
        ? `rank ${this.rank}: the ranks did not all reach '${name}' within ${(this.timeoutMs / 1000).toFixed(0)} s (${(e as Error).message})`
        : `rank ${this.rank}: the wait for every rank to reach '${name}' failed after ${waited.toFixed(1)} s (${(e as Error).message}); another rank has probably exited: see its output`);
    });
    const out: string[] = [];
    for (const k of keys) out.push((await this.store.get(k)).toString('utf8'));
    // and wait until every rank has read them: a rank that stops on what it read (a mismatch) may
    // be rank 0, whose store the others would otherwise lose mid-read
    const read = Array.from({ length: this.worldSize }, (_, r) => `${this.prefix}exchange/${name}/read/${r}`);
    await this.store.set(read[this.rank]!, '1');
    await this.store.wait(read, this.timeoutMs).catch(() => { /* a rank gone meanwhile: the values are read */ });
    return out;
  }

  close(): void {
    this.group.close();
    this.store?.close();
    void this.server?.close();
  }
}

/** A single-process "job". */
export function singleJob(): Job {
  return new Job({ rank: 0, worldSize: 1, localRank: 0, localWorldSize: 1, groupRank: 0, masterAddr: '', masterPort: 0, agentStore: false, runId: '', attempt: 0 },
    ProcessGroup.single(), null, null, '', 0);
}

/**
 * Rendezvous: connect to (or, as rank 0 outside torchrun, serve) the store, wait up to
 * `timeoutMs` for every rank (naming the ones that never came), then form the ring.
 */
export async function joinJob(env: DistEnv, timeoutMs: number, log: (s: string) => void = () => {}): Promise<Job> {
  if (env.worldSize === 1) return new Job(env, ProcessGroup.single(), null, null, '', timeoutMs);
  let server: StoreServer | null = null;
  if (!env.agentStore && env.rank === 0) {
    const loopback = /^(127\.|localhost$|::1$)/.test(env.masterAddr);
    server = await StoreServer.listen(loopback ? env.masterAddr : '0.0.0.0', env.masterPort);
    log(`rank 0: rendezvous store listening on ${loopback ? env.masterAddr : '0.0.0.0'}:${server.port}`);
  }
  const store = await StoreClient.connect(env.masterAddr, env.masterPort, { timeoutMs });
  const prefix = `tapegrad/${env.runId}/attempt_${env.attempt}/`;
  await store.add(`${prefix}joined/${env.rank}`, 1);
  const everyone = Array.from({ length: env.worldSize }, (_, r) => `${prefix}joined/${r}`);
  try {
    await store.wait(everyone, timeoutMs);
  } catch {
    // which ranks never came: a fresh connection asks each counter (ADD 0 reads it)
    const probe = await StoreClient.connect(env.masterAddr, env.masterPort, { timeoutMs: 10_000 });
    const missing: number[] = [];
    for (let r = 0; r < env.worldSize; r++) if ((await probe.add(`${prefix}joined/${r}`, 0)) === 0) missing.push(r);
    probe.close();
    await server?.close();
    throw new Error(`rendezvous at ${env.masterAddr}:${env.masterPort}: rank${missing.length === 1 ? '' : 's'} ${missing.join(', ')} of ${env.worldSize} ` +
      `did not join within ${(timeoutMs / 1000).toFixed(0)} s (--dist-timeout); are they started, with the same MASTER_ADDR, MASTER_PORT and WORLD_SIZE?`);
  }
  const job = `${env.runId}/${env.attempt}`;
  const ring = (r: number): string => `${prefix}ring/${r}`;
  const group = await formRing(env.rank, env.worldSize, job, {
    listenHost: /^(127\.|localhost$)/.test(env.masterAddr) ? '127.0.0.1' : '0.0.0.0',
    advertiseHost: store.localAddress,
    publish: (address) => store.set(ring(env.rank), address),
    lookupNext: async () => (await store.get(ring((env.rank + 1) % env.worldSize), timeoutMs)).toString('utf8'),
  }, { timeoutMs });
  return new Job(env, group, store, server, prefix, timeoutMs);
}
