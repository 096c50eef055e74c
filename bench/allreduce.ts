// All-reduce bandwidth between ranks (a worker of `npm run bench -- --only=ddp`): joins the job
// from the environment (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT) and times the ring
// all-reduce of float32 buffers, sent as float32 and as bfloat16 (--ddp-grad-dtype bfloat16);
// rank 0 prints one JSON line.

import { joinJob, readDistEnv } from '../src/train/distributed/init.js';

async function main(): Promise<void> {
  const job = await joinJob(readDistEnv()!, 60_000);
  const results: { mb: number; wire: string; seconds: number; gbPerS: number }[] = [];
  for (const wire of ['float32', 'bfloat16'] as const) {
    for (const mb of [28, 500]) {
      const a = new Float32Array((mb * 2 ** 20) / 4).fill(1);
      const reduce = (what: string): Promise<void> => wire === 'float32' ? job.group.allReduce(a, 'sum', what) : job.group.allReduceBf16(a, 'sum', what);
      await reduce('warm-up');
      const times: number[] = [];
      for (let i = 0; i < (mb > 100 ? 3 : 8); i++) {
        const t = performance.now();
        await reduce('timed');
        times.push((performance.now() - t) / 1000);
      }
      const s = times.sort((x, y) => x - y)[Math.floor(times.length / 2)]!;
      // algorithm bandwidth: the float32 buffer's bytes per second of all-reduce (each rank sends 2(W-1)/W of them)
      results.push({ mb, wire, seconds: s, gbPerS: (mb * 2 ** 20) / s / 1e9 });
    }
  }
  await job.group.barrier();
  if (job.isMaster) console.log(JSON.stringify({ ok: true, worldSize: job.worldSize, results }));
  job.close();
  process.exit(0);
}
main().catch((e: unknown) => { console.error(e); process.exit(1); });
