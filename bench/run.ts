// `npm run bench`: matmul GFLOP/s per backend (js; wasm with 1 and 2 threads; PyTorch when
// /usr/bin/python3 has torch), the MLP training step, GPT training tokens/s + peak RSS, data
// parallel, and mixed precision (tok/s, peak RSS, activation memory and loss per dtype).
// Prints a table and writes bench/results/<timestamp>.json. Model-level rows run in child
// processes (bench/step.ts, bench/torch_bench.py) so each peak RSS is that config's own.
// and the browser playground's tokens/s against Node's (bench/playground.ts).
// Options: --only=matmul,mlp,gpt,ddp,amp,playground  --no-torch  --quick (smaller/fewer configs)
//          --only=first: the default `npm run train`, unchanged, per seed (--seeds=N, default 3; ~5 min
//          each): wall time, tok/s, the count baselines and validation in bits per byte, samples
//          --only=workflow: what docs/WORKFLOW.md's cost table cites (tokenizing, GPT-2 124M on CPU, sampling, HellaSwag)
//          --soak SECONDS: only the soak run (the default training for that long; RSS, heap and the
//          wasm buffer pool every minute, flat after warm-up)
//          --gpu: also the gpu backend: one GPT-2 124M step's launches, submits, buffers and
//          transfers counted on a recording device (no GPU needed), and a small GPT trained on
//          the WebGPU adapter here (a GPU; else SwiftShader where installed) with its counts

import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { cpus, loadavg } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { MatmulParams } from '../src/tensor/backend.js';
import { JsBackend } from '../src/tensor/backends/js.js';
import { createWasmBackend, wasmSimdAvailable } from '../src/tensor/backends/wasm/index.js';
import type { StepConfig, StepResult } from './step.js';
import { benchPlayground } from './playground.js';
import { benchFirstHour } from './first-hour.js';
import { benchWorkflowCosts } from './workflow-costs.js';
import type { GpuBackend } from '../src/tensor/backends/gpu/index.js';
import type { WebGpuRunner } from '../src/tensor/backends/gpu/webgpu-runner.js';

const here = dirname(fileURLToPath(import.meta.url));
const repo = join(here, '..', '..'); // dist-bench/bench -> repo root
const argv = process.argv.slice(2);
const only = argv.find((a) => a.startsWith('--only='))?.slice(7).split(',') ?? ['matmul', 'mlp', 'gpt', 'ddp', 'amp', 'playground'];
const quick = argv.includes('--quick');
const gpu = argv.includes('--gpu');
const soakArg = argv.indexOf('--soak');
const soak = soakArg >= 0 ? Number(argv[soakArg + 1] ?? 600) : 0;
const torchOk = !argv.includes('--no-torch') &&
  spawnSync('/usr/bin/python3', ['-c', 'import torch'], { encoding: 'utf8', timeout: 60_000 }).status === 0;
/**
 * The BLAS behind Debian's torch is whatever libblas.so.3 resolves to (reference BLAS: ~6
 * GFLOP/s; OpenBLAS: ~200): recorded, since it decides the torch column.
 */
function torchBlas(): string {
  try { return realpathSync('/usr/lib/x86_64-linux-gnu/libblas.so.3'); } catch { return 'unknown'; }
}

interface Row { section: string; config: string; backend: string; value: number | null; unit: string; extra?: string; note?: string }
const rows: Row[] = [];
const log = (r: Row): void => {
  rows.push(r);
  const v = r.value === null ? '-' : r.unit === 'loss' ? r.value.toFixed(4) : r.value >= 100 ? r.value.toFixed(0) : r.value.toFixed(1);
  console.log(`${r.section.padEnd(7)} ${r.config.padEnd(30)} ${r.backend.padEnd(16)} ${v.padStart(8)} ${r.unit.padEnd(9)} ${r.extra ?? ''}${r.note ? `  (${r.note})` : ''}`);
};

