// One GPU per rank when every GPU has the same name: two copies of SwiftShader's library under two
// ICD files give Dawn two adapters nobody can tell apart by name. The Vulkan loader says which
// library each process's device came from (VK_LOADER_DEBUG=driver: `Using "..." with driver:
// "<path>"`), which proves rank 0 and rank 1 are on different ones; the run must still match the
// 2-rank wasm run step for step, started by hand (as torchrun would) and by our launcher.

import { spawn } from 'node:child_process';
import { closeSync, copyFileSync, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { SWIFTSHADER_ICD, swiftShaderInstalled } from '../src/tensor/backends/gpu/swiftshader.js';
import { rankGpu } from '../src/train/choose-backend.js';
import { writeTinyShards } from './helpers/tiny-data.js';

const root = join(import.meta.dirname, '..');
const LIB = join(SWIFTSHADER_ICD, '..', 'libvk_swiftshader.so');
const haveCc = ['/usr/bin/cc', '/usr/bin/gcc'].some((p) => existsSync(p));
const ready = swiftShaderInstalled() && existsSync(LIB) && haveCc;
if (!ready) console.log(`gpu-select tests skipped: they need SwiftShader (apt-get install -y chromium libvulkan1) and a C compiler (apt-get install -y gcc libc6-dev)`);

let work = '', data = '', icds = '';
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'tapegrad-gpu-select-'));
  // two identical adapters: the same library twice, each with its own ICD file
  icds = ['a', 'b'].map((x) => {
    mkdirSync(join(work, x));
    copyFileSync(LIB, join(work, x, 'libvk_swiftshader.so'));
    const icd = join(work, `${x}.json`);
    writeFileSync(icd, JSON.stringify({ file_format_version: '1.0.0', ICD: { library_path: join(work, x, 'libvk_swiftshader.so'), api_version: '1.0.5' } }));
    return icd;
  }).join(':');
  data = join(work, 'data');
  mkdirSync(data);
  writeTinyShards(data, { seed: 5, noise: 0.2, stride: 3, val: 600, train: [2000] });
});

const M = ['--n-layer', '1', '--n-head', '2', '--n-embd', '16', '--block-size', '16', '--vocab-size', '64', '--seq-len', '16', '--batch-size', '2',
  '--total-batch-size', '64', '--max-steps', '3', '--sample-interval', '0', '--val-steps', '1', '--eval-interval', '2', '--warmup-steps', '1'];

/** The train CLI as a child; with `logFile`, its output goes to that file (read back at the end). */
function run(args: string[], env: NodeJS.ProcessEnv = {}, logFile?: string): Promise<{ code: number | null; out: string }> {
  const fd = logFile ? openSync(logFile, 'w') : null;
  const child = spawn(process.execPath, [join(root, 'dist/train/cli.js'), ...args], {
    cwd: root, env: { ...process.env, VK_ICD_FILENAMES: icds, TAPEGRAD_CACHE: join(work, 'cache'), ...env },
    stdio: fd === null ? 'pipe' : ['ignore', fd, fd],
  });
  let out = '';
  child.stdout?.on('data', (d: Buffer) => { out += d.toString(); });
  child.stderr?.on('data', (d: Buffer) => { out += d.toString(); });
  const timer = setTimeout(() => child.kill('SIGKILL'), 240_000);
  return new Promise((resolve) => child.on('close', (code) => {
    clearTimeout(timer);
    if (fd !== null) { closeSync(fd); out = readFileSync(logFile!, 'utf8'); }
    resolve({ code, out });
  }));
}
const log = (dir: string): { step: number; loss?: number; val_loss?: number }[] =>
  readFileSync(join(dir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; loss?: number; val_loss?: number });

