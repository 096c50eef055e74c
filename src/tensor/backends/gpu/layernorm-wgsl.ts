// LayerNorm in WGSL, a workgroup per row: the forward in one launch (mean, variance and the
// normalised row, reduced in workgroup memory), and the backward's input gradient in one launch
// that also leaves each block of rows' partial sums for the weight and bias gradients (summed
// over the blocks by the reduce kernel: no float atomics in WGSL). The gpu.js kernels they replace
// took 3 launches forward and ~8 backward, one thread walking each row.

/** The widest row the backward takes: 256 threads keep up to 16 columns each in registers. */
export const LAYERNORM_MAX_COLS = 4096;
export const LAYERNORM_PARAMS_BYTES = 32; // rows, cols, width (workgroups along x), rows per workgroup, eps, 3 pad

const COMMON = /* wgsl */ `
struct P { rows : u32, cols : u32, width : u32, rowsPerGroup : u32, eps : f32, pad0 : f32, pad1 : f32, pad2 : f32 }
@group(0) @binding(0) var<uniform> p : P;
var<workgroup> red : array<f32, 256>;

// the sum of every thread's v (a tree in workgroup memory); all threads get it
fn workgroupSum(v : f32, lid : u32) -> f32 {
  red[lid] = v;
  workgroupBarrier();
  for (var s = 128u; s > 0u; s = s >> 1u) {
    if (lid < s) { red[lid] = red[lid] + red[lid + s]; }
    workgroupBarrier();
  }
  let total = red[0];
  workgroupBarrier(); // every thread has read it before red is written again
  return total;
}
`;

/** y = (x - mean) * rstd * w + b per row, with the biased variance (as torch); mean and rstd kept. */
export const LAYERNORM_FWD_WGSL = /* wgsl */ `${COMMON}
@group(0) @binding(1) var<storage, read> X : array<f32>;
@group(0) @binding(2) var<storage, read> Wt : array<f32>;
@group(0) @binding(3) var<storage, read> Bs : array<f32>;
@group(0) @binding(4) var<storage, read_write> Y : array<f32>;
@group(0) @binding(5) var<storage, read_write> Mean : array<f32>;
@group(0) @binding(6) var<storage, read_write> Rstd : array<f32>;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_index) lid : u32) {
  let r = wg.x + wg.y * p.width;
  if (r >= p.rows) { return; }
  let base = r * p.cols;
  let n = f32(p.cols);
  var s = 0.0;
  for (var c = lid; c < p.cols; c += 256u) { s += X[base + c]; }
  let mu = workgroupSum(s, lid) / n;
  var q = 0.0;
  for (var c = lid; c < p.cols; c += 256u) { let d = X[base + c] - mu; q += d * d; }
  let rs = 1.0 / sqrt(workgroupSum(q, lid) / n + p.eps);
  for (var c = lid; c < p.cols; c += 256u) { Y[base + c] = (X[base + c] - mu) * rs * Wt[c] + Bs[c]; }
  if (lid == 0u) { Mean[r] = mu; Rstd[r] = rs; }
}
`;

/**
 * gx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = gy * w, per row; and for the workgroup's
 * block of rows the partial sums of gy * xhat (PW, for gw) and gy (PB, for gb), one row of cols
 * per workgroup. Specialised by J = ceil(cols / 256), the columns each thread keeps in registers.
 */
export function layerNormBwdWgsl(J: number): string {
  return /* wgsl */ `${COMMON}
@group(0) @binding(1) var<storage, read> X : array<f32>;
@group(0) @binding(2) var<storage, read> Wt : array<f32>;
@group(0) @binding(3) var<storage, read> Mean : array<f32>;
@group(0) @binding(4) var<storage, read> Rstd : array<f32>;
@group(0) @binding(5) var<storage, read> GY : array<f32>;
@group(0) @binding(6) var<storage, read_write> GX : array<f32>;
@group(0) @binding(7) var<storage, read_write> PW : array<f32>;
@group(0) @binding(8) var<storage, read_write> PB : array<f32>;

const J = ${J}u;

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_index) lid : u32) {
  let grp = wg.x + wg.y * p.width;
  let r0 = grp * p.rowsPerGroup;
  if (r0 >= p.rows) { return; }
  let r1 = min(r0 + p.rowsPerGroup, p.rows);
  let n = f32(p.cols);
  var accW : array<f32, J>;
  var accB : array<f32, J>;
  var g : array<f32, J>; // this row's g = gy * w, xhat and gy, per column the thread owns
  var xh : array<f32, J>;
  var gy : array<f32, J>;
  for (var j = 0u; j < J; j++) { accW[j] = 0.0; accB[j] = 0.0; }
  for (var r = r0; r < r1; r++) {
    let base = r * p.cols;
    let mu = Mean[r];
    let rs = Rstd[r];
    var a = 0.0;
    var b = 0.0;
    for (var j = 0u; j < J; j++) {
      let c = lid + 256u * j;
      if (c < p.cols) {
        gy[j] = GY[base + c];
        xh[j] = (X[base + c] - mu) * rs;
        g[j] = gy[j] * Wt[c];
        a += g[j];
        b += g[j] * xh[j];
      }
    }
    let s1 = workgroupSum(a, lid) / n;
    let s2 = workgroupSum(b, lid) / n;
    for (var j = 0u; j < J; j++) {
      let c = lid + 256u * j;
      if (c < p.cols) {
        GX[base + c] = rs * (g[j] - s1 - xh[j] * s2);
        accW[j] += gy[j] * xh[j];
        accB[j] += gy[j];
      }
    }
  }
  for (var j = 0u; j < J; j++) {
    let c = lid + 256u * j;
    if (c < p.cols) { PW[grp * p.cols + c] = accW[j]; PB[grp * p.cols + c] = accB[j]; }
  }
}
`;
}

/**
 * gw and gb from the backward's per-block partial sums PW and PB [blocks, cols], in one launch:
 * workgroups of 64 columns x 4 lanes of blocks (y = 0 sums PW, y = 1 PB), the lanes added in
 * workgroup memory. P.rows is the number of blocks.
 */
export const LAYERNORM_SUMS_WGSL = /* wgsl */ `
struct P { rows : u32, cols : u32, width : u32, rowsPerGroup : u32, eps : f32, pad0 : f32, pad1 : f32, pad2 : f32 }
@group(0) @binding(0) var<uniform> p : P;
@group(0) @binding(1) var<storage, read> PW : array<f32>;
@group(0) @binding(2) var<storage, read> PB : array<f32>;
@group(0) @binding(3) var<storage, read_write> GW : array<f32>;
@group(0) @binding(4) var<storage, read_write> GB : array<f32>;
var<workgroup> lanes : array<f32, 256>;

@compute @workgroup_size(64, 4, 1)
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_id) lid : vec3<u32>) {
  let c = wg.x * 64u + lid.x;
  var s = 0.0;
  if (c < p.cols) {
    for (var b = lid.y; b < p.rows; b += 4u) {
      if (wg.y == 0u) { s += PW[b * p.cols + c]; } else { s += PB[b * p.cols + c]; }
    }
  }
  lanes[lid.y * 64u + lid.x] = s;
  workgroupBarrier();
  if (lid.y == 0u && c < p.cols) {
    let total = lanes[lid.x] + lanes[64u + lid.x] + lanes[128u + lid.x] + lanes[192u + lid.x];
    if (wg.y == 0u) { GW[c] = total; } else { GB[c] = total; }
  }
}
`;