// ---- matmul -----------------------------------------------------------------------------
/** [m, k, n, transB]: squares as A @ B; GPT-2 shapes as a Linear does, x @ W^T. */
const SHAPES: [number, number, number, boolean][] = [
  [256, 256, 256, false], [512, 512, 512, false], [1024, 1024, 1024, false],
  [1024, 768, 2304, true], [1024, 768, 3072, true], [1024, 3072, 768, true],
];
const shapeName = ([m, k, n, t]: [number, number, number, boolean]): string => `${m}x${k}x${n}${t ? ' (x@W^T)' : ''}`;

function rand(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = Math.random() - 0.5;
  return a;
}

function timeBest(f: () => void, minReps: number, budgetMs: number): number {
  f(); // warm-up
  let best = Infinity, reps = 0;
  const start = performance.now();
  while (reps < minReps || (performance.now() - start < budgetMs && reps < 20)) {
    const t = performance.now(); f(); best = Math.min(best, performance.now() - t); reps++;
  }
  return best;
}

function benchMatmul(): void {
  const shapes = quick ? SHAPES.slice(0, 3) : SHAPES;
  const backends: { label: string; mm: (a: Float32Array, b: Float32Array, p: MatmulParams) => void; done?: () => void }[] = [];
  const js = new JsBackend();
  backends.push({ label: 'js', mm: (a, b, p) => { js.matmul(js.fromHost(a, 'float32'), js.fromHost(b, 'float32'), p); } });
  if (wasmSimdAvailable()) {
    for (const threads of [1, 2]) {
      const w = createWasmBackend({ threads });
      backends.push({ label: `wasm ${threads}t`, mm: (a, b, p) => { w.dispose(w.matmul(w.fromHost(a, 'float32'), w.fromHost(b, 'float32'), p)); }, done: () => w.terminate() });
    }
  }
  for (const s of shapes) {
    const [m, k, n, transB] = s;
    const a = rand(m * k), b = rand(k * n);
    const p: MatmulParams = { batch: 1, m, n, k, transA: false, transB, aBatchStride: 0, bBatchStride: 0 };
    for (const be of backends) {
      const big = m * n * k > 300e6;
      // plain JS needs ~1 s per 1024^3: one timed run of the big shapes
      const ms = be.label === 'js' && big ? timeBest(() => be.mm(a, b, p), 1, 0) : timeBest(() => be.mm(a, b, p), 3, 1000);
      log({ section: 'matmul', config: shapeName(s), backend: be.label, value: (2 * m * n * k) / ms / 1e6, unit: 'GFLOP/s' });
    }
  }
  for (const be of backends) be.done?.();
  if (torchOk) {
    const r = torch('matmul', { threads: 2, shapes });
    const res = (r as { results?: { gflops: number }[] }).results;
    shapes.forEach((s, i) => log({ section: 'matmul', config: shapeName(s), backend: 'torch 2t', value: res?.[i]?.gflops ?? null, unit: 'GFLOP/s', note: res ? undefined : String((r as StepResult).note) }));
  }
}

// ---- model steps (child processes) -------------------------------------------------------
function child(cmd: string, args: string[], timeoutMs: number, env: Record<string, string> = {}): StepResult {
  const r = spawnSync(cmd, args, { encoding: 'utf8', timeout: timeoutMs, cwd: repo, maxBuffer: 1 << 24, env: { ...process.env, ...env } });
  if (r.error || r.status === null) return { ok: false, note: r.error?.message.includes('ETIMEDOUT') || r.signal ? `timed out after ${timeoutMs / 1000} s` : String(r.error) };
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try { return JSON.parse(line) as StepResult; } catch { return { ok: false, note: (r.stderr || line).slice(-300) }; }
}
const stepJs = join(here, 'step.js');
const tsStep = (cfg: StepConfig, timeoutMs: number, nodeFlags: string[] = []): StepResult =>
  child(process.execPath, [...nodeFlags, stepJs, JSON.stringify(cfg)], timeoutMs);
function torch(what: string, cfg: object, timeoutMs = 600_000): StepResult {
  return child('/usr/bin/python3', [join(repo, 'bench', 'torch_bench.py'), what, JSON.stringify(cfg)], timeoutMs);
}

