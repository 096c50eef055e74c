// The GPU check: one script that runs every check of the gpu backend on a GPU machine and
// prints one dated table (and writes it as JSON to $OUT/gpu-check.json when $OUT is set).
//
//   npx tsc -p tsconfig.bench.json && node dist-bench/bench/gpu-check.js [--quick]   # in a clone, npm install done
//
// --quick: the whole table at small sizes without PyTorch or the 25M-element indexing check, in
// about a minute on SwiftShader: the rehearsal (test/gpu-check.test.ts runs it in CI).
//
// (A GPU machine without npm takes it as one bundle with node and Dawn; the bundler is not part
// of this repository.)
//
// Then the profile (bench/gpu-profile.ts): one training step's every kernel with its launches,
// GPU ms (timestamp queries), achieved TFLOP/s or GB/s and share, beside the H100 model's
// prediction for the same work (bench/roofline.ts); tokens/s in float32, bfloat16 and float16 with
// MFU; the matmul at GPT-2's shapes and layouts.
// Rows: backend parity (GPT forward/backward and one AdamW step on a small config vs the
// js backend, rel 1e-4; the forward/backward again under bfloat16 autocast), matmul TFLOP/s at 4096^3 (tiled WGSL, and gpu.js's naive kernel
// for scale), GPT-2 124M training tokens/s (largest batch that fits, median of several
// steps after warm-up), and PyTorch fp32 (TF32 off) on the same model and batch, run first
// through python3 (bench/gpu_torch_bench.py) so both never hold GPU memory at once.
// A row counts what decides GPU speed for one GPT-2 124M step (launches, submits, buffers
// created, host<->device traffic) on a recording device, so it needs no GPU (gpu-counts.ts).
// On a software adapter (SwiftShader: `VK_ICD_FILENAMES=/usr/lib/chromium/vk_swiftshader_icd.json
// node dist-bench/bench/gpu-check.js`, the rehearsal before a GPU is lent) every
// row runs at small sizes and PyTorch is skipped, so the kit is proven in a few minutes.
// Without a WebGPU adapter it says so in the table and exits 0.

import { spawnSync } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { getBackendByName, setBackend, type Backend } from '../src/tensor/backend.js';
import { type Tensor } from '../src/tensor/tensor.js';
import { tensor } from '../src/tensor/creation.js';
import { largeIndexCheck } from './gpu-large-index.js';
import { manualSeed } from '../src/tensor/random.js';
import { initGpuBackend, type GpuBackend, type GpuStorage } from '../src/tensor/backends/gpu/index.js';
import type { WebGpuRunner } from '../src/tensor/backends/gpu/webgpu-runner.js';
import { KERNELS } from '../src/tensor/backends/gpu/kernels.js';
import { FUSED_KERNELS } from '../src/tensor/backends/gpu/fused-kernels.js';
import type { RunnerStats } from '../src/tensor/backends/gpu/webgpu-runner.js';
import { countedStep, formatCounts, GPT2_124M } from './gpu-counts.js';
import { formatProfile, profileStep, type StepProfile } from './gpu-profile.js';

let T0 = Date.now();
/** What a software adapter (or --quick) trains: GPT-2's code paths at a size SwiftShader runs in seconds. */
const SMALL_GPT = { blockSize: 64, vocabSize: 4096, nLayer: 2, nHead: 2, nEmbd: 64 };
const BUDGET_S = Number(process.env.GPU_CHECK_BUDGET_S ?? 330); // whole check under ~6 min
const elapsed = (): number => (Date.now() - T0) / 1000;

interface Row { check: string; result: string; target: string; ok: boolean | null; note: string }
const rows: Row[] = [];
const row = (check: string, result: string, target: string, ok: boolean | null, note = ''): void => {
  rows.push({ check, result, target, ok, note });
  console.error(`[${elapsed().toFixed(0)}s] ${check}: ${result}${note ? ` (${note})` : ''}`);
};

// the engine frees device buffers when tensors are garbage collected (FinalizationRegistry);
// a step makes thousands of temporaries, so collect between steps to bound memory
let gpuForCollect: GpuBackend | null = null;
async function collect(): Promise<void> {
  if (gpuForCollect) await gpuForCollect.collect();
}

