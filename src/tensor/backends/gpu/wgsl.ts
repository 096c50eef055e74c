// Hand-written WGSL for the kernels gpu.js's one-output-per-thread translation cannot express
// or runs far from the hardware: the tiled matmul, the bit-exact half casts, AdamW and the
// in-place add and scale, the strided gather and the segment sum (u32 indices); flash attention
// is in flash-wgsl.ts, LayerNorm in layernorm-wgsl.ts. Two matmuls: MATMUL_WIDE_WGSL (128x128 tiles, vec4) for operands whose
// contiguous dimensions are multiples of 4, GPT-2's all; MATMUL_WGSL for any other shape. An H200
// ran gpu.js's naive matmul at ~1.5 TFLOP/s and the 64x64 kernel at 15-22 (the wide one has not
// met a GPU yet). The 64x64 kernel stages a 64x16 tile of A and a 16x64 tile of B in workgroup
// memory, so every value read from global memory feeds 64 multiply-adds instead of one.

import type { HalfRounding } from './runner.js';

/** Uniform layout: 8 u32 (M, N, K, transA, transB, aBatchStride, bBatchStride, pad), both matmul kernels'. */
export const MATMUL_PARAMS_BYTES = 32;
/** The matmul kernels' uniform (the wide, 64x64 and tensor-core ones): MATMUL_PARAMS_BYTES of it. */
export const MATMUL_UNIFORM = /* wgsl */ `
struct P {
  M : u32, N : u32, K : u32, transA : u32,
  transB : u32, aStride : u32, bStride : u32, flags : u32,
}
@group(0) @binding(0) var<uniform> p : P;`;
export const MATMUL_TILE = 64;

export const MATMUL_WGSL = /* wgsl */ `${MATMUL_UNIFORM}
@group(0) @binding(1) var<storage, read> A : array<f32>;
@group(0) @binding(2) var<storage, read> B : array<f32>;
@group(0) @binding(3) var<storage, read_write> C : array<f32>;

var<workgroup> As : array<array<f32, 64>, 16>; // [k][row]
var<workgroup> Bs : array<array<f32, 64>, 16>; // [k][col]

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_id) lid : vec3<u32>) {
  let batch = wg.z;
  let row0 = wg.y * 64u;
  let col0 = wg.x * 64u;
  let ao = batch * p.aStride;
  let bo = batch * p.bStride;
  let tid = lid.y * 16u + lid.x;
  // thread (lx, ly) owns rows ly + 16 r and cols lx + 16 c: neighbouring threads touch
  // neighbouring columns, so tile reads and the final writes are coalesced
  var acc : array<array<f32, 4>, 4>;
  for (var r = 0u; r < 4u; r++) { for (var c = 0u; c < 4u; c++) { acc[r][c] = 0.0; } }
  for (var k0 = 0u; k0 < p.K; k0 += 16u) {
    for (var l = 0u; l < 4u; l++) {
      let e = tid + l * 256u; // 1024 tile elements, 4 per thread
      // A tile: consecutive threads read consecutive global addresses in either layout
      var ai : u32; var ak : u32;
      if (p.transA == 1u) { ai = e % 64u; ak = e / 64u; } else { ak = e % 16u; ai = e / 16u; }
      let gi = row0 + ai;
      let gka = k0 + ak;
      var va = 0.0;
      if (gi < p.M && gka < p.K) {
        if (p.transA == 1u) { va = A[ao + gka * p.M + gi]; } else { va = A[ao + gi * p.K + gka]; }
      }
      As[ak][ai] = va;
      var bj : u32; var bk : u32;
      if (p.transB == 1u) { bk = e % 16u; bj = e / 16u; } else { bj = e % 64u; bk = e / 64u; }
      let gj = col0 + bj;
      let gkb = k0 + bk;
      var vb = 0.0;
      if (gj < p.N && gkb < p.K) {
        if (p.transB == 1u) { vb = B[bo + gj * p.K + gkb]; } else { vb = B[bo + gkb * p.N + gj]; }
      }
      Bs[bk][bj] = vb;
    }
    workgroupBarrier();
    for (var kk = 0u; kk < 16u; kk++) {
      var a : array<f32, 4>;
      var b : array<f32, 4>;
      for (var r = 0u; r < 4u; r++) { a[r] = As[kk][lid.y + 16u * r]; }
      for (var c = 0u; c < 4u; c++) { b[c] = Bs[kk][lid.x + 16u * c]; }
      for (var r = 0u; r < 4u; r++) {
        for (var c = 0u; c < 4u; c++) { acc[r][c] = fma(a[r], b[c], acc[r][c]); }
      }
    }
    workgroupBarrier();
  }
  let co = batch * p.M * p.N;
  for (var r = 0u; r < 4u; r++) {
    let gi = row0 + lid.y + 16u * r;
    for (var c = 0u; c < 4u; c++) {
      let gj = col0 + lid.x + 16u * c;
      if (gi < p.M && gj < p.N) { C[co + gi * p.N + gj] = acc[r][c]; }
    }
  }
}
`;