function benchMlp(): void {
  const runs: [string, StepConfig][] = [
    ['js', { model: 'mlp', backend: 'js', steps: 2, warmup: 1 }],
    ['wasm 1t', { model: 'mlp', backend: 'wasm', threads: 1, steps: 5 }],
    ['wasm 2t', { model: 'mlp', backend: 'wasm', threads: 2, steps: 5 }],
  ];
  const res: Record<string, StepResult> = {};
  for (const [label, cfg] of runs) {
    res[label] = tsStep(cfg, 300_000);
    log({ section: 'mlp', config: '784-1024-1024-10 B=256', backend: label, value: res[label]!.msPerStep ?? null, unit: 'ms/step',
      extra: rss(res[label]!), note: res[label]!.ok ? undefined : res[label]!.note });
  }
  if (torchOk) {
    const t = torch('step', { model: 'mlp', threads: 2, steps: 3, warmup: 1 });
    log({ section: 'mlp', config: '784-1024-1024-10 B=256', backend: 'torch 2t', value: t.msPerStep ?? null, unit: 'ms/step',
      extra: `${rss(t)}${t.msPerStep && res['wasm 2t']?.msPerStep ? `  wasm2t/torch speed ${(t.msPerStep / res['wasm 2t'].msPerStep).toFixed(2)}x` : ''}`, note: t.ok ? undefined : t.note });
  }
}

const rss = (r: StepResult): string => (r.peakRssMB ? `peak RSS ${(r.peakRssMB / 1024).toFixed(2)} GB` : '');

/** Steps and warm-up steps are few for the big configs: a GPT-2 step takes tens of seconds here. */
const GPTS: { name: string; cfg: Partial<StepConfig>; steps: number; warmup: number; torchSteps: number; torchWarmup: number }[] = [
  { name: 'gpt 4L/4H/128 T=128 B=8', cfg: { nLayer: 4, nHead: 4, nEmbd: 128, T: 128, B: 8, vocab: 50304 }, steps: 3, warmup: 2, torchSteps: 1, torchWarmup: 1 },
  { name: 'gpt 6L/6H/384 T=256 B=4', cfg: { nLayer: 6, nHead: 6, nEmbd: 384, T: 256, B: 4, vocab: 50304 }, steps: 2, warmup: 2, torchSteps: 1, torchWarmup: 1 },
  { name: 'gpt2-124M T=1024 B=1', cfg: { nLayer: 12, nHead: 12, nEmbd: 768, T: 1024, B: 1, vocab: 50304 }, steps: 1, warmup: 1, torchSteps: 1, torchWarmup: 0 },
];

/** Busy CPU seconds of the whole machine so far (/proc/stat: user, nice, system, irq, softirq, steal). */
function machineCpuS(): number | null {
  try {
    const f = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    return (f[0]! + f[1]! + f[2]! + f[5]! + f[6]! + f[7]!) / 100; // USER_HZ is 100 on Linux
  } catch { return null; }
}

/**
 * Run one figure and say how quiet the machine was meanwhile: the load average before and after,
 * and the cores other processes kept busy (the machine's CPU time less the child's own).
 */
function quietly<R extends { cpuS?: number }>(run: () => R): { r: R; load: string; others: number | null; busy: boolean } {
  const la0 = loadavg()[0]!, c0 = machineCpuS(), t0 = performance.now();
  const r = run();
  const wall = (performance.now() - t0) / 1000, c1 = machineCpuS();
  const others = c0 !== null && c1 !== null && r.cpuS !== undefined ? Math.max(0, (c1 - c0 - r.cpuS) / wall) : null;
  // more than a third of a core busy elsewhere on a 2-core machine moves these numbers by >15%
  return { r, load: `load ${la0.toFixed(2)}->${loadavg()[0]!.toFixed(2)}, others ${others === null ? '?' : others.toFixed(2)} cores`, others, busy: others === null || others > 0.33 };
}

/**
 * GPT training in steady state, both sides in the same run: tapegrad through train() (the loop of
 * npm run train, timed between its step lines), PyTorch with OMP_WAIT_POLICY=PASSIVE and the same
 * 2 threads; warm-up steps, then a time budget of steps, the median. A ratio is printed only when
 * neither figure was taken on a busy machine.
 */
