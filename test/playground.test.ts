// The browser playground end to end in a real browser (Debian's chromium driven by playwright-core):
// `npm run playground` serves it, a person's clicks train on wasm (2 threads) and on WebGPU
// (headless Chromium's SwiftShader adapter), the first losses agree, samples stream, the model
// downloads into files `npm run sample` reads and loads back, and a server without
// cross-origin isolation still trains on one thread. Skips (one line) where chromium is missing.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { tmpdir } from 'node:os';
import { extname, join, normalize, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Browser, BrowserContext, Page } from 'playwright-core';
import { chromium } from 'playwright-core';
import { colourCount, decodePng } from './helpers/png.js';
import { GPT } from '../src/nn/gpt.js';
import { manualSeed } from '../src/tensor/random.js';
import { saveCheckpoint } from '../src/train/checkpoint.js';

const CHROMIUM = '/usr/bin/chromium';
const ROOT = resolve(import.meta.dirname, '..');
const have = existsSync(CHROMIUM);
if (!have) console.log(`playground tests skipped: ${CHROMIUM} is missing (Debian: apt-get install -y chromium, as .ci/run does)`);

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const s = createNetServer();
    s.once('error', rej);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as { port: number }).port;
      s.close(() => res(port));
    });
  });
}

/** `npm run playground -- --port P`, as a person runs it; resolves with the URL it prints. */
function startPlayground(port: number): Promise<{ child: ChildProcess; url: string }> {
  // NO_COLOR: a CI that sets FORCE_COLOR gets vite's URL with escape codes around the port
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
  delete env.FORCE_COLOR;
  const child = spawn('npm', ['run', 'playground', '--', '--port', String(port)], { cwd: ROOT, env, detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error(`npm run playground printed no URL within 180 s:\n${out}`)), 180_000);
    const onData = (b: Buffer): void => {
      out += b.toString();
      // and should colour come anyway, read the text without its escape sequences
      const m = /http:\/\/127\.0\.0\.1:(\d+)\//.exec(out.replace(/\x1b\[[0-9;]*m/g, ''));
      if (m) { clearTimeout(timer); res({ child, url: m[0] }); }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    child.once('exit', (code) => { clearTimeout(timer); rej(new Error(`npm run playground exited (${code}) before serving:\n${out}`)); });
  });
}

/** A plain static server for the built folder, without the isolation headers (any static host). */
function plainServer(dir: string, port: number): Promise<Server> {
  const types: Record<string, string> = { '.html': 'text/html', '.js': 'text/javascript', '.css': 'text/css', '.bin': 'application/octet-stream' };
  const server = createHttpServer((req, res) => {
    const path = normalize(join(dir, decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname)));
    const file = path.endsWith('/') ? join(path, 'index.html') : path;
    if (!file.startsWith(dir) || !existsSync(file)) { res.writeHead(404).end(); return; }
    res.writeHead(200, { 'Content-Type': types[extname(file)] ?? 'application/octet-stream' }).end(readFileSync(file));
  });
  return new Promise((res) => server.listen(port, '127.0.0.1', () => res(server)));
}

/** Page errors and console errors of a page, to assert there were none. */
function watch(page: Page): string[] {
  const errors: string[] = [];
  page.on('pageerror', (e) => errors.push(`pageerror: ${e.message}`));
  page.on('console', (m) => { if (m.type() === 'error') errors.push(`console: ${m.text()}`); });
  return errors;
}

const num = async (page: Page, attr: 'loss' | 'firstLoss'): Promise<number> => Number(await page.locator('[role=status]').getAttribute(`data-${attr === 'loss' ? 'loss' : 'first-loss'}`));

/** Wait until the loss fell by `drop` from the first step and a sample finished; the page's error box stays empty. */
async function trainUntil(page: Page, drop: number, timeout: number): Promise<{ first: number; now: number }> {
  await page.getByRole('button', { name: 'Train' }).click();
  await page.waitForFunction((d) => {
    const s = document.querySelector('[role=status]') as HTMLElement;
    const err = document.getElementById('error')!;
    if (!err.hidden) return true; // fail fast below
    const first = Number(s.dataset.firstLoss), now = Number(s.dataset.loss);
    return first - now >= d && /step \d+/.test(s.textContent ?? '') && /loss \d+\.\d{4}/.test(s.textContent ?? '') && !!document.querySelector('.sample.done');
  }, drop, { timeout, polling: 250 });
  expect(await page.locator('#error').textContent()).toBe('');
  return { first: await num(page, 'firstLoss'), now: await num(page, 'loss') };
}