/**
 * The SGEMM for GPT-2's shapes: a 128x128 tile of C per workgroup of 16x16 threads, 8x8 outputs a
 * thread, vec4 loads and stores. Every operand's contiguous dimension must be a multiple of 4 (and
 * N, for C's rows): GPT-2's all are (768, 2304, 3072, 50304, 64, T); MATMUL_WGSL takes the rest.
 * - Per k step a thread reads 2 vec4 of A and 2 of B from workgroup memory for 64 multiply-adds
 *   (the 64x64 kernel: 2 scalars for 4... per 16), so workgroup memory stops being the limit.
 * - A thread's 8x8 outputs are two 4x4 blocks, 64 rows and 64 columns apart: the 16 threads of a
 *   row of the workgroup read 16 consecutive vec4 of a B tile (no bank conflict), the A tile's
 *   values are broadcast.
 * - Tiles are stored k-major ([8][128]) in rows padded to 132 floats: an operand whose K is the
 *   contiguous dimension (A·Bᵀ's B, every forward linear) is loaded as vec4 along k and stored
 *   as 4 scalars down a column, which the padding spreads over all 32 banks.
 * - Register double buffering: the next k tile's global loads are issued before the current
 *   tile's math, so their latency hides behind it.
 */
/** An f16's bits (the low 16 of h) as the f32 bits of the same value, subnormals included: integer operations, exact on every device. */
const F16_TO_F32_WGSL = /* wgsl */ `
fn f16ToF32(h : u32) -> u32 {
  let s = (h & 0x8000u) << 16u;
  let e = (h >> 10u) & 0x1fu;
  let m = h & 0x3ffu;
  if (e == 0x1fu) { return s | 0x7f800000u | (m << 13u); }          // inf, NaN
  if (e != 0u) { return s | ((e + 112u) << 23u) | (m << 13u); }      // normal
  if (m == 0u) { return s; }                                          // +-0
  // subnormal m * 2^-24: normalise the mantissa (its leading 1 becomes the implicit bit)
  let lead = firstLeadingBit(m);                                      // 0..9
  return s | ((lead + 103u) << 23u) | (((m << (23u - lead)) & 0x7fffffu));
}
`;

/** f32 bits to the nearest f16's / bf16's bits (ties to even), as dtype.ts rounds: integer operations, exact on every device. */
const F32_TO_HALF_WGSL = /* wgsl */ `
fn f32ToF16(x : u32) -> u32 {
  let s = (x >> 16u) & 0x8000u;
  let ex = (x >> 23u) & 0xffu;
  let mant = x & 0x7fffffu;
  if (ex == 0xffu) {                                                  // inf, NaN (quiet, top payload bits)
    if (mant != 0u) { return s | 0x7c00u | 0x200u | (mant >> 13u); }
    return s | 0x7c00u;
  }
  let e = i32(ex) - 112;                                              // rebias 127 -> 15
  if (e >= 31) { return s | 0x7c00u; }                                // overflow -> inf
  if (e <= 0) {                                                       // subnormal half, or zero
    if (e < -10) { return s; }
    let m = mant | 0x800000u;
    let shift = u32(14 - e);
    let half = 1u << (shift - 1u);
    let rest = m & ((1u << shift) - 1u);
    var out = m >> shift;
    if (rest > half || (rest == half && (out & 1u) == 1u)) { out = out + 1u; }
    return s | out;                                                   // a carry gives the smallest normal
  }
  var out = (u32(e) << 10u) | (mant >> 13u);
  let rest = mant & 0x1fffu;
  if (rest > 0x1000u || (rest == 0x1000u && (out & 1u) == 1u)) { out = out + 1u; } // may carry up to inf
  return s | out;
}

fn f32ToBf16(x : u32) -> u32 {
  if ((x & 0x7f800000u) == 0x7f800000u && (x & 0x7fffffu) != 0u) { return (x >> 16u) | 0x40u; } // quiet NaN
  return ((x + 0x7fffu + ((x >> 16u) & 1u)) >> 16u) & 0xffffu;
}
`;

