// All-reduce bandwidth between ranks (a worker of `npm run bench -- --only=ddp`): joins the job
// from the environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and times the ring
// all-reduce of float32 buffers; rank 0 prints one JSON line.

import { joinJob, readDistEnv } from '../src/train/distributed/init.js';

async function main(): Promise<void> {
  const job = await joinJob(readDistEnv()!, 60_000);
  const results: { mb: number; seconds: number; gbPerS: number }[] = [];
  for (const mb of [28, 500]) {
    const a = new Float32Array((mb * 2 ** 20) / 4).fill(1);
    await job.group.allReduce(a, 'sum', 'warm-up');
    const times: number[] = [];
    for (let i = 0; i < (mb > 100 ? 3 : 8); i++) {
      const t = performance.now();
      await job.group.allReduce(a, 'sum', 'timed');
      times.push((performance.now() - t) / 1000);
    }
    const s = times.sort((x, y) => x - y)[Math.floor(times.length / 2)]!;
    // algorithm bandwidth: the buffer's bytes per second of all-reduce (each rank sends 2(W-1)/W of them)
    results.push({ mb, seconds: s, gbPerS: (mb * 2 ** 20) / s / 1e9 });
  }
  await job.group.barrier();
  if (job.isMaster) console.log(JSON.stringify({ ok: true, worldSize: job.worldSize, results }));
  job.close();
  process.exit(0);
}
main().catch((e: unknown) => { console.error(e); process.exit(1); });
