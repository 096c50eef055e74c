// Matmul on the gpu backend: the runner's tiled WGSL kernel (or the portable gpu.js one if that
// failed its self-test), and row chunking past the device's storage-binding limit (~2 GiB:
// GPT-2's logits at B=16 are 3.3 GB), 64-row aligned for WebGPU's 256-byte binding offsets.

import type { MatmulParams, Storage } from '../../backend.js';
import type { GpuKernelHost } from './kernel-host.js';
import { BINARY_CODES, KERNELS } from './kernels.js';
import { arg, type BufferArg, type DeviceBuffer } from './runner.js';

/** The Backend contract's matmul: one kernel when every operand fits a binding, else row or reduction chunks. */
export function matmul(be: GpuKernelHost, a: Storage, b: Storage, p: MatmulParams): Storage {
  const [sa, sb] = be.check('matmul', a, b);
  const { batch, m, n, k, transA, transB, aBatchStride, bBatchStride } = p;
  const what = `matmul [${batch}, ${m}, ${k}] @ [${k}, ${n}] (transA ${transA}, transB ${transB}, batch strides ${aBatchStride}, ${bBatchStride})`;
  if ((aBatchStride !== 0 && aBatchStride !== m * k) || (bBatchStride !== 0 && bBatchStride !== k * n)) {
    throw new Error(`${what}: the gpu backend takes batch strides of 0 (broadcast) or the matrix size (${m * k}, ${k * n}); make the operand contiguous first`);
  }
  if (batch * m * n === 0 || k === 0) return be.full(batch * m * n, sa!.dtype, 0);
  const max = be.runner.maxBindingElements;
  const A = sa!.buf, B = sb!.buf;
  const fits = (len: number): boolean => len <= max;
  const aLen = (aBatchStride ? batch : 1) * m * k, bLen = (bBatchStride ? batch : 1) * k * n;
  if (fits(aLen) && fits(bLen) && fits(batch * m * n)) {
    return be.wrap(matmulView(be, { buf: A, offset: undefined }, { buf: B, offset: undefined }, p), batch * m * n, sa!.dtype);
  }
  // Above one storage binding (~2 GiB; GPT-2's logits at B=16 are 3.3 GB): run over chunks
  // whose rows are contiguous in memory, 64-row aligned for WebGPU's 256-byte offsets.
  const too = (): Error => new Error(`${what}: an operand is over the device's storage binding limit (${max} floats) ` +
    'in a layout the gpu backend cannot split into row chunks; use a smaller batch');
  if (batch !== 1) throw too();
  if (!transA && fits(bLen)) {
    // rows of A and of C: C[r0:r1] = A[r0:r1] @ B
    const rc = Math.floor(max / Math.max(k, n) / 64) * 64;
    if (rc < 64) throw too();
    const out = be.runner.alloc(m * n);
    for (let r0 = 0; r0 < m; r0 += rc) {
      const rows = Math.min(rc, m - r0);
      matmulView(be, { buf: A, offset: r0 * k }, { buf: B, offset: undefined }, { ...p, m: rows }, { buf: out, offset: r0 * n });
    }
    return be.wrap(out, m * n, sa!.dtype);
  }
  if (transA && !transB && fits(m * n)) {
    // split the reduction: A is stored [k, m] and B [k, n], so k-chunks are row blocks of both
    const kc = Math.floor(max / Math.max(m, n) / 64) * 64;
    if (kc < 64) throw too();
    let acc: DeviceBuffer | null = null;
    for (let k0 = 0; k0 < k; k0 += kc) {
      const ks = Math.min(kc, k - k0);
      const part = matmulView(be, { buf: A, offset: k0 * m }, { buf: B, offset: k0 * n }, { ...p, k: ks });
      if (acc) {
        const sum = be.run(KERNELS.binary1, [m * n], [arg(acc, m * n), arg(part, m * n), 1, 1, BINARY_CODES.add]);
        be.runner.release(acc);
        be.runner.release(part);
        acc = sum;
      } else acc = part;
    }
    return be.wrap(acc!, m * n, sa!.dtype);
  }
  throw too();
}

/**
 * Whether the runner's 128x128 kernel (and so its epilogues and half operands) takes this product
 * with every operand bound whole: the fast matmul on, a layout it takes, batch strides of 0 or the
 * matrix size, and each operand (`perWord` values to a 32-bit word: 2 for packed halves) and the
 * output within one binding.
 */
export function wideWhole(be: GpuKernelHost, p: MatmulParams, perWord = 1): boolean {
  const { batch, m, n, k, aBatchStride, bBatchStride } = p;
  if (!be.runner.matmul || !be.fastMatmul || !be.runner.wideMatmul?.(p) || batch * m * n === 0 || k === 0) return false;
  if ((aBatchStride !== 0 && aBatchStride !== m * k) || (bBatchStride !== 0 && bBatchStride !== k * n)) return false;
  const max = be.runner.maxBindingElements;
  return ((aBatchStride ? batch : 1) * m * k) / perWord <= max && ((bBatchStride ? batch : 1) * k * n) / perWord <= max && batch * m * n <= max;
}

