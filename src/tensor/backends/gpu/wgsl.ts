// Hand-written WGSL for the one kernel where gpu.js's one-output-per-thread translation is
// far from the hardware: matmul. Measured on the H200 (gpu-kit README): the naive gpu.js
// matmul runs at ~1.5 TFLOP/s, a 64x64-tiled kernel with 4x4 outputs per thread at 15-22.
// Each workgroup stages a 64x16 tile of A and a 16x64 tile of B in workgroup memory, so
// every value read from global memory feeds 64 multiply-adds instead of one.

/** Uniform layout: 8 u32 (M, N, K, transA, transB, aBatchStride, bBatchStride, pad). */
export const MATMUL_PARAMS_BYTES = 32;
export const MATMUL_TILE = 64;

export const MATMUL_WGSL = /* wgsl */ `
struct P {
  M : u32, N : u32, K : u32, transA : u32,
  transB : u32, aStride : u32, bStride : u32, pad : u32,
}
@group(0) @binding(0) var<uniform> p : P;
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