/** How a kernel rounds float32 values to a half dtype's precision (keeping them float32): none, float16, bfloat16. */
export const HALF_ROUNDING: Record<HalfRounding, number> = { none: 0, float16: 1, bfloat16: 2 };
/** roundedTo(x, to): x rounded to float16 (to = 1) or bfloat16 (2) precision, as a float32; to = 0 keeps x. */
export const ROUND_TO_HALF_WGSL = /* wgsl */ `${F16_TO_F32_WGSL}${F32_TO_HALF_WGSL}
fn roundedTo(x : f32, to : u32) -> f32 {
  if (to == 1u) { return bitcast<f32>(f16ToF32(f32ToF16(bitcast<u32>(x)))); }
  if (to == 2u) { return bitcast<f32>(f32ToBf16(bitcast<u32>(x)) << 16u); }
  return x;
}
`;

/** GPT-2's GELU (tanh approximation) and its derivative in float32, as kernels.ts's unary gelu and geluGrad. */
export const GELU_WGSL = /* wgsl */ `
fn geluTanh(x : f32) -> f32 { return tanh(clamp(0.7978845608028654 * (x + 0.044715 * x * x * x), -15.0, 15.0)); } // (some GPU tanh overflow to NaN past ~44)
fn gelu(x : f32) -> f32 { return 0.5 * x * (1.0 + geluTanh(x)); }
fn geluGrad(x : f32) -> f32 {
  let t = geluTanh(x);
  return 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * 0.7978845608028654 * (1.0 + 3.0 * 0.044715 * x * x);
}
`;

export const MATMUL_WIDE_TILE = 128;

const WIDE_ROWS = [0, 1, 2, 3, 4, 5, 6, 7]; // a thread's rows: 4 ty + r, and 64 + 4 ty + (r - 4)
const wideMath = WIDE_ROWS.map((r) => {
  const a = `${r < 4 ? 'a0' : 'a1'}.${'xyzw'[r % 4]}`;
  return `      acc[${2 * r}] = fma(vec4<f32>(${a}), b0, acc[${2 * r}]);\n      acc[${2 * r + 1}] = fma(vec4<f32>(${a}), b1, acc[${2 * r + 1}]);`;
}).join('\n');
const wideStore = WIDE_ROWS.map((r) => `  {
    let gi = row0 + ${r < 4 ? `4u * ty + ${r}u` : `64u + 4u * ty + ${r - 4}u`};
    if (gi < p.M) {
      if (c0 < p.N) { C[(co + gi * p.N + c0) / 4u] = acc[${2 * r}] + bias0; }
      if (c1 < p.N) { C[(co + gi * p.N + c1) / 4u] = acc[${2 * r + 1}] + bias1; }
    }
  }`).join('\n');

/**
 * The GELU epilogue (MATMUL_GELU): an MLP's c_fc and its GELU in one launch. For v = product plus
 * bias, `stores(v)` writes the pre-activation to RS (GELU's backward reads it) and GELU of it to C.
 */
