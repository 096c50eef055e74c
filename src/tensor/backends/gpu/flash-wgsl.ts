// Flash attention in WGSL, forward and backward: the gpu backend's fused attention (fused.ts),
// dispatched by webgpu-runner.ts. The other hand-written kernels are in wgsl.ts.

/**
 * Flash attention (Dao et al.), forward and backward, never forming the [T, S] scores: each
 * workgroup takes 64 rows (queries, or keys in the dK/dV pass), stages tiles of the other side
 * in workgroup memory, and keeps an online softmax (running max and sum) per row; the backward
 * recomputes the probabilities from the saved row logsumexp. Causal tiles past a block's last
 * query are skipped. Query i sees keys j <= i + (S - T) when causal, as functional.ts's mask.
 *
 * Every operand is addressed through a View, so one kernel serves contiguous [B*nh, T, hs]
 * tensors and GPT's packed c_attn output [B, T, 3C] (q, k, v at offsets 0, C, 2C; head h at
 * h*hs) without the split-and-transpose copies. Element (z = b*nh + h, row i, d) is at
 * off + b*sB + h*sH + i*sT + d. lse and D are [B*nh, T]. Head sizes up to 128.
 */
export const FLASH_HEAD_MAX = 128;
/** Uniform layout: 8 words, then 7 views of 4 words (q, k, v, o, dO, g, g2). */
export const FLASH_PARAMS_BYTES = 144;
const FLASH_COMMON = /* wgsl */ `
struct View { off : u32, sB : u32, sH : u32, sT : u32 }
struct P {
  T : u32, S : u32, hs : u32, nh : u32,
  scale : f32, causal : u32, mode : u32, pad : u32,
  q : View, k : View, v : View, o : View, dO : View, g : View, g2 : View,
}
@group(0) @binding(0) var<uniform> p : P;
const WG : u32 = 64u;
const TILE : u32 = 1920u; // floats per staged operand: two of them fit WebGPU's 16 KiB of workgroup memory
fn at(v : View, z : u32, i : u32) -> u32 { return v.off + (z / p.nh) * v.sB + (z % p.nh) * v.sH + i * v.sT; }
// whether query i may see key j
fn sees(i : u32, j : u32) -> bool { return p.causal == 0u || i32(j) <= i32(i) + i32(p.S) - i32(p.T); }
`;

/**
 * What the two query-side kernels share (forward, dQ): K and V bound at 2 and 3, and a tile of
 * kt keys staged from j0 into workgroup memory by the 64 threads together.
 */
const FLASH_KEY_TILES = /* wgsl */ `
@group(0) @binding(2) var<storage, read> K : array<f32>;
@group(0) @binding(3) var<storage, read> V : array<f32>;
var<workgroup> Ks : array<f32, TILE>;
var<workgroup> Vs : array<f32, TILE>;
// keys any query of block b sees (the same for the whole workgroup: barriers stay uniform)
fn keysEnd(b : u32) -> u32 {
  if (p.causal == 0u) { return p.S; }
  return u32(clamp(i32(min(p.T, b * WG + WG)) + i32(p.S) - i32(p.T), 0, i32(p.S)));
}
fn stageKeys(z : u32, j0 : u32, kt : u32, tid : u32) {
  for (var e = tid; e < kt * p.hs; e += WG) {
    let j = j0 + e / p.hs;
    var kv = 0.0; var vv = 0.0;
    if (j < p.S) { kv = K[at(p.k, z, j) + e % p.hs]; vv = V[at(p.v, z, j) + e % p.hs]; }
    Ks[e] = kv; Vs[e] = vv;
  }
}
`;