async function benchGpt(): Promise<void> {
  const budgetS = quick ? 5 : 15;
  const steady = join(here, 'train-steady.js');
  for (const g of quick ? GPTS.slice(0, 1) : GPTS) {
    const c = g.cfg as Required<Pick<StepConfig, 'nLayer' | 'nHead' | 'nEmbd' | 'T' | 'B'>>;
    const warmup = Math.max(1, g.warmup + 1);
    const w = quietly(() => child(process.execPath, [steady, JSON.stringify({ nLayer: c.nLayer, nHead: c.nHead, nEmbd: c.nEmbd, T: c.T, B: c.B, threads: 2, warmup, budgetS })], 1_800_000) as StepResult & { cpuS?: number; timedSteps?: number });
    log({ section: 'gpt', config: g.name, backend: 'train() wasm 2t', value: w.r.tokensPerSec ?? null, unit: 'tok/s',
      extra: `${w.r.msPerStep ? `${(w.r.msPerStep / 1000).toFixed(2)} s/step (median of ${w.r.timedSteps})  ` : ''}${rss(w.r)}  ${w.load}`, note: w.r.ok ? undefined : w.r.note });
    if (!torchOk) continue;
    const t = quietly(() => child('/usr/bin/python3', [join(repo, 'bench', 'torch_bench.py'), 'step', JSON.stringify({ model: 'gpt', threads: 2, warmup, budgetS, ...g.cfg })],
      1_800_000, { OMP_WAIT_POLICY: 'PASSIVE' }) as StepResult & { cpuS?: number });
    const ratio = !w.r.tokensPerSec || !t.r.tokensPerSec ? '' : w.busy || t.busy ? '  ratio not reported: the machine was busy'
      : `  tapegrad/torch ${(w.r.tokensPerSec / t.r.tokensPerSec).toFixed(2)}x`;
    log({ section: 'gpt', config: g.name, backend: 'torch 2t', value: t.r.tokensPerSec ?? null, unit: 'tok/s',
      extra: `${t.r.msPerStep ? `${(t.r.msPerStep / 1000).toFixed(2)} s/step  ` : ''}${rss(t.r)}  ${t.load}${ratio}`, note: t.r.ok ? undefined : t.r.note });
  }
}

// ---- mixed precision: the same steps under float32, bfloat16 and float16 autocast (wasm) ------------
const DTYPES = ['float32', 'bfloat16', 'float16'] as const;
async function benchAmp(): Promise<void> {
  for (const g of quick ? GPTS.slice(1, 2) : GPTS.slice(1)) {
    let base: StepResult | null = null;
    for (const dtype of DTYPES) {
      // --expose-gc: the child measures what one forward leaves on the tape (its activations)
      const r = tsStep({ model: 'gpt', backend: 'wasm', threads: 2, steps: g.steps, warmup: g.warmup, dtype, ...g.cfg }, 1_800_000, ['--expose-gc']);
      if (dtype === 'float32') base = r;
      const vs = (x: number | undefined, y: number | undefined): string => (x && y ? ` (${((100 * x) / y).toFixed(0)}%)` : '');
      log({ section: 'amp', config: g.name, backend: `wasm 2t ${dtype}`, value: r.tokensPerSec ?? null, unit: 'tok/s',
        extra: `${rss(r)}${vs(r.peakRssMB, base?.peakRssMB)}  activations ${r.activationsMiB?.toFixed(0) ?? '-'} MiB${vs(r.activationsMiB, base?.activationsMiB)}`,
        note: r.ok ? undefined : r.note });
    }
  }
  // the default run (tiny preset, embedded corpus) for 300 steps in each dtype: where does the loss get?
  const cli = join(here, '..', 'src', 'train', 'cli.js');
  const steps = quick ? 30 : 300;
  for (const dtype of DTYPES) {
    const out = join(repo, 'out', `bench-amp-${dtype}`);
    const t0 = Date.now();
    const p = spawnSync(process.execPath, [cli, '--max-steps', String(steps), '--dtype', dtype, '--sample-interval', '0', '--checkpoint-interval', '0',
      '--backend', 'wasm', '--out-dir', out, '--overwrite'], { cwd: repo, encoding: 'utf8', timeout: 3_600_000, maxBuffer: 1 << 26 });
    const lines = (p.stdout ?? '').split('\n');
    const last = lines.filter((l) => /^step +\d+ \|/.test(l)).pop() ?? '';
    const val = lines.filter((l) => /validation loss/.test(l)).pop() ?? '';
    const num = (re: RegExp, l: string): number | null => { const m = re.exec(l); return m ? Number(m[1]) : null; };
    const scale = num(/loss scale: (\d+)/, last);
    log({ section: 'amp', config: `default run, loss at step ${steps}`, backend: `wasm ${dtype}`, value: num(/loss: ([\d.]+)/, last), unit: 'loss',
      extra: `val ${num(/validation loss:? ([\d.]+)/, val) ?? '-'}, ${((Date.now() - t0) / 1000).toFixed(0)} s${scale !== null ? `, loss scale ${scale}` : ''}`,
      note: p.status === 0 ? undefined : (p.stderr || p.stdout || '').slice(-200) });
  }
}

