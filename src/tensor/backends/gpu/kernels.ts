// The gpu backend's primitive kernels as gpu.js kernel functions (the fused ones are in
// fused-kernels.ts): the same source runs in gpu.js's `cpu` mode (how CI tests it) and is
// translated by gpu.js to WGSL for WebGPU.
//
// How these functions are written, and why:
// - gpu.js parses `fn.toString()`, so a kernel is plain JavaScript: no closures, no helpers
//   from this module, numbers only. Each spec below fixes the argument types and the
//   output rank (gpu.js builds one shader per rank).
// - gpu.js's WGSL translator declares every named variable as f32 (its "int initializers
//   decay to float" rule); only for-loop counters, `this.thread.*`, Integer arguments and
//   expressions built from them inline stay i32. An f32 holds integers exactly only up to
//   2^24 = 16,777,216, and GPT-2's tensors are larger (logits: 824M elements). So every
//   index that can be large is written INLINE from thread ids, loop counters and Integer
//   arguments, and multi-dimensional access `x[z][y][x]` is used so gpu.js's accessor does
//   the flattening `x + X * (y + Y * z)` in i32 with the dims the host declares for that
//   argument. Named variables hold values (and small indices) only.
// - Each loop has its own counter name: the translator hoists counters to function scope.
// - Ops are selected by an Integer argument: the branch is uniform across the dispatch, so
//   it costs nothing next to the memory traffic and keeps the number of shaders small.

/** What gpu.js puts on `this` inside a kernel. */
export interface KernelThis {
  thread: { x: number; y: number; z: number };
}
// The shapes in which kernels index their array arguments (gpu.js arrays are nested on the host).
export type A1 = number[];
export type A2 = number[][];
export type A3 = number[][][];

export type ArgType = 'Input' | 'Integer' | 'Float';

export interface KernelSpec {
  readonly name: string;
  /** The kernel function (its source is what gpu.js compiles). */
  readonly fn: (...args: never[]) => number;
  readonly argTypes: readonly ArgType[];
  /** Rank each array argument is indexed with (1: a[i], 2: a[y][x], 3: a[z][y][x]); 0 for scalars. */
  readonly argRanks: readonly number[];
  /** Output rank: 1 ([x]) or 3 ([x, y, z]). */
  readonly rank: 1 | 3;
  /**
   * Elementwise: a rank-1 kernel that reads each argument of the output's length at this.thread.x
   * (others, like a broadcast scalar, at a fixed place). Such a kernel can run over chunks of its
   * output, each argument of that length bound from the chunk's start: the backend does this past
   * the storage binding limit.
   */
  readonly elementwise?: boolean;
}

export function spec(name: string, fn: (...args: never[]) => number, argTypes: ArgType[], argRanks: number[], rank: 1 | 3): KernelSpec {
  if (argTypes.length !== argRanks.length) throw new Error(`kernel spec ${name}: ${argTypes.length} types, ${argRanks.length} ranks`);
  return { name, fn, argTypes, argRanks, rank };
}

// ---- op codes (shared by the host side and the kernels) --------------------------------
export const UNARY_CODES = { neg: 0, exp: 1, log: 2, sqrt: 3, tanh: 4, relu: 5, abs: 6, step: 7, gelu: 8, geluGrad: 9 } as const;
export const BINARY_CODES = { add: 0, sub: 1, mul: 2, div: 3, pow: 4, max: 5, min: 6, gt: 7, lt: 8, eq: 9 } as const;
/**
 * The runner's cast modes (Runner.cast). Half tensors are packed two per 32-bit word (element 2i
 * in the low 16 bits): the modes from a half read packed words, those to a half write them; `unpack`
 * and `pack` move the 16-bit patterns as they are (as f32 integers 0..65535) for movement kernels.
 */
