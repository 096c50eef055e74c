// Our `torchrun`: start N worker processes on this machine with torchrun's environment (RANK,
// LOCAL_RANK, WORLD_SIZE, LOCAL_WORLD_SIZE, GROUP_RANK, MASTER_ADDR, MASTER_PORT), stream their
// output with a "[rank r]" prefix, and end together: the first rank to fail decides the exit
// status, and the others are stopped (SIGTERM, then SIGKILL after a grace period). Ctrl-C here
// is passed to every rank (each finishes its step and rank 0 writes a checkpoint).

import { spawn, type ChildProcess } from 'node:child_process';
import net from 'node:net';

export interface LaunchOptions {
  nprocPerNode: number;
  nnodes: number;
  nodeRank: number;
  masterAddr: string;
  /** 0: pick a free port (single node only). */
  masterPort: number;
  /** The worker's command: node and its arguments. */
  command: string[];
  /** Extra environment of every worker. */
  env?: NodeJS.ProcessEnv;
  /** Seconds between a rank's failure and SIGKILL of the ones that ignore SIGTERM. */
  graceSeconds?: number;
  print?: (line: string) => void;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)); });
  });
}

/** Run the job; resolves with the exit status (the first failing rank's, else 0). */
export async function launch(o: LaunchOptions): Promise<number> {
  const print = o.print ?? ((l: string) => process.stdout.write(l + '\n'));
  if (o.nnodes > 1 && o.masterPort === 0) throw new Error('--master-port is required with --nnodes > 1 (every node must use the same one)');
  const port = o.masterPort || await freePort();
  const world = o.nprocPerNode * o.nnodes;
  const children: { rank: number; child: ChildProcess }[] = [];
  let status: number | null = null;
  let firstFailure: string | null = null;
  let stopping = false;
  let killTimer: NodeJS.Timeout | null = null;
  const stopAll = (sig: NodeJS.Signals): void => {
    for (const { child } of children) if (child.exitCode === null && child.signalCode === null) child.kill(sig);
  };
  const fail = (rank: number, why: string, code: number): void => {
    if (firstFailure) return;
    firstFailure = `rank ${rank} ${why}`;
    status = code;
    print(`launcher: rank ${rank} ${why}; stopping the other ranks`);
    stopAll('SIGTERM');
    killTimer = setTimeout(() => stopAll('SIGKILL'), (o.graceSeconds ?? 10) * 1000);
  };
  const onSignal = (sig: NodeJS.Signals): void => {
    if (stopping) { stopAll('SIGKILL'); return; }
    stopping = true;
    stopAll(sig);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  print(`launcher: ${world} ranks (${o.nprocPerNode} on this node, node ${o.nodeRank} of ${o.nnodes}), rendezvous at ${o.masterAddr}:${port}`);
  const done = Array.from({ length: o.nprocPerNode }, (_, local) => new Promise<void>((resolve) => {
    const rank = o.nodeRank * o.nprocPerNode + local;
    const child = spawn(o.command[0]!, o.command.slice(1), {
      env: {
        ...process.env, ...o.env,
        RANK: String(rank), LOCAL_RANK: String(local), WORLD_SIZE: String(world), LOCAL_WORLD_SIZE: String(o.nprocPerNode),
        GROUP_RANK: String(o.nodeRank), ROLE_RANK: String(rank), MASTER_ADDR: o.masterAddr, MASTER_PORT: String(port),
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.push({ rank, child });
    const prefix = `[rank ${rank}] `;
    for (const stream of [child.stdout!, child.stderr!]) {
      let rest = '';
      stream.on('data', (d: Buffer) => {
        const lines = (rest + d.toString()).split('\n');
        rest = lines.pop()!;
        for (const line of lines) {
          // rank 0 reports the steps; another rank's step lines would only repeat them
          if (rank !== 0 && /^step +\d+ \|/.test(line)) continue;
          print(prefix + line);
        }
      });
      stream.on('end', () => { if (rest) print(prefix + rest); });
    }
    child.on('exit', (code, signal) => {
      if (code !== 0 && !firstFailure && !stopping) fail(rank, signal ? `was killed by ${signal}` : `exited with status ${code}`, code ?? 1);
      else if (stopping && status === null && code !== 0) status = code ?? 1;
      resolve();
    });
  }));
  await Promise.all(done);
  if (killTimer) clearTimeout(killTimer);
  process.off('SIGINT', onSignal);
  process.off('SIGTERM', onSignal);
  return status ?? 0;
}