/**
 * Two packed half operands of one dtype straight into the wide kernel, which widens them as it
 * loads its tiles (no cast launches, half the bytes read); null where that kernel does not take
 * this product (layout, strides, sizes past one binding, or the fast matmul switched off).
 */
export function halfMatmul(be: GpuKernelHost, a: Storage, b: Storage, p: MatmulParams): Storage | null {
  const [sa, sb] = be.check('matmul', a, b);
  const { batch, m, n } = p;
  if (sa!.dtype !== sb!.dtype || !wideWhole(be, p, 2)) return null;
  // float16 on tensor cores where the device has them and the shape tiles (tensor-core-wgsl.ts)
  if (sa!.dtype === 'float16' && be.runner.matmulTensor && be.runner.tensorMatmul?.(p)) {
    return be.wrap(be.runner.matmulTensor({ buf: sa!.buf }, { buf: sb!.buf }, p), batch * m * n, 'float32');
  }
  const out = be.runner.matmul!({ buf: sa!.buf, offset: undefined }, { buf: sb!.buf, offset: undefined }, p, undefined, undefined, sa!.dtype === 'bfloat16' ? 'bf16' : 'f16');
  return be.wrap(out, batch * m * n, 'float32');
}

/**
 * Two packed half operands of one dtype, and a bias of it or none, into one matmul that rounds
 * the result to that dtype as it stores it: an autocast linear layer's product, bias and narrowing
 * in one launch (the op would add the bias and cast after the product). float16 on tensor cores
 * where the device has them and the shape tiles, else the wide kernel; null where neither takes it.
 */
export function halfOutMatmul(be: GpuKernelHost, a: Storage, b: Storage, p: MatmulParams, bias: Storage | null): Storage | null {
  return halfOutMatmulGelu(be, a, b, p, bias, false)?.out ?? null;
}

/**
 * halfOutMatmul, and with `gelu` GELU of its result from the same launch: `out` GELU of the
 * rounded result, rounded again (torch's GELU on the half tensor), `pre` the rounded result.
 */
export function halfOutMatmulGelu(be: GpuKernelHost, a: Storage, b: Storage, p: MatmulParams, bias: Storage | null, gelu: boolean): { out: Storage; pre: Storage | null } | null {
  const [sa, sb] = be.check('matmul', a, b);
  const dtype = sa!.dtype;
  if (dtype !== sb!.dtype || (dtype !== 'float16' && dtype !== 'bfloat16') || !wideWhole(be, p, 2)) return null;
  const sbias = bias ? be.check('matmul', bias)[0]! : null;
  if (sbias && (sbias.dtype !== dtype || sbias.size !== p.n)) return null;
  const total = p.batch * p.m * p.n, preGelu = gelu ? be.runner.alloc(Math.ceil(total / 2)) : null;
  const epilogue = { halfOut: true, ...(sbias ? { bias: sbias.buf } : {}), ...(preGelu ? { preGelu } : {}) };
  // float16 on tensor cores where the device has them and the shape tiles (tensor-core-wgsl.ts)
  const out = dtype === 'float16' && be.runner.matmulTensor && be.runner.tensorMatmul?.(p)
    ? be.runner.matmulTensor({ buf: sa!.buf }, { buf: sb!.buf }, p, undefined, epilogue)
    : be.runner.matmul!({ buf: sa!.buf }, { buf: sb!.buf }, p, undefined, epilogue, dtype === 'bfloat16' ? 'bf16' : 'f16');
  return { out: be.wrap(out, total, dtype), pre: preGelu && be.wrap(preGelu, total, dtype) };
}

/** One matmul on (possibly offset) views: the runner's fast kernel, or the portable one. */
export function matmulView(be: GpuKernelHost, a: { buf: DeviceBuffer; offset: number | undefined }, b: { buf: DeviceBuffer; offset: number | undefined },
  p: MatmulParams, into?: { buf: DeviceBuffer; offset: number }): DeviceBuffer {
  const { batch, m, n, k, transA, transB, aBatchStride, bBatchStride } = p;
  if (be.runner.matmul && be.fastMatmul) {
    return be.runner.matmul(a, b, p, into);
  }
  const fa = aBatchStride === 0 ? 0 : 1, fb = bBatchStride === 0 ? 0 : 1;
  const ba = fa ? batch : 1, bb = fb ? batch : 1;
  const view = (buf: DeviceBuffer, offset: number | undefined, ...dims: number[]): BufferArg =>
    (offset === undefined ? arg(buf, ...dims) : { ...arg(buf, ...dims), offset });
  const Av = transA ? view(a.buf, a.offset, m, k, ba) : view(a.buf, a.offset, k, m, ba);
  const Bv = transB ? view(b.buf, b.offset, k, n, bb) : view(b.buf, b.offset, n, k, bb);
  const spec = transA ? (transB ? KERNELS.matmulTT : KERNELS.matmulTN) : (transB ? KERNELS.matmulNT : KERNELS.matmulNN);
  return be.run(spec, [n, m, batch], [Av, Bv, k, fa, fb], into);
}
