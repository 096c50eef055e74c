// The gpu backend's fused kernels (softmax family, layerNorm, cross-entropy, attention, AdamW,
// sums of squares) built from the kernels of kernels.ts (and AdamW's WGSL), each with its
// backward; tested against the composites of functional.ts.

import type { AdamWParams, FusedKernels, MatmulParams, Storage } from '../../backend.js';
import type { GpuKernelHost } from './kernel-host.js';
import { BINARY_CODES, CAST_CODES, KERNELS, MODES } from './kernels.js';
import { FUSED_KERNELS } from './fused-kernels.js';
import { halfOutMatmul, halfOutMatmulGelu, matmulView, wideWhole } from './matmul.js';
import { arg, type AttnView, type BufferArg, type DeviceBuffer, type FlashArgs, type MatmulEpilogue } from './runner.js';
import { FLASH_HEAD_MAX } from './flash-wgsl.js';
import { LAYERNORM_MAX_COLS } from './layernorm-wgsl.js';
import type { GpuStorage } from './storage.js';

export function makeFused(be: GpuKernelHost): FusedKernels {
  const f32 = (op: string, s: Storage): GpuStorage => {
    const [g] = be.check(op, s);
    if (g!.dtype !== 'float32') throw new Error(`${op}: fused kernels take float32 storages, got ${g!.dtype}`);
    return g!;
  };
  const rowStat = (x: GpuStorage, rows: number, cols: number, mode: number): DeviceBuffer =>
    be.run(FUSED_KERNELS.rowStat, [rows], [arg(x.buf, cols, rows), cols, mode]);
  /** The wide WGSL matmul with an epilogue, where this product has that kernel and fits one binding per operand. */
  const epilogueMatmul = (op: string, a: Storage, b: Storage, p: MatmulParams, epilogue: MatmulEpilogue): DeviceBuffer | null => {
    const [sa, sb] = [f32(op, a), f32(op, b)];
    if (!wideWhole(be, p)) return null;
    return be.runner.matmul!({ buf: sa.buf, offset: undefined }, { buf: sb.buf, offset: undefined }, p, undefined, epilogue);
  };
  return {
    matmulBias: (a, b, p, bias) => {
      const out = epilogueMatmul('matmulBias', a, b, p, { bias: f32('matmulBias', bias).buf });
      return out && be.wrap(out, p.batch * p.m * p.n, 'float32');
    },
    matmulBiasGelu: (a, b, p, bias) => {
      const n = p.batch * p.m * p.n, preGelu = be.runner.alloc(n);
      const out = epilogueMatmul('matmulBiasGelu', a, b, p, { bias: f32('matmulBiasGelu', bias).buf, preGelu });
      if (!out) { be.runner.release(preGelu); return null; }
      return { out: be.wrap(out, n, 'float32'), pre: be.wrap(preGelu, n, 'float32') };
    },
    matmulHalf: (a, b, p, bias) => halfOutMatmul(be, a, b, p, bias),
    matmulHalfGelu: (a, b, p, bias) => {
      const r = halfOutMatmulGelu(be, a, b, p, bias, true);
      return r && { out: r.out, pre: r.pre! };
    },
    matmulRowSums: (a, b, p) => {
      if (!p.transA || p.batch !== 1) return null;
      const rowSums = be.runner.alloc(p.m);
      const out = epilogueMatmul('matmulRowSums', a, b, p, { rowSums });
      if (!out) { be.runner.release(rowSums); return null; }
      return { out: be.wrap(out, p.m * p.n, 'float32'), rowSums: be.wrap(rowSums, p.m, 'float32') };
    },
    geluHalf: (x) => geluHalf(be, x, null),
    geluBackwardHalf: (x, g) => geluHalf(be, x, g),
    geluBackward: (x, g) => {
      const [sx, sg] = [f32('geluBackward', x), f32('geluBackward', g)];
      return be.wrap(be.run(FUSED_KERNELS.geluBack, [sx.size], [arg(sg.buf, sg.size), arg(sx.buf, sx.size)]), sx.size, 'float32');
    },
    softmax: (x, rows, cols) => {
      const s = f32('softmax', x);
      const lse = rowStat(s, rows, cols, MODES.rowStat.logsumexp);
      const y = be.run(FUSED_KERNELS.softmaxApply, [cols, rows, 1], [arg(s.buf, cols, rows), arg(lse, rows), MODES.softmaxApply.softmax]);
      be.runner.release(lse);
      return be.wrap(y, rows * cols, 'float32');
    },
    softmaxBackward: (y, gy, rows, cols) => softmaxBack(be, f32('softmaxBackward', y), f32('softmaxBackward', gy), rows, cols, MODES.rowDot.dot),
    logSoftmax: (x, rows, cols) => {
      const s = f32('logSoftmax', x);
      const lse = rowStat(s, rows, cols, MODES.rowStat.logsumexp);
      const y = be.run(FUSED_KERNELS.softmaxApply, [cols, rows, 1], [arg(s.buf, cols, rows), arg(lse, rows), MODES.softmaxApply.logSoftmax]);
      be.runner.release(lse);
      return be.wrap(y, rows * cols, 'float32');
    },
    logSoftmaxBackward: (y, gy, rows, cols) => softmaxBack(be, f32('logSoftmaxBackward', y), f32('logSoftmaxBackward', gy), rows, cols, MODES.rowDot.sum),
    layerNorm: (x, w, b, rows, cols, eps) => {
      const sx = f32('layerNorm', x), sw = f32('layerNorm', w), sb = f32('layerNorm', b);
      if (be.runner.layerNorm) {
        // one launch, a workgroup per row (WebGPU)
        const r = be.runner.layerNorm(sx.buf, sw.buf, sb.buf, rows, cols, eps);
        return { y: be.wrap(r.y, rows * cols, 'float32'), mean: be.wrap(r.mean, rows, 'float32'), rstd: be.wrap(r.rstd, rows, 'float32') };
      }
      const X = arg(sx.buf, cols, rows);
      const mean = be.run(FUSED_KERNELS.lnStat, [rows], [X, arg(sx.buf, 1), cols, eps, MODES.lnStat.mean]);
      const rstd = be.run(FUSED_KERNELS.lnStat, [rows], [X, arg(mean, rows), cols, eps, MODES.lnStat.rstd]);
      const y = be.run(FUSED_KERNELS.lnApply, [cols, rows, 1], [X, arg(mean, rows), arg(rstd, rows), arg(sw.buf, cols), arg(sb.buf, cols)]);
      return { y: be.wrap(y, rows * cols, 'float32'), mean: be.wrap(mean, rows, 'float32'), rstd: be.wrap(rstd, rows, 'float32') };
    },
    layerNormBackward: (x, w, mean, rstd, gy, rows, cols) => {
      const op = 'layerNormBackward';
      if (be.runner.layerNormBackward && cols <= LAYERNORM_MAX_COLS) {
        // one launch for gx and the blocks' partial sums, one for the sums of those over the blocks
        const r = be.runner.layerNormBackward(f32(op, x).buf, f32(op, w).buf, f32(op, mean).buf, f32(op, rstd).buf, f32(op, gy).buf, rows, cols);
        return { gx: be.wrap(r.gx, rows * cols, 'float32'), gw: be.wrap(r.gw, cols, 'float32'), gb: be.wrap(r.gb, cols, 'float32') };
      }
      const X = arg(f32(op, x).buf, cols, rows), W = arg(f32(op, w).buf, cols), M = arg(f32(op, mean).buf, rows),
        R = arg(f32(op, rstd).buf, rows), G = arg(f32(op, gy).buf, cols, rows);
      const s1 = be.run(FUSED_KERNELS.lnBackStat, [rows], [X, M, R, W, G, cols, MODES.lnBackStat.sumGw]);
      const s2 = be.run(FUSED_KERNELS.lnBackStat, [rows], [X, M, R, W, G, cols, MODES.lnBackStat.sumGwXhat]);
      const gx = be.run(FUSED_KERNELS.lnBackApply, [cols, rows, 1], [X, M, R, W, G, arg(s1, rows), arg(s2, rows), cols]);
      be.runner.release(s1);
      be.runner.release(s2);
      // column sums over rows go through the chunked reduce: one thread per column would
      // leave most of a GPU idle (768 threads looping over B*T rows)
      const gb = be.reduceBuf('sum', G.buf, 1, rows, cols);
      const gyx = be.run(FUSED_KERNELS.lnGyXhat, [cols, rows, 1], [X, M, R, G]);
      const gw = be.reduceBuf('sum', gyx, 1, rows, cols);
      be.runner.release(gyx);
      return { gx: be.wrap(gx, rows * cols, 'float32'), gw: be.wrap(gw, cols, 'float32'), gb: be.wrap(gb, cols, 'float32') };
    },
    crossEntropy: (logits, targets, rows, cols) => {
      const s = f32('crossEntropy', logits);
      const [t] = be.check('crossEntropy', targets);
      be.checkIndex('crossEntropy', t!, cols, 'target');
      const lse = be.runner.alloc(rows), loss = be.runner.alloc(rows);
      // over row chunks when the logits exceed one storage binding (GPT-2 at B=16: 3.3 GB)
      rowChunks(be, 'crossEntropy', rows, cols, (r0, rc, whole) => {
        if (be.runner.crossEntropyRows) {
          be.runner.crossEntropyRows({ buf: s.buf, offset: r0 * cols }, { buf: t!.buf, offset: r0 }, rc, cols, { buf: lse, offset: r0 }, { buf: loss, offset: r0 }, null);
          return;
        }
        const X = whole ? arg(s.buf, cols, rc) : { ...arg(s.buf, cols, rc), offset: r0 * cols };
        const T = whole ? arg(t!.buf, rc) : { ...arg(t!.buf, rc), offset: r0 };
        be.run(FUSED_KERNELS.rowStat, [rc], [X, cols, MODES.rowStat.logsumexp], { buf: lse, offset: r0 });
        const L = whole ? arg(lse, rc) : { ...arg(lse, rc), offset: r0 };
        be.run(FUSED_KERNELS.ceLoss, [rc], [X, L, T], { buf: loss, offset: r0 });
      });
      return { loss: be.wrap(loss, rows, 'float32'), lse: be.wrap(lse, rows, 'float32') };
    },
    crossEntropyBackward: (logits, targets, lse, gloss, rows, cols) => {
      const op = 'crossEntropyBackward';
      const [t] = be.check(op, targets);
      const x = f32(op, logits).buf, l = f32(op, lse).buf, gl = f32(op, gloss).buf;
      const g = be.runner.alloc(rows * cols);
      rowChunks(be, op, rows, cols, (r0, rc, whole) => {
        const v = (buf: DeviceBuffer, off: number, ...dims: number[]): BufferArg => (whole ? arg(buf, ...dims) : { ...arg(buf, ...dims), offset: off });
        be.run(FUSED_KERNELS.ceBack, [cols, rc, 1], [v(x, r0 * cols, cols, rc), v(l, r0, rc), v(t!.buf, r0, rc), v(gl, r0, rc)],
          { buf: g, offset: r0 * cols });
      });
      return be.wrap(g, rows * cols, 'float32');
    },
    columnSums: (x, rows, cols) => columnSums(be, x, rows, cols),
    linearCrossEntropy: (x, w, targets, rows, cols, classes, grad, lower) => {
      const op = 'linearCrossEntropy';
      const [t] = be.check(op, targets);
      be.checkIndex(op, t!, classes, 'target');
      return linearCrossEntropy(be, f32(op, x), f32(op, w), t!, rows, cols, classes, grad, lower);
    },
    ...(be.runner.flash ? {
      attentionPacked: (qkv, B, T, nh, hs, scale) => attentionPacked(be, f32('attentionPacked', qkv), B, T, nh, hs, scale),
      attentionPackedBackward: (qkv, o, lse, go, B, T, nh, hs, scale) => {
        const op = 'attentionPackedBackward';
        return attentionPackedBackward(be, f32(op, qkv), f32(op, o), f32(op, lse), f32(op, go), B, T, nh, hs, scale);
      },
    } : {}),
    attention: (q, k, v, bh, t, s, d, scale, causal) => attention(be, f32('attention', q), f32('attention', k), f32('attention', v), bh, t, s, d, scale, causal),
    attentionBackward: (q, k, v, o, lse, go, bh, t, s, d, scale, causal) => {
      const op = 'attentionBackward';
      return attentionBackward(be, f32(op, q), f32(op, k), f32(op, v), f32(op, o), f32(op, lse), f32(op, go), bh, t, s, d, scale, causal);
    },
    adamw: (ps, gs, ms, vs, h) => {
      const [P, G, M, V] = [ps, gs, ms, vs].map((xs) => xs.map((x) => f32('adamw', x)));
      // the whole group in a launch per span of packed buffers (WebGPU), else one per parameter
      const spans = be.runner.adamw ? [P!, G!, M!, V!].map((xs, j) => packed(be, xs, j === 1 ? 'pool' : 'discard')) : [];
      const [sp, sg, sm, sv] = spans;
      if (sp && sg && sm && sv && sp.every((_, j) => !aliased(be, [sp[j]!, sg[j]!, sm[j]!, sv[j]!]))) {
        sp.forEach((span, j) => be.runner.adamw!(span, sg[j]!, sm[j]!, sv[j]!, span.length, h));
        return;
      }
      P!.forEach((p, i) => adamw(be, p, G![i]!, M![i]!, V![i]!, h));
    },
    addInPlace: (into, x) => inPlace(be, 'add', f32('addInPlace', into), f32('addInPlace', x)),
    scaleInPlace: (xs, factor) => {
      const X = xs.map((x) => f32('scaleInPlace', x)), F = f32('scaleInPlace', factor);
      const spans = be.runner.inPlace ? packed(be, X, 'pool') : null;
      if (spans && !spans.some((s) => aliased(be, [s, F.buf]))) for (const s of spans) be.runner.inPlace!('scale', s, F.buf, s.length);
      else for (const x of X) inPlace(be, 'scale', x, F);
    },
    sumSquares: (xs) => {
      // partial sums side by side in one buffer (each run starting 64-aligned, as binding offsets
      // must), then one reduction; a run per span of packed buffers (WebGPU), else per storage
      const S = xs.map((x) => f32('sumSquares', x));
      const sources = packed(be, S, 'pool')?.map((buf) => ({ buf, size: buf.length })) ?? S.map((s) => ({ buf: s.buf, size: s.size }));
      const chunk = 4096;
      const runs: { buf: DeviceBuffer; size: number; groups: number; offset: number }[] = [];
      let total = 0;
      for (const { buf, size } of sources) {
        if (size === 0) continue;
        const groups = Math.ceil(size / chunk);
        runs.push({ buf, size, groups, offset: total });
        total += Math.ceil(groups / 64) * 64;
      }
      if (!runs.length) return be.wrap(be.run(KERNELS.fill, [1], [0]), 1, 'float32');
      const partials = be.run(KERNELS.fill, [total], [0]); // the gaps between runs sum as zeros
      for (const r of runs) {
        be.run(KERNELS.sumSquares, [r.groups], [arg(r.buf, chunk, r.groups), r.size, chunk], { buf: partials, offset: r.offset });
      }
      const out = be.reduceBuf('sum', partials, 1, total, 1);
      be.runner.release(partials);
      return be.wrap(out, 1, 'float32');
    },
  };
}

