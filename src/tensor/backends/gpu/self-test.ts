// The gpu backend's start-up self-test: small problems checked against the js reference and
// float64. A wrong tiled matmul is switched off (the portable kernel takes over, with a
// warning); wrong primitives throw, naming what differs.

import type { Backend, Storage } from '../../backend.js';
import { JsBackend } from '../js.js';
import type { DeviceBuffer, Runner } from './runner.js';
import { convertHost, type DType } from '../../dtype.js';
import type { GpuStorage } from './storage.js';

/** GPT-2's GELU (tanh approximation) in float64: what the matmul's GELU epilogues are checked against. */
const gelu64 = (v: number): number => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

/** The backend under test: any Backend, with the runner's fast matmul switchable and its buffers wrappable. */
export type SelfTested = Backend & { readonly runner: Runner; fastMatmul: boolean; wrap(buf: DeviceBuffer, size: number, dtype: DType): Storage };

export async function selfTest(be: SelfTested): Promise<void> {
  const ref = new JsBackend();
  const vals = (n: number, seed: number): Float32Array => Float32Array.from({ length: n }, (_, i) => Math.sin(seed * 12.9898 + i * 78.233) * 2);
  const bad: string[] = [];
  const cmp = async (what: string, got: Storage, want: ArrayLike<number>, tol = 1e-5): Promise<boolean> => {
    const g = await be.read(got);
    let worst = 0;
    for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(g[i]! - want[i]!) / (1 + Math.abs(want[i]!)));
    if (!(worst <= tol) || g.length !== want.length) { bad.push(`${what}: worst error ${worst}`); return false; }
    return true;
  };
  const pair = (d: Float32Array): [Storage, Storage] => [be.fromHost(d.slice(), 'float32'), ref.fromHost(d.slice(), 'float32')];
  const [a, ra] = pair(vals(15, 1)), [b, rb] = pair(vals(5, 2));
  await cmp('unary gelu', be.unary('gelu', a), ref.readSync(ref.unary('gelu', ra)), 1e-4); // GPU exp/tanh are a few ulp
  await cmp('binary add [3,5]+[5]', be.binary('add', a, [3, 5], b, [5], [3, 5]), ref.readSync(ref.binary('add', ra, [3, 5], rb, [5], [3, 5])));
  await cmp('reduce sum', be.reduce('sum', a, 3, 5, 1), ref.readSync(ref.reduce('sum', ra, 3, 5, 1)));
  await cmp('strided transpose', be.strided(a, [5, 3], [1, 5], 0), ref.readSync(ref.strided(ra, [5, 3], [1, 5], 0)));
  const primitivesOk = bad.length === 0;
  let fastOk = true;
  // odd sizes take the 64x64 WGSL kernel, sizes whose operands are vec4-aligned the 128x128 one
  for (const [batch, m, n, k] of [[2, 37, 41, 29], [2, 36, 132, 20]] as const) for (const transA of [false, true]) for (const transB of [false, true]) {
    const A = vals(batch * m * k, 3), B = vals(k * n, 4);
    const p = { batch, m, n, k, transA, transB, aBatchStride: m * k, bBatchStride: 0 };
    const want = new Float64Array(batch * m * n);
    for (let t = 0; t < batch; t++) for (let i = 0; i < m; i++) for (let j = 0; j < n; j++) {
      let acc = 0;
      for (let q = 0; q < k; q++) acc += (transA ? A[t * m * k + q * m + i]! : A[t * m * k + i * k + q]!) * (transB ? B[j * k + q]! : B[q * n + j]!);
      want[(t * m + i) * n + j] = acc;
    }
    const sa = be.fromHost(A, 'float32'), sb = be.fromHost(B, 'float32');
    const what = `[${batch}, ${m}, ${k}] @ [${k}, ${n}] transA=${transA} transB=${transB}`;
    if (be.runner.matmul) {
      be.fastMatmul = true;
      fastOk = (await cmp(`fast matmul ${what}`, be.matmul(sa, sb, p), want, 1e-4)) && fastOk;
    }
    be.fastMatmul = false;
    await cmp(`portable matmul ${what}`, be.matmul(sa, sb, p), want, 1e-4);
  }
  // the wide kernel's epilogues (a linear layer's bias, and its gradient as row sums of G^T)
  const f = be.fused;
  if (fastOk && f.matmulBias && f.matmulRowSums) {
    be.fastMatmul = true;
    const [rows, fin, fout] = [36, 20, 132];
    const X = vals(rows * fin, 5), W = vals(fout * fin, 6), bias = vals(fout, 7), G = vals(rows * fout, 8);
    const y = new Float64Array(rows * fout), gw = new Float64Array(fout * fin), gb = new Float64Array(fout);
    for (let i = 0; i < rows; i++) for (let j = 0; j < fout; j++) {
      let acc = bias[j]!;
      for (let q = 0; q < fin; q++) acc += X[i * fin + q]! * W[j * fin + q]!;
      y[i * fout + j] = acc;
      gb[j]! += G[i * fout + j]!;
      for (let q = 0; q < fin; q++) gw[j * fin + q]! += G[i * fout + j]! * X[i * fin + q]!;
    }
    const [sx, sw, sg] = [be.fromHost(X, 'float32'), be.fromHost(W, 'float32'), be.fromHost(G, 'float32')];
    const out = f.matmulBias(sx, sw, { batch: 1, m: rows, n: fout, k: fin, transA: false, transB: true, aBatchStride: 0, bBatchStride: 0 }, be.fromHost(bias, 'float32'));
    const both = f.matmulRowSums(sg, sx, { batch: 1, m: fout, n: fin, k: rows, transA: true, transB: false, aBatchStride: 0, bBatchStride: 0 });
    const act = f.matmulBiasGelu?.(sx, sw, { batch: 1, m: rows, n: fout, k: fin, transA: false, transB: true, aBatchStride: 0, bBatchStride: 0 }, be.fromHost(bias, 'float32'));
    if (act) {
      // GELU of the product plus bias, and the pre-activation kept
      const g = y.map(gelu64);
      fastOk = (await cmp('fast matmul with bias and GELU', act.out, g, 1e-4)) && fastOk;
      fastOk = (await cmp("fast matmul's pre-activation", act.pre, y, 1e-4)) && fastOk;
    }
    if (out && both) {
      fastOk = (await cmp('fast matmul with bias', out, y, 1e-4)) && fastOk;
      fastOk = (await cmp('fast matmul G^T X', both.out, gw, 1e-4)) && fastOk;
      fastOk = (await cmp("fast matmul's row sums of G^T", both.rowSums, gb, 1e-4)) && fastOk;
    }
  }
  be.fastMatmul = fastOk;
  // float16 products on tensor cores (tensor-core-wgsl.ts), where the device has them: a wrong
  // answer turns them off (the half-widening kernel takes over)
  const tc = be.runner;
  const tp = { batch: 2, m: 64, n: 32, k: 64, transA: false, transB: false, aBatchStride: 64 * 64, bBatchStride: 0 };
  if (tc.matmulTensor && tc.tensorMatmul?.(tp)) {
    const tensorBad: string[] = [];
    // multiples of 1/8 up to 2: exact in float16, and so is every partial sum in float32
    const A = Float32Array.from({ length: 2 * 64 * 64 }, (_, i) => ((i * 7) % 17 - 8) / 8), B = Float32Array.from({ length: 64 * 32 }, (_, i) => ((i * 5) % 13 - 6) / 8);
    for (const transA of [false, true]) for (const transB of [false, true]) {
      const p = { ...tp, transA, transB };
      const want = new Float64Array(2 * 64 * 32);
      for (let t = 0; t < 2; t++) for (let i = 0; i < 64; i++) for (let j = 0; j < 32; j++) {
        let acc = 0;
        for (let q = 0; q < 64; q++) acc += (transA ? A[t * 4096 + q * 64 + i]! : A[t * 4096 + i * 64 + q]!) * (transB ? B[j * 64 + q]! : B[q * 32 + j]!);
        want[(t * 64 + i) * 32 + j] = acc;
      }
      const ha = be.cast(be.fromHost(A, 'float32'), 'float16'), hb = be.cast(be.fromHost(B, 'float32'), 'float16');
      const got = await be.read(be.wrap(tc.matmulTensor({ buf: (ha as GpuStorage).buf }, { buf: (hb as GpuStorage).buf }, p), want.length, 'float32'));
      let worst = 0;
      for (let i = 0; i < want.length; i++) worst = Math.max(worst, Math.abs(got[i]! - want[i]!));
      if (!(worst <= 1e-6)) tensorBad.push(`tensor-core matmul transA=${transA} transB=${transB}: worst error ${worst}`);
      // and with a float16 bias and result: each exact sum rounded to nearest even, as dtype.ts rounds
      const bias = Float32Array.from({ length: 32 }, (_, j) => (j % 7) / 4);
      const hbias = be.cast(be.fromHost(bias, 'float32'), 'float16');
      const bits = await be.read(be.wrap(tc.matmulTensor({ buf: (ha as GpuStorage).buf }, { buf: (hb as GpuStorage).buf }, p, undefined,
        { halfOut: true, bias: (hbias as GpuStorage).buf }), want.length, 'float16'));
      const wantBits = convertHost(Float32Array.from(want, (v, i) => v + bias[i % 32]!), 'float32', 'float16');
      const wrong = wantBits.findIndex((b, i) => bits[i] !== b);
      if (wrong >= 0) tensorBad.push(`tensor-core matmul with a float16 result, transA=${transA} transB=${transB}: element ${wrong} has bits ${bits[wrong]}, not ${wantBits[wrong]}`);
      // and its GELU epilogue: those bits as the pre-activation, GELU of them within a float16 ulp
      const pre = be.runner.alloc(want.length / 2);
      const act = await be.read(be.wrap(tc.matmulTensor({ buf: (ha as GpuStorage).buf }, { buf: (hb as GpuStorage).buf }, p, undefined,
        { halfOut: true, bias: (hbias as GpuStorage).buf, preGelu: pre }), want.length, 'float16'));
      const preBits = await be.read(be.wrap(pre, want.length, 'float16'));
      const h = convertHost(wantBits, 'float16', 'float32'), g = convertHost(act, 'float16', 'float32');
      const off = h.findIndex((v, i) => preBits[i] !== wantBits[i] ||
        !(Math.abs(g[i]! - gelu64(v)) <= 2 ** -10 * Math.abs(v) + 1e-4));
      if (off >= 0) tensorBad.push(`tensor-core matmul's GELU epilogue, transA=${transA} transB=${transB}: element ${off} (pre-activation bits ${preBits[off]}, GELU ${g[off]})`);
    }
    if (tensorBad.length) {
      tc.tensorCoresOff?.();
      console.warn(`gpu backend: the float16 tensor-core matmul failed its self-test on this device, using the half-widening kernel:\n${tensorBad.join('\n')}`);
    }
  }
  if (!primitivesOk || bad.some((b) => b.startsWith('portable'))) {
    throw new Error(`gpu backend self-test: the device gave wrong answers:\n${bad.join('\n')}`);
  }
  if (!fastOk) console.warn(`gpu backend: the tiled WGSL matmul failed its self-test on this device, using the portable kernel:\n${bad.join('\n')}`);
}