function wideGeluEpilogue(stores: (v: string) => string): string {
  const rows = WIDE_ROWS.map((r) => `    {
      let gi = row0 + ${r < 4 ? `4u * ty + ${r}u` : `64u + 4u * ty + ${r - 4}u`};
      if (gi < p.M) {
        if (c0 < p.N) { let at = (co + gi * p.N + c0) / 4u; ${stores(`bias0 + acc[${2 * r}]`)} }
        if (c1 < p.N) { let at = (co + gi * p.N + c1) / 4u; ${stores(`bias1 + acc[${2 * r + 1}]`)} }
      }
    }`).join('\n');
  return `  if ((p.flags & 4u) != 0u) {\n${rows}\n    return;\n  }\n`;
}
const WIDE_GELU_EPILOGUE = wideGeluEpilogue((v) => `let v = ${v}; RS[at] = v; C[at] = gelu4(v);`);
/** With half results: the pre-activation rounded to the half type, and GELU of that rounded again (as torch's GELU on a half tensor). */
const WIDE_GELU_EPILOGUE_HALF = wideGeluEpilogue((v) => `let h = narrow4(${v}); RS[at] = h; C[at] = narrow4(gelu4(widen(h)));`);

/**
 * The wide matmul's epilogue flags (P.flags): add Bias [N] to every row; write op(A)'s row sums
 * to RS [M]; GELU of the result to C, the result itself (the pre-activation, which GELU's
 * backward reads) to RS [M, N].
 */
export const MATMUL_BIAS = 1, MATMUL_ROW_SUMS = 2, MATMUL_GELU = 4;

export const MATMUL_WIDE_WGSL = /* wgsl */ `${MATMUL_UNIFORM}
@group(0) @binding(1) var<storage, read> A : array<vec4<f32>>;
@group(0) @binding(2) var<storage, read> B : array<vec4<f32>>;
@group(0) @binding(3) var<storage, read_write> C : array<vec4<f32>>;
@group(0) @binding(4) var<storage, read> Bias : array<vec4<f32>>;
@group(0) @binding(5) var<storage, read_write> RS : array<vec4<f32>>;

// [k][m] and [k][n] tiles, 8 x 128, each k row 33 vec4 (132 floats: see above)
var<workgroup> As : array<vec4<f32>, 264>;
var<workgroup> Bs : array<vec4<f32>, 264>;

// thread t's vec4 of a k tile of an operand: along its contiguous dimension, for one stored
// [rows, K] (K contiguous) or [K, rows] (rows contiguous); zero past the edges. (Two functions:
// WGSL passes no pointer to storage without an extension.)
fn tileIndex(kContiguous : bool, k0 : u32, r0 : u32, rows : u32, off : u32, t : u32) -> i32 {
  if (kContiguous) {
    let r = r0 + t / 2u; let k = k0 + 4u * (t % 2u);
    if (r < rows && k < p.K) { return i32((off + r * p.K + k) / 4u); }
  } else {
    let k = k0 + t / 32u; let r = r0 + 4u * (t % 32u);
    if (k < p.K && r < rows) { return i32((off + k * rows + r) / 4u); }
  }
  return -1;
}
fn loadA(kContiguous : bool, k0 : u32, r0 : u32, off : u32, t : u32) -> vec4<f32> {
  let i = tileIndex(kContiguous, k0, r0, p.M, off, t);
  if (i < 0) { return vec4<f32>(0.0); }
  return A[u32(i)];
}
fn loadB(kContiguous : bool, k0 : u32, r0 : u32, off : u32, t : u32) -> vec4<f32> {
  let i = tileIndex(kContiguous, k0, r0, p.N, off, t);
  if (i < 0) { return vec4<f32>(0.0); }
  return B[u32(i)];
}

@compute @workgroup_size(16, 16, 1)
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_id) lid : vec3<u32>) {
  let batch = wg.z;
  let row0 = wg.y * 128u;
  let col0 = wg.x * 128u;
  let ao = batch * p.aStride;
  let bo = batch * p.bStride;
  let tx = lid.x; let ty = lid.y;
  let t = ty * 16u + tx;
  let aK = p.transA == 0u; // A stored [M, K]
  let bK = p.transB == 1u; // B stored [N, K]
  var acc : array<vec4<f32>, 16>;
  for (var i = 0u; i < 16u; i++) { acc[i] = vec4<f32>(0.0); }
  var ra = loadA(aK, 0u, row0, ao, t);
  var rb = loadB(bK, 0u, col0, bo, t);
  // a linear layer's bias gradient for free: with op(A) = G^T stored [K, M] (M contiguous), the
  // first column of workgroups sums the A tiles they load anyway (each element once)
  let rowSums = (p.flags & 2u) != 0u && !aK && wg.x == 0u;
  var rs = vec4<f32>(0.0);
  for (var k0 = 0u; k0 < p.K; k0 += 8u) {
    if (aK) {
      let r = t / 2u; let k = 4u * (t % 2u);
      for (var j = 0u; j < 4u; j++) { As[(k + j) * 33u + r / 4u][r % 4u] = ra[j]; }
    } else {
      As[(t / 32u) * 33u + t % 32u] = ra;
      rs += ra;
    }
    if (bK) {
      let r = t / 2u; let k = 4u * (t % 2u);
      for (var j = 0u; j < 4u; j++) { Bs[(k + j) * 33u + r / 4u][r % 4u] = rb[j]; }
    } else { Bs[(t / 32u) * 33u + t % 32u] = rb; }
    workgroupBarrier();
    if (k0 + 8u < p.K) {
      ra = loadA(aK, k0 + 8u, row0, ao, t);
      rb = loadB(bK, k0 + 8u, col0, bo, t);
    }
    for (var kk = 0u; kk < 8u; kk++) {
      let a0 = As[kk * 33u + ty]; let a1 = As[kk * 33u + 16u + ty];
      let b0 = Bs[kk * 33u + tx]; let b1 = Bs[kk * 33u + 16u + tx];
${wideMath}
    }
    workgroupBarrier();
  }
  if (rowSums) {
    // thread t summed rows 4 (t % 32)..+3 over the k rows t / 32 of every tile: add the 8 lanes
    As[t] = rs;
    workgroupBarrier();
    if (t < 32u && row0 + 4u * t < p.M) {
      var s = As[t];
      for (var j = 1u; j < 8u; j++) { s += As[t + 32u * j]; }
      RS[(row0 + 4u * t) / 4u] = s;
    }
  }
  let co = batch * p.M * p.N;
  let c0 = col0 + 4u * tx;
  let c1 = col0 + 64u + 4u * tx;
  var bias0 = vec4<f32>(0.0);
  var bias1 = vec4<f32>(0.0);
  if ((p.flags & 1u) != 0u) {
    if (c0 < p.N) { bias0 = Bias[c0 / 4u]; }
    if (c1 < p.N) { bias1 = Bias[c1 / 4u]; }
  }
${WIDE_GELU_EPILOGUE}${wideStore}
}
${GELU_WGSL}
fn gelu4(v : vec4<f32>) -> vec4<f32> { return vec4<f32>(gelu(v.x), gelu(v.y), gelu(v.z), gelu(v.w)); }
`;