async function stop(page: Page): Promise<void> {
  await page.getByRole('button', { name: 'Stop' }).click();
  await page.waitForFunction(() => /stopped|done/.test(document.querySelector('[role=status]')!.textContent ?? ''), null, { timeout: 120_000 });
}

describe.skipIf(!have)('browser playground', () => {
  let server: { child: ChildProcess; url: string };
  let browser: Browser;
  let context: BrowserContext;
  const dir = mkdtempSync(join(tmpdir(), 'tapegrad-playground-'));

  beforeAll(async () => {
    server = await startPlayground(await freePort());
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--headless', '--no-sandbox', '--disable-background-networking', '--disable-component-update', '--enable-unsafe-webgpu'],
    });
    context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1280, height: 1000 } });
  }, 240_000);

  afterAll(async () => {
    await browser?.close();
    if (server?.child.pid) { try { process.kill(-server.child.pid); } catch { /* gone */ } }
    rmSync(dir, { recursive: true, force: true });
  });

  it('serves the page with the cross-origin-isolation headers', async () => {
    const res = await fetch(server.url);
    expect(res.status).toBe(200);
    expect(res.headers.get('cross-origin-opener-policy')).toBe('same-origin');
    expect(res.headers.get('cross-origin-embedder-policy')).toBe('require-corp');
  });

  let wasmFirst = NaN;
  let wasmPage: Page;

  it('trains on wasm with 2 threads: the loss falls by 1, samples stream, Stop and Resume work; the screenshot is not blank', async () => {
    const page = wasmPage = await context.newPage();
    const errors = watch(page);
    await page.goto(`${server.url}?threads=2&steps=300&batch=16&seq=64&sampleEvery=20&evalEvery=20&sampleTokens=16`);
    await expect.poll(() => page.locator('#backend').textContent(), { timeout: 60_000 }).toMatch(/wasm .*, 2 threads$/);
    const { first, now } = await trainUntil(page, 1, 180_000);
    expect(first).toBeGreaterThan(6.5); // ln(1024) = 6.93 at a random init (the corpus's BPE)
    expect(first - now).toBeGreaterThanOrEqual(1);
    await stop(page);
    const stoppedAt = await page.locator('[role=status]').textContent();
    expect(stoppedAt).toMatch(/stopped/);
    // Resume continues the same run (the step count goes on from where it stopped)
    const stepOf = (s: string | null): number => Number(/step (\d+)/.exec(s ?? '')![1]);
    await page.getByRole('button', { name: 'Resume' }).click();
    await expect.poll(async () => stepOf(await page.locator('[role=status]').textContent()), { timeout: 60_000 }).toBeGreaterThan(stepOf(stoppedAt));
    await stop(page);
    expect(await page.locator('.sample.done').count()).toBeGreaterThan(0);
    expect(await page.locator('#chart path').count()).toBe(2); // train and validation curves
    const png = await page.screenshot({ path: join(dir, 'playground-wasm.png'), fullPage: true });
    writeFileSync(join(tmpdir(), 'tapegrad-playground.png'), png); // kept for a person to look at
    expect(colourCount(decodePng(png))).toBeGreaterThan(50);
    expect(errors).toEqual([]);
  }, 300_000);

  it('downloads the model as model.safetensors + config.json + its tokenizer, which `npm run sample` reads, and loads it back to sample in the page', async () => {
    const page = wasmPage;
    const downloads: Promise<void>[] = [];
    page.on('download', (d) => downloads.push(d.saveAs(join(dir, 'model', d.suggestedFilename()))));
    await page.getByRole('button', { name: 'Download model' }).click();
    await expect.poll(() => downloads.length, { timeout: 60_000 }).toBe(3);
    await Promise.all(downloads);
    for (const f of ['model.safetensors', 'config.json', 'tapegrad_tokenizer.json']) expect(existsSync(join(dir, 'model', f)), f).toBe(true);
    const r = spawnSync(process.execPath, [join(ROOT, 'dist/train/sample.js'), '--init-from', join(dir, 'model'), '--num-samples', '1', '--max-tokens', '8', '--prompt', 'The'],
      { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^sample 0: The.+/);
    expect(r.stderr).toMatch(/a 1024-token BPE learned from its corpus/); // the page's tokenizer, read from tapegrad_tokenizer.json

    // back into a fresh page, sampled there with a prompt
    const fresh = await context.newPage();
    const errors = watch(fresh);
    await fresh.goto(server.url);
    await fresh.locator('#load').setInputFiles(['model.safetensors', 'config.json', 'tapegrad_tokenizer.json'].map((f) => join(dir, 'model', f)));
    await expect.poll(() => fresh.locator('#model-name').textContent(), { timeout: 60_000 }).toMatch(/model\.safetensors \(1 layer, 4 heads, 128 embd, step \d+\)/);
    await fresh.getByRole('textbox', { name: 'prompt' }).fill('Once upon a time');
    await fresh.getByRole('button', { name: 'Sample' }).click();
    await expect.poll(() => fresh.locator('.sample.done').textContent(), { timeout: 60_000 }).toMatch(/^sample: Once upon a time.+/);
    expect(errors).toEqual([]);
    await fresh.close();
  }, 240_000);

  it('loads a checkpoint of `npm run train` (model_<step>.safetensors alone) and samples from it', async () => {
    manualSeed(3);
    const config = { nLayer: 1, nHead: 2, nEmbd: 16, blockSize: 32, vocabSize: 50304 };
    const model = new GPT(config);
    const weights = new Map(model.namedParameters().map(([n, p]) => [n, { shape: [...p.shape], data: p.dataSync() as Float32Array }]));
    await saveCheckpoint(join(dir, 'ckpt'), 7, { config, weights });
    const page = await context.newPage();
    const errors = watch(page);
    await page.goto(server.url);
    await page.locator('#load').setInputFiles([join(dir, 'ckpt', 'model_00007.safetensors')]);
    await expect.poll(() => page.locator('#model-name').textContent(), { timeout: 60_000 }).toMatch(/model_00007\.safetensors \(1 layer, 2 heads, 16 embd, step 7\)/);
    await page.getByRole('button', { name: 'Sample' }).click();
    await expect.poll(() => page.locator('.sample.done').count(), { timeout: 60_000 }).toBe(1);
    // a file that is not a model is refused on the page, by name
    writeFileSync(join(dir, 'notes.safetensors'), 'not a safetensors file');
    await page.locator('#load').setInputFiles([join(dir, 'notes.safetensors')]);
    await expect.poll(() => page.locator('[role=alert]').textContent(), { timeout: 30_000 }).toMatch(/notes\.safetensors/);
    expect(errors).toEqual([]);
    await page.close();
  }, 120_000);

  it('trains on WebGPU (SwiftShader): the loss falls by 0.5, a sample appears, the first-step loss equals wasm\'s to 1e-4, and a device lost mid-run is replaced', async () => {
    // SwiftShader runs this on the CPU, about a second a step: a small batch (one 64-row matmul tile) and a higher learning rate
    const q = 'steps=10&batch=2&seq=32&lr=0.01&sampleEvery=3&evalEvery=4&valSteps=1&sampleTokens=2';
    const page = await context.newPage();
    const errors = watch(page);
    // The test's hand on the worker's GPU device (the page gives none): requestDevice wrapped before
    // the worker's own code runs, so the test can destroy the device as a driver reset would.
    await page.route('**/assets/worker-*.js', async (route) => {
      const res = await route.fetch();
      const grab = 'if (self.GPUAdapter) { const rd = GPUAdapter.prototype.requestDevice; ' +
        'GPUAdapter.prototype.requestDevice = async function (...a) { const d = await rd.apply(this, a); (self.__devices ??= []).push(d); return d; }; }\n';
      await route.fulfill({ response: res, body: grab + await res.text() });
    });
    await page.goto(`${server.url}?backend=webgpu&${q}`);
    await expect.poll(() => page.locator('#backend').textContent(), { timeout: 120_000 }).toMatch(/^Backend: webgpu \(WebGPU \(.+\)\)$/);
    await page.getByRole('button', { name: 'Train' }).click();
    // after step 6 the device is destroyed: the worker continues on a new one from step 4's snapshot
    await page.waitForFunction(() => /step ([6-9]|10) \//.test(document.querySelector('[role=status]')!.textContent ?? ''), null, { timeout: 300_000, polling: 250 });
    const worker = page.workers()[0]!;
    expect(await worker.evaluate(() => { const d = (self as unknown as { __devices: { destroy(): void }[] }).__devices; d[d.length - 1]!.destroy(); return d.length; })).toBe(1);
    await expect.poll(() => page.locator('#backend').textContent(), { timeout: 120_000 })
      .toMatch(/the GPU device was lost at step \d+ \(destroyed.*\); continuing on a new device from step 4/);
    await page.waitForFunction(() => /done/.test(document.querySelector('[role=status]')!.textContent ?? ''), null, { timeout: 400_000, polling: 250 });
    expect(await page.locator('#error').textContent()).toBe('');
    expect(await worker.evaluate(() => (self as unknown as { __devices: unknown[] }).__devices.length)).toBe(2);
    // the replayed steps are the lost ones again, to the digit: the same weights, moments and batches
    const steps = await page.evaluate(() => window.playgroundSteps.map((m) => [m.step, m.loss] as [number, number]));
    const byStep = new Map<number, number[]>();
    for (const [st, l] of steps) byStep.set(st, [...(byStep.get(st) ?? []), l]);
    expect(byStep.get(4)!.length).toBe(2);
    for (const ls of byStep.values()) expect(Math.abs(ls[0]! - ls[ls.length - 1]!)).toBeLessThan(1e-6);
    const first = await num(page, 'firstLoss'), now = await num(page, 'loss');
    expect(first - now).toBeGreaterThanOrEqual(0.5);
    expect(await page.locator('.sample.done').count()).toBeGreaterThan(0);
    expect(await page.locator('.sample:not(.done)').count(), 'the sample cut off by the loss is gone').toBe(0);
    await page.screenshot({ path: join(tmpdir(), 'tapegrad-playground-webgpu.png'), fullPage: true });
    expect(errors).toEqual([]);
    await page.close();

    const ref = await context.newPage();
    await ref.goto(`${server.url}?backend=wasm&${q}`);
    await expect.poll(() => ref.locator('#backend').textContent(), { timeout: 60_000 }).toMatch(/wasm/);
    await ref.getByRole('button', { name: 'Train' }).click();
    await ref.waitForFunction(() => (document.querySelector('[role=status]') as HTMLElement).dataset.firstLoss !== undefined, null, { timeout: 60_000 });
    wasmFirst = await num(ref, 'firstLoss');
    await ref.close();
    expect(Math.abs(first - wasmFirst)).toBeLessThanOrEqual(1e-4);
  }, 600_000);

  it('without cross-origin isolation (a plain static host) trains on one thread and says why; trains on a picked .txt', async () => {
    const port = await freePort();
    const plain = await plainServer(join(ROOT, 'dist-playground'), port);
    try {
      const page = await context.newPage();
      const errors = watch(page);
      await page.goto(`http://127.0.0.1:${port}/?steps=3&batch=1&seq=16&sampleEvery=100&sampleTokens=2&valSteps=1`);
      await expect.poll(() => page.locator('#backend').textContent(), { timeout: 60_000 }).toMatch(/wasm .*, 1 thread.*not cross-origin isolated/);
      // "use your own text": a picked .txt, tokenized in the page
      writeFileSync(join(dir, 'tiny.txt'), 'Too short.');
      await page.locator('#text-file').setInputFiles(join(dir, 'tiny.txt'));
      await page.getByRole('button', { name: 'Train' }).click();
      await expect.poll(() => page.locator('[role=alert]').textContent(), { timeout: 60_000 }).toMatch(/too few for one batch of 1 x 16 \(\+1\); use more text/);
      const story = Array.from({ length: 60 }, (_, i) => `Line ${i}: the quick brown fox jumps over the lazy dog, and the dog sleeps on.`).join('\n');
      writeFileSync(join(dir, 'story.txt'), story);
      await page.locator('#text-file').setInputFiles(join(dir, 'story.txt'));
      await expect.poll(() => page.locator('#data-source').textContent()).toMatch(/^story\.txt \(\d[\d,]* characters/);
      await page.getByRole('button', { name: 'Train' }).click();
      await expect.poll(() => page.locator('[role=status]').textContent(), { timeout: 120_000 }).toMatch(/^step 3 \/ 3 · loss \d+\.\d{4} · done$/);
      await expect.poll(() => page.locator('#data-source').textContent()).toMatch(/^story\.txt: [\d,]+ training and [\d,]+ validation tokens$/);
      expect(await page.locator('#error').isHidden()).toBe(true);
      expect(errors).toEqual([]);
      await page.close();
    } finally {
      plain.close();
    }
  }, 180_000);
});
