// Part of bench/gpu-check.ts: where a training step's GPU time goes, measured and predicted side by
// side. One GPT step (forward, backward, clipping, AdamW, as optimizationStep) is run with the
// runner's profiler on (timestamp queries: each launch's GPU time), and its work (launches, flops,
// bytes per kernel: the runner's workByKernel) priced by bench/roofline.ts's H100 model. Also the
// step's tokens/s in float32, bfloat16 and float16 (autocast) with MFU, and the matmul at GPT-2's
// shapes and layouts.

import { setBackend, type Storage } from '../src/tensor/backend.js';
import { tensor } from '../src/tensor/creation.js';
import type { GPTConfig } from '../src/nn/gpt.js';
import { benchModel, benchStep } from './gpu-counts.js';
import type { GpuBackend } from '../src/tensor/backends/gpu/index.js';
import type { KernelWork, WebGpuRunner } from '../src/tensor/backends/gpu/webgpu-runner.js';
import type { KernelTime } from '../src/tensor/backends/gpu/profiler.js';
import { H100, TODAY, priceKernels, workDelta, type DeviceModel } from './roofline.js';

export interface ProfileRow {
  kernel: string;
  launches: number;
  /** Copy commands (packing gradients), which are not launches and are not timed. */
  copies: number;
  /** Measured GPU ms per step (timestamp queries); NaN where the device cannot time launches. */
  ms: number;
  flops: number;
  bytes: number;
  /** The H100 model's prediction for this kernel's work (ms). */
  predictedMs: number;
}

export interface DtypeRun { dtype: 'float32' | 'bfloat16' | 'float16'; tokS: number; stepMs: number; mfu: number | null; predictedTokS: number }

export interface StepProfile {
  what: string;
  rows: ProfileRow[];
  runs: DtypeRun[];
  matmuls: { layout: string; shape: string; tflops: number; predictedTflops: number }[];
  note: string;
}

/** Dense fp32 peak of the adapters we know (for MFU); null for others (a software adapter). */
export function adapterPeak(adapter: string): DeviceModel | null {
  return /H100|H200/i.test(adapter) ? H100 : null;
}

/** nanoGPT's estimate_mfu numerator: 6N + 12 L H Q T flops per token. */
function modelFlopsPerToken(cfg: GPTConfig, params: number): number {
  return 6 * params + 12 * cfg.nLayer * cfg.nEmbd * cfg.blockSize;
}

/** A GPT's steps on `gpu` at B x T: tokens/s per dtype (median of timed steps), and one float32 step profiled. */
export async function profileStep(gpu: GpuBackend, cfg: GPTConfig, B: number, T: number, what: string, steps = 3): Promise<StepProfile> {
  const runner = gpu.runner as WebGpuRunner;
  setBackend(gpu);
  try {
    const m = benchModel(cfg);
    const nParams = m.params.reduce((n, p) => n + p.size, 0) - cfg.blockSize * cfg.nEmbd; // nanoGPT leaves out wpe
    const x = tensor(Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % cfg.vocabSize), { shape: [B, T], backend: gpu });
    const y = tensor(Int32Array.from({ length: B * T }, (_, i) => (i * 104729 + 1) % cfg.vocabSize), { shape: [B, T], backend: gpu });
    const step = (dtype: DtypeRun['dtype']): Promise<void> => benchStep(gpu, m, x, y, dtype);
    const peak = adapterPeak(runner.adapter);
    const perToken = modelFlopsPerToken(cfg, nParams);
    const runs: DtypeRun[] = [];
    let work = new Map<string, KernelWork>();
    let times: Map<string, KernelTime> | null = null;
    let note = '';
    for (const dtype of ['float32', 'bfloat16', 'float16'] as const) {
      await step(dtype); // warm-up: pipelines, pools
      const ms: number[] = [];
      for (let s = 0; s < steps; s++) {
        const t = performance.now();
        await step(dtype);
        ms.push(performance.now() - t);
      }
      const stepMs = ms.sort((a, b) => a - b)[Math.floor(ms.length / 2)]!;
      // this dtype's work, counted (not timed) over one more step
      const before = new Map(runner.workByKernel);
      const profiler = dtype === 'float32' && runner.features.includes('timestamp-query') ? runner.profile() : null;
      await step(dtype);
      if (profiler) times = await profiler.stop();
      else if (dtype === 'float32') note = `${runner.adapter} has no timestamp-query: no per-kernel GPU times`;
      const w = workDelta(runner.workByKernel, before);
      if (dtype === 'float32') work = w;
      const predicted = priceKernels(w, H100).reduce((s, p) => s + p.predicted, 0);
      runs.push({ dtype, tokS: (B * T) / (stepMs / 1000), stepMs, mfu: peak ? (perToken * B * T) / (stepMs / 1000) / peak.fp32Flops : null, predictedTokS: (B * T) / predicted });
    }
    const prices = new Map(priceKernels(work, H100).map((p) => [p.kernel, p]));
    const rows: ProfileRow[] = [...work].map(([kernel, w]) => ({
      kernel, launches: w.launches, copies: w.copies ?? 0, flops: w.flops, bytes: w.bytes,
      ms: times ? (times.get(kernel)?.seconds ?? 0) * 1000 : NaN, predictedMs: prices.get(kernel)!.predicted * 1000,
    })).sort((a, b) => (Number.isNaN(a.ms) ? b.predictedMs - a.predictedMs : b.ms - a.ms));
    const matmuls = await matmulShapes(gpu, runner, cfg, B * T);
    return { what, rows, runs, matmuls, note };
  } finally {
    setBackend('js');
  }
}

