// Flash attention in WGSL, forward and backward: the gpu backend's fused attention (fused.ts),
// dispatched by webgpu-runner.ts. The other hand-written kernels are in wgsl.ts.

/**
 * Flash attention (Dao et al.), forward and backward, the forward never forming the [T, S]
 * scores: each workgroup takes 64 rows (queries, or keys in the dK/dV pass), stages tiles of the
 * other side in workgroup memory, and keeps an online softmax (running max and sum) per row.
 * Causal tiles past a block's last query are skipped. Query i sees keys j <= i + (S - T) when
 * causal, as functional.ts's mask.
 *
 * The backward is two launches. The key pass (a thread per key) recomputes the probabilities from
 * the saved row logsumexp, accumulates dK and dV, and writes each dS_ij it computes to a buffer;
 * the query pass then takes dQ = dS K from that buffer. So the backward does five products, as
 * FlashAttention-2's, not seven (a query pass that recomputed q k^T and dO v^T itself), and needs
 * no float atomics, which WGSL lacks. The price is dS in memory for the heads and queries of one
 * chunk at a time (fused.ts sizes the chunks: 0.8 GB for all of GPT-2's at B=16, T=1024);
 * chunk = (batch entries b0.., queries qa..qb), and the key pass adds to dK and dV across query
 * chunks.
 *
 * Every operand is addressed through a View, so one kernel serves contiguous [B*nh, T, hs]
 * tensors and GPT's packed c_attn output [B, T, 3C] (q, k, v at offsets 0, C, 2C; head h at
 * h*hs) without the split-and-transpose copies. Element (z = b*nh + h, row i, d) is at
 * off + b*sB + h*sH + i*sT + d. lse is [B*nh, T]; dS is [chunk's heads, qb - qa, S]. Head
 * sizes up to 128.
 *
 * A pipeline per head size: the size is a constant of the WGSL, so every loop over a row has a
 * fixed trip count a compiler can unroll, and a thread's rows (q, the accumulators) can live in
 * registers rather than in memory indexed at run time. Where the head size is a multiple of 4
 * (GPT-2's 64), rows are vec4s: one workgroup-memory read feeds four multiply-adds. The forward
 * rescales its accumulator once per tile of keys, not once per key.
 */
export const FLASH_HEAD_MAX = 128;
/** Uniform layout: 12 words, then 7 views of 4 words (q, k, v, o, dO, g, g2). */
export const FLASH_PARAMS_BYTES = 160;
/** The kernels' storage bindings after the uniform. */
export const FLASH_BINDINGS = {
  flashFwd: ['read', 'read', 'read', 'write', 'write'],
  flashBwdKV: ['read', 'read', 'read', 'read', 'read', 'read', 'write', 'write'],
  flashBwdQ: ['read', 'read', 'write'],
} as const;
const WG = 64;
/** Floats per staged operand: two of them fit WebGPU's 16 KiB of workgroup memory. */
const TILE = 1920;

/**
 * A head size's shape of the code: vector width, vectors per row, rows per staged tile (KT keys,
 * QT queries), and DT keys a tile of the dQ pass, which stages a key tile and a [DT, 64 + 1] tile
 * of dS (a padded column a query: the 64 threads read 64 consecutive words) in 15.5 KiB.
 */
function shape(hs: number): { V: number; HV: number; KT: number; QT: number; DT: number } {
  if (!Number.isInteger(hs) || hs < 1 || hs > FLASH_HEAD_MAX) throw new Error(`flash attention: head size ${hs} is not in 1..${FLASH_HEAD_MAX}`);
  const V = hs % 4 === 0 ? 4 : 1;
  return { V, HV: hs / V, KT: Math.min(64, Math.floor(TILE / hs)), QT: Math.min(128, Math.floor(TILE / hs)), DT: Math.min(64, Math.floor(3968 / (WG + 1 + hs))) };
}

