// A GPU training step on paper: the work of every kernel launch, counted on the recording device
// (src/tensor/backends/gpu/recording-device.ts: the real runner, nothing computed; the runner's
// workByKernel), priced on a device model. Two prices per kernel: the roofline (its flops at the
// device's peak or its bytes at full bandwidth, whichever takes longer, plus a fixed cost per
// launch), the time no kernel can beat; and a prediction for today's kernels, from the rates
// below. The rates are assumptions until a GPU is lent: each says where it comes from, and
// bench/gpu-check.ts is where measured times will replace them.

import type { KernelWork } from '../src/tensor/backends/gpu/webgpu-runner.js';

export interface DeviceModel {
  name: string;
  /** Dense float32 FLOP/s without tensor cores. */
  fp32Flops: number;
  /** Dense float16 tensor-core FLOP/s (float32 accumulation). */
  f16TensorFlops: number;
  /** Device-memory bytes/s. */
  bandwidth: number;
  /** Seconds a launch costs beyond its work (a dispatch and its barrier in a compute pass). */
  launchSeconds: number;
  /** Seconds a copy command costs beyond its bytes (outside a compute pass: no pipeline, no bind group). */
  copySeconds: number;
}

/** NVIDIA's H100 SXM datasheet (67 TFLOP/s fp32, 989 dense fp16 tensor, 3.35 TB/s HBM3). */
export const H100: DeviceModel = { name: 'H100 SXM', fp32Flops: 67e12, f16TensorFlops: 989e12, bandwidth: 3.35e12, launchSeconds: 4e-6, copySeconds: 2e-6 };

/**
 * What today's kernels achieve, by kernel class (FLOP/s for products, a share of the bandwidth
 * for the rest). The one measurement: the 64x64-tiled WGSL matmul ran 15-22 TFLOP/s on an H200
 * at 4096^3 A·B and gpu.js's naive one ~1.5; the low end is taken, as GPT-2's A·Bᵀ layout hits the
 * tile stores' bank conflicts. The 128x128 kernel (8x8 outputs a thread, vec4 everywhere, no bank
 * conflict, register double buffering) is the design of SGEMMs that reach 70-80% of peak in CUDA;
 * through WGSL, half of the fp32 peak is assumed until gpu-check measures it. Flash attention
 * (a thread per row, rows of vec4s read from workgroup memory, one read per four multiply-adds)
 * is taken at the 64x64 kernel's rate, the one measured: GPT-2's float32 goal (35k tok/s) holds
 * down to 13.1 TFLOP/s, the float16 one (100k) to 14.0. The float16 tensor-core kernel
 * (subgroup matrices, tensor-core-wgsl.ts; never run on a GPU yet) loads its operands straight
 * from device memory, one subgroup per 32x32 block, without staging tiles in workgroup memory:
 * a quarter of the dense f16 tensor peak is assumed for it, a guess until gpu-check measures it;
 * its roofline is the tensor peak. Memory-bound kernels whose
 * neighbouring threads read neighbouring addresses (gpu.js's elementwise ones, and the WGSL
 * kernels with a workgroup per row: LayerNorm, cross-entropy) are taken at 60% of the bandwidth;
 * gpu.js's row kernels (a thread walks a whole row, neighbouring threads read addresses a row
 * apart) at 15%. Copy commands (packing gradients) are priced as elementwise kernels, plus their
 * fixed cost (copySeconds) each.
 */
export const TODAY = {
  wideMatmulFlops: 0.5 * H100.fp32Flops,
  tensorMatmulFlops: 0.25 * H100.f16TensorFlops,
  tiledMatmulFlops: 15e12,
  portableMatmulFlops: 1.5e12,
  flashFlops: 15e12,
  elementwiseBandwidth: 0.6,
  rowBandwidth: 0.15,
} as const;

/** gpu.js kernels that walk a row (or a column block) per thread. */
const ROW_KERNELS = new Set(['reduce', 'sumSquares', 'rowStat', 'rowDot', 'lnStat', 'lnBackStat', 'attnStat', 'ceLoss']);

export interface KernelPrice {
  kernel: string;
  launches: number;
  /** Copy commands (packing gradients for the multi-tensor kernels), not launches. */
  copies: number;
  flops: number;
  bytes: number;
  /** The roofline's seconds for these launches (work at peak, plus the launch cost). */
  roofline: number;
  /** Today's kernels' seconds (TODAY's rates, plus the launch cost). */
  predicted: number;
}