export const CAST_CODES = { copy: 0, f16ToF32: 1, bf16ToF32: 2, f32ToF16: 3, f32ToBf16: 4, trunc: 5, unpack: 6, pack: 7 } as const;
/** Whether a cast mode writes packed halves (ceil(n/2) words for n values). */
export function packs(mode: number): boolean {
  return mode === CAST_CODES.f32ToF16 || mode === CAST_CODES.f32ToBf16 || mode === CAST_CODES.pack;
}
/** The mode argument of the kernels that compute one of two related things. */
export const MODES = {
  reduce: { sum: 0, max: 1 },
  rowStat: { max: 0, logsumexp: 1 },
  softmaxApply: { softmax: 0, logSoftmax: 1 },
  /**
   * rowDot and softmaxBack: a row's sum(a * b) (softmax's backward reads sum(gy * y), attention's
   * sum(dO * O)) or its sum(a) (logSoftmax's backward reads sum(gy)).
   */
  rowDot: { dot: 0, sum: 1 },
  lnStat: { mean: 0, rstd: 1 },
  lnBackStat: { sumGw: 0, sumGwXhat: 1 },
  adamMoment: { first: 0, second: 1 },
  /** attnStat / attnProb: mask out future keys or not */
  causal: { off: 0, on: 1 },
} as const;

// ---- fill ------------------------------------------------------------------------------
function fillK(this: KernelThis, value: number): number {
  return value;
}

// ---- elementwise -----------------------------------------------------------------------
function unaryK(this: KernelThis, a: A1, op: number): number {
  const v = a[this.thread.x]!;
  if (op === 0) return -v;
  if (op === 1) return Math.exp(v);
  if (op === 2) {
    // log(0) = -inf; some devices' log answers ~-88 (the log of the smallest normal) instead
    if (v === 0.0) return (v - 3.4028234663852886e38) * 2.0;
    return Math.log(v);
  }
  if (op === 3) return Math.sqrt(v);
  if (op === 4) {
    // clamped: tanh(15) is 1 in float32, and some GPU tanh overflow to NaN past ~44
    return Math.tanh(Math.min(Math.max(v, -15.0), 15.0));
  }
  if (op === 5) return Math.max(v, 0.0);
  if (op === 6) return Math.abs(v);
  if (op === 7) {
    if (v > 0.0) return 1.0;
    return 0.0;
  }
  // GPT-2's GELU, tanh approximation: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
  const u = 0.7978845608028654 * (v + 0.044715 * v * v * v);
  const t = Math.tanh(Math.min(Math.max(u, -15.0), 15.0));
  if (op === 8) return 0.5 * v * (1.0 + t);
  const du = 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * v * v);
  return 0.5 * (1.0 + t) + 0.5 * v * (1.0 - t * t) * du;
}

/**
 * a (op) b for the binary ops; the one place both broadcasting kernels share the
 * formulas is this body, repeated because a gpu.js kernel cannot call module functions
 * without registering them (and registered functions are one more thing to translate).
 */
function binary1K(this: KernelThis, a: A1, b: A1, af: number, bf: number, op: number): number {
  const x = a[this.thread.x * af]!;
  const y = b[this.thread.x * bf]!;
  if (op === 0) return x + y;
  if (op === 1) return x - y;
  if (op === 2) return x * y;
  if (op === 3) return x / y;
  if (op === 4) {
    // WGSL pow is exp2(y log2 x): undefined for x < 0, so take |x| and put the sign of
    // an odd integer power back (JS Math.pow(-2, 3) = -8)
    if (y === 0.0) return 1.0;
    const r = Math.pow(Math.abs(x), y);
    if (x < 0.0) {
      if (Math.floor(y) === y) {
        if (y - 2.0 * Math.floor(y / 2.0) === 1.0) return -r;
        return r;
      }
      return Math.sqrt(-1.0 - r * 0.0);
    }
    return r;
  }
  if (op === 5) return Math.max(x, y);
  if (op === 6) return Math.min(x, y);
  if (op === 7) {
    if (x > y) return 1.0;
    return 0.0;
  }
  if (op === 8) {
    if (x < y) return 1.0;
    return 0.0;
  }
  if (x === y) return 1.0;
  return 0.0;
}