function common(hs: number): string {
  const { V, HV } = shape(hs);
  return /* wgsl */ `
struct View { off : u32, sB : u32, sH : u32, sT : u32 }
struct P {
  T : u32, S : u32, hs : u32, nh : u32,
  scale : f32, causal : u32, mode : u32, b0 : u32,
  qa : u32, qb : u32, pad0 : u32, pad1 : u32,
  q : View, k : View, v : View, o : View, dO : View, g : View, g2 : View,
}
@group(0) @binding(0) var<uniform> p : P;
const WG : u32 = ${WG}u;
const HV : u32 = ${HV}u; // a row: HV values of VT
alias VT = ${V === 4 ? 'vec4<f32>' : 'f32'};
fn dotv(a : VT, b : VT) -> f32 { return ${V === 4 ? 'dot(a, b)' : 'a * b'}; }
fn at(v : View, z : u32, i : u32) -> u32 { return v.off + (z / p.nh) * v.sB + (z % p.nh) * v.sH + i * v.sT; }
// whether query i may see key j
fn sees(i : u32, j : u32) -> bool { return p.causal == 0u || i32(j) <= i32(i) + i32(p.S) - i32(p.T); }
// the keys query i sees are 0 .. keysOf(i) - 1
fn keysOf(i : u32) -> u32 {
  if (p.causal == 0u) { return p.S; }
  return u32(clamp(i32(i) + i32(p.S) - i32(p.T) + 1, 0, i32(p.S)));
}
// the keys any query before row end sees (the last one sees the most); the same for a whole
// workgroup's block of rows, so the tile loops it bounds keep their barriers uniform
fn keysBefore(end : u32) -> u32 { return keysOf(end - 1u); }
// where dS_ij of head z is in the backward's chunk (batch entries from b0, queries qa .. qb - 1)
fn dsAt(z : u32, i : u32, j : u32) -> u32 { return ((z - p.b0 * p.nh) * (p.qb - p.qa) + i - p.qa) * p.S + j; }
`;
}

/** WGSL for value c (a VT) of the row at `base` of f32 array `arr`. */
function load(hs: number, arr: string, base: string, c: string): string {
  if (shape(hs).V === 1) return `${arr}[${base} + ${c}]`;
  const e = `${base} + 4u * ${c}`;
  return `VT(${arr}[${e}], ${arr}[${e} + 1u], ${arr}[${e} + 2u], ${arr}[${e} + 3u])`;
}
/** WGSL storing VT `value` as value c of the row at `base` of f32 array `arr`. */
function store(hs: number, arr: string, base: string, c: string, value: string): string {
  if (shape(hs).V === 1) return `${arr}[${base} + ${c}] = ${value};`;
  const e = `${base} + 4u * ${c}`;
  return `{ let r = ${value}; ${arr}[${e}] = r.x; ${arr}[${e} + 1u] = r.y; ${arr}[${e} + 2u] = r.z; ${arr}[${e} + 3u] = r.w; }`;
}

/** The forward's key side: K and V bound at 2 and 3, and a tile of KT keys staged from j0 into workgroup memory by the 64 threads together. */
function keyTiles(hs: number): string {
  const { KT } = shape(hs);
  return /* wgsl */ `
@group(0) @binding(2) var<storage, read> K : array<f32>;
@group(0) @binding(3) var<storage, read> V : array<f32>;
const KT : u32 = ${KT}u; // keys a tile
var<workgroup> Ks : array<VT, ${KT * shape(hs).HV}>;
var<workgroup> Vs : array<VT, ${KT * shape(hs).HV}>;
fn stageKeys(z : u32, j0 : u32, tid : u32) {
  for (var e = tid; e < KT * HV; e += WG) {
    let j = j0 + e / HV;
    let c = e % HV;
    var kv = VT(0.0); var vv = VT(0.0);
    if (j < p.S) { let ak = at(p.k, z, j); let av = at(p.v, z, j); kv = ${load(hs, 'K', 'ak', 'c')}; vv = ${load(hs, 'V', 'av', 'c')}; }
    Ks[e] = kv; Vs[e] = vv;
  }
}
`;
}