/**
 * The storages' buffers packed side by side (the runner's pack): their cells now point at their
 * slots, and the spans are what a multi-tensor kernel runs over, a launch each. Null where the
 * runner cannot pack (gpu.js's cpu mode), a storage exceeds a binding, a storage is listed twice,
 * or there is only one (packing would copy it for nothing).
 */
function packed(be: GpuKernelHost, xs: readonly GpuStorage[], old: 'pool' | 'discard'): DeviceBuffer[] | null {
  if (!be.runner.pack || xs.length < 2 || new Set(xs).size !== xs.length) return null;
  const r = be.runner.pack(xs.map((x) => x.buf), xs.map((x) => x.size));
  if (!r) return null;
  const moved: DeviceBuffer[] = [];
  xs.forEach((x, i) => {
    if (r.slots[i] === x.buf) return;
    moved.push(x.buf);
    x.cell.buf = r.slots[i]!;
  });
  // (after the copies recorded from them) gradients' buffers back to the pool, as the next
  // backward makes gradients of the same sizes; parameters' and moments' freed for good
  if (!moved.length) return r.spans;
  if (old === 'discard' && be.runner.discard) be.runner.discard(moved);
  else for (const b of moved) be.runner.release(b);
  return r.spans;
}

/** Whether any two of the buffers share device memory (one launch may not write one and read another). */
function aliased(be: GpuKernelHost, bufs: readonly DeviceBuffer[]): boolean {
  return bufs.some((a, i) => bufs.some((b, j) => j > i && (a === b || (be.runner.aliases?.(a, b) ?? false))));
}