interface ModelApi {
  GPT: new (cfg: { blockSize: number; vocabSize: number; nLayer: number; nHead: number; nEmbd: number }) => {
    forward(idx: Tensor, targets?: Tensor | null): { logits: Tensor; loss: Tensor | null };
    namedParameters(): [string, Tensor][];
    parameters(): Tensor[];
    loadStateDict(sd: Map<string, Tensor>): void;
  };
  configureOptimizers(model: unknown, wd: number, lr: number): { zeroGrad(): void; step(): void };
  clipGradNorm(params: Tensor[], max: number): Tensor;
}

async function loadModel(): Promise<ModelApi | null> {
  try {
    const nn = await import('../src/nn/index.js');
    const optim = await import('../src/optim/index.js');
    return { GPT: nn.GPT, configureOptimizers: optim.configureOptimizers, clipGradNorm: optim.clipGradNorm } as unknown as ModelApi;
  } catch (e) {
    console.error(`model not available: ${(e as Error).message}`);
    return null;
  }
}

function worstRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let d = 0, s = 0;
  for (let i = 0; i < b.length; i++) { d = Math.max(d, Math.abs(a[i]! - b[i]!)); s = Math.max(s, Math.abs(b[i]!)); }
  return d / (s || 1);
}
function statsSince(before: RunnerStats): RunnerStats {
  const now = gpuForCollect!.runner as WebGpuRunner;
  return Object.fromEntries(Object.entries(now.stats).map(([k, v]) => [k, v - before[k as keyof RunnerStats]])) as unknown as RunnerStats;
}
const median = (xs: number[]): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]!; };
const f32 = async (t: Tensor): Promise<Float32Array> => Float32Array.from(await t.data());

/** PyTorch first, while this process holds no GPU memory. */
function torchBench(batches: number[]): { raw: Record<string, unknown> | null; note: string } {
  const r = spawnSync('python3', ['bench/gpu_torch_bench.py', '--batches', batches.join(','), '--steps', '6', '--warmup', '2'],
    { encoding: 'utf8', timeout: 150_000 });
  if (r.error || r.status !== 0) {
    return { raw: null, note: `python3 failed: ${(r.error?.message ?? r.stderr ?? '').toString().trim().split('\n').slice(-2).join(' ')}` };
  }
  const line = r.stdout.trim().split('\n').pop() ?? '';
  try { return { raw: JSON.parse(line) as Record<string, unknown>, note: '' }; } catch { return { raw: null, note: `unparsable torch output: ${line.slice(0, 200)}` }; }
}