/** Forward: O and the row logsumexp. One thread per query row; per tile of keys its scores, then one rescale. */
function flashFwdWgsl(hs: number): string {
  return /* wgsl */ `${common(hs)}${keyTiles(hs)}
@group(0) @binding(1) var<storage, read> Q : array<f32>;
@group(0) @binding(4) var<storage, read_write> O : array<f32>;
@group(0) @binding(5) var<storage, read_write> LSE : array<f32>;

@compute @workgroup_size(${WG}, 1, 1)
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_id) lid : vec3<u32>) {
  let z = (p.b0 + wg.z) * p.nh + wg.y;
  let i = wg.x * WG + lid.x;
  let live = i < p.T;
  var q : array<VT, HV>;
  var acc : array<VT, HV>;
  for (var c = 0u; c < HV; c++) { q[c] = VT(0.0); acc[c] = VT(0.0); }
  if (live) { let a = at(p.q, z, i); for (var c = 0u; c < HV; c++) { q[c] = ${load(hs, 'Q', 'a', 'c')} * p.scale; } }
  var m = -3.0e38; // finite: WGSL lets compilers assume no infinities
  var l = 0.0;
  var sc : array<f32, KT>;
  let jEnd = keysOf(i);
  for (var j0 = 0u; j0 < keysBefore(min(p.T, wg.x * WG + WG)); j0 += KT) {
    stageKeys(z, j0, lid.x);
    workgroupBarrier();
    // the keys of this tile row i sees: the first n (none past its last key)
    let n = min(KT, max(jEnd, j0) - j0);
    if (live && n > 0u) {
      // the tile's scores and their max, then the accumulator rescaled once
      var mt = m;
      for (var jj = 0u; jj < KT; jj++) {
        if (jj >= n) { break; }
        var s = 0.0;
        for (var c = 0u; c < HV; c++) { s += dotv(q[c], Ks[jj * HV + c]); }
        sc[jj] = s;
        mt = max(mt, s);
      }
      let corr = exp(m - mt);
      l = l * corr;
      for (var c = 0u; c < HV; c++) { acc[c] = acc[c] * corr; }
      for (var jj = 0u; jj < KT; jj++) {
        if (jj >= n) { break; }
        let e = exp(sc[jj] - mt);
        l += e;
        for (var c = 0u; c < HV; c++) { acc[c] = fma(VT(e), Vs[jj * HV + c], acc[c]); }
      }
      m = mt;
    }
    workgroupBarrier();
  }
  if (live) {
    let a = at(p.o, z, i);
    for (var c = 0u; c < HV; c++) { ${store(hs, 'O', 'a', 'c', 'acc[c] / l')} }
    LSE[z * p.T + i] = m + log(l);
  }
}
`;
}

/**
 * Backward, keys: dK and dV, one thread per key row over tiles of the chunk's queries, and dS_ij
 * written for the query pass. D_i = rowsum(dO_i * O_i) is taken per tile by the first QT threads
 * (each key block of a head takes it again: 64 multiply-adds a query, against 4 * 64 a key). mode
 * bit 0 writes dK (view g), bit 1 dV (view g2): 3 for GPT's packed qkv, where both are views into
 * one buffer; separate buffers take two launches (1, then 2), as one buffer cannot be bound
 * writable twice. The launch with bit 0 writes dS. Bit 2 adds to dK and dV as the last query chunk
 * left them.
 */