/**
 * The 128x128 matmul on packed half operands (two per u32 word, element 2i in the low 16 bits),
 * widened to f32 in its tile loads: 4 halves are one vec2<u32> where 4 floats are one vec4, so the
 * index arithmetic is the float kernel's. bf16 widens by a shift; f16 by F16_TO_F32_WGSL. Under
 * autocast a linear's operands are both half: this saves the two cast launches before the product
 * and reads half the bytes. Accumulation and output stay float32.
 */
export function matmulWideHalfWgsl(half: 'bf16' | 'f16', halfOut = false): string {
  const widen = half === 'bf16'
    ? 'fn widen(w : vec2<u32>) -> vec4<f32> { return bitcast<vec4<f32>>(vec4<u32>(w.x << 16u, w.x & 0xffff0000u, w.y << 16u, w.y & 0xffff0000u)); }'
    : `${F16_TO_F32_WGSL}
fn widen(w : vec2<u32>) -> vec4<f32> {
  return bitcast<vec4<f32>>(vec4<u32>(f16ToF32(w.x & 0xffffu), f16ToF32(w.x >> 16u), f16ToF32(w.y & 0xffffu), f16ToF32(w.y >> 16u)));
}`;
  const swap = (code: string, from: string, to: string): string => {
    if (!code.includes(from)) throw new Error(`matmulWideHalfWgsl: the float kernel no longer has ${from}`);
    return code.replace(from, to);
  };
  // the GELU epilogue only with half results (their pre-activation packed too)
  let code = swap(MATMUL_WIDE_WGSL, WIDE_GELU_EPILOGUE, halfOut ? WIDE_GELU_EPILOGUE_HALF : '');
  code = swap(code, 'var<storage, read> A : array<vec4<f32>>;', 'var<storage, read> A : array<vec2<u32>>;');
  code = swap(code, 'var<storage, read> B : array<vec4<f32>>;', 'var<storage, read> B : array<vec2<u32>>;');
  code = swap(code, 'return A[u32(i)];', 'return widen(A[u32(i)]);');
  code = swap(code, 'return B[u32(i)];', 'return widen(B[u32(i)]);');
  if (!halfOut) return `${code}\n${widen}\n`;
  // the result rounded to the operands' half type as it is stored (the bias, of that type too,
  // added in float32 first): what the op would do with a cast launch after the product
  code = swap(code, 'var<storage, read_write> C : array<vec4<f32>>;', 'var<storage, read_write> C : array<vec2<u32>>;');
  code = swap(code, 'var<storage, read> Bias : array<vec4<f32>>;', 'var<storage, read> Bias : array<vec2<u32>>;');
  code = swap(code, 'bias0 = Bias[c0 / 4u];', 'bias0 = widen(Bias[c0 / 4u]);');
  code = swap(code, 'bias1 = Bias[c1 / 4u];', 'bias1 = widen(Bias[c1 / 4u]);');
  // RS holds the packed pre-activation (row sums are of float32 operands only)
  code = swap(code, 'var<storage, read_write> RS : array<vec4<f32>>;', 'var<storage, read_write> RS : array<vec2<u32>>;');
  code = swap(code, 'RS[(row0 + 4u * t) / 4u] = s;', 'RS[(row0 + 4u * t) / 4u] = narrow4(s);');
  const stores = code.match(/= acc\[\d+\] \+ bias[01];/g) ?? [];
  if (stores.length !== 16) throw new Error(`matmulWideHalfWgsl: expected the float kernel's 16 stores, found ${stores.length}`);
  code = code.replace(/= (acc\[\d+\] \+ bias[01]);/g, '= narrow4($1);');
  const bits = half === 'bf16' ? 'f32ToBf16' : 'f32ToF16';
  return `${code}
${widen}
${F32_TO_HALF_WGSL}
fn narrow4(v : vec4<f32>) -> vec2<u32> {
  let b = bitcast<vec4<u32>>(v);
  return vec2<u32>(${bits}(b.x) | (${bits}(b.y) << 16u), ${bits}(b.z) | (${bits}(b.w) << 16u));
}
`;
}