async function parity(gpu: Backend, api: ModelApi): Promise<void> {
  const cfg = { blockSize: 32, vocabSize: 96, nLayer: 2, nHead: 4, nEmbd: 64 };
  const B = 2, T = 32;
  const js = getBackendByName('js');
  const tok = Int32Array.from({ length: B * T }, (_, i) => (i * 37 + 11) % cfg.vocabSize);
  const tgt = Int32Array.from({ length: B * T }, (_, i) => (i * 53 + 5) % cfg.vocabSize);
  type Weights = Map<string, { data: Float32Array; shape: readonly number[] }>;
  /**
   * fwd + bwd + clip + AdamW on backend b from the given initial weights, every value read
   * back; with `grads`, the step uses those gradients instead of its own backward.
   */
  const run = async (b: Backend, init: Weights | null, grads?: Float32Array[]) => {
    setBackend(b);
    manualSeed(0);
    const model = new api.GPT(cfg);
    if (init) model.loadStateDict(new Map([...init].map(([k, v]) => [k, tensor(v.data.slice(), { shape: v.shape, backend: b })])));
    const weights: Weights = new Map();
    for (const [k, p] of model.namedParameters()) weights.set(k, { data: await f32(p), shape: p.shape });
    const opt = api.configureOptimizers(model, 0.1, 1e-3);
    const idx = tensor(tok.slice(), { shape: [B, T], backend: b }), y = tensor(tgt.slice(), { shape: [B, T], backend: b });
    const { logits, loss } = model.forward(idx, y);
    loss!.backward();
    const fwdBwd = [await f32(logits), await f32(loss!)];
    for (const [, p] of model.namedParameters()) fwdBwd.push(await f32(p.grad!));
    if (grads) model.namedParameters().forEach(([, p], i) => { p.grad = tensor(grads[i]!.slice(), { shape: p.shape, backend: b }); });
    const norm = api.clipGradNorm(model.parameters(), 1.0);
    opt.step();
    const step = [await f32(norm)];
    for (const [, p] of model.namedParameters()) step.push(await f32(p));
    return { weights, fwdBwd, step };
  };
  const ref = await run(js, null);
  const got = await run(gpu, ref.weights); // the same initial weights, moved to the gpu
  // The optimizer is compared on the gpu's own gradients: AdamW's first step moves every weight
  // by ~lr * g / (|g| + eps), which turns gradients that are zero up to float32 noise (the key
  // bias's, exactly 0 in exact arithmetic) into differences of ~1e-3 * lr, whatever the backend.
  const refStep = await run(js, ref.weights, got.fwdBwd.slice(2));
  setBackend(js);
  const worst = (a: Float32Array[], b: Float32Array[]): number => Math.max(...b.map((w, i) => worstRel(a[i]!, w)));
  const fb = worst(got.fwdBwd, ref.fwdBwd), st = worst(got.step, refStep.step);
  row('parity: GPT fwd+bwd vs js (logits, loss, all grads)', `worst rel ${fb.toExponential(2)}`, '<= 1e-4', fb <= 1e-4,
    `L${cfg.nLayer} H${cfg.nHead} C${cfg.nEmbd} V${cfg.vocabSize}, B${B} T${T}`);
  row('parity: clip norm + AdamW step vs js (same gradients)', `worst rel ${st.toExponential(2)}`, '<= 1e-5', st <= 1e-5);
}

/**
 * The same small GPT under bfloat16 autocast on the gpu and on js (the reference), from the same
 * weights: half tensors as packed bits on the device, widened and rounded by the cast kernels.
 * Both round to bfloat16 where torch.autocast does, but a matmul summed in another order can
 * round an element to the neighbouring bfloat16 value, so the bounds are a few bf16 ulps.
 */
async function parityBf16(gpu: Backend, api: ModelApi): Promise<void> {
  const { autocast } = await import('../src/tensor/autocast.js');
  const cfg = { blockSize: 32, vocabSize: 96, nLayer: 2, nHead: 4, nEmbd: 64 };
  const B = 2, T = 32;
  const tok = Int32Array.from({ length: B * T }, (_, i) => (i * 37 + 11) % cfg.vocabSize);
  const tgt = Int32Array.from({ length: B * T }, (_, i) => (i * 53 + 5) % cfg.vocabSize);
  let init: Map<string, { data: Float32Array; shape: readonly number[] }> | null = null;
  const run = async (b: Backend): Promise<Float32Array[]> => {
    setBackend(b);
    manualSeed(0);
    const model = new api.GPT(cfg);
    if (init) model.loadStateDict(new Map([...init].map(([k, v]) => [k, tensor(v.data.slice(), { shape: v.shape, backend: b })])));
    else {
      init = new Map();
      for (const [k, p] of model.namedParameters()) init.set(k, { data: await f32(p), shape: p.shape });
    }
    const idx = tensor(tok.slice(), { shape: [B, T], backend: b }), y = tensor(tgt.slice(), { shape: [B, T], backend: b });
    const { logits, loss } = autocast('bfloat16', () => model.forward(idx, y));
    if (logits.dtype !== 'bfloat16') throw new Error(`logits are ${logits.dtype} under bfloat16 autocast`);
    loss!.backward();
    const out = [Float32Array.from(await logits.to('float32').data()), await f32(loss!)];
    for (const [, p] of model.namedParameters()) out.push(await f32(p.grad!));
    return out;
  };
  const ref = await run(getBackendByName('js'));
  const got = await run(gpu);
  setBackend(getBackendByName('js'));
  const lg = worstRel(got[0]!, ref[0]!), ls = worstRel(got[1]!, ref[1]!);
  const gr = Math.max(...ref.slice(2).map((w, i) => worstRel(got[i + 2]!, w)));
  const ok = lg <= 2e-2 && ls <= 1e-3 && gr <= 5e-2;
  row('parity: GPT fwd+bwd under bfloat16 autocast vs js', `logits ${lg.toExponential(2)}, loss ${ls.toExponential(2)}, grads ${gr.toExponential(2)}`,
    '<= 2e-2, 1e-3, 5e-2', ok, 'worst rel; bf16 logits, float32 loss and grads');
}