function flashBwdKVWgsl(hs: number): string {
  const { QT, HV } = shape(hs);
  return /* wgsl */ `${common(hs)}
@group(0) @binding(1) var<storage, read> Q : array<f32>;
@group(0) @binding(2) var<storage, read> K : array<f32>;
@group(0) @binding(3) var<storage, read> V : array<f32>;
@group(0) @binding(4) var<storage, read> O : array<f32>;
@group(0) @binding(5) var<storage, read> GO : array<f32>;
@group(0) @binding(6) var<storage, read> LSE : array<f32>;
@group(0) @binding(7) var<storage, read_write> DS : array<f32>;
@group(0) @binding(8) var<storage, read_write> G : array<f32>;
const QT : u32 = ${QT}u; // queries a tile
var<workgroup> Qs : array<VT, ${QT * HV}>;
var<workgroup> Gs : array<VT, ${QT * HV}>;
var<workgroup> Ls : array<f32, ${QT}>;
var<workgroup> Ds : array<f32, ${QT}>;

@compute @workgroup_size(${WG}, 1, 1)
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_id) lid : vec3<u32>) {
  let z = (p.b0 + wg.z) * p.nh + wg.y;
  let j = wg.x * WG + lid.x;
  let live = j < p.S;
  let writeK = (p.mode & 1u) != 0u;
  let writeV = (p.mode & 2u) != 0u;
  var k : array<VT, HV>;
  var v : array<VT, HV>;
  var dk : array<VT, HV>;
  var dv : array<VT, HV>;
  for (var c = 0u; c < HV; c++) { k[c] = VT(0.0); v[c] = VT(0.0); dk[c] = VT(0.0); dv[c] = VT(0.0); }
  if (live) {
    let ak = at(p.k, z, j); let av = at(p.v, z, j);
    for (var c = 0u; c < HV; c++) { k[c] = ${load(hs, 'K', 'ak', 'c')} * p.scale; v[c] = ${load(hs, 'V', 'av', 'c')}; }
  }
  // the first query any key of this block is seen by (uniform across the workgroup)
  var i0 = p.qa;
  if (p.causal == 1u) { i0 = max(i0, u32(clamp(i32(wg.x * WG) - (i32(p.S) - i32(p.T)), 0, i32(p.T)))); }
  for (var t0 = i0; t0 < p.qb; t0 += QT) {
    for (var e = lid.x; e < QT * HV; e += WG) {
      let i = t0 + e / HV;
      let c = e % HV;
      var qv = VT(0.0); var gv = VT(0.0);
      if (i < p.qb) { let aq = at(p.q, z, i); let ag = at(p.dO, z, i); qv = ${load(hs, 'Q', 'aq', 'c')}; gv = ${load(hs, 'GO', 'ag', 'c')}; }
      Qs[e] = qv; Gs[e] = gv;
    }
    for (var e = lid.x; e < QT; e += WG) {
      let i = t0 + e;
      var lv = 0.0; var d = 0.0;
      if (i < p.qb) {
        lv = LSE[z * p.T + i];
        let ag = at(p.dO, z, i); let ao = at(p.o, z, i);
        for (var c = 0u; c < HV; c++) { d += dotv(${load(hs, 'GO', 'ag', 'c')}, ${load(hs, 'O', 'ao', 'c')}); }
      }
      Ls[e] = lv; Ds[e] = d;
    }
    workgroupBarrier();
    if (live) {
      for (var ii = 0u; ii < QT; ii++) {
        let i = t0 + ii;
        if (i >= p.qb) { break; }
        if (!sees(i, j)) { continue; }
        var s = 0.0; var dp = 0.0;
        for (var c = 0u; c < HV; c++) { s += dotv(Qs[ii * HV + c], k[c]); dp += dotv(Gs[ii * HV + c], v[c]); }
        let pr = exp(s - Ls[ii]);
        let ds = pr * (dp - Ds[ii]);
        if (writeK) { DS[dsAt(z, i, j)] = ds; }
        for (var c = 0u; c < HV; c++) {
          dv[c] = fma(VT(pr), Gs[ii * HV + c], dv[c]);
          dk[c] = fma(VT(ds), Qs[ii * HV + c], dk[c]);
        }
      }
    }
    workgroupBarrier();
  }
  if (live) {
    let more = (p.mode & 4u) != 0u;
    if (writeK) {
      let a = at(p.g, z, j);
      for (var c = 0u; c < HV; c++) { var r = dk[c] * p.scale; if (more) { r += ${load(hs, 'G', 'a', 'c')}; } ${store(hs, 'G', 'a', 'c', 'r')} }
    }
    if (writeV) {
      let a = at(p.g2, z, j);
      for (var c = 0u; c < HV; c++) { var r = dv[c]; if (more) { r += ${load(hs, 'G', 'a', 'c')}; } ${store(hs, 'G', 'a', 'c', 'r')} }
    }
  }
}
`;
}

