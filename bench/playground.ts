// The playground's speed against Node's: steady tokens/s of the same training (the `nano` preset,
// `npm run train`'s batch 16 x 64 on the embedded corpus's BPE, wasm on 2 threads) in headless Chromium's page and in
// `node dist/train/cli.js`, one after the other, medians after warm-up steps. The machine's load
// average is recorded with each, since these 2-core machines are shared.

import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { createServer } from 'node:net';
import { loadavg } from 'node:os';
import { join } from 'node:path';
import { median } from './stats.js';

export interface PlaygroundRow { config: string; backend: string; value: number | null; unit: string; extra?: string; note?: string }

const CHROMIUM = '/usr/bin/chromium';
const STEPS = 40, WARMUP = 8;


function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => { const p = (s.address() as { port: number }).port; s.close(() => res(p)); });
  });
}

/** Median tok/s of `npm run train`'s loop after the warm-up steps. */
function nodeRun(repo: string): { tokPerSec: number | null; note?: string } {
  const p = spawnSync(process.execPath, [join(repo, 'dist', 'train', 'cli.js'), '--max-steps', String(STEPS), '--eval-interval', '0', '--sample-interval', '0',
    '--backend', 'wasm', '--threads', '2', '--out-dir', join(repo, 'out', 'bench-playground-node'), '--overwrite'], { cwd: repo, encoding: 'utf8', timeout: 1_800_000, maxBuffer: 1 << 26 });
  const tps = (p.stdout ?? '').split('\n').map((l) => /^step +(\d+) \|.*tok\/sec: ([\d.]+)/.exec(l)).filter((m) => m && Number(m[1]) >= WARMUP).map((m) => Number(m![2]));
  return tps.length ? { tokPerSec: median(tps) } : { tokPerSec: null, note: (p.stderr || p.stdout || 'no steps').slice(-200) };
}

/** The same training in the page: build, serve (npm run playground's preview), drive headless Chromium. */
async function pageRun(repo: string): Promise<{ tokPerSec: number | null; threads?: string; note?: string }> {
  const build = spawnSync('npm', ['run', 'build:playground', '--silent'], { cwd: repo, encoding: 'utf8', timeout: 600_000 });
  if (build.status !== 0) return { tokPerSec: null, note: `build:playground failed: ${(build.stderr || build.stdout).slice(-200)}` };
  const port = await freePort();
  const server = spawn(join(repo, 'node_modules', '.bin', 'vite'), ['preview', '--config', 'playground/vite.config.ts', '--strictPort', '--port', String(port)],
    { cwd: repo, detached: true, stdio: 'ignore' });
  const { chromium } = await import('playwright-core');
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update'] });
  try {
    const url = `http://127.0.0.1:${port}/`;
    for (let i = 0; ; i++) { // the server's start
      try { if ((await fetch(url)).ok) break; } catch { /* not yet */ }
      if (i > 100) throw new Error(`vite preview did not answer on ${url}`);
      await new Promise((r) => setTimeout(r, 200));
    }
    const page = await browser.newPage();
    await page.goto(`${url}?threads=2&steps=${STEPS}&evalEvery=100000&sampleEvery=100000&sampleTokens=8`);
    await page.waitForFunction(() => document.getElementById('backend')!.dataset.backend, null, { timeout: 60_000 });
    const threads = await page.locator('#backend').textContent() ?? '';
    await page.getByRole('button', { name: 'Train' }).click();
    type Steps = { playgroundSteps: { step: number; tokPerSec: number }[] };
    await page.waitForFunction((n) => (window as unknown as Steps).playgroundSteps.length >= n || !document.getElementById('error')!.hidden, STEPS, { timeout: 1_800_000, polling: 500 });
    const err = await page.locator('#error').textContent();
    if (err) return { tokPerSec: null, note: err.slice(0, 200) };
    const steps = await page.evaluate(() => (window as unknown as Steps).playgroundSteps.map((s) => ({ step: s.step, tps: s.tokPerSec })));
    return { tokPerSec: median(steps.filter((s) => s.step >= WARMUP).map((s) => s.tps)), threads };
  } finally {
    await browser.close();
    try { process.kill(-server.pid!); } catch { /* gone */ }
  }
}

export async function benchPlayground(repo: string, log: (r: PlaygroundRow) => void): Promise<void> {
  const config = `nano B16 T64, steps ${WARMUP}-${STEPS - 1}`;
  if (!existsSync(CHROMIUM)) {
    log({ config, backend: 'page wasm 2t', value: null, unit: 'tok/s', note: `${CHROMIUM} is missing (apt-get install -y chromium)` });
    return;
  }
  const la0 = loadavg()[0]!;
  const node = nodeRun(repo);
  const la1 = loadavg()[0]!;
  log({ config, backend: 'node wasm 2t', value: node.tokPerSec, unit: 'tok/s', extra: `load avg ${la0.toFixed(2)} -> ${la1.toFixed(2)}`, note: node.note });
  const page = await pageRun(repo);
  const la2 = loadavg()[0]!;
  const ratio = page.tokPerSec && node.tokPerSec ? ` = ${(page.tokPerSec / node.tokPerSec).toFixed(2)}x node` : '';
  log({ config, backend: 'page wasm 2t', value: page.tokPerSec, unit: 'tok/s', extra: `${page.threads ?? ''}${ratio}; load avg ${la1.toFixed(2)} -> ${la2.toFixed(2)}`, note: page.note });
}
