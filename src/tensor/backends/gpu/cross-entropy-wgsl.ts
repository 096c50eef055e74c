// Cross-entropy rows in WGSL, a workgroup per row: the row's logsumexp by an online max and sum
// (one read of the row, reduced in workgroup memory), its loss, and, when asked, the gradient
// (softmax - onehot) * scale written over the logits in place (a second read and one write). The
// gpu.js kernels it replaces took three launches and three reads of each 50304-wide row, one
// thread walking a whole row while its neighbours read addresses a row away. Under autocast it
// rounds the logits it reads, and the gradient it writes, to the half dtype (where torch.autocast
// stores them), instead of two cast launches each way over the [rows, 50304] chunk.

import { ROUND_TO_HALF_WGSL } from './wgsl.js';

export const CROSS_ENTROPY_PARAMS_BYTES = 32; // rows, cols, width (workgroups along x), grad, scale, round (HALF_ROUNDING), 2 pad

export const CROSS_ENTROPY_WGSL = /* wgsl */ `
struct P { rows : u32, cols : u32, width : u32, grad : u32, scale : f32, round : u32, pad1 : f32, pad2 : f32 }
@group(0) @binding(0) var<uniform> p : P;
@group(0) @binding(1) var<storage, read> Tgt : array<f32>;
@group(0) @binding(2) var<storage, read_write> Z : array<f32>;
@group(0) @binding(3) var<storage, read_write> Lse : array<f32>;
@group(0) @binding(4) var<storage, read_write> Loss : array<f32>;
var<workgroup> redM : array<f32, 256>;
var<workgroup> redS : array<f32, 256>;
${ROUND_TO_HALF_WGSL}
/** Logit c of row base, as the half dtype would hold it (p.round; as stored with none). */
fn z(i : u32) -> f32 { return roundedTo(Z[i], p.round); }

// (m1, s1) and (m2, s2) as one running (max, sum of exp(z - max)); empty halves are (-FLT_MAX, 0)
fn merge(m1 : f32, s1 : f32, m2 : f32, s2 : f32) -> vec2<f32> {
  let m = max(m1, m2);
  return vec2<f32>(m, s1 * exp(m1 - m) + s2 * exp(m2 - m));
}

@compute @workgroup_size(256, 1, 1)
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_index) lid : u32) {
  let r = wg.x + wg.y * p.width;
  if (r >= p.rows) { return; }
  let base = r * p.cols;
  var m = bitcast<f32>(0xff7fffffu); // -FLT_MAX: an empty half merges as zero
  var s = 0.0;
  for (var c = lid; c < p.cols; c += 256u) {
    let ms = merge(m, s, z(base + c), 1.0);
    m = ms.x;
    s = ms.y;
  }
  redM[lid] = m;
  redS[lid] = s;
  workgroupBarrier();
  for (var h = 128u; h > 0u; h = h >> 1u) {
    if (lid < h) {
      let ms = merge(redM[lid], redS[lid], redM[lid + h], redS[lid + h]);
      redM[lid] = ms.x;
      redS[lid] = ms.y;
    }
    workgroupBarrier();
  }
  let lse = redM[0] + log(redS[0]);
  let t = u32(Tgt[r]);
  if (lid == 0u) {
    Lse[r] = lse;
    Loss[r] = lse - z(base + t);
  }
  if (p.grad == 0u) { return; }
  workgroupBarrier(); // the target's logit is read before it is overwritten
  for (var c = lid; c < p.cols; c += 256u) {
    Z[base + c] = roundedTo((exp(z(base + c) - lse) - select(0.0, 1.0, c == t)) * p.scale, p.round);
  }
}
`;
