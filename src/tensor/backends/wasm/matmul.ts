// Host side of matmul: copy operands into wasm memory, pack panels (parallel), run the tiled
// gemm (parallel), copy C back. Tile sizes only change scheduling, never the summation order.

import type { MatmulParams } from '../../backend.js';
import type { MatmulShape } from './matmul-kernels.js';
import type { WasmRuntime } from './runtime.js';

/** Where gemmPtr left C: batch matrices of (row-padded) height `rows`, row stride `ldc` elements. */
export interface GemmOut { c: number; ldc: number; cBatch: number }

/**
 * C = op(A) op(B) on operands already in wasm memory (element offsets via the batch strides);
 * C is allocated in the arena, rows padded to MR and columns to NR.
 */
/** Causal skipping for attention's products (see gemmKernel's `mode`). */
export interface Causal { mode: 1 | 2 | 3; off: number }

/** An operand in wasm memory: float32, or bfloat16 bits widened while packing. */
export type Operand = Float32Array | Uint16Array;
const packName = (side: 'A' | 'B', bf16: boolean): string => `pack${side}${bf16 ? '16' : ''}`;

/**
 * Run a pack kernel (args as packKernel's) over `panels` tasks: float32 panels G adjacent ones
 * a task (packGroupKernel), G up to 16 while each thread still gets 8 tasks or more.
 */
function pack(runtime: WasmRuntime, side: 'A' | 'B', bf16: boolean, panels: number, args: number[]): void {
  const G = bf16 ? 1 : Math.max(1, Math.min(16, Math.floor(panels / (8 * runtime.threads))));
  if (G === 1) runtime.run(packName(side, bf16), panels, runtime.args(args));
  else runtime.run(`pack${side}Group`, Math.ceil(panels / G), runtime.args([...args, G, panels]));
}

/** Where an [m, n] product's C goes: rows padded to MR, the row stride to NR (elements). */
function cLayout(shape: MatmulShape, m: number, n: number): { ldc: number; cBatch: number } {
  const ldc = Math.ceil(n / shape.nr) * shape.nr;
  return { ldc, cBatch: Math.ceil(m / shape.mr) * shape.mr * ldc };
}

export function gemmPtr(runtime: WasmRuntime, shape: MatmulShape, aPtr: number, bPtr: number, p: MatmulParams, causal?: Causal,
  aBf16 = false, bBf16 = false): GemmOut {
  const { batch, m, n, k, transA, transB, aBatchStride, bBatchStride } = p;
  const { mr, nr } = shape;
  const mP = Math.ceil(m / mr), nP = Math.ceil(n / nr);
  const out = allocC(runtime, shape, m, n, batch), C = out.c;
  if (batch === 0 || m === 0 || n === 0) return out;
  if (k === 0) { runtime.f32(C, batch * out.cBatch).fill(0); return out; }
  const aBatches = aBatchStride === 0 ? 1 : batch, bBatches = bBatchStride === 0 ? 1 : batch;
  const mark = runtime.mark();
  const packA = runtime.alloc(aBatches * mP * k * mr * 4);
  const packB = runtime.alloc(bBatches * nP * k * nr * 4);
  // A element (row i, depth kk): [m,k] -> i*k + kk ; transposed [k,m] -> kk*m + i
  pack(runtime, 'A', aBf16, aBatches * mP, [aPtr, m, k, transA ? 1 : k, transA ? m : 1, aBatchStride, mP, packA, k]);
  // B element (col j, depth kk): [k,n] -> kk*n + j ; transposed [n,k] -> j*k + kk
  pack(runtime, 'B', bBf16, bBatches * nP, [bPtr, n, k, transB ? k : 1, transB ? 1 : n, bBatchStride, nP, packB, k]);
  const g = gemmPacked(runtime, shape, packA, packB, p, C, causal);
  runtime.release(mark); // the packed panels; C stays
  return g;
}