/** Price each kernel's launches on `device`, most expensive (predicted) first. */
export function priceKernels(work: ReadonlyMap<string, KernelWork>, device: DeviceModel = H100): KernelPrice[] {
  const out: KernelPrice[] = [];
  for (const [kernel, w] of work) {
    const launch = w.launches * device.launchSeconds + (w.copies ?? 0) * device.copySeconds;
    const memory = w.bytes / device.bandwidth;
    const tensor = kernel.includes('tensor cores');
    const roofline = launch + Math.max(w.flops / (tensor ? device.f16TensorFlops : device.fp32Flops), memory);
    let compute: number;
    if (tensor) compute = w.flops / TODAY.tensorMatmulFlops;
    else if (kernel.startsWith('matmul128')) compute = w.flops / TODAY.wideMatmulFlops; // (float32 or half operands: float32 arithmetic)
    else if (kernel === 'matmul (WGSL)') compute = w.flops / TODAY.tiledMatmulFlops;
    else if (kernel.startsWith('matmul')) compute = w.flops / TODAY.portableMatmulFlops;
    else if (kernel.startsWith('flash')) compute = w.flops / TODAY.flashFlops;
    else compute = 0;
    const share = ROW_KERNELS.has(kernel) ? TODAY.rowBandwidth : TODAY.elementwiseBandwidth;
    const predicted = launch + Math.max(compute, memory / share);
    out.push({ kernel, launches: w.launches, copies: w.copies ?? 0, flops: w.flops, bytes: w.bytes, roofline, predicted });
  }
  return out.sort((a, b) => b.predicted - a.predicted);
}

/** The difference of two running totals of workByKernel (one step's work). */
export function workDelta(after: ReadonlyMap<string, KernelWork>, before: ReadonlyMap<string, KernelWork>): Map<string, KernelWork> {
  const d = new Map<string, KernelWork>();
  for (const [k, a] of after) {
    const b = before.get(k) ?? { launches: 0, flops: 0, bytes: 0 };
    const copies = (a.copies ?? 0) - (b.copies ?? 0);
    if (a.launches > b.launches || copies > 0) d.set(k, { launches: a.launches - b.launches, flops: a.flops - b.flops, bytes: a.bytes - b.bytes, copies });
  }
  return d;
}

/** The table: one row per kernel, then the step's totals as tokens/s (roofline and predicted) and MFU. */
export function formatPrices(prices: readonly KernelPrice[], tokens: number, modelFlops: number, device: DeviceModel = H100, dtype: 'float32' | 'float16' = 'float32'): string[] {
  const total = (f: (p: KernelPrice) => number): number => prices.reduce((s, p) => s + f(p), 0);
  const predicted = total((p) => p.predicted), roofline = total((p) => p.roofline);
  const lines = [`${'kernel'.padEnd(24)} ${'launches'.padStart(8)} ${'GFLOP'.padStart(9)} ${'GB'.padStart(8)} ${'roofline ms'.padStart(11)} ${'predicted ms'.padStart(12)}  share`];
  for (const p of prices) {
    lines.push(`${p.kernel.padEnd(24)} ${(p.copies ? `${p.copies} copies` : String(p.launches)).padStart(8)} ${(p.flops / 1e9).toFixed(1).padStart(9)} ${(p.bytes / 1e9).toFixed(2).padStart(8)} ` +
      `${(p.roofline * 1e3).toFixed(2).padStart(11)} ${(p.predicted * 1e3).toFixed(2).padStart(12)}  ${(100 * p.predicted / predicted).toFixed(1).padStart(5)}%`);
  }
  const launches = total((p) => p.launches), copies = total((p) => p.copies);
  lines.push(`${`total${copies ? ` (+${copies} copies)` : ''}`.padEnd(24)} ${String(launches).padStart(8)} ${(total((p) => p.flops) / 1e9).toFixed(1).padStart(9)} ${(total((p) => p.bytes) / 1e9).toFixed(2).padStart(8)} ` +
    `${(roofline * 1e3).toFixed(2).padStart(11)} ${(predicted * 1e3).toFixed(2).padStart(12)}`);
  const peak = dtype === 'float16' ? device.f16TensorFlops : device.fp32Flops;
  lines.push(`${device.name}, ${dtype === 'float16' ? 'float16 (tensor cores)' : 'float32'}: predicted ${Math.round(tokens / predicted).toLocaleString('en-US')} tok/s ` +
    `(MFU ${(100 * modelFlops / predicted / peak).toFixed(1)}% of the ${dtype === 'float16' ? 'f16 tensor' : 'fp32'} peak), ` +
    `roofline ${Math.round(tokens / roofline).toLocaleString('en-US')} tok/s`);
  return lines;
}