/** Broadcast over a (collapsed) 3-d output: a flag of 0 pins that axis of an input to 0. */
function binary3K(this: KernelThis, a: A3, b: A3, ax: number, ay: number, az: number,
  bx: number, by: number, bz: number, op: number): number {
  const x = a[this.thread.z * az]![this.thread.y * ay]![this.thread.x * ax]!;
  const y = b[this.thread.z * bz]![this.thread.y * by]![this.thread.x * bx]!;
  if (op === 0) return x + y;
  if (op === 1) return x - y;
  if (op === 2) return x * y;
  if (op === 3) return x / y;
  if (op === 4) {
    if (y === 0.0) return 1.0;
    const r = Math.pow(Math.abs(x), y);
    if (x < 0.0) {
      if (Math.floor(y) === y) {
        if (y - 2.0 * Math.floor(y / 2.0) === 1.0) return -r;
        return r;
      }
      return Math.sqrt(-1.0 - r * 0.0);
    }
    return r;
  }
  if (op === 5) return Math.max(x, y);
  if (op === 6) return Math.min(x, y);
  if (op === 7) {
    if (x > y) return 1.0;
    return 0.0;
  }
  if (op === 8) {
    if (x < y) return 1.0;
    return 0.0;
  }
  if (x === y) return 1.0;
  return 0.0;
}

function where1K(this: KernelThis, c: A1, a: A1, b: A1, cf: number, af: number, bf: number): number {
  if (c[this.thread.x * cf]! !== 0.0) return a[this.thread.x * af]!;
  return b[this.thread.x * bf]!;
}

function where3K(this: KernelThis, c: A3, a: A3, b: A3, cx: number, cy: number, cz: number,
  ax: number, ay: number, az: number, bx: number, by: number, bz: number): number {
  if (c[this.thread.z * cz]![this.thread.y * cy]![this.thread.x * cx]! !== 0.0) {
    return a[this.thread.z * az]![this.thread.y * ay]![this.thread.x * ax]!;
  }
  return b[this.thread.z * bz]![this.thread.y * by]![this.thread.x * bx]!;
}

// ---- reductions ------------------------------------------------------------------------
/**
 * x viewed as [outer, size, inner] (declared dims [inner, size, outer]); thread (i, g, o)
 * reduces rows g*chunk .. min(size, (g+1)*chunk) - 1: one pass when chunk >= size, or
 * partials that the host reduces again (so a long reduction is spread over many threads).
 */
function reduceK(this: KernelThis, x: A3, size: number, chunk: number, op: number): number {
  let acc = 0.0;
  if (op === 1) acc = x[this.thread.z]![this.thread.y * chunk]![this.thread.x]!;
  for (let j = 0; j < chunk; j++) {
    if (this.thread.y * chunk + j < size) {
      const v = x[this.thread.z]![this.thread.y * chunk + j]![this.thread.x]!;
      if (op === 0) acc = acc + v;
      else if (v > acc) acc = v;
    }
  }
  return acc;
}

/** Partial sums of squares: thread g sums x[g*chunk .. ] (x declared [chunk, groups] 2-d). */
function sumSquaresK(this: KernelThis, x: A2, n: number, chunk: number): number {
  let acc = 0.0;
  for (let j = 0; j < chunk; j++) {
    if (this.thread.x * chunk + j < n) {
      const v = x[this.thread.x]![j]!;
      acc = acc + v * v;
    }
  }
  return acc;
}

// ---- matmul (the portable version; WebGPU uses the tiled WGSL kernel in wgsl.ts) ---------
// out [n, m, batch]; a and b declared with dims so that a[b][row][col] flattens in i32.
function matmulNNK(this: KernelThis, a: A3, b: A3, k: number, fa: number, fb: number): number {
  let acc = 0.0;
  for (let q = 0; q < k; q++) {
    acc = acc + a[this.thread.z * fa]![this.thread.y]![q]! * b[this.thread.z * fb]![q]![this.thread.x]!;
  }
  return acc;
}
function matmulTNK(this: KernelThis, a: A3, b: A3, k: number, fa: number, fb: number): number {
  let acc = 0.0;
  for (let q = 0; q < k; q++) {
    acc = acc + a[this.thread.z * fa]![q]![this.thread.y]! * b[this.thread.z * fb]![q]![this.thread.x]!;
  }
  return acc;
}
function matmulNTK(this: KernelThis, a: A3, b: A3, k: number, fa: number, fb: number): number {
  let acc = 0.0;
  for (let q = 0; q < k; q++) {
    acc = acc + a[this.thread.z * fa]![this.thread.y]![q]! * b[this.thread.z * fb]![this.thread.x]![q]!;
  }
  return acc;
}
function matmulTTK(this: KernelThis, a: A3, b: A3, k: number, fa: number, fb: number): number {
  let acc = 0.0;
  for (let q = 0; q < k; q++) {
    acc = acc + a[this.thread.z * fa]![q]![this.thread.y]! * b[this.thread.z * fb]![this.thread.x]![q]!;
  }
  return acc;
}