/** Forward: O and the row logsumexp. One thread per query row. */
export const FLASH_FWD_WGSL = /* wgsl */ `${FLASH_COMMON}${FLASH_KEY_TILES}
@group(0) @binding(1) var<storage, read> Q : array<f32>;
@group(0) @binding(4) var<storage, read_write> O : array<f32>;
@group(0) @binding(5) var<storage, read_write> LSE : array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_id) lid : vec3<u32>) {
  let z = wg.z * p.nh + wg.y;
  let i = wg.x * WG + lid.x;
  let live = i < p.T;
  let hs = p.hs;
  let kt = TILE / hs;
  var q : array<f32, ${FLASH_HEAD_MAX}>;
  var acc : array<f32, ${FLASH_HEAD_MAX}>;
  if (live) { let a = at(p.q, z, i); for (var d = 0u; d < hs; d++) { q[d] = Q[a + d] * p.scale; acc[d] = 0.0; } }
  var m = -3.0e38; // finite: WGSL lets compilers assume no infinities
  var l = 0.0;
  for (var j0 = 0u; j0 < keysEnd(wg.x); j0 += kt) {
    stageKeys(z, j0, kt, lid.x);
    workgroupBarrier();
    if (live) {
      for (var jj = 0u; jj < kt; jj++) {
        let j = j0 + jj;
        if (j >= p.S || !sees(i, j)) { break; }
        var s = 0.0;
        for (var d = 0u; d < hs; d++) { s = fma(q[d], Ks[jj * hs + d], s); }
        let mNew = max(m, s);
        let c = exp(m - mNew);
        let e = exp(s - mNew);
        l = l * c + e;
        for (var d = 0u; d < hs; d++) { acc[d] = fma(e, Vs[jj * hs + d], acc[d] * c); }
        m = mNew;
      }
    }
    workgroupBarrier();
  }
  if (live) {
    let a = at(p.o, z, i);
    for (var d = 0u; d < hs; d++) { O[a + d] = acc[d] / l; }
    LSE[z * p.T + i] = m + log(l);
  }
}
`;

/** Backward, queries: dQ, and D = rowsum(dO * O) for the key pass. One thread per query row. */
export const FLASH_BWD_Q_WGSL = /* wgsl */ `${FLASH_COMMON}${FLASH_KEY_TILES}
@group(0) @binding(1) var<storage, read> Q : array<f32>;
@group(0) @binding(4) var<storage, read> O : array<f32>;
@group(0) @binding(5) var<storage, read> GO : array<f32>;
@group(0) @binding(6) var<storage, read> LSE : array<f32>;
@group(0) @binding(7) var<storage, read_write> GQ : array<f32>;
@group(0) @binding(8) var<storage, read_write> DD : array<f32>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_id) lid : vec3<u32>) {
  let z = wg.z * p.nh + wg.y;
  let i = wg.x * WG + lid.x;
  let live = i < p.T;
  let hs = p.hs;
  let kt = TILE / hs;
  var q : array<f32, ${FLASH_HEAD_MAX}>;
  var go : array<f32, ${FLASH_HEAD_MAX}>;
  var dq : array<f32, ${FLASH_HEAD_MAX}>;
  var D = 0.0;
  var lse = 0.0;
  if (live) {
    let a = at(p.q, z, i); let ao = at(p.o, z, i); let ag = at(p.dO, z, i);
    for (var d = 0u; d < hs; d++) { q[d] = Q[a + d] * p.scale; go[d] = GO[ag + d]; dq[d] = 0.0; D = fma(go[d], O[ao + d], D); }
    lse = LSE[z * p.T + i];
  }
  for (var j0 = 0u; j0 < keysEnd(wg.x); j0 += kt) {
    stageKeys(z, j0, kt, lid.x);
    workgroupBarrier();
    if (live) {
      for (var jj = 0u; jj < kt; jj++) {
        let j = j0 + jj;
        if (j >= p.S || !sees(i, j)) { break; }
        var s = 0.0; var dp = 0.0;
        for (var d = 0u; d < hs; d++) { s = fma(q[d], Ks[jj * hs + d], s); dp = fma(go[d], Vs[jj * hs + d], dp); }
        let ds = exp(s - lse) * (dp - D);
        for (var d = 0u; d < hs; d++) { dq[d] = fma(ds, Ks[jj * hs + d], dq[d]); }
      }
    }
    workgroupBarrier();
  }
  if (live) {
    let a = at(p.g, z, i);
    for (var d = 0u; d < hs; d++) { GQ[a + d] = dq[d] * p.scale; }
    DD[z * p.T + i] = D;
  }
}
`;