/**
 * Dtype conversion by bit manipulation (bitcast): WGSL lets a compiler assume no NaN or infinity
 * in float arithmetic and many GPUs flush subnormals, but integer operations on the bits are exact
 * everywhere. Half tensors are packed two per u32 (element 2i in the low 16 bits), so a half takes
 * 2 bytes on the device: the modes that read a half unpack by shifts, those that write one make a
 * word from two values per thread. Modes are CAST_CODES (kernels.ts); the rounding follows
 * dtype.ts bit for bit.
 */
export const CAST_PARAMS_BYTES = 16; // n, mode, dispatch width (threads), pad
export const CAST_WGSL = /* wgsl */ `
struct P { n : u32, mode : u32, width : u32, pad : u32 }
@group(0) @binding(0) var<uniform> p : P;
@group(0) @binding(1) var<storage, read> X : array<u32>;
@group(0) @binding(2) var<storage, read_write> Y : array<u32>;

/** The 16-bit pattern of packed half element i. */
fn halfAt(i : u32) -> u32 { return (X[i >> 1u] >> ((i & 1u) * 16u)) & 0xffffu; }

${F16_TO_F32_WGSL}
${F32_TO_HALF_WGSL}
/** Float32 bits of element i narrowed to a half pattern (modes 3, 4, 7). */
fn narrow(i : u32) -> u32 {
  switch p.mode {
    case 3u: { return f32ToF16(X[i]); }
    case 4u: { return f32ToBf16(X[i]); }
    default: { return u32(bitcast<f32>(X[i])); }                       // pack: an f32 integer 0..65535
  }
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let i = gid.x + gid.y * p.width;
  let packing = p.mode == 3u || p.mode == 4u || p.mode == 7u;
  if (i >= select(p.n, (p.n + 1u) / 2u, packing)) { return; }
  if (packing) {                                                        // one word from elements 2i, 2i+1
    var w = narrow(2u * i);
    if (2u * i + 1u < p.n) { w = w | (narrow(2u * i + 1u) << 16u); }
    Y[i] = w;
    return;
  }
  switch p.mode {
    case 1u: { Y[i] = f16ToF32(halfAt(i)); }
    case 2u: { Y[i] = halfAt(i) << 16u; }
    case 5u: { Y[i] = bitcast<u32>(trunc(bitcast<f32>(X[i]))); }
    case 6u: { Y[i] = bitcast<u32>(f32(halfAt(i))); }
    default: { Y[i] = X[i]; }
  }
}
`;