/** The tiled gemm over packed panels (C allocated here unless given; with `accumulate`, C += A B). */
function gemmPacked(runtime: WasmRuntime, shape: MatmulShape, packA: number, packB: number, p: MatmulParams, cPtr?: number,
  causal?: Causal, accumulate = false): GemmOut {
  const { batch, m, n, k, aBatchStride, bBatchStride } = p;
  const { mr, nr } = shape;
  const mP = Math.ceil(m / mr), nP = Math.ceil(n / nr);
  const { ldc, cBatch } = cLayout(shape, m, n);
  const C = cPtr ?? runtime.alloc(batch * cBatch * 4);
  const aBatches = aBatchStride === 0 ? 1 : batch, bBatches = bBatchStride === 0 ? 1 : batch;
  const aPanelBytes = mP * k * mr * 4, bPanelBytes = nP * k * nr * 4;
  // tiles of ~128 x 256; halve the tile while there are too few tasks to share
  let mcp = Math.max(1, Math.round(128 / mr)), ncp = Math.max(1, Math.round(256 / nr));
  const tasks = (): number => batch * Math.ceil(mP / mcp) * Math.ceil(nP / ncp);
  while (tasks() < 4 * runtime.threads && (mcp > 1 || ncp > 1)) {
    if (mcp > 1) mcp = Math.ceil(mcp / 2); else ncp = Math.ceil(ncp / 2);
  }
  // few tasks: split the rows into a multiple of the threads, so no thread runs the last one
  // alone (lm_head's dx = g W at 664 rows and 128 columns made 11 equal tasks for 2 threads)
  const T = runtime.threads;
  for (let tm = Math.ceil(mP / mcp); tasks() % T !== 0 && tasks() < 16 * T && tm < mP;) {
    const next = Math.ceil(mP / Math.ceil(mP / ++tm));
    if ((batch * next * Math.ceil(nP / ncp)) % T === 0) mcp = Math.ceil(mP / next);
  }
  const tM = Math.ceil(mP / mcp), tN = Math.ceil(nP / ncp);
  runtime.run('gemm', batch * tM * tN, runtime.args([packA, packB, C, k, mP, nP, tM, tN,
    aBatches === 1 ? 0 : aPanelBytes, bBatches === 1 ? 0 : bPanelBytes, cBatch * 4, ldc * 4, mcp, ncp,
    causal?.mode ?? 0, causal?.off ?? 0, accumulate ? 1 : 0]));
  return { c: C, ldc, cBatch };
}

/** `batch` padded [m, n] Cs in wasm memory (their contents whatever the arena held). */
function allocC(runtime: WasmRuntime, shape: MatmulShape, m: number, n: number, batch = 1): GemmOut {
  const { ldc, cBatch } = cLayout(shape, m, n);
  return { c: runtime.alloc(batch * cBatch * 4), ldc, cBatch };
}

/** A zeroed, padded [m, n] C in wasm memory, for gemmHostB to accumulate into. */
export function zeroC(runtime: WasmRuntime, shape: MatmulShape, m: number, n: number): GemmOut {
  const g = allocC(runtime, shape, m, n);
  runtime.f32(g.c, g.cBatch).fill(0);
  return g;
}

/** op(B) packed into its panels in wasm memory once, for several gemmHostB calls with it. */
export interface PackedB { ptr: number; n: number; k: number; transB: boolean }

/**
 * Pack op(B) ([k, n]; B stored [n, k] when transB) from a host array into panels, through small
 * slabs (no whole copy of B in wasm memory). Lives until the caller's mark is released.
 */
export function packHostB(runtime: WasmRuntime, shape: MatmulShape, b: Operand, n: number, k: number, transB: boolean): PackedB {
  const ptr = runtime.alloc(Math.ceil(n / shape.nr) * k * shape.nr * 4);
  stagePack(runtime, 'B', shape.nr, b, 1, 0, n, k, transB, ptr, STAGE_FLOATS / 4);
  return { ptr, n, k, transB };
}