/**
 * Logits per row chunk of linearCrossEntropy, at most: 512 MB of float32 (GPT-2: 2624 rows, so 7
 * chunks at B=16). Their gradient is written over them, so this is the whole transient; a larger
 * chunk would save launches (5 a chunk) for memory.
 */
const LCE_CHUNK_ELEMENTS = 2 ** 27;

/** GELU, or with g its backward, of a half x (g of its type and size) in one launch; null where the runner has no such kernel or x is past one binding. */
function geluHalf(be: GpuKernelHost, x: Storage, g: Storage | null): Storage | null {
  const [sx, sg] = be.check('gelu', x, ...(g ? [g] : []));
  const dtype = sx!.dtype;
  if ((dtype !== 'float16' && dtype !== 'bfloat16') || !be.runner.geluHalf || Math.ceil(sx!.size / 2) > be.runner.maxBindingElements) return null;
  if (sg && (sg.dtype !== dtype || sg.size !== sx!.size)) return null;
  return be.wrap(be.runner.geluHalf(sx!.buf, sg?.buf ?? null, sx!.size, dtype), sx!.size, dtype);
}

/** Packed float16 ones [ONES_ROWS, rows] per row count, made once (1 MB for GPT-2 at B=16). */
const onesByRows = new WeakMap<GpuKernelHost, Map<number, DeviceBuffer>>();
const ONES_ROWS = 32; // the tensor-core kernel's tile: its M

