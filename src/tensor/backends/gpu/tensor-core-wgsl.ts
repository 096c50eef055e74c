// The float16 matmul on tensor cores, through Dawn's subgroup matrices
// (chromium-experimental-subgroup-matrix: Vulkan cooperative matrices on NVIDIA, simdgroup
// matrices on Apple). A workgroup is one subgroup and computes a 32x32 block of C as a grid of
// the device's M x N result matrices, loading its f16 left and right matrices straight from the
// operands (each layout is a row- or column-major load, so no transpose) and accumulating in f32.
// The layout flags are compile-time (WGSL requires col_major to be constant): one pipeline per
// (transA, transB). Used under --dtype float16 where the adapter lists an f16 -> f32 config and
// the product's M, N are multiples of 32 and K of the config's K; otherwise the half-widening
// 128x128 kernel (wgsl.ts) runs. Only Dawn's null adapter has compiled it here: the start-up
// self-test checks it on the device before any training step uses it.

import { GELU_WGSL, MATMUL_UNIFORM, ROUND_TO_HALF_WGSL } from './wgsl.js';

/** A subgroup matrix shape the device multiplies (f16 operands, f32 result). */
export interface MatrixConfig { M: number; N: number; K: number }

/** Rows and columns of C a workgroup computes. */
export const TENSOR_TILE = 32;

/**
 * With `halfOut`, C is float16 packed two a word: the 32x32 block goes through workgroup memory,
 * where each invocation adds the bias (float16 [N], where P.flags has MATMUL_BIAS) to two
 * neighbours in float32 and stores them rounded to nearest even, as the cast kernel rounds. With
 * MATMUL_GELU too, those rounded values go to Pre (packed) and GELU of them, rounded, to C.
 */
export function tensorMatmulWgsl(c: MatrixConfig, subgroupMaxSize: number, transA: boolean, transB: boolean, halfOut = false): string {
  const RI = TENSOR_TILE / c.M, RJ = TENSOR_TILE / c.N;
  if (!Number.isInteger(RI) || !Number.isInteger(RJ)) throw new Error(`tensor matmul: a ${c.M}x${c.N} config does not tile ${TENSOR_TILE}x${TENSOR_TILE}`);
  const ij = (f: (i: number, j: number) => string): string =>
    Array.from({ length: RI * RJ }, (_, n) => f(Math.floor(n / RJ), n % RJ)).join('\n');
  // A stored [M, K] (row-major left matrices, stride K) or, transposed, [K, M] (column-major, stride M);
  // B stored [K, N] (row-major right matrices, stride N) or, transposed, [N, K] (column-major, stride K)
  const aAt = (i: number): string => (transA ? `ao + k * p.M + row0 + ${i * c.M}u, true, p.M` : `ao + (row0 + ${i * c.M}u) * p.K + k, false, p.K`);
  const bAt = (j: number): string => (transB ? `bo + (col0 + ${j * c.N}u) * p.K + k, true, p.K` : `bo + k * p.N + col0 + ${j * c.N}u, false, p.N`);
  return /* wgsl */ `enable f16;
enable chromium_experimental_subgroup_matrix;
${MATMUL_UNIFORM}
@group(0) @binding(1) var<storage, read> A : array<f16>;
@group(0) @binding(2) var<storage, read> B : array<f16>;
@group(0) @binding(3) var<storage, read_write> C : array<${halfOut ? 'u32' : 'f32'}>;
${halfOut ? `@group(0) @binding(4) var<storage, read> Bias : array<f16>;
@group(0) @binding(5) var<storage, read_write> Pre : array<u32>;
var<workgroup> Ct : array<f32, ${TENSOR_TILE * TENSOR_TILE}>;
${ROUND_TO_HALF_WGSL}${GELU_WGSL}
fn geluOfHalf(h : u32) -> u32 { return f32ToF16(bitcast<u32>(gelu(bitcast<f32>(f16ToF32(h))))); }` : ''}
alias Left = subgroup_matrix_left<f16, ${c.K}, ${c.M}>;
alias Right = subgroup_matrix_right<f16, ${c.N}, ${c.K}>;
alias Acc = subgroup_matrix_result<f32, ${c.N}, ${c.M}>;

@compute @workgroup_size(${subgroupMaxSize}, 1, 1)
fn main(@builtin(workgroup_id) wg : vec3<u32>, @builtin(local_invocation_index) lid : u32) {
  let row0 = wg.y * ${TENSOR_TILE}u;
  let col0 = wg.x * ${TENSOR_TILE}u;
  let ao = wg.z * p.aStride;
  let bo = wg.z * p.bStride;
${ij((i, j) => `  var c${i}${j} = Acc();`)}
  for (var k = 0u; k < p.K; k += ${c.K}u) {
${Array.from({ length: RI }, (_, i) => `    let a${i} = subgroupMatrixLoad<Left>(&A, ${aAt(i)});`).join('\n')}
${Array.from({ length: RJ }, (_, j) => `    let b${j} = subgroupMatrixLoad<Right>(&B, ${bAt(j)});`).join('\n')}
${ij((i, j) => `    c${i}${j} = subgroupMatrixMultiplyAccumulate(a${i}, b${j}, c${i}${j});`)}
  }
  let co = wg.z * p.M * p.N;
${halfOut ? `${ij((i, j) => `  subgroupMatrixStore(&Ct, ${i * c.M * TENSOR_TILE + j * c.N}u, c${i}${j}, false, ${TENSOR_TILE}u);`)}
  workgroupBarrier();
  for (var w = lid; w < ${(TENSOR_TILE * TENSOR_TILE) / 2}u; w += ${subgroupMaxSize}u) {
    let r = w / ${TENSOR_TILE / 2}u;
    let cc = 2u * (w % ${TENSOR_TILE / 2}u);
    var v0 = Ct[r * ${TENSOR_TILE}u + cc];
    var v1 = Ct[r * ${TENSOR_TILE}u + cc + 1u];
    if ((p.flags & 1u) != 0u) { v0 += f32(Bias[col0 + cc]); v1 += f32(Bias[col0 + cc + 1u]); }
    let at = (co + (row0 + r) * p.N + col0 + cc) / 2u;
    let h0 = f32ToF16(bitcast<u32>(v0));
    let h1 = f32ToF16(bitcast<u32>(v1));
    if ((p.flags & 4u) != 0u) { Pre[at] = h0 | (h1 << 16u); C[at] = geluOfHalf(h0) | (geluOfHalf(h1) << 16u); }
    else { C[at] = h0 | (h1 << 16u); }
  }` : ij((i, j) => `  subgroupMatrixStore(&C, co + (row0 + ${i * c.M}u) * p.N + col0 + ${j * c.N}u, c${i}${j}, false, p.N);`)}
}
`;
}