/**
 * C = op(A) op(B) for one matrix (batch 1), A in wasm memory (rows `lda` elements apart in
 * storage; default dense), B a host array packed here by packHostB, or packed already; with
 * `into` (zeroC of the same m, n) C += op(A) op(B) there instead.
 */
export function gemmHostB(runtime: WasmRuntime, shape: MatmulShape, aPtr: number, b: Operand | PackedB, p: MatmulParams,
  opts: { into?: GemmOut; lda?: number } = {}): GemmOut {
  const { m, n, k, transA, transB } = p;
  if (p.batch !== 1) throw new Error(`gemmHostB: batch ${p.batch}, only 1 is supported`);
  if ('ptr' in b && (b.n !== n || b.k !== k || b.transB !== transB)) {
    throw new Error(`gemmHostB: B packed as [k ${b.k}, n ${b.n}]${b.transB ? ' (transposed)' : ''}, the product needs [k ${k}, n ${n}]${transB ? ' (transposed)' : ''}`);
  }
  // the gemm writes every element of a padded C; only an empty product needs zeros
  const C = opts.into ?? (k === 0 ? zeroC(runtime, shape, m, n) : allocC(runtime, shape, m, n));
  if (m === 0 || n === 0 || k === 0) return C;
  const mP = Math.ceil(m / shape.mr);
  const mark = runtime.mark();
  const packA = runtime.alloc(mP * k * shape.mr * 4);
  // A element (row i, depth kk): [m, lda] -> i*lda + kk ; transposed [k, lda] -> kk*lda + i
  pack(runtime, 'A', false, mP, [aPtr, m, k, transA ? 1 : opts.lda ?? k, transA ? opts.lda ?? m : 1, 0, mP, packA, k]);
  const packB = 'ptr' in b ? b.ptr : packHostB(runtime, shape, b, n, k, transB).ptr;
  gemmPacked(runtime, shape, packA, packB, p, C.c, undefined, opts.into !== undefined);
  runtime.release(mark);
  return C;
}

/** Copy a padded C into a dense [batch, m, n] host array. */
export function readC(runtime: WasmRuntime, g: GemmOut, batch: number, m: number, n: number,
  out: Float32Array = new Float32Array(batch * m * n)): Float32Array {
  const c = runtime.f32(g.c, batch * g.cBatch);
  for (let bi = 0; bi < batch; bi++) {
    const base = bi * g.cBatch;
    if (g.ldc === n) out.set(c.subarray(base, base + m * n), bi * m * n);
    else for (let i = 0; i < m; i++) out.set(c.subarray(base + i * g.ldc, base + i * g.ldc + n), (bi * m + i) * n);
  }
  return out;
}

/** Operands up to this many floats are copied into wasm memory whole; larger ones in slabs. */
const STAGE_FLOATS = 16 << 20;

/**
 * Pack one operand straight from a host array into its panels, through a staging slab of about
 * STAGE_FLOATS: a 200 MB logits gradient then needs its packed copy in wasm memory but not a
 * second raw one. `rowMajor` says the panel dim (rows of op(A) / cols of op(B)) is the slow one
 * in storage ([len, K] layout): a slab is whole panels. Otherwise storage is [K, len] and a
 * slab is whole depth rows, packed into every panel at its depth: each slab is one contiguous
 * copy either way.
 */