/**
 * The column sums of a float16 x [rows, cols] on tensor cores, as the first row of ones x: 32
 * times the flops of the sums (a 2 * 32 * rows * cols product, 0.3 ms for all of GPT-2's biases
 * at B=16), read once as halves, accumulated in float32, where a reduce would widen x first and
 * walk each column on one thread. Null off float16 or where the product does not tile.
 */
function columnSums(be: GpuKernelHost, x: Storage, rows: number, cols: number): Storage | null {
  const [s] = be.check('columnSums', x);
  const p = { batch: 1, m: ONES_ROWS, n: cols, k: rows, transA: false, transB: false, aBatchStride: 0, bBatchStride: 0 };
  if (s!.dtype !== 'float16' || !be.runner.matmulTensor || !be.runner.tensorMatmul?.(p) || rows * cols / 2 > be.runner.maxBindingElements) return null;
  let cache = onesByRows.get(be);
  if (!cache) onesByRows.set(be, cache = new Map());
  let ones = cache.get(rows);
  if (!ones) {
    // (device buffers, not storages: no scope frees them)
    const f = be.run(KERNELS.fill, [ONES_ROWS * rows], [1]);
    ones = be.castBuf(f, ONES_ROWS * rows, CAST_CODES.f32ToF16);
    be.runner.release(f);
    cache.set(rows, ones);
  }
  return be.wrap(be.runner.matmulTensor({ buf: ones }, { buf: s!.buf }, p), cols, 'float32');
}

/**
 * The mean cross-entropy of x w^T over chunks of 64-aligned rows, so the [rows, classes] logits
 * never exist (GPT-2 at B=16: 3.3 GB, and as much again for their gradient): per chunk the
 * logits, their logsumexp and loss, and with `grad` their gradient (softmax - onehot) / rows,
 * which goes straight into gx's rows and is accumulated into gw. With `lower` (autocast), values are
 * rounded to it where torch.autocast stores them: x and w (rounded copies), each chunk's logits and
 * their gradient (by the cross-entropy kernel as it reads and writes them, where the runner has
 * it), gx's rows, and gw once summed over every chunk (in float32 until then).
 */