// ---- data parallel: 1 rank x 2 threads vs 2 ranks x 1 thread, and the all-reduce ------------------
async function benchDdp(): Promise<void> {
  const { launch } = await import('../src/train/distributed/launch.js');
  const lines: string[] = [];
  const code = await launch({ nprocPerNode: 2, nnodes: 1, nodeRank: 0, masterAddr: '127.0.0.1', masterPort: 0,
    command: [process.execPath, join(here, 'allreduce.js')], print: (l) => lines.push(l) });
  const json = lines.map((l) => l.replace(/^\[rank 0\] /, '')).reverse().find((l) => l.startsWith('{"ok"'));
  const r = json ? JSON.parse(json) as { results: { mb: number; wire: string; seconds: number; gbPerS: number }[] } : null;
  for (const x of r?.results ?? []) {
    log({ section: 'ddp', config: `all-reduce ${x.mb} MB float32, 2 ranks, ${x.wire} on the wire`, backend: 'loopback', value: x.gbPerS, unit: 'GB/s', extra: `${(x.seconds * 1000).toFixed(0)} ms` });
  }
  if (!r) log({ section: 'ddp', config: 'all-reduce', backend: 'loopback', value: null, unit: 'GB/s', note: `launcher exit ${code}: ${lines.slice(-3).join(' / ')}` });
  // GPT 6/6/384 T256: the same 1024 tokens per step either way
  const cli = join(repo, 'dist', 'train', 'cli.js');
  const steps = quick ? 4 : 8, warm = 2;
  const common = ['--n-layer', '6', '--n-head', '6', '--n-embd', '384', '--block-size', '256', '--seq-len', '256', '--total-batch-size', '1024',
    '--max-steps', String(steps), '--eval-interval', '0', '--sample-interval', '0', '--checkpoint-interval', '0', '--backend', 'wasm'];
  const runs: [string, string[]][] = [
    ['1 rank x 2 threads', ['--batch-size', '4', '--threads', '2']],
    ['2 ranks x 1 thread', ['--batch-size', '2', '--threads', '1', '--nproc-per-node', '2']],
  ];
  for (const [label, extra] of runs) {
    const out = join(repo, 'out', `bench-ddp-${label.replace(/\W+/g, '-')}`);
    const p = spawnSync(process.execPath, [cli, ...common, ...extra, '--out-dir', out, '--overwrite'], { cwd: repo, encoding: 'utf8', timeout: 1_800_000, maxBuffer: 1 << 26 });
    const stepLines = (p.stdout ?? '').split('\n').filter((l) => /step +\d+ \|/.test(l)).slice(warm);
    const tok = stepLines.map((l) => Number(/tok\/sec: ([\d.]+)/.exec(l)?.[1])).sort((a, b) => a - b);
    const comm = stepLines.map((l) => Number(/all-reduce: (\d+)ms/.exec(l)?.[1] ?? NaN)).filter(Number.isFinite);
    const dt = stepLines.map((l) => Number(/dt: ([\d.]+)ms/.exec(l)?.[1])).sort((a, b) => a - b);
    const med = (xs: number[]): number | null => (xs.length ? xs[Math.floor(xs.length / 2)]! : null);
    const commMed = med([...comm].sort((a, b) => a - b));
    log({ section: 'ddp', config: 'gpt 6L/6H/384 T=256, 1024 tok/step', backend: label, value: med(tok), unit: 'tok/s',
      extra: commMed !== null && med(dt) ? `all-reduce ${commMed} ms = ${((100 * commMed) / med(dt)!).toFixed(1)}% of a step` : '',
      note: p.status === 0 ? undefined : (p.stderr || p.stdout || '').slice(-200) });
  }
}