describe.skipIf(!ready)('one GPU per rank (two identical SwiftShader adapters)', { timeout: 300_000 }, () => {
  it('2 ranks, --backend gpu: rank 0 and rank 1 each open a different copy, say which, and match the 2-rank wasm run', async () => {
    // the proof: the loader's own log of the library each process's device came from. The ranks are
    // started here, as torchrun would, with stderr into files: the loader writes it with C stdio,
    // which drops lines into a full non-blocking pipe, as a launcher's pipe can be
    const port = String(29300 + Math.floor(Math.random() * 300));
    const [r0, r1] = await Promise.all([0, 1].map((r) => run([...M, '--data-dir', data, '--out-dir', join(work, 'gpu'), '--backend', 'gpu'], {
      VK_LOADER_DEBUG: 'driver', RANK: String(r), LOCAL_RANK: String(r), WORLD_SIZE: '2', LOCAL_WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: port,
    }, join(work, `rank${r}.log`))));
    for (const g of [r0!, r1!]) expect(g.code, g.out).toBe(0);
    const used = (g: { out: string }): string => /Using "[^"]*" with driver: "([^"]+)"/.exec(g.out)?.[1] ?? `no "Using ... with driver" line in:\n${g.out}`;
    expect(used(r0!)).toMatch(/\/(a|b)\/libvk_swiftshader\.so$/);
    expect(used(r1!)).toMatch(/\/(a|b)\/libvk_swiftshader\.so$/);
    expect(used(r0!)).not.toBe(used(r1!));
    expect(r0!.out).toMatch(/^rank 0: GPU 0 of 2: /m);
    expect(r1!.out).toMatch(/^rank 1: GPU 1 of 2: /m);
    // and through the launcher: the same run, and the same numbers as the 2-rank wasm run
    const g = await run([...M, '--data-dir', data, '--out-dir', join(work, 'gpu-launched'), '--backend', 'gpu', '--nproc-per-node', '2']);
    expect(g.code, g.out).toBe(0);
    expect(g.out).toMatch(/\[rank 1\] rank 1: GPU 1 of 2: /);
    const w = await run([...M, '--data-dir', data, '--out-dir', join(work, 'wasm'), '--backend', 'wasm', '--nproc-per-node', '2', '--threads', '1']);
    expect(w.code, w.out).toBe(0);
    for (const dir of ['gpu', 'gpu-launched']) {
      const [lg, lw] = [log(join(work, dir)), log(join(work, 'wasm'))];
      expect(lg.map((e) => e.step)).toEqual(lw.map((e) => e.step));
      lw.forEach((e, i) => {
        for (const k of ['loss', 'val_loss'] as const) if (e[k] !== undefined) expect(Math.abs(lg[i]![k]! - e[k]!), `${dir}: ${k} at step ${e.step}`).toBeLessThan(1e-4);
      });
    }
  });

  it('--gpus picks by index; one that does not exist, or too few for the ranks, is a clear error', async () => {
    const one = await run([...M, '--max-steps', '1', '--data-dir', data, '--out-dir', join(work, 'one'), '--backend', 'gpu', '--gpus', '1']);
    expect(one.code, one.out).toBe(0);
    expect(one.out).toMatch(/^device: GPU 1 of 2: /m);
    const none = await run([...M, '--max-steps', '1', '--data-dir', data, '--out-dir', join(work, 'none'), '--backend', 'gpu', '--gpus', '5']);
    expect(none.code).toBe(1);
    expect(none.out).toMatch(/there is no GPU 5: the Vulkan loader lists 2 devices here \(indices 0-1\)/);
    const few = await run([...M, '--max-steps', '1', '--data-dir', data, '--out-dir', join(work, 'few'), '--backend', 'gpu', '--gpus', '1', '--nproc-per-node', '2']);
    expect(few.code).not.toBe(0);
    expect(few.out).toMatch(/--gpus 1 names 1 GPU for 2 ranks on this machine/);
    const bad = await run([...M, '--gpus', '0,x']);
    expect(bad.out).toMatch(/--gpus 0,x: expected GPU indices/);
  });
});

describe('which GPU a rank takes', () => {
  it('LOCAL_RANK among --gpus, else TAPEGRAD_VISIBLE_GPUS, else all; one process alone keeps the system\'s choice', () => {
    expect(rankGpu([0, 2, 3], 1, 3)).toBe(2);
    expect(rankGpu(undefined, 1, 2)).toBe(1);
    expect(rankGpu(undefined, 0, 1)).toBeUndefined();
    expect(rankGpu([4], 0, 1)).toBe(4);
    const saved = process.env['TAPEGRAD_VISIBLE_GPUS'];
    process.env['TAPEGRAD_VISIBLE_GPUS'] = '3,1';
    try {
      expect(rankGpu(undefined, 1, 2)).toBe(1);
      expect(rankGpu(undefined, 0, 1)).toBe(3);
      expect(() => rankGpu(undefined, 2, 3)).toThrow(/TAPEGRAD_VISIBLE_GPUS=3,1 names 2 GPUs for 3 ranks/);
      process.env['TAPEGRAD_VISIBLE_GPUS'] = '1,a';
      expect(() => rankGpu(undefined, 0, 1)).toThrow(/expected GPU indices/);
    } finally {
      if (saved === undefined) delete process.env['TAPEGRAD_VISIBLE_GPUS'];
      else process.env['TAPEGRAD_VISIBLE_GPUS'] = saved;
    }
  });
});