/**
 * Backward, queries: dQ = dS K (times the scale) for the chunk's queries, one thread per query
 * row, over tiles of the keys it sees: a tile of K and the block's [DT keys, 64 queries] of dS
 * staged together. Reads only the dS_ij the key pass wrote (j < keysOf(i)).
 */
function flashBwdQWgsl(hs: number): string {
  const { DT, HV } = shape(hs);
  return /* wgsl */ `${common(hs)}
@group(0) @binding(1) var<storage, read> K : array<f32>;
@group(0) @binding(2) var<storage, read> DS : array<f32>;
@group(0) @binding(3) var<storage, read_write> GQ : array<f32>;
const DT : u32 = ${DT}u; // keys a tile
var<workgroup> Ks : array<VT, ${DT * HV}>;
var<workgroup> Ss : array<f32, ${DT * (WG + 1)}>;

@compute @workgroup_size(${WG}, 1, 1)
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_id) lid : vec3<u32>) {
  let z = (p.b0 + wg.z) * p.nh + wg.y;
  let first = p.qa + wg.x * WG;
  let i = first + lid.x;
  let live = i < p.qb;
  var dq : array<VT, HV>;
  for (var c = 0u; c < HV; c++) { dq[c] = VT(0.0); }
  let jEnd = keysOf(i);
  for (var j0 = 0u; j0 < keysBefore(min(p.qb, first + WG)); j0 += DT) {
    for (var e = lid.x; e < DT * HV; e += WG) {
      let jk = j0 + e / HV;
      var kv = VT(0.0);
      if (jk < p.S) { let ak = at(p.k, z, jk); kv = ${load(hs, 'K', 'ak', `(e % HV)`)}; }
      Ks[e] = kv;
    }
    // dS rows are contiguous along keys: consecutive threads read consecutive keys of a query
    for (var e = lid.x; e < DT * WG; e += WG) {
      let ii = e / DT;
      let jj = e % DT;
      var d = 0.0;
      if (first + ii < p.qb && j0 + jj < keysOf(first + ii)) { d = DS[dsAt(z, first + ii, j0 + jj)]; }
      Ss[jj * (WG + 1u) + ii] = d;
    }
    workgroupBarrier();
    let n = min(DT, max(jEnd, j0) - j0); // the keys of this tile row i sees
    if (live) {
      for (var jj = 0u; jj < DT; jj++) {
        if (jj >= n) { break; }
        let ds = Ss[jj * (WG + 1u) + lid.x];
        for (var c = 0u; c < HV; c++) { dq[c] = fma(VT(ds), Ks[jj * HV + c], dq[c]); }
      }
    }
    workgroupBarrier();
  }
  if (live) {
    let a = at(p.g, z, i);
    for (var c = 0u; c < HV; c++) { ${store(hs, 'GQ', 'a', 'c', 'dq[c] * p.scale')} }
  }
}
`;
}

/** The WGSL of a flash-attention kernel for one head size (1..FLASH_HEAD_MAX). */
export function flashWgsl(kernel: keyof typeof FLASH_BINDINGS, hs: number): string {
  return kernel === 'flashFwd' ? flashFwdWgsl(hs) : kernel === 'flashBwdQ' ? flashBwdQWgsl(hs) : flashBwdKVWgsl(hs);
}