// ---- soak: the default run for a while; memory must stay flat --------------------------------
interface SoakResult extends StepResult {
  steps?: number; rssGrowth?: number | null; heapGrowth?: number | null; poolGrowth?: number | null;
  samples?: { minute: number; steps: number; rssMB: number; heapMB: number; poolTrackedMB: number | null; poolFreeMB: number | null }[];
}
function benchSoak(seconds: number): void {
  const r = child(process.execPath, [join(here, 'soak.js'), String(seconds)], (seconds + 600) * 1000) as SoakResult;
  for (const s of r.samples ?? []) {
    log({ section: 'soak', config: `minute ${s.minute}`, backend: 'auto', value: s.rssMB, unit: 'MB RSS',
      extra: `${s.steps} steps, heap ${s.heapMB.toFixed(0)} MB${s.poolTrackedMB !== null ? `, wasm pool ${s.poolTrackedMB.toFixed(0)} + ${s.poolFreeMB!.toFixed(0)} MB free` : ''}` });
  }
  const pct = (x: number | null | undefined): string => (x === null || x === undefined ? '-' : `${(x * 100).toFixed(1)}%`);
  log({ section: 'soak', config: `default run, ${seconds} s`, backend: 'auto', value: r.steps ?? null, unit: 'steps',
    extra: `growth after minute 1: RSS ${pct(r.rssGrowth)}, heap ${pct(r.heapGrowth)}, wasm pool ${pct(r.poolGrowth)}`, note: r.steps === undefined ? r.note : undefined });
}

// ---- gpu backend: what a step costs -------------------------------------------------------
async function benchGpu(): Promise<void> {
  const { countedStep, countSteps, formatCounts } = await import('./gpu-counts.js');
  const counted = await countedStep();
  log({ section: 'gpu', config: 'gpt2-124M T=1024 B=1 (counted)', backend: 'recording device', value: counted.dispatches, unit: 'launches',
    extra: formatCounts(counted).replace(/^step \d+: /, '') });
  const byKernel = Object.entries(counted.byKernel).sort((a, b) => b[1] - a[1]).map(([k, v]) => `${k} ${v}`).join(', ');
  console.log(`        launches by kernel: ${byKernel}`);
  // the seed's micro-batch, priced on an H100 by bench/roofline.ts (the work counted, the rates assumed)
  const { H100, formatPrices, priceKernels } = await import('./roofline.js');
  const [B, T] = [16, 1024];
  const step16 = await countedStep(undefined, B, T);
  const prices = priceKernels(step16.work, H100);
  const L = 12, C = 768, params = 124_475_904; // GPT-2 124M (wte tied to lm_head, 50304 rows)
  const modelFlops = (6 * params + 12 * L * C * T) * B * T; // nanoGPT's estimate_mfu: 6N + 12 L H Q T per token
  const table = formatPrices(prices, B * T, modelFlops, H100);
  for (const line of table) console.log(`        ${line}`);
  const predicted = prices.reduce((t, p) => t + p.predicted, 0), roofline = prices.reduce((t, p) => t + p.roofline, 0);
  log({ section: 'gpu', config: `gpt2-124M T=${T} B=${B} on paper`, backend: `${H100.name} model`, value: Math.round(B * T / predicted), unit: 'tok/s',
    extra: `${step16.dispatches} launches; roofline ${Math.round(B * T / roofline)} tok/s` });
  // float16 autocast with a GradScaler, its products on tensor cores (as an NVIDIA adapter offers them)
  const step16h = await countedStep(undefined, B, T, 'float16');
  const pricesH = priceKernels(step16h.work, H100);
  for (const line of formatPrices(pricesH, B * T, modelFlops, H100, 'float16')) console.log(`        ${line}`);
  const predictedH = pricesH.reduce((t, p) => t + p.predicted, 0), rooflineH = pricesH.reduce((t, p) => t + p.roofline, 0);
  log({ section: 'gpu', config: `gpt2-124M T=${T} B=${B} float16 on paper`, backend: `${H100.name} model`, value: Math.round(B * T / predictedH), unit: 'tok/s',
    extra: `${step16h.dispatches} launches; tensor-core matmul assumed at a quarter of the f16 tensor peak; roofline ${Math.round(B * T / rooflineH)} tok/s` });
  // a real adapter: the system's; without a GPU, SwiftShader where installed (a benchmark is an explicit ask)
  const { hardwareAdapterConfigured, swiftShaderInstalled } = await import('../src/tensor/backends/gpu/swiftshader.js');
  const { initGpuBackend } = await import('../src/tensor/backends/gpu/index.js');
  const adapter = !hardwareAdapterConfigured() && swiftShaderInstalled() ? 'swiftshader' : 'system';
  let be: GpuBackend;
  try { be = await initGpuBackend({ adapter }) as GpuBackend; } catch (e) {
    log({ section: 'gpu', config: 'gpt L2 C64 V4096 T=64 B=2', backend: 'webgpu', value: null, unit: 'tok/s', note: (e as Error).message.slice(0, 200) });
    return;
  }
  const name = (be.runner as WebGpuRunner).adapter;
  const steps = await countSteps(be, { blockSize: 64, vocabSize: 4096, nLayer: 2, nHead: 2, nEmbd: 64 }, 2, 64, 4);
  const last = steps[steps.length - 1]!;
  log({ section: 'gpu', config: 'gpt L2 C64 V4096 T=64 B=2', backend: name.slice(0, 16), value: (2 * 64) / (last.ms / 1000), unit: 'tok/s',
    extra: formatCounts(last).replace(/^step \d+: /, '') });
}