/**
 * GELU (tanh approximation, as kernels.ts's unary gelu and geluGrad) on packed half tensors, a
 * word (two elements) a thread: widened, computed in float32, rounded once to the half type. The
 * backward (backward = 1) is g * gelu'(x) with g of the same type. Under autocast this is one
 * launch where the float32 kernels take a widening cast, the kernel and a narrowing cast (and
 * four launches for the backward), each pass over the [B*T, 4C] activation.
 */
export const GELU_HALF_PARAMS_BYTES = 16; // n (elements), backward, half (1 float16, 2 bfloat16), dispatch width (threads)
export const GELU_HALF_WGSL = /* wgsl */ `
struct P { n : u32, backward : u32, half : u32, width : u32 }
@group(0) @binding(0) var<uniform> p : P;
@group(0) @binding(1) var<storage, read> X : array<u32>;
@group(0) @binding(2) var<storage, read> G : array<u32>;
@group(0) @binding(3) var<storage, read_write> Y : array<u32>;
${F16_TO_F32_WGSL}${F32_TO_HALF_WGSL}
fn widenHalf(h : u32) -> f32 {
  if (p.half == 1u) { return bitcast<f32>(f16ToF32(h)); }
  return bitcast<f32>(h << 16u);
}
fn narrowHalf(v : f32) -> u32 {
  if (p.half == 1u) { return f32ToF16(bitcast<u32>(v)); }
  return f32ToBf16(bitcast<u32>(v));
}
${GELU_WGSL}
fn one(x : f32, g : f32) -> f32 {
  if (p.backward == 0u) { return gelu(x); }
  return g * geluGrad(x);
}

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let i = gid.x + gid.y * p.width; // word i: elements 2i (low half) and 2i + 1
  if (i >= (p.n + 1u) / 2u) { return; }
  let xw = X[i];
  var gw = 0u;
  if (p.backward == 1u) { gw = G[i]; }
  var out = narrowHalf(one(widenHalf(xw & 0xffffu), widenHalf(gw & 0xffffu)));
  if (2u * i + 1u < p.n) { out = out | (narrowHalf(one(widenHalf(xw >> 16u), widenHalf(gw >> 16u))) << 16u); }
  Y[i] = out;
}
`;

/**
 * AdamW in place, as torch.optim.AdamW (decoupled decay, then the bias-corrected update):
 * one launch per parameter updating p, m and v together, where the portable gpu.js kernels
 * (one output each) take three launches and three new buffers.
 */
export const ADAMW_PARAMS_BYTES = 48; // n, width, 2 pad, then lr, beta1, beta2, eps, wd, bc1, bc2, pad
export const ADAMW_WGSL = /* wgsl */ `
struct P {
  n : u32, width : u32, pad0 : u32, pad1 : u32,
  lr : f32, beta1 : f32, beta2 : f32, eps : f32,
  wd : f32, bc1 : f32, bc2 : f32, pad2 : f32,
}
@group(0) @binding(0) var<uniform> p : P;
@group(0) @binding(1) var<storage, read> G : array<f32>;
@group(0) @binding(2) var<storage, read_write> W : array<f32>;
@group(0) @binding(3) var<storage, read_write> M : array<f32>;
@group(0) @binding(4) var<storage, read_write> V : array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let i = gid.x + gid.y * p.width;
  if (i >= p.n) { return; }
  let g = G[i];
  let m = p.beta1 * M[i] + (1.0 - p.beta1) * g;
  let v = p.beta2 * V[i] + (1.0 - p.beta2) * g * g;
  M[i] = m;
  V[i] = v;
  let w = W[i] * (1.0 - p.lr * p.wd);
  W[i] = w - p.lr * (m / p.bc1) / (sqrt(v / p.bc2) + p.eps);
}
`;