async function matmulBench(gpu: GpuBackend, runner: WebGpuRunner, n: number, naiveToo: boolean): Promise<void> {
  const a = gpu.fromHost(Float32Array.from({ length: n * n }, (_, i) => Math.sin(i) * 0.5), 'float32');
  const b = gpu.fromHost(Float32Array.from({ length: n * n }, (_, i) => Math.cos(i) * 0.5), 'float32');
  const p = { batch: 1, m: n, n, k: n, transA: false, transB: false, aBatchStride: 0, bBatchStride: 0 };
  // correctness spot check of the tiled kernel against float64
  const c = gpu.matmul(a, b, p);
  const cv = await gpu.read(c) as Float32Array;
  let err = 0;
  for (let t = 0; t < 16; t++) {
    const i = (t * 7919) % n, j = (t * 104729) % n;
    let s = 0;
    for (let q = 0; q < n; q++) s += Math.sin(i * n + q) * 0.5 * Math.cos(q * n + j) * 0.5;
    err = Math.max(err, Math.abs(s - cv[i * n + j]!) / Math.max(1, Math.abs(s)));
  }
  gpu.dispose(c);
  const time = async (f: () => void, iters: number): Promise<number> => {
    f(); await runner.sync();
    const t = performance.now();
    for (let i = 0; i < iters; i++) f();
    await runner.sync();
    return (performance.now() - t) / 1000 / iters;
  };
  const tiled = await time(() => gpu.dispose(gpu.matmul(a, b, p)), 20);
  const tf = (2 * n ** 3) / tiled / 1e12;
  const rate = (t: number): string => (t >= 0.1 ? `${t.toFixed(2)} TFLOP/s` : `${(t * 1000).toFixed(2)} GFLOP/s`);
  row(`matmul ${n}^3 (tiled WGSL)`, rate(tf), '>= 10 TFLOP/s at 4096^3', n === 4096 ? tf >= 10 && err < 1e-3 : err < 1e-3,
    `spot-check rel err ${err.toExponential(1)} vs float64`);
  // gpu.js's one-output-per-thread kernel, for scale
  if (naiveToo) {
    const [ab, bb] = [(a as GpuStorage).buf, (b as GpuStorage).buf];
    const naive = await time(() => runner.release(runner.run(KERNELS.matmulNN, [n, n, 1], [{ buf: ab, dims: [n, n, 1] }, { buf: bb, dims: [n, n, 1] }, n, 0, 0])), 3);
    row(`matmul ${n}^3 (gpu.js naive kernel)`, rate((2 * n ** 3) / naive / 1e12), 'info', null);
  }
  gpu.dispose(a); gpu.dispose(b);
}