export function linearCrossEntropy(be: GpuKernelHost, x: GpuStorage, w: GpuStorage, t: GpuStorage, rows: number, cols: number, classes: number,
  grad: boolean, lower: 'float16' | 'bfloat16' | null): { loss: Storage; gx: Storage | null; gw: Storage | null } {
  const cap = Math.min(LCE_CHUNK_ELEMENTS, be.runner.maxBindingElements);
  const rc = Math.max(64, Math.floor(cap / Math.max(1, classes) / 64) * 64);
  if (rc * classes > be.runner.maxBindingElements) {
    throw new Error(`linearCrossEntropy: 64 rows of ${classes} logits exceed the device's storage binding limit (${be.runner.maxBindingElements} floats)`);
  }
  // float32 values rounded to `lower` (a new buffer; the input is released when `owned`)
  const rounded = (buf: DeviceBuffer, n: number, owned: boolean): DeviceBuffer => {
    if (!lower) return buf;
    const half = be.castBuf(buf, n, lower === 'float16' ? CAST_CODES.f32ToF16 : CAST_CODES.f32ToBf16);
    const out = be.castBuf(half, n, lower === 'float16' ? CAST_CODES.f16ToF32 : CAST_CODES.bf16ToF32);
    be.runner.release(half);
    if (owned) be.runner.release(buf);
    return out;
  };
  // float16 on tensor cores where the device has them and every product tiles (tensor-core-wgsl.ts):
  // x and w packed as halves (the values the rounded copies would hold), the products accumulated
  // in float32, each chunk's gradient packed once the kernel has rounded it
  const last = rows % rc || rc;
  const onTensorCores = lower === 'float16' && be.runner.crossEntropyRows !== undefined && be.runner.matmulTensor !== undefined && cols % 2 === 0 &&
    [rc, last].every((n) => [[n, classes, cols], [n, cols, classes], [classes, cols, n]].every(([m, nn, k]) =>
      be.runner.tensorMatmul?.({ batch: 1, m: m!, n: nn!, k: k!, transA: false, transB: false, aBatchStride: 0, bBatchStride: 0 })));
  const [xh, wh] = onTensorCores ? [be.castBuf(x.buf, rows * cols, CAST_CODES.f32ToF16), be.castBuf(w.buf, classes * cols, CAST_CODES.f32ToF16)] : [null, null];
  const xb = onTensorCores ? x.buf : rounded(x.buf, rows * cols, false), wb = onTensorCores ? w.buf : rounded(w.buf, classes * cols, false);
  const lossRows = be.runner.alloc(rows), lse = be.runner.alloc(rows);
  const gx = grad ? be.runner.alloc(rows * cols) : null;
  let gw: DeviceBuffer | null = null;
  // each chunk's g^T x [classes, cols] summed into gw (the first is gw)
  const addToGw = (part: DeviceBuffer): void => {
    if (!gw) { gw = part; return; }
    gw = updateBuffer(be, 'add', gw, part, classes * cols);
    be.runner.release(part);
  };
  const inv = be.run(KERNELS.fill, [Math.min(rc, rows)], [1 / rows]); // each row's share of the mean's gradient
  const view = (buf: DeviceBuffer, offset: number, ...dims: number[]): BufferArg => (offset === 0 ? arg(buf, ...dims) : { ...arg(buf, ...dims), offset });
  for (let r0 = 0; r0 < rows; r0 += rc) {
    const n = Math.min(rc, rows - r0);
    const dims = { batch: 1, m: n, n: classes, k: cols, transA: false, transB: true, aBatchStride: 0, bBatchStride: 0 };
    const logits = xh && wh ? be.runner.matmulTensor!({ buf: xh, offset: (r0 * cols) / 2 }, { buf: wh }, dims)
      : matmulView(be, { buf: xb, offset: r0 * cols }, { buf: wb, offset: undefined }, dims); // [n, classes]
    // lse and loss per row, and with gx the logits' gradient (softmax - onehot) / rows: in one
    // launch that writes it over the logits where the runner has the kernel (rounding the logits
    // as it reads them, and the gradient as it writes it), else three gpu.js kernels
    let g: DeviceBuffer | null = null;
    const fusedRows = be.runner.crossEntropyRows !== undefined;
    const z = fusedRows ? logits : rounded(logits, n * classes, true);
    if (fusedRows) {
      be.runner.crossEntropyRows!({ buf: z, offset: 0 }, { buf: t.buf, offset: r0 }, n, classes, { buf: lse, offset: r0 }, { buf: lossRows, offset: r0 },
        gx ? 1 / rows : null, lower ?? 'none');
      if (gx) g = z;
    } else {
      const Z = arg(z, classes, n);
      be.run(FUSED_KERNELS.rowStat, [n], [Z, classes, MODES.rowStat.logsumexp], { buf: lse, offset: r0 });
      const L = view(lse, r0, n), T = view(t.buf, r0, n);
      be.run(FUSED_KERNELS.ceLoss, [n], [Z, L, T], { buf: lossRows, offset: r0 });
      if (gx) g = be.run(FUSED_KERNELS.ceBack, [classes, n, 1], [Z, L, T, arg(inv, n)]);
    }
    if (gx && g && xh && wh) {
      const gh = be.castBuf(g, n * classes, CAST_CODES.f32ToF16); // exact: the kernel wrote float16 values
      be.runner.matmulTensor!({ buf: gh }, { buf: wh }, { batch: 1, m: n, n: cols, k: classes, transA: false, transB: false, aBatchStride: 0, bBatchStride: 0 },
        { buf: gx, offset: r0 * cols });
      const part = be.runner.matmulTensor!({ buf: gh }, { buf: xh, offset: (r0 * cols) / 2 },
        { batch: 1, m: classes, n: cols, k: n, transA: true, transB: false, aBatchStride: 0, bBatchStride: 0 }); // g^T x: [classes, cols]
      be.runner.release(gh);
      addToGw(part);
    } else if (gx && g) {
      const gr = g === z && fusedRows ? g : rounded(g, n * classes, g !== z); // [n, classes] (z itself is released below)
      matmulView(be, { buf: gr, offset: undefined }, { buf: wb, offset: undefined },
        { batch: 1, m: n, n: cols, k: classes, transA: false, transB: false, aBatchStride: 0, bBatchStride: 0 }, { buf: gx, offset: r0 * cols });
      const part = matmulView(be, { buf: gr, offset: undefined }, { buf: xb, offset: r0 * cols },
        { batch: 1, m: classes, n: cols, k: n, transA: true, transB: false, aBatchStride: 0, bBatchStride: 0 }); // g^T x: [classes, cols]
      if (gr !== z) be.runner.release(gr);
      addToGw(part);
    }
    be.runner.release(z);
  }
  const total = be.reduceBuf('sum', lossRows, 1, rows, 1);
  const loss = be.run(KERNELS.binary1, [1], [arg(total, 1), arg(inv, 1), 1, 1, BINARY_CODES.mul]);
  for (const b of [lossRows, lse, total, inv]) be.runner.release(b);
  for (const b of [xh, wh]) if (b) be.runner.release(b);
  if (xb !== x.buf) be.runner.release(xb);
  if (wb !== w.buf) be.runner.release(wb);
  return { loss: be.wrap(loss, 1, 'float32'), gx: gx && be.wrap(rounded(gx, rows * cols, true), rows * cols, 'float32'),
    gw: gw && be.wrap(rounded(gw, classes * cols, true), classes * cols, 'float32') };
}