/** Each linear layer's three products (forward, dX, dW) at B*T rows, and an lm_head chunk, timed on the device. */
async function matmulShapes(gpu: GpuBackend, runner: WebGpuRunner, cfg: GPTConfig, N: number): Promise<StepProfile['matmuls']> {
  if (!runner.features.includes('timestamp-query')) return [];
  const C = cfg.nEmbd, out: StepProfile['matmuls'] = [];
  const rnd = (n: number): Storage => gpu.fromHost(Float32Array.from({ length: n }, (_, i) => Math.sin(i * 0.37) * 0.5), 'float32');
  const mm = (m: number, n: number, k: number, transA: boolean, transB: boolean) => ({ batch: 1, m, n, k, transA, transB, aBatchStride: 0, bBatchStride: 0 });
  const rowsLce = Math.min(N, Math.max(64, Math.floor(2 ** 27 / cfg.vocabSize / 64) * 64));
  const layers: [string, number, number, number][] = [['c_attn', N, 3 * C, C], ['attn.c_proj', N, C, C], ['c_fc', N, 4 * C, C], ['mlp.c_proj', N, C, 4 * C], ['lm_head chunk', rowsLce, cfg.vocabSize, C]];
  for (const [name, rows, fout, fin] of layers) {
    const xs = rnd(rows * fin), w = rnd(fout * fin), g = rnd(rows * fout);
    const cases: [string, Storage, Storage, ReturnType<typeof mm>][] = [
      [`${name} x W^T`, xs, w, mm(rows, fout, fin, false, true)],
      [`${name} dX = G W`, g, w, mm(rows, fin, fout, false, false)],
      [`${name} dW = G^T X`, g, xs, mm(fout, fin, rows, true, false)],
    ];
    for (const [layout, a, b, p] of cases) {
      gpu.dispose(gpu.matmul(a, b, p)); // warm
      const prof = runner.profile();
      for (let i = 0; i < 3; i++) gpu.dispose(gpu.matmul(a, b, p));
      const t = [...(await prof.stop()).values()].reduce((s, k) => s + k.seconds, 0) / 3;
      const flops = 2 * p.m * p.n * p.k;
      out.push({ layout, shape: `${p.m}x${p.n}x${p.k}`, tflops: flops / t / 1e12, predictedTflops: TODAY.wideMatmulFlops / 1e12 });
    }
    for (const s of [xs, w, g]) gpu.dispose(s);
  }
  return out;
}

/** The profile as text: the per-kernel table, the dtype rows, the matmul shapes. */
export function formatProfile(p: StepProfile): string[] {
  const lines: string[] = [];
  const total = p.rows.reduce((s, r) => s + (Number.isNaN(r.ms) ? 0 : r.ms), 0), predicted = p.rows.reduce((s, r) => s + r.predictedMs, 0);
  lines.push(`\nprofile of one float32 training step: ${p.what} (GPU ms by timestamp queries; predicted: the same work on bench/roofline.ts's H100 model)`);
  if (p.note) lines.push(p.note);
  lines.push('| kernel | launches | GPU ms | achieved | share | predicted H100 ms |');
  lines.push('|---|---|---|---|---|---|');
  const rate = (r: ProfileRow): string => {
    if (Number.isNaN(r.ms) || r.ms <= 0) return '-';
    const s = r.ms / 1000;
    return r.flops > 0 ? `${(r.flops / s / 1e12).toFixed(2)} TFLOP/s` : `${(r.bytes / s / 1e9).toFixed(1)} GB/s`;
  };
  for (const r of p.rows) {
    lines.push(`| ${r.kernel} | ${r.copies ? `${r.copies} copies` : r.launches} | ${Number.isNaN(r.ms) || r.copies ? '-' : r.ms.toFixed(3)} | ${rate(r)} | ${Number.isNaN(r.ms) || !total ? '-' : `${(100 * r.ms / total).toFixed(1)}%`} | ${r.predictedMs.toFixed(3)} |`);
  }
  lines.push(`| total | ${p.rows.reduce((s, r) => s + r.launches, 0)} | ${total ? total.toFixed(1) : '-'} | | | ${predicted.toFixed(1)} |`);
  lines.push('\n| dtype | tok/s | step ms | MFU | predicted H100 tok/s |');
  lines.push('|---|---|---|---|---|');
  for (const r of p.runs) lines.push(`| ${r.dtype} | ${r.tokS.toFixed(0)} | ${r.stepMs.toFixed(0)} | ${r.mfu === null ? '- (no known peak)' : `${(100 * r.mfu).toFixed(1)}%`} | ${r.predictedTokS.toFixed(0)} |`);
  if (p.matmuls.length) {
    lines.push('\n| matmul | m x n x k | TFLOP/s | predicted H100 TFLOP/s |');
    lines.push('|---|---|---|---|');
    for (const m of p.matmuls) lines.push(`| ${m.layout} | ${m.shape} | ${m.tflops.toFixed(m.tflops < 0.1 ? 4 : 2)} | ${m.predictedTflops.toFixed(1)} |`);
  }
  return lines;
}
