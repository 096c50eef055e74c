// A lost GPU device (a driver reset, another process, a backgrounded tab): its tensors are gone,
// reads say so (DeviceLostError, never zeros), initGpuBackend() gives a new device, and
// npm run train continues from its last checkpoint to the same losses as an unbroken run.
// The device is destroyed for real, mid-run, on SwiftShader (or whatever adapter is here).

import { mkdirSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { DeviceLostError, getBackend, randn, setBackend, tensor } from '../src/index.js';
import { initGpuBackend, type GpuBackend } from '../src/tensor/backends/gpu/index.js';
import type { WebGpuRunner } from '../src/tensor/backends/gpu/webgpu-runner.js';
import { TRAIN_DEFAULTS, train, type TrainOptions } from '../src/train/train.js';
import { realWebGpu } from './helpers/webgpu.js';
import { writeTinyShards } from './helpers/tiny-data.js';

const gpu = await realWebGpu();
const destroy = (b: unknown): void => { (((b as GpuBackend).runner as WebGpuRunner).device as { destroy(): void }).destroy(); };

let work = '', data = '';
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'tapegrad-device-lost-'));
  data = join(work, 'data');
  mkdirSync(data);
  writeTinyShards(data, { seed: 5, noise: 0.2, stride: 7, vocab: 64, val: 400, train: [4000] });
});

describe.skipIf(!gpu)('a lost WebGPU device', { timeout: 300_000 }, () => {
  it('reads throw DeviceLostError naming the reason; initGpuBackend() then gives a working new device', async () => {
    const b = await initGpuBackend() as GpuBackend;
    setBackend(b);
    const x = randn([8, 8]);
    const before = (await x.sum().data())[0]!;
    expect(Number.isFinite(before)).toBe(true);
    destroy(b);
    await expect(x.mul(2).sum().data()).rejects.toThrow(DeviceLostError);
    await expect(x.data()).rejects.toThrow(/device was lost \(destroyed/);
    expect(b.lost?.reason).toBe('destroyed');
    const b2 = await initGpuBackend() as GpuBackend;
    expect(b2).not.toBe(b);
    expect(b2.lost).toBeNull();
    setBackend(b2);
    expect(Array.from(await tensor([1, 2, 3]).mul(2).data())).toEqual([2, 4, 6]);
  });

  const opts = (outDir: string, print: (s: string) => void): TrainOptions => ({
    ...TRAIN_DEFAULTS, model: 'tiny', nLayer: 1, nHead: 2, nEmbd: 16, blockSize: 16, vocabSize: 64,
    batchSize: 2, seqLen: 16, totalBatchSize: 32, maxSteps: 10, warmupSteps: 2, evalInterval: 5, valSteps: 2,
    sampleInterval: 0, checkpointInterval: 3, dataDir: data, outDir, backend: 'gpu', print,
  });
  const losses = (lines: string[]): Map<number, string> => new Map(lines.flatMap((l) => {
    const m = /^step\s+(\d+) \| loss: (\S+)/.exec(l);
    return m ? [[Number(m[1]), m[2]!] as [number, string]] : [];
  }));

  it('npm run train: destroyed after step 6, it makes a new device, reloads the step-6 checkpoint and ends with the unbroken run\'s losses', async () => {
    const whole: string[] = [];
    const w = await train(opts(join(work, 'whole'), (s) => whole.push(s)));
    expect(w.steps).toBe(10);

    const lines: string[] = [];
    let destroyed = false;
    const r = await train(opts(join(work, 'lost'), (s) => {
      lines.push(s);
      // step 6's checkpoint is written and its step printed: step 7's readback meets the lost device
      if (!destroyed && /^step\s+6 \|/.test(s)) { destroyed = true; destroy(getBackend()); }
    }));
    const text = lines.join('\n');
    expect(destroyed).toBe(true);
    expect(text).toMatch(/the GPU device was lost \(destroyed: device was destroyed\); making a new device/);
    expect(text).toMatch(/resuming from .*model_00006\.json \(step 6\)/);
    expect(r.finalLoss).toBe(w.finalLoss);
    // every step after the loss repeats the unbroken run's loss to the printed digit
    const a = losses(whole), b = losses(lines);
    for (let s = 0; s < 10; s++) expect(b.get(s), `step ${s}`).toBe(a.get(s));
    expect(readdirSync(join(work, 'lost'))).toContain('model_00009.json');
  });

  it('a loss before the first checkpoint starts the run again from step 0, to the same end', async () => {
    const lines: string[] = [];
    let destroyed = false;
    const o = opts(join(work, 'early'), (s) => {
      lines.push(s);
      if (!destroyed && /^step\s+1 \|/.test(s)) { destroyed = true; destroy(getBackend()); }
    });
    const r = await train({ ...o, checkpointInterval: 0 });
    expect(lines.join('\n')).toMatch(/no checkpoint in .*; starting from scratch/);
    const whole: string[] = [];
    const w = await train({ ...opts(join(work, 'early-whole'), (s) => whole.push(s)), checkpointInterval: 0 });
    expect(r.finalLoss).toBe(w.finalLoss);
  });
});