/** A contiguous [bh, rows, d] operand as a flash-attention view (one head per batch entry). */
const flat = (rows: number, d: number): AttnView => ({ off: 0, sB: rows * d, sH: 0, sT: d });
const flatViews = (bh: number, t: number, s: number, d: number, scale: number, causal: boolean): FlashArgs =>
  ({ B: bh, nh: 1, T: t, S: s, hs: d, scale, causal, q: flat(t, d), k: flat(s, d), v: flat(s, d) });

/** GPT's packed qkv [B, T, 3C]: q, k, v at column offsets 0, C, 2C, head h at h*hs; o [B, T, C]. */
function packedViews(B: number, T: number, nh: number, hs: number, scale: number): FlashArgs {
  const C = nh * hs, row = 3 * C;
  const part = (j: number): AttnView => ({ off: j * C, sB: T * row, sH: hs, sT: row });
  return { B, nh, T, S: T, hs, scale, causal: true, q: part(0), k: part(1), v: part(2), o: { off: 0, sB: T * C, sH: hs, sT: C } };
}

export function attentionPacked(be: GpuKernelHost, qkv: GpuStorage, B: number, T: number, nh: number, hs: number, scale: number): { o: Storage; lse: Storage } {
  const n = B * T * nh * hs;
  const o = be.runner.alloc(n), lse = be.runner.alloc(B * nh * T);
  be.runner.flash!('flashFwd', packedViews(B, T, nh, hs, scale), [qkv.buf, qkv.buf, qkv.buf, o, lse]);
  return { o: be.wrap(o, n, 'float32'), lse: be.wrap(lse, B * nh * T, 'float32') };
}

export function attentionPackedBackward(be: GpuKernelHost, qkv: GpuStorage, o: GpuStorage, lse: GpuStorage, go: GpuStorage,
  B: number, T: number, nh: number, hs: number, scale: number): Storage {
  const a = { ...packedViews(B, T, nh, hs, scale), dO: packedViews(B, T, nh, hs, scale).o! };
  const g = be.runner.alloc(qkv.size), q = qkv.buf;
  const { size, chunks } = dsChunks(be, B, nh, T, T);
  const dS = be.runner.alloc(size);
  for (const c of chunks) {
    be.runner.flash!('flashBwdKV', { ...a, ...c, g: a.k, g2: a.v, mode: c.qa > 0 ? 7 : 3 }, [q, q, q, o.buf, go.buf, lse.buf, dS, g]);
    be.runner.flash!('flashBwdQ', { ...a, ...c, g: a.q }, [q, dS, g]);
  }
  be.runner.release(dS);
  return be.wrap(g, qkv.size, 'float32');
}

/** At most this many floats of dS are held at once by the flash backward (1 GiB: GPT-2's heads at B=16, T=1024 in one chunk). */
const DS_CHUNK_ELEMENTS = 2 ** 28;

/**
 * The flash backward's chunks (flash-wgsl.ts): as many whole batch entries as their dS fits
 * DS_CHUNK_ELEMENTS and one storage binding, or, where one entry's does not, one entry's queries
 * in ranges. `size`: the dS buffer's floats.
 */