/**
 * Gradient updates in place: X += Y (gradient accumulation), or X *= F[0] (clipping by a factor
 * that stays on the device). A gpu.js kernel writes a new buffer; these write the one that holds
 * the gradient, so accumulating and clipping make no buffer.
 */
export const INPLACE_PARAMS_BYTES = 16; // n, mode (0 add, 1 scale), dispatch width (threads), pad
export const INPLACE_WGSL = /* wgsl */ `
struct P { n : u32, mode : u32, width : u32, pad : u32 }
@group(0) @binding(0) var<uniform> p : P;
@group(0) @binding(1) var<storage, read> Y : array<f32>;
@group(0) @binding(2) var<storage, read_write> X : array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let i = gid.x + gid.y * p.width;
  if (i >= p.n) { return; }
  if (p.mode == 1u) { X[i] = X[i] * Y[0]; } else { X[i] = X[i] + Y[i]; }
}
`;

/**
 * The strided gather for views that do not nest into three dims (a permute of four, a slice of a
 * permute): out[i] = X[off + sum_k c_k * t_k] where (c_0..c_7) are i's coordinates in `shape`
 * (row-major, up to 8 dims). All index arithmetic is u32, exact for any buffer a device can bind;
 * `base` is the first output element of this launch (outputs past the binding limit are gathered
 * a bound chunk at a time). Bits are copied as they are, so any 32-bit dtype moves.
 */
export const GATHER_PARAMS_BYTES = 80; // n, base, off, dispatch width, shape[8], strides[8]
export const GATHER_WGSL = /* wgsl */ `
struct P { n : u32, base : u32, off : u32, width : u32, shape : array<vec4<u32>, 2>, strides : array<vec4<u32>, 2> }
@group(0) @binding(0) var<uniform> p : P;
@group(0) @binding(1) var<storage, read> X : array<u32>;
@group(0) @binding(2) var<storage, read_write> Y : array<u32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let i = gid.x + gid.y * p.width;
  if (i >= p.n) { return; }
  var rest = p.base + i;
  var idx = p.off;
  for (var k = 7; k >= 0; k--) {                                       // last dim fastest
    let d = p.shape[k / 4][k % 4];
    idx += (rest % d) * p.strides[k / 4][k % 4];
    rest = rest / d;
  }
  Y[i] = X[idx];
}
`;

/**
 * The embedding's backward as a segment sum: out[r, c] = sum over j in [offs[r], offs[r+1]) of
 * src[perm[j], c], with perm (the source rows sorted by their index) and offs made on the host as
 * u32 (exact for any count, where f32 stops at 2^24). One thread per output element; `row0` is the
 * first output row of this launch (outputs past the binding limit go a chunk of rows at a time).
 */
export const SEGMENT_SUM_PARAMS_BYTES = 16; // n (threads), cols, row0, width
export const SEGMENT_SUM_WGSL = /* wgsl */ `
struct P { n : u32, cols : u32, row0 : u32, width : u32 }
@group(0) @binding(0) var<uniform> p : P;
@group(0) @binding(1) var<storage, read> src : array<f32>;
@group(0) @binding(2) var<storage, read> perm : array<u32>;
@group(0) @binding(3) var<storage, read> offs : array<u32>;
@group(0) @binding(4) var<storage, read_write> Y : array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let i = gid.x + gid.y * p.width;
  if (i >= p.n) { return; }
  let r = p.row0 + i / p.cols;
  let c = i % p.cols;
  var acc = 0.0;
  for (var j = offs[r]; j < offs[r + 1u]; j++) { acc += src[perm[j] * p.cols + c]; }
  Y[i] = acc;
}
`;