/**
 * Backward, keys: dK and dV, one thread per key row over tiles of queries. mode 0 writes both
 * (views g and g2 into one buffer: packed qkv), 1 dK only, 2 dV only (separate buffers take
 * two launches: one buffer cannot be bound writable twice).
 */
export const FLASH_BWD_KV_WGSL = /* wgsl */ `${FLASH_COMMON}
@group(0) @binding(1) var<storage, read> Q : array<f32>;
@group(0) @binding(2) var<storage, read> K : array<f32>;
@group(0) @binding(3) var<storage, read> V : array<f32>;
@group(0) @binding(4) var<storage, read> GO : array<f32>;
@group(0) @binding(5) var<storage, read> LSE : array<f32>;
@group(0) @binding(6) var<storage, read> DD : array<f32>;
@group(0) @binding(7) var<storage, read_write> G : array<f32>;
var<workgroup> Qs : array<f32, TILE>;
var<workgroup> Gs : array<f32, TILE>;
var<workgroup> Ls : array<f32, 128>;
var<workgroup> Ds : array<f32, 128>;

@compute @workgroup_size(64, 1, 1)
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_id) lid : vec3<u32>) {
  let z = wg.z * p.nh + wg.y;
  let j = wg.x * WG + lid.x;
  let live = j < p.S;
  let hs = p.hs;
  let qt = min(128u, TILE / hs);
  var k : array<f32, ${FLASH_HEAD_MAX}>;
  var v : array<f32, ${FLASH_HEAD_MAX}>;
  var dk : array<f32, ${FLASH_HEAD_MAX}>;
  var dv : array<f32, ${FLASH_HEAD_MAX}>;
  if (live) {
    let ak = at(p.k, z, j); let av = at(p.v, z, j);
    for (var d = 0u; d < hs; d++) { k[d] = K[ak + d] * p.scale; v[d] = V[av + d]; dk[d] = 0.0; dv[d] = 0.0; }
  }
  // the first query any key of this block is seen by (uniform across the workgroup)
  var i0 = 0u;
  if (p.causal == 1u) { i0 = u32(clamp(i32(wg.x * WG) - (i32(p.S) - i32(p.T)), 0, i32(p.T))); i0 = i0 - i0 % qt; }
  for (var t0 = i0; t0 < p.T; t0 += qt) {
    for (var e = lid.x; e < qt * hs; e += WG) {
      let i = t0 + e / hs;
      var qv = 0.0; var gv = 0.0;
      if (i < p.T) { qv = Q[at(p.q, z, i) + e % hs]; gv = GO[at(p.dO, z, i) + e % hs]; }
      Qs[e] = qv; Gs[e] = gv;
    }
    for (var e = lid.x; e < qt; e += WG) {
      let i = t0 + e;
      var lv = 0.0; var dv0 = 0.0;
      if (i < p.T) { lv = LSE[z * p.T + i]; dv0 = DD[z * p.T + i]; }
      Ls[e] = lv; Ds[e] = dv0;
    }
    workgroupBarrier();
    if (live) {
      for (var ii = 0u; ii < qt; ii++) {
        let i = t0 + ii;
        if (i >= p.T) { break; }
        if (!sees(i, j)) { continue; }
        var s = 0.0; var dp = 0.0;
        for (var d = 0u; d < hs; d++) { s = fma(Qs[ii * hs + d], k[d], s); dp = fma(Gs[ii * hs + d], v[d], dp); }
        let pr = exp(s - Ls[ii]);
        let ds = pr * (dp - Ds[ii]);
        for (var d = 0u; d < hs; d++) {
          dv[d] = fma(pr, Gs[ii * hs + d], dv[d]);
          dk[d] = fma(ds, Qs[ii * hs + d], dk[d]);
        }
      }
    }
    workgroupBarrier();
  }
  if (live) {
    if (p.mode != 2u) { let a = at(p.g, z, j); for (var d = 0u; d < hs; d++) { G[a + d] = dk[d] * p.scale; } }
    if (p.mode != 1u) { let a = at(p.g2, z, j); for (var d = 0u; d < hs; d++) { G[a + d] = dv[d]; } }
  }
}
`;