async function gpt2Bench(gpu: GpuBackend, runner: WebGpuRunner, api: ModelApi, batches: number[], software: boolean): Promise<{ B: number; tokS: number } | null> {
  // a software adapter gets a small GPT (same code paths), a GPU the real GPT-2 124M
  const cfg = software ? SMALL_GPT : GPT2_124M;
  const T = cfg.blockSize;
  const what = software ? `GPT L${cfg.nLayer} C${cfg.nEmbd} V${cfg.vocabSize} (software adapter)` : 'GPT-2 124M';
  setBackend(gpu);
  runner.errors.length = 0;
  // one model for every batch tried: weights do not depend on B, and building 124M
  // parameters (randn on the host) is the slow part of a failed attempt
  manualSeed(0);
  const t0 = performance.now();
  let model: InstanceType<ModelApi['GPT']>;
  try {
    model = new api.GPT(cfg);
  } catch (e) {
    setBackend('js');
    row(`${what} train`, 'could not build the model', '>= 10,000 tok/s', false, (e as Error).message.slice(0, 300));
    return null;
  }
  const opt = api.configureOptimizers(model, 0.1, 6e-4);
  const params = model.parameters();
  console.error(`  ${what} built on the gpu in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  try {
    for (const B of batches) {
      if (elapsed() > BUDGET_S - 60) { row(`${what} train B=${B}`, 'skipped', '', null, 'time budget'); continue; }
      runner.errors.length = 0;
      try {
        const x = tensor(Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % cfg.vocabSize), { shape: [B, T], backend: gpu });
        const y = tensor(Int32Array.from({ length: B * T }, (_, i) => (i * 104729 + 1) % cfg.vocabSize), { shape: [B, T], backend: gpu });
        const times: number[] = [];
        let lossV = NaN, normV = NaN;
        const warmup = 2, steps = 5;
        let perStep: RunnerStats | null = null;
        for (let s = 0; s < warmup + steps; s++) {
          const t = performance.now();
          const before = { ...runner.stats };
          opt.zeroGrad();
          const { loss } = model.forward(x, y);
          loss!.backward();
          const norm = api.clipGradNorm(params, 1.0);
          opt.step();
          // the step's only readbacks: the logged loss and norm
          lossV = (await loss!.data())[0]!;
          normV = (await norm.data())[0]!;
          if (runner.errors.length) throw new Error(runner.errors.slice(0, 2).join('; '));
          const dt = (performance.now() - t) / 1000;
          if (s >= warmup) times.push(dt);
          console.error(`  B=${B} step ${s}: ${dt.toFixed(2)} s, loss ${lossV.toFixed(4)}, norm ${normV.toFixed(3)}`);
          await collect();
          perStep = statsSince(before);
          if (elapsed() > BUDGET_S - 20 && times.length >= 1) break;
        }
        if (!times.length) throw new Error('no timed step within the time budget');
        const tokS = (B * T) / median(times);
        const n = warmup + times.length;
        row(`${what} train tok/s (B=${B}, T=${T})`, `${tokS.toFixed(0)} tok/s`, '>= 10,000 tok/s (GPT-2 124M)', software ? null : tokS >= 10_000,
          `median of ${times.length} of ${n} steps ${(median(times) * 1000).toFixed(0)} ms; loss ${lossV.toFixed(3)} (ln ${cfg.vocabSize} = ${Math.log(cfg.vocabSize).toFixed(2)} at init), norm ${normV.toFixed(2)}; ` +
          `last step: ${perStep ? formatCounts({ ...perStep, step: n - 1, ms: 0, byKernel: {}, work: new Map() }).replace(/^step \d+: /, '') : '?'}`);
        return { B, tokS };
      } catch (e) {
        row(`${what} train B=${B}`, 'does not fit / failed', '', null, (e as Error).message.slice(0, 300));
        opt.zeroGrad();
        await collect();
        runner.trim();
      }
    }
    return null;
  } finally {
    setBackend('js');
  }
}

function formatTable(header: string): string[] {
  const cols: (keyof Row)[] = ['check', 'result', 'target', 'ok', 'note'];
  const cell = (r: Row, c: keyof Row): string => (c === 'ok' ? (r.ok === null ? '-' : r.ok ? 'yes' : 'NO') : String(r[c]));
  const w = cols.map((c) => Math.max(c.length, ...rows.map((r) => Math.min(cell(r, c).length, c === 'note' ? 120 : 80))));
  const line = (vals: string[]): string => `| ${vals.map((v, i) => v.slice(0, w[i]).padEnd(w[i]!)).join(' | ')} |`;
  return [`\n${header}`, line(cols.map(String)), `|${w.map((n) => '-'.repeat(n + 2)).join('|')}|`, ...rows.map((r) => line(cols.map((c) => cell(r, c))))];
}

export interface GpuCheckResult { header: string; rows: Row[]; profile: StepProfile | null; device: string; text: string[] }

/** Every check; `quick`: small sizes, no PyTorch, no 25M-element indexing check (the SwiftShader rehearsal). */
export async function runGpuCheck(opts: { quick?: boolean; dawnFlags?: string[] } = {}): Promise<GpuCheckResult> {
  T0 = Date.now();
  rows.length = 0;
  const date = new Date().toISOString();
  const header = `tapegrad gpu-check — ${date} — node ${process.version}${opts.quick ? ' — quick' : ''}`;
  let device = 'none';
  const batches = [16, 8, 4];
  let profile: StepProfile | null = null;
  // the adapter first (it holds almost no memory), then PyTorch, then our rows
  let gpu: GpuBackend | null = null;
  let initError = '';
  const dawnFlags = opts.dawnFlags ?? [];
  try { gpu = await initGpuBackend({ dawnFlags }) as GpuBackend; } catch (e) { initError = (e as Error).message; }
  if (!gpu && /self-test/.test(initError)) {
    // wrong answers on the self-test: say so, and measure anyway (the parity rows show where)
    row('gpu backend self-test', 'FAILED', 'pass', false, initError.slice(0, 300));
    try { gpu = await initGpuBackend({ dawnFlags, selfTest: false }) as GpuBackend; } catch (e) { initError = (e as Error).message; }
  }
  if (!gpu) {
    row('WebGPU adapter', /no WebGPU adapter/.test(initError) ? 'none' : 'init failed', 'an adapter', false, initError.slice(0, 300));
  } else {
    const runner = gpu.runner as WebGpuRunner;
    gpuForCollect = gpu;
    const small = opts.quick === true || /swiftshader|llvmpipe|lavapipe/i.test(runner.adapter);
    device = `${runner.adapter}; maxStorageBufferBindingSize ${runner.device.limits.maxStorageBufferBindingSize}, maxBufferSize ${runner.device.limits.maxBufferSize}; features ${runner.features.join(', ') || 'none'}`;
    row('WebGPU adapter', 'ok', 'an adapter', true, `${device}; ${Object.keys(KERNELS).length + Object.keys(FUSED_KERNELS).length} gpu.js kernels + hand-written WGSL compiled in ${elapsed().toFixed(1)} s` +
      (small ? '; small sizes, no PyTorch' : ''));
    const torch = small ? { raw: null, note: opts.quick ? 'skipped (--quick)' : 'skipped on a software adapter' } : torchBench(batches);
    const api = await loadModel();
    if (!api) row('parity / GPT-2 rows', 'skipped', '', null, 'src/nn (GPT) not available yet');
    else {
      try { await parity(gpu, api); } catch (e) { row('parity: GPT vs js', 'error', '<= 1e-4', false, (e as Error).message.slice(0, 300)); }
      try { await parityBf16(gpu, api); } catch (e) { row('parity: GPT under bfloat16 autocast', 'error', '', false, (e as Error).message.slice(0, 300)); }
    }
    await collect();
    if (opts.quick) row('indexing past 2^24 elements', 'skipped', 'exact', null, '--quick');
    else {
      try {
        const bad = await largeIndexCheck(gpu);
        row('indexing past 2^24 elements (25M-element tensor)', bad.length ? 'MISMATCH' : 'exact', 'exact', bad.length === 0, bad.slice(0, 3).join('; '));
      } catch (e) { row('indexing past 2^24 elements', 'error', 'exact', false, (e as Error).message.slice(0, 300)); }
    }
    try { await matmulBench(gpu, runner, small ? 256 : 4096, !opts.quick); } catch (e) { row('matmul', 'error', '>= 10 TFLOP/s', false, (e as Error).message.slice(0, 300)); }
    const ours = api ? await gpt2Bench(gpu, runner, api, small ? [2] : batches, small) : null;
    await collect();
    runner.trim();
    if (ours) {
      // the profile at the batch that fit: a software adapter's small GPT, or GPT-2 124M
      const cfg = small ? SMALL_GPT : GPT2_124M;
      try {
        profile = await profileStep(gpu, cfg, ours.B, cfg.blockSize, small ? `GPT L${cfg.nLayer} C${cfg.nEmbd} V${cfg.vocabSize} B=${ours.B} T=${cfg.blockSize} on ${runner.adapter}` : `GPT-2 124M B=${ours.B} T=1024 on ${runner.adapter}`, small ? 1 : 3);
        for (const r of profile.runs) {
          row(`${small ? 'small GPT' : 'GPT-2 124M'} train tok/s, ${r.dtype} (B=${ours.B})`, `${r.tokS.toFixed(0)} tok/s`, `predicted H100 ${r.predictedTokS.toFixed(0)} tok/s`, null,
            `median step ${r.stepMs.toFixed(0)} ms${r.mfu === null ? '' : `, MFU ${(100 * r.mfu).toFixed(1)}% of fp32 peak`}${r.dtype === 'float32' ? '' : ' (autocast: half tensors widened for float32 kernels; no tensor cores yet)'}`);
        }
        if (profile.note) row('profile', 'no per-kernel GPU times', 'timestamp-query', null, profile.note);
      } catch (e) { row('profile', 'error', 'info', null, (e as Error).message.slice(0, 300)); }
      await collect();
      runner.trim();
    }
    const tr = (torch.raw?.train ?? []) as { batch: number; tok_s?: number; step_ms?: number; error?: string }[];
    if (torch.raw) {
      row('PyTorch fp32 matmul 4096^3 (TF32 off)', `${Number(torch.raw.matmul_tflops).toFixed(2)} TFLOP/s`, 'info', null, `torch ${String(torch.raw.torch)}`);
      for (const t of tr) {
        row(`PyTorch fp32 GPT-2 124M train (B=${t.batch})`, t.tok_s ? `${t.tok_s.toFixed(0)} tok/s` : 'failed', 'info', null,
          t.tok_s ? `median step ${t.step_ms!.toFixed(0)} ms, TF32 off, eager, F.scaled_dot_product_attention` : String(t.error));
      }
    } else row('PyTorch fp32 GPT-2 124M', 'not run', 'info', null, torch.note);
    const same = ours ? tr.find((t) => t.batch === ours.B && t.tok_s) : undefined;
    if (ours && same?.tok_s) row(`ratio tapegrad / PyTorch (B=${ours.B})`, `${(ours.tokS / same.tok_s).toFixed(3)}`, 'info', null);
  }
  try {
    const counted = await countedStep();
    row('GPT-2 124M step counted (B=1, T=1024; recording device)', `${counted.dispatches} launches`, 'info', null, formatCounts(counted).replace(/^step \d+: /, ''));
  } catch (e) { row('GPT-2 124M step counted', 'error', 'info', null, (e as Error).message.slice(0, 300)); }
  const limit = opts.quick ? 180 : 360;
  row('wall time of this check', `${elapsed().toFixed(0)} s`, `< ${limit} s`, elapsed() < limit);
  const text = [...formatTable(header), ...(profile ? formatProfile(profile) : [])];
  return { header, rows: [...rows], profile, device, text };
}

async function main(): Promise<void> {
  // GPU_CHECK_DAWN_FLAGS=backend=null runs the whole script on Dawn's null device (no GPU:
  // compiles and validates, computes nothing), to smoke-test this script itself
  const dawnFlags = (process.env.GPU_CHECK_DAWN_FLAGS ?? '').split(',').filter(Boolean);
  const r = await runGpuCheck({ quick: process.argv.includes('--quick'), dawnFlags });
  console.log(r.text.join('\n'));
  const out = process.env.OUT;
  if (out) {
    mkdirSync(out, { recursive: true });
    writeFileSync(join(out, 'gpu-check.json'), JSON.stringify({ date: r.header, node: process.version, device: r.device, rows: r.rows, profile: r.profile }, null, 2));
  }
  process.exit(0); // Dawn keeps the event loop alive otherwise
}

// run as a script (node dist-bench/bench/gpu-check.js, or the kit's bundle), not when imported by a test
if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  main().catch((e: unknown) => {
    console.error(e);
    console.log(formatTable(`tapegrad gpu-check — ${new Date().toISOString()} — crashed: ${(e as Error).message}`).join('\n'));
    process.exit(1);
  });
}