function dsChunks(be: GpuKernelHost, B: number, nh: number, T: number, S: number): { size: number; chunks: { b0: number; bn: number; qa: number; qb: number }[] } {
  // (a multiple of 64 floats: the pool rounds buffers up to 256 bytes)
  const cap = Math.min(DS_CHUNK_ELEMENTS, Math.floor(be.runner.maxBindingElements / 64) * 64), entry = nh * T * S;
  const chunks: { b0: number; bn: number; qa: number; qb: number }[] = [];
  if (entry <= cap) {
    const bn = Math.min(B, Math.floor(cap / entry));
    for (let b0 = 0; b0 < B; b0 += bn) chunks.push({ b0, bn: Math.min(bn, B - b0), qa: 0, qb: T });
    return { size: bn * entry, chunks };
  }
  const rows = Math.floor(cap / (nh * S));
  if (rows < 1) throw new Error(`attention backward: ${nh} heads of one query over ${S} keys need ${nh * S} floats of dS, over the device's limit of ${cap} a binding`);
  for (let b0 = 0; b0 < B; b0++) for (let qa = 0; qa < T; qa += rows) chunks.push({ b0, bn: 1, qa, qb: Math.min(T, qa + rows) });
  return { size: nh * rows * S, chunks };
}

/**
 * Attention without keeping the [bh, t, s] probabilities: scores by the matmul kernel, a
 * masked row logsumexp, P, then P v; the backward recomputes P from q, k and the saved
 * logsumexp (flash attention's trade: a second q k^T instead of bh*t*s floats per layer
 * held from the forward to the backward — 400 MB per GPT-2 layer at B=8).
 */
export function attention(be: GpuKernelHost, q: GpuStorage, k: GpuStorage, v: GpuStorage, bh: number, t: number, s: number, d: number, scale: number, causal: boolean): { o: Storage; lse: Storage } {
  if (be.runner.flash && d <= FLASH_HEAD_MAX) {
    const o = be.runner.alloc(bh * t * d), lse = be.runner.alloc(bh * t);
    be.runner.flash('flashFwd', { ...flatViews(bh, t, s, d, scale, causal), o: flat(t, d) }, [q.buf, k.buf, v.buf, o, lse]);
    return { o: be.wrap(o, bh * t * d, 'float32'), lse: be.wrap(lse, bh * t, 'float32') };
  }
  const { P, lse } = attnProbs(be, q.buf, k.buf, bh, t, s, d, scale, causal);
  const o = matmulView(be, { buf: P, offset: undefined }, { buf: v.buf, offset: undefined },
    { batch: bh, m: t, n: d, k: s, transA: false, transB: false, aBatchStride: t * s, bBatchStride: s * d });
  be.runner.release(P);
  return { o: be.wrap(o, bh * t * d, 'float32'), lse: be.wrap(lse, bh * t, 'float32') };
}

export function attnProbs(be: GpuKernelHost, q: DeviceBuffer, k: DeviceBuffer, bh: number, t: number, s: number, d: number, scale: number, causal: boolean,
  lseIn?: DeviceBuffer): { P: DeviceBuffer; lse: DeviceBuffer } {
  const S = matmulView(be, { buf: q, offset: undefined }, { buf: k, offset: undefined },
    { batch: bh, m: t, n: s, k: d, transA: false, transB: true, aBatchStride: t * d, bBatchStride: s * d });
  const rows = bh * t, c = causal ? MODES.causal.on : MODES.causal.off;
  const lse = lseIn ?? be.run(FUSED_KERNELS.attnStat, [rows], [arg(S, s, rows), t, s, scale, c]);
  const P = be.run(FUSED_KERNELS.attnProb, [s, rows, 1], [arg(S, s, rows), arg(lse, rows), t, s, scale, c]);
  be.runner.release(S);
  return { P, lse };
}

export function attentionBackward(be: GpuKernelHost, q: GpuStorage, k: GpuStorage, v: GpuStorage, o: GpuStorage, lse: GpuStorage, go: GpuStorage,
  bh: number, t: number, s: number, d: number, scale: number, causal: boolean): { gq: Storage; gk: Storage; gv: Storage } {
  const rows = bh * t;
  if (be.runner.flash && d <= FLASH_HEAD_MAX) {
    const gq = be.runner.alloc(rows * d), gk = be.runner.alloc(bh * s * d), gv = be.runner.alloc(bh * s * d);
    const a = { ...flatViews(bh, t, s, d, scale, causal), o: flat(t, d), dO: flat(t, d) };
    const { size, chunks } = dsChunks(be, bh, 1, t, s);
    const dS = be.runner.alloc(size), ops = [q.buf, k.buf, v.buf, o.buf, go.buf, lse.buf, dS];
    for (const c of chunks) {
      const more = c.qa > 0 ? 4 : 0;
      // dK (and dS), then dV: separate buffers cannot share the kernel's one writable gradient binding
      be.runner.flash('flashBwdKV', { ...a, ...c, g: flat(s, d), mode: 1 | more }, [...ops, gk]);
      be.runner.flash('flashBwdKV', { ...a, ...c, g2: flat(s, d), mode: 2 | more }, [...ops, gv]);
      be.runner.flash('flashBwdQ', { ...a, ...c, g: flat(t, d) }, [k.buf, dS, gq]);
    }
    be.runner.release(dS);
    return { gq: be.wrap(gq, rows * d, 'float32'), gk: be.wrap(gk, bh * s * d, 'float32'), gv: be.wrap(gv, bh * s * d, 'float32') };
  }
  const { P } = attnProbs(be, q.buf, k.buf, bh, t, s, d, scale, causal, lse.buf);
  const mm = (a: DeviceBuffer, b: DeviceBuffer, m: number, n: number, kk: number, transA: boolean, transB: boolean): DeviceBuffer =>
    matmulView(be, { buf: a, offset: undefined }, { buf: b, offset: undefined },
      { batch: bh, m, n, k: kk, transA, transB, aBatchStride: m * kk, bBatchStride: kk * n });
  const gv = mm(P, go.buf, s, d, t, true, false);              // P^T dO       [bh, s, d]
  const dP = mm(go.buf, v.buf, t, s, d, false, true);          // dO v^T       [bh, t, s]
  const D = be.run(FUSED_KERNELS.rowDot, [rows], [arg(o.buf, d, rows), arg(go.buf, d, rows), d, MODES.rowDot.dot]); // rowsum(dO * O)
  const dS = be.run(FUSED_KERNELS.attnGrad, [s, rows, 1], [arg(P, s, rows), arg(dP, s, rows), arg(D, rows), scale]);
  for (const b of [P, dP, D]) be.runner.release(b);
  const gq = mm(dS, k.buf, t, d, s, false, false);             // dS k         [bh, t, d]
  const gk = mm(dS, q.buf, s, d, t, true, false);              // dS^T q       [bh, s, d]
  be.runner.release(dS);
  return { gq: be.wrap(gq, rows * d, 'float32'), gk: be.wrap(gk, bh * s * d, 'float32'), gv: be.wrap(gv, bh * s * d, 'float32') };
}