// ---- movement --------------------------------------------------------------------------
/**
 * out[z][y][x] = x[off + z*sz + y*sy + x*sx] through the accessor: x is declared with
 * dims [DX, DY] chosen on the host so that DX = sy and DX*DY = sz (fy/fz pin an axis with
 * stride 0), which keeps the whole index in i32.
 */
function strided3K(this: KernelThis, a: A3, sx: number, off: number, fy: number, fz: number): number {
  return a[this.thread.z * fz]![this.thread.y * fy]![this.thread.x * sx + off]!;
}


/** Zero padding of one axis of x viewed as [outer, len, inner] (x declared [inner, len, outer]). */
function padAxisK(this: KernelThis, a: A3, before: number, len: number): number {
  if (this.thread.y < before || this.thread.y >= before + len) return 0.0;
  return a[this.thread.z]![this.thread.y - before]![this.thread.x]!;
}

// ---- indexing --------------------------------------------------------------------------
/** out [cols, n]: table[idx[r]][c]; table declared [cols, rows]. */
function gatherRowsK(this: KernelThis, table: A2, idx: A1): number {
  return table[idx[this.thread.y]!]![this.thread.x]!;
}


/** out [rows]: x[r][idx[r]]; x declared [cols, rows]. */
function pickLastK(this: KernelThis, x: A2, idx: A1): number {
  return x[this.thread.x]![idx[this.thread.x]!]!;
}

/** out [cols, rows]: g[r] where c == idx[r], else 0. */
function scatterLastK(this: KernelThis, g: A1, idx: A1): number {
  if (this.thread.x === idx[this.thread.y]!) return g[this.thread.y]!;
  return 0.0;
}

export const I = 'Input', N = 'Integer', F = 'Float';
/** The primitives' kernels (the fused ones: fused-kernels.ts). */
export const KERNELS = {
  fill: { ...spec('fill', fillK, [F], [0], 1), elementwise: true },
  unary: { ...spec('unary', unaryK, [I, N], [1, 0], 1), elementwise: true },
  binary1: { ...spec('binary1', binary1K, [I, I, N, N, N], [1, 1, 0, 0, 0], 1), elementwise: true },
  binary3: spec('binary3', binary3K, [I, I, N, N, N, N, N, N, N], [3, 3, 0, 0, 0, 0, 0, 0, 0], 3),
  where1: { ...spec('where1', where1K, [I, I, I, N, N, N], [1, 1, 1, 0, 0, 0], 1), elementwise: true },
  where3: spec('where3', where3K, [I, I, I, N, N, N, N, N, N, N, N, N], [3, 3, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0], 3),
  reduce: spec('reduce', reduceK, [I, N, N, N], [3, 0, 0, 0], 3),
  sumSquares: spec('sumSquares', sumSquaresK, [I, N, N], [2, 0, 0], 1),
  matmulNN: spec('matmulNN', matmulNNK, [I, I, N, N, N], [3, 3, 0, 0, 0], 3),
  matmulTN: spec('matmulTN', matmulTNK, [I, I, N, N, N], [3, 3, 0, 0, 0], 3),
  matmulNT: spec('matmulNT', matmulNTK, [I, I, N, N, N], [3, 3, 0, 0, 0], 3),
  matmulTT: spec('matmulTT', matmulTTK, [I, I, N, N, N], [3, 3, 0, 0, 0], 3),
  strided3: spec('strided3', strided3K, [I, N, N, N, N], [3, 0, 0, 0, 0], 3),
  padAxis: spec('padAxis', padAxisK, [I, N, N], [3, 0, 0], 3),
  gatherRows: spec('gatherRows', gatherRowsK, [I, I], [2, 1], 3),
  pickLast: spec('pickLast', pickLastK, [I, I], [2, 1], 1),
  scatterLast: spec('scatterLast', scatterLastK, [I, I], [1, 1], 3),
} as const;