let firstHour: Awaited<ReturnType<typeof benchFirstHour>> | null = null;

async function main(): Promise<void> {
  const started = new Date();
  console.log(`tapegrad bench — ${started.toISOString()} — ${cpus().length} x ${cpus()[0]?.model ?? '?'} — node ${process.version}` +
    ` — torch: ${torchOk ? `yes (/usr/bin/python3, libblas ${torchBlas()})` : 'not available'}`);
  console.log(`${'section'.padEnd(7)} ${'config'.padEnd(30)} ${'backend'.padEnd(16)} ${'value'.padStart(8)} unit`);
  if (soak > 0) benchSoak(soak);
  else {
    if (only.includes('matmul')) benchMatmul();
    if (only.includes('mlp')) benchMlp();
    if (only.includes('gpt')) await benchGpt();
    if (only.includes('ddp')) await benchDdp();
    if (only.includes('amp')) await benchAmp();
    if (only.includes('playground')) await benchPlayground(repo, (r) => log({ section: 'page', ...r }));
    if (gpu || only.includes('gpu')) await benchGpu();
    if (only.includes('workflow')) await benchWorkflowCosts(repo, (r) => log({ section: 'costs', backend: 'wasm 2t', ...r }));
    if (only.includes('first')) {
      const seeds = Number(argv.find((a) => a.startsWith('--seeds='))?.slice(8) ?? 3);
      const runs = await benchFirstHour(repo, seeds, (r) => {
        log({ section: 'first', config: `npm run train (seed ${r.seed})`, backend: 'wasm', value: r.seconds, unit: 's',
          extra: `${r.tokPerSec} tok/s; val ${r.valBpb.map((v) => v.toFixed(2)).join(' ')} bpb (bigram ${r.bigramBpb}, unigram ${r.unigramBpb})` });
        for (const s of r.samples) console.log(`        | ${s.replaceAll('\n', ' / ')}`);
      });
      firstHour = runs;
    }
  }
  const dir = join(repo, 'bench', 'results');
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `${started.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(file, JSON.stringify({ started: started.toISOString(), node: process.version, cpus: cpus().length,
    cpu: cpus()[0]?.model, torch: torchOk, torchBlas: torchOk ? torchBlas() : null, argv, rows, ...(firstHour ? { firstHour } : {}) }, null, 2));
  console.log(`wrote ${file}`);
}

main().then(() => process.exit(0), (e: unknown) => { console.error(e); process.exit(1); });