/**
 * Call fn over row chunks [r0, r0 + rc) of a [rows, cols] tensor so that no binding
 * exceeds the device limit; one call with whole = true when it all fits.
 */
export function rowChunks(be: GpuKernelHost, op: string, rows: number, cols: number, fn: (r0: number, rc: number, whole: boolean) => void): void {
  const max = be.runner.maxBindingElements;
  if (rows * cols <= max) { fn(0, rows, true); return; }
  const rc = Math.floor(max / Math.max(1, cols) / 64) * 64;
  if (rc < 64) throw new Error(`${op}: rows of ${cols} values exceed the device's storage binding limit (${max} floats) 64 rows at a time`);
  for (let r0 = 0; r0 < rows; r0 += rc) fn(r0, Math.min(rc, rows - r0), false);
}

export function softmaxBack(be: GpuKernelHost, y: GpuStorage, gy: GpuStorage, rows: number, cols: number, mode: number): Storage {
  const Y = arg(y.buf, cols, rows), G = arg(gy.buf, cols, rows);
  const dot = be.run(FUSED_KERNELS.rowDot, [rows], [Y, G, cols, mode]);
  const gx = be.run(FUSED_KERNELS.softmaxBack, [cols, rows, 1], [Y, G, arg(dot, rows), mode]);
  be.runner.release(dot);
  return be.wrap(gx, rows * cols, 'float32');
}

/**
 * x += y or x *= y[0] over n values; returns the buffer that holds the result: x itself (one WGSL
 * launch) where the runner writes in place, else (gpu.js's cpu mode, or y aliasing x) a new buffer
 * from the portable kernels, x released.
 */
function updateBuffer(be: GpuKernelHost, mode: 'add' | 'scale', x: DeviceBuffer, y: DeviceBuffer, n: number): DeviceBuffer {
  if (n === 0) return x;
  if (be.runner.inPlace && !aliased(be, [x, y])) { be.runner.inPlace(mode, x, y, n); return x; }
  const next = mode === 'add'
    ? be.run(KERNELS.binary1, [n], [arg(x, n), arg(y, n), 1, 1, BINARY_CODES.add])
    : be.run(KERNELS.binary1, [n], [arg(x, n), arg(y, 1), 1, 0, BINARY_CODES.mul]);
  be.runner.release(x);
  return next;
}

/** The in-place contract on storages: x's storage holds the result (its buffer swapped where needed, as adamw's portable path). */
function inPlace(be: GpuKernelHost, mode: 'add' | 'scale', x: GpuStorage, y: GpuStorage): void {
  x.cell.buf = updateBuffer(be, mode, x.buf, y.buf, x.size);
}

/**
 * In place, as the contract asks: one launch where the runner has a fused kernel (WebGPU),
 * else the portable kernels write new buffers that replace p, m and v's.
 */
export function adamw(be: GpuKernelHost, p: GpuStorage, g: GpuStorage, m: GpuStorage, v: GpuStorage, h: AdamWParams): void {
  const n = p.size;
  if (n === 0) return;
  // (one buffer bound both read-write and read-only in one launch is invalid: aliased
  // arguments, which only tests make, take the portable path)
  if (be.runner.adamw && !aliased(be, [p.buf, g.buf, m.buf, v.buf])) { be.runner.adamw(p.buf, g.buf, m.buf, v.buf, n, h); return; }
  const m2 = be.run(FUSED_KERNELS.adamMoment, [n], [arg(m.buf, n), arg(g.buf, n), h.beta1, MODES.adamMoment.first]);
  const v2 = be.run(FUSED_KERNELS.adamMoment, [n], [arg(v.buf, n), arg(g.buf, n), h.beta2, MODES.adamMoment.second]);
  const bc1 = 1 - h.beta1 ** h.step, bc2 = 1 - h.beta2 ** h.step;
  const p2 = be.run(FUSED_KERNELS.adamParam, [n], [arg(p.buf, n), arg(m2, n), arg(v2, n), h.lr, h.weightDecay, bc1, bc2, h.eps]);
  for (const [s, b] of [[m, m2], [v, v2], [p, p2]] as const) {
    be.runner.release(s.buf);
    s.cell.buf = b;
  }
}