function stagePack(runtime: WasmRuntime, side: 'A' | 'B', w: number, src: Operand, batches: number, batchStride: number,
  len: number, K: number, rowMajor: boolean, dst: number, stageFloats: number): void {
  const bf16 = src instanceof Uint16Array, bytes = bf16 ? 2 : 4;
  const panels = Math.ceil(len / w);
  for (let bi = 0; bi < batches; bi++) {
    const base = bi * batchStride, out = dst + bi * panels * K * w * 4;
    if (rowMajor) {
      const per = Math.max(1, Math.floor(stageFloats / (K * w)));
      for (let p0 = 0; p0 < panels; p0 += per) {
        const p1 = Math.min(panels, p0 + per), i0 = p0 * w, width = Math.min(len, p1 * w) - i0;
        const mark = runtime.mark(), stage = runtime.alloc(width * K * bytes);
        place(runtime, stage, width * K, bf16).set(src.subarray(base + i0 * K, base + (i0 + width) * K) as never);
        pack(runtime, side, bf16, p1 - p0, [stage, width, K, K, 1, 0, p1 - p0, out + p0 * K * w * 4, K]);
        runtime.release(mark);
      }
    } else {
      const per = Math.max(1, Math.floor(stageFloats / len));
      for (let k0 = 0; k0 < K; k0 += per) {
        const depth = Math.min(K, k0 + per) - k0;
        const mark = runtime.mark(), stage = runtime.alloc(depth * len * bytes);
        place(runtime, stage, depth * len, bf16).set(src.subarray(base + k0 * len, base + (k0 + depth) * len) as never);
        pack(runtime, side, bf16, panels, [stage, len, depth, 1, len, 0, panels, out + k0 * w * 4, K]);
        runtime.release(mark);
      }
    }
  }
}

/** A view of `n` elements at `ptr` in wasm memory, float32 or u16. */
export function place(runtime: WasmRuntime, ptr: number, n: number, u16: boolean): Float32Array | Uint16Array {
  return u16 ? new Uint16Array(runtime.memory.buffer, ptr, n) : runtime.f32(ptr, n);
}

/** Copy an operand into the arena (half the bytes for bfloat16). */
function putOperand(runtime: WasmRuntime, x: Operand): number {
  const u16 = x instanceof Uint16Array;
  const ptr = runtime.alloc(x.length * (u16 ? 2 : 4));
  place(runtime, ptr, x.length, u16).set(x as never);
  return ptr;
}

/**
 * out = op(a) op(b) for host arrays (float32, or bfloat16 bits: widened while packing, so half
 * storage is half the bytes copied): copy in (or pack through slabs when large), gemm, copy out.
 */
export function wasmMatmul(runtime: WasmRuntime, shape: MatmulShape, a: Operand, b: Operand,
  p: MatmulParams, out: Float32Array = new Float32Array(p.batch * p.m * p.n), stageFloats = STAGE_FLOATS): Float32Array {
  const mark = runtime.mark();
  try {
    if (a.length <= stageFloats && b.length <= stageFloats) {
      const aPtr = putOperand(runtime, a), bPtr = putOperand(runtime, b);
      return readC(runtime, gemmPtr(runtime, shape, aPtr, bPtr, p, undefined, a instanceof Uint16Array, b instanceof Uint16Array), p.batch, p.m, p.n, out);
    }
    const { batch, m, n, k, transA, transB, aBatchStride, bBatchStride } = p;
    if (batch === 0 || m === 0 || n === 0) return out;
    if (k === 0) { out.fill(0); return out; }
    const { mr, nr } = shape;
    const aBatches = aBatchStride === 0 ? 1 : batch, bBatches = bBatchStride === 0 ? 1 : batch;
    const packA = runtime.alloc(aBatches * Math.ceil(m / mr) * k * mr * 4);
    const packB = runtime.alloc(bBatches * Math.ceil(n / nr) * k * nr * 4);
    stagePack(runtime, 'A', mr, a, aBatches, aBatchStride, m, k, !transA, packA, stageFloats);
    stagePack(runtime, 'B', nr, b, bBatches, bBatchStride, n, k, transB, packB, stageFloats);
    return readC(runtime, gemmPacked(runtime, shape, packA, packB, p), batch, m, n, out);
  } finally {
    runtime.release(mark);
  }
}
