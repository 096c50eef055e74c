// Row kernels as wasm SIMD, a task owning whole rows: softmax / logSoftmax / cross-entropy and their
// backwards, layerNorm forward and its x gradient, attention's online softmax over key blocks,
// broadcasting binary ops and row reductions. (Elementwise and column kernels: elementwise-kernels.ts.)
//
// Determinism: a task owns whole rows (or whole column ranges, or whole fixed-size chunks),
// and sums inside a row always run 4 lanes wide, then lanes combined as (l0+l1)+(l2+l3), then
// the scalar tail — the same order whichever thread runs the task.

import { Func, type Local } from './emit.js';
import { Lanes, lanes } from './lanes.js';

/** Matrix argument with no grouping: rows are `stride` apart. */
export const NOGROUP = 0x3fffffff;
/** A dense matrix argument (pointer, stride, no grouping). */
export function dense(ptr: number, cols: number): number[] { return [ptr, cols, NOGROUP, 0]; }

interface RowCtx {
  f: Func;
  v4: Lanes;
  v1: Lanes;
  /** Current row. */
  r: Local;
  cols: Local;
  /** Integer and pointer arguments by name. */
  arg: Record<string, Local>;
  /** f32 arguments by name. */
  fl: Record<string, Local>;
  /** Push the address of the current element of `name` (a matrix row, or a per-column vector). */
  at(name: string): void;
  /** Push the address of the current row's start in matrix `name`. */
  rowBase(name: string): void;
  /** Push the address of row r's entry of a per-row vector `name`. */
  atRow(name: string): void;
  /** Run `body` over the row's first `n` (default cols) elements. */
  each(body: (v: Lanes) => void, n?: Local): void;
  /** Set lane accumulator `name` to `value` in both widths. */
  init(name: string, value: number): void;
  /** Push the f32 combination (sum or max) of accumulator `name` over both widths. */
  total(name: string, how: 'sum' | 'max'): void;
}

interface RowSpec {
  /**
   * Matrices addressed per row. Each takes four args: pointer, row stride, rows per group and
   * group stride (elements): row r starts at ptr + floor(r / g) * groupStride + (r mod g) * stride,
   * so a batch of row-padded matmul outputs reads as one matrix.
   */
  mats: string[];
  /** Other pointers: per-row vectors (atRow) or per-column vectors (at). */
  ptrs?: string[];
  /** Extra i32 arguments. */
  ints?: string[];
  /** f32 arguments. */
  floats?: string[];
}

/**
 * A kernel whose task t handles rows [t*rpt, min(rows, (t+1)*rpt)).
 * args: rows, cols, rpt, then (ptr, stride, groupRows, groupStride) per mat, then ptrs, ints, floats.
 */
function rowKernel(spec: RowSpec, body: (c: RowCtx) => void): Func {
  const f = new Func(['i32', 'i32'], []);
  const task = f.param(0), args = f.param(1);
  const v4 = new Lanes(f, 4), v1 = new Lanes(f, 1);
  const I = (): Local => f.local('i32');
  const rows = I(), cols = I(), rpt = I(), r = I(), rEnd = I(), o = I();
  let slot = 0;
  const ld = (l: Local): void => { f.get(args).i32Load(4 * slot++).set(l); };
  ld(rows); ld(cols); ld(rpt);
  const arg: Record<string, Local> = {}, fl: Record<string, Local> = {};
  const stride: Record<string, Local> = {}, row: Record<string, Local> = {};
  const grows: Record<string, Local> = {}, gstride: Record<string, Local> = {};
  for (const m of spec.mats) {
    arg[m] = I(); ld(arg[m]!); stride[m] = I(); ld(stride[m]!);
    grows[m] = I(); ld(grows[m]!); gstride[m] = I(); ld(gstride[m]!); row[m] = I();
  }
  for (const p of [...(spec.ptrs ?? []), ...(spec.ints ?? [])]) { arg[p] = I(); ld(arg[p]!); }
  for (const x of spec.floats ?? []) { fl[x] = f.local('f32'); f.get(args).f32Load(4 * slot++).set(fl[x]!); }

  const ctx: RowCtx = {
    f, v4, v1, r, cols, arg, fl,
    at: (name) => {
      const base = row[name] ?? arg[name];
      if (base === undefined) throw new Error(`rowKernel: no array '${name}'`);
      f.get(base).get(o).i32Add();
    },
    rowBase: (name) => { f.get(row[name]!); },
    atRow: (name) => { f.get(arg[name]!).get(r).i32Const(2).i32Shl().i32Add(); },
    each: (b, n) => lanes(f, n ?? cols, o, v4, v1, b),
    init: (name, value) => { v4.c(value).set(v4.tmp(name)); v1.c(value).set(v1.tmp(name)); },
    total: (name, how) => {
      v4.get(v4.tmp(name)); if (how === 'sum') v4.hsum(); else v4.hmax();
      v1.get(v1.tmp(name));
      if (how === 'sum') f.f32Add(); else f.f32Max();
    },
  };
  f.get(task).get(rpt).i32Mul().set(r);
  f.get(r).get(rpt).i32Add().tee(rEnd).get(rows).get(rEnd).get(rows).i32LtS().select().set(rEnd);
  f.block(() => f.loop(() => {
    f.get(r).get(rEnd).i32GeS().brIf(1);
    for (const m of spec.mats) {
      f.get(arg[m]!);
      f.get(r).get(grows[m]!).i32DivS().get(gstride[m]!).i32Mul();
      f.get(r).get(grows[m]!).i32RemS().get(stride[m]!).i32Mul().i32Add();
      f.i32Const(2).i32Shl().i32Add().set(row[m]!);
    }
    body(ctx);
    f.get(r).i32Const(1).i32Add().set(r).br(0);
  }));
  return f;
}

/**
 * Row max of `x` (over the first n) into f32 local `dst`, the shift of a softmax. Pseudo-max
 * (one instruction) skips a NaN: the exp pass after it then makes the row's sum, and so the
 * whole row, NaN, as torch's softmax does. (r_max, the max op itself, keeps f32x4.max.)
 */
function rowMax(c: RowCtx, x: string, dst: Local, n?: Local, scale?: Local): void {
  c.init('m', -Infinity);
  c.each((v) => {
    v.get(v.tmp('m'));
    c.at(x); v.load();
    if (scale !== undefined) { c.f.get(scale); v.splat().mul(); }
    v.pmax().set(v.tmp('m'));
  }, n);
  c.total('m', 'max'); c.f.set(dst);
}

/** dst = exp(src - shift) over the row, their sum left in accumulator 's' (softmax's numerator). */
function expShifted(c: RowCtx, dst: string, src: string, shift: Local): void {
  const { f } = c;
  c.init('s', 0);
  c.each((v) => {
    c.at(dst); c.at(src); v.load(); f.get(shift); v.splat().sub().exp().tee(v.tmp('e')).store();
    v.get(v.tmp('s')).get(v.tmp('e')).add().set(v.tmp('s'));
  });
}

/** name *= by over the row. */
function scaleRow(c: RowCtx, name: string, by: Local): void {
  c.each((v) => { c.at(name); c.at(name); v.load(); c.f.get(by); v.splat().mul().store(); });
}

/** Into i32 local `dst`: the address of the current row's target element of matrix `mat`. */
function targetAddr(c: RowCtx, mat: string, dst: Local): void {
  c.rowBase(mat); c.atRow('tgt'); c.f.i32Load().i32Const(2).i32Shl().i32Add().set(dst);
}

export function rowKernels(): Record<string, Func> {
  const k: Record<string, Func> = {};

  // softmax: y = exp(x - max) / sum
  k.softmax = rowKernel({ mats: ['x', 'y'] }, (c) => {
    const { f } = c;
    const mx = f.local('f32'), inv = f.local('f32');
    rowMax(c, 'x', mx);
    expShifted(c, 'y', 'x', mx);
    f.f32Const(1); c.total('s', 'sum'); f.f32Div().set(inv);
    scaleRow(c, 'y', inv);
  });

  // per-row max and sum(exp(x - max)); the host finishes logsumexp = max + log(sum)
  k.rowStats = rowKernel({ mats: ['x'], ptrs: ['mx', 'sm'] }, (c) => {
    const { f } = c;
    const mx = f.local('f32');
    rowMax(c, 'x', mx);
    c.init('s', 0);
    c.each((v) => { v.get(v.tmp('s')); c.at('x'); v.load(); f.get(mx); v.splat().sub().exp().add().set(v.tmp('s')); });
    c.atRow('mx'); f.get(mx).f32Store();
    c.atRow('sm'); c.total('s', 'sum'); f.f32Store();
  });

  // logSoftmax forward given logsumexp: y = x - lse[r]
  k.subRow = rowKernel({ mats: ['x', 'y'], ptrs: ['lse'] }, (c) => {
    const l = c.f.local('f32');
    c.atRow('lse'); c.f.f32Load().set(l);
    c.each((v) => { c.at('y'); c.at('x'); v.load(); c.f.get(l); v.splat().sub().store(); });
  });

  // softmax backward: gx = y * (gy - sum(gy * y))
  k.softmaxBwd = rowKernel({ mats: ['y', 'gy', 'gx'] }, (c) => {
    const { f } = c;
    const d = f.local('f32');
    c.init('s', 0);
    c.each((v) => { v.get(v.tmp('s')); c.at('gy'); v.load(); c.at('y'); v.load(); v.mul().add().set(v.tmp('s')); });
    c.total('s', 'sum'); f.set(d);
    c.each((v) => { c.at('gx'); c.at('y'); v.load(); c.at('gy'); v.load(); f.get(d); v.splat().sub().mul().store(); });
  });

  // logSoftmax backward: gx = gy - exp(y) * sum(gy)
  k.logSoftmaxBwd = rowKernel({ mats: ['y', 'gy', 'gx'] }, (c) => {
    const { f } = c;
    const s = f.local('f32');
    c.init('s', 0);
    c.each((v) => { v.get(v.tmp('s')); c.at('gy'); v.load(); v.add().set(v.tmp('s')); });
    c.total('s', 'sum'); f.set(s);
    c.each((v) => { c.at('gx'); c.at('gy'); v.load(); c.at('y'); v.load().exp(); f.get(s); v.splat().mul().sub().store(); });
  });

  // cross-entropy backward: g = gloss[r] * (exp(x - lse[r]) - onehot(target[r]))
  k.ceBwd = rowKernel({ mats: ['x', 'g'], ptrs: ['lse', 'gl', 'tgt'] }, (c) => {
    const { f } = c;
    const l = f.local('f32'), gl = f.local('f32'), addr = f.local('i32');
    c.atRow('lse'); f.f32Load().set(l);
    c.atRow('gl'); f.f32Load().set(gl);
    c.each((v) => { c.at('g'); c.at('x'); v.load(); f.get(l); v.splat().sub().exp(); f.get(gl); v.splat().mul().store(); });
    // g[target] -= gloss[r]
    targetAddr(c, 'g', addr);
    f.get(addr); f.get(addr).f32Load().get(gl).f32Sub().f32Store();
  });

  // cross-entropy's statistics and gradient in one kernel, written over the logits x (the
  // lm_head chunks of linearCrossEntropy): the row max m, s = sum(exp(x - m)) and the target's
  // logit go out for the loss (lse = m + log s on the host), and x becomes
  // g = exp(x - m) * (gl / s) - gl * onehot(target). One exp per element, and the row's second
  // and third passes run while it is still in cache.
  k.ceStatsGrad = rowKernel({ mats: ['x'], ptrs: ['mx', 'sm', 'zt', 'tgt'], floats: ['gl'] }, (c) => {
    const { f } = c;
    const mx = f.local('f32'), sum = f.local('f32'), scale = f.local('f32'), addr = f.local('i32');
    rowMax(c, 'x', mx);
    targetAddr(c, 'x', addr);
    c.atRow('zt'); f.get(addr).f32Load().f32Store();
    expShifted(c, 'x', 'x', mx);
    c.total('s', 'sum'); f.set(sum);
    c.atRow('mx'); f.get(mx).f32Store();
    c.atRow('sm'); f.get(sum).f32Store();
    f.get(c.fl.gl!).get(sum).f32Div().set(scale);
    scaleRow(c, 'x', scale);
    f.get(addr); f.get(addr).f32Load().get(c.fl.gl!).f32Sub().f32Store();
  });

  // layerNorm forward: y = (x - mean) * rstd * w + b, with biased variance (as PyTorch)
  k.lnFwd = rowKernel({ mats: ['x', 'y'], ptrs: ['w', 'b', 'mean', 'rstd'], floats: ['eps'] }, (c) => {
    const { f } = c;
    const mu = f.local('f32'), rs = f.local('f32'), n = f.local('f32');
    f.get(c.cols).f32ConvertI32S().set(n);
    c.init('s', 0);
    c.each((v) => { v.get(v.tmp('s')); c.at('x'); v.load().add().set(v.tmp('s')); });
    c.total('s', 'sum'); f.get(n).f32Div().set(mu);
    c.init('q', 0);
    c.each((v) => { c.at('x'); v.load(); f.get(mu); v.splat().sub().tee(v.tmp('d')).get(v.tmp('d')).mul().get(v.tmp('q')).add().set(v.tmp('q')); });
    f.f32Const(1); c.total('q', 'sum'); f.get(n).f32Div().get(c.fl.eps!).f32Add().f32Sqrt().f32Div().set(rs);
    c.atRow('mean'); f.get(mu).f32Store();
    c.atRow('rstd'); f.get(rs).f32Store();
    c.each((v) => {
      c.at('y'); c.at('x'); v.load(); f.get(mu); v.splat().sub(); f.get(rs); v.splat().mul();
      c.at('w'); v.load().mul(); c.at('b'); v.load().add().store();
    });
  });

  // layerNorm backward for x: gx = rstd * (g - mean(g) - xhat * mean(g * xhat)), g = gy * w
  k.lnBwdX = rowKernel({ mats: ['x', 'gy', 'gx'], ptrs: ['w', 'mean', 'rstd'] }, (c) => {
    const { f } = c;
    const mu = f.local('f32'), rs = f.local('f32'), n = f.local('f32'), A = f.local('f32'), B = f.local('f32');
    f.get(c.cols).f32ConvertI32S().set(n);
    c.atRow('mean'); f.f32Load().set(mu);
    c.atRow('rstd'); f.f32Load().set(rs);
    const xhat = (v: Lanes): void => { c.at('x'); v.load(); f.get(mu); v.splat().sub(); f.get(rs); v.splat().mul(); };
    c.init('a', 0); c.init('b', 0);
    c.each((v) => {
      c.at('gy'); v.load(); c.at('w'); v.load().mul().tee(v.tmp('g'));
      v.get(v.tmp('a')).add().set(v.tmp('a'));
      v.get(v.tmp('g')); xhat(v); v.mul().get(v.tmp('b')).add().set(v.tmp('b'));
    });
    c.total('a', 'sum'); f.get(n).f32Div().set(A);
    c.total('b', 'sum'); f.get(n).f32Div().set(B);
    c.each((v) => {
      c.at('gx');
      c.at('gy'); v.load(); c.at('w'); v.load().mul(); f.get(A); v.splat().sub();
      xhat(v); f.get(B); v.splat().mul().sub(); f.get(rs); v.splat().mul().store();
    });
  });

  // attention, a key block at a time (flash attention's online softmax, see attention.ts).
  // Row r of a block is query i = r mod t, which sees the block's keys j <= i + off.
  const attnLimit = (c: RowCtx, lim: Local): void => {
    const { f } = c;
    f.get(c.r).get(c.arg.t!).i32RemS().get(c.arg.off!).i32Add().i32Const(1).i32Add().tee(lim)
      .i32Const(0).get(lim).i32Const(0).i32GtS().select().tee(lim)
      .get(c.cols).get(lim).get(c.cols).i32LtS().select();
    f.get(c.cols).get(c.arg.causal!).select().set(lim); // causal ? clamped limit : cols
  };
  const zeroTail = (c: RowCtx, name: string, lim: Local): void => {
    const { f } = c;
    const a = f.local('i32'), end = f.local('i32');
    c.rowBase(name); f.get(c.cols).i32Const(2).i32Shl().i32Add().set(end);
    c.rowBase(name); f.get(lim).i32Const(2).i32Shl().i32Add().set(a);
    f.block(() => f.loop(() => {
      f.get(a).get(end).i32GeU().brIf(1);
      f.get(a).f32Const(0).f32Store().get(a).i32Const(4).i32Add().set(a).br(0);
    }));
  };
  // one key block of the forward: the running max m grows to m' = max(m, max_j s_j * scale),
  // p_j = exp(s_j * scale - m'), the running sum l becomes l * alpha + sum p with
  // alpha = exp(m - m') (0 on the first block, where m = -inf), alpha kept for flashAccum.
  // m, l and alpha are one-column matrices (one float per row).
  k.flashBlock = rowKernel({ mats: ['sc', 'p', 'm', 'l', 'al'], ints: ['t', 'off', 'causal'], floats: ['scale'] }, (c) => {
    const { f, v1 } = c;
    const lim = f.local('i32'), mb = f.local('f32'), m0 = f.local('f32'), m1 = f.local('f32'), al = f.local('f32');
    attnLimit(c, lim);
    rowMax(c, 'sc', mb, lim, c.fl.scale);
    c.rowBase('m'); f.f32Load().tee(m0).get(mb).f32Max().set(m1);
    v1.get(m0).get(m1).sub().exp().set(al);
    c.init('s', 0);
    c.each((v) => {
      c.at('p'); c.at('sc'); v.load(); f.get(c.fl.scale!); v.splat().mul(); f.get(m1); v.splat().sub().exp().tee(v.tmp('e')).store();
      v.get(v.tmp('s')).get(v.tmp('e')).add().set(v.tmp('s'));
    }, lim);
    c.rowBase('l'); c.rowBase('l'); f.f32Load().get(al).f32Mul(); c.total('s', 'sum'); f.f32Add().f32Store();
    c.rowBase('m'); f.get(m1).f32Store();
    c.rowBase('al'); f.get(al).f32Store();
    zeroTail(c, 'p', lim);
  });
  // o = o * alpha + x: the output rescaled to the new running max, plus this block's P V
  k.flashAccum = rowKernel({ mats: ['o', 'x', 'al'] }, (c) => {
    const { f } = c;
    const a = f.local('f32');
    c.rowBase('al'); f.f32Load().set(a);
    c.each((v) => { c.at('o'); c.at('o'); v.load(); f.get(a); v.splat().mul(); c.at('x'); v.load().add().store(); });
  });
  // o = o / l (0 for a query that saw no key)
  k.flashFinish = rowKernel({ mats: ['o', 'l'] }, (c) => {
    const { f } = c;
    const l = f.local('f32'), inv = f.local('f32');
    c.rowBase('l'); f.f32Load().set(l);
    f.f32Const(1).get(l).f32Div().f32Const(0).get(l).f32Const(0).f32Gt().select().set(inv);
    scaleRow(c, 'o', inv);
  });
  // backward: a block's probabilities again, from the saved logsumexp (a one-column matrix)
  k.attnProbs = rowKernel({ mats: ['sc', 'p', 'lse'], ints: ['t', 'off', 'causal'], floats: ['scale'] }, (c) => {
    const { f } = c;
    const lim = f.local('i32'), l = f.local('f32');
    attnLimit(c, lim);
    c.rowBase('lse'); f.f32Load().set(l);
    c.each((v) => { c.at('p'); c.at('sc'); v.load(); f.get(c.fl.scale!); v.splat().mul(); f.get(l); v.splat().sub().exp().store(); }, lim);
    zeroTail(c, 'p', lim);
  });
  // out[r] = sum(a[r] * b[r])
  k.rowDot = rowKernel({ mats: ['a', 'b'], ptrs: ['out'] }, (c) => {
    c.init('s', 0);
    c.each((v) => { v.get(v.tmp('s')); c.at('a'); v.load(); c.at('b'); v.load().mul().add().set(v.tmp('s')); });
    c.atRow('out'); c.total('s', 'sum'); c.f.f32Store();
  });
  // dS = P * (dP - D[r]) * scale on visible keys, 0 on masked ones (where dP may be unwritten)
  k.attnDs = rowKernel({ mats: ['p', 'dp', 'ds', 'D'], ints: ['t', 'off', 'causal'], floats: ['scale'] }, (c) => {
    const { f } = c;
    const d = f.local('f32'), lim = f.local('i32');
    attnLimit(c, lim);
    c.rowBase('D'); f.f32Load().set(d);
    c.each((v) => { c.at('ds'); c.at('p'); v.load(); c.at('dp'); v.load(); f.get(d); v.splat().sub().mul(); f.get(c.fl.scale!); v.splat().mul().store(); }, lim);
    zeroTail(c, 'ds', lim);
  });

  // broadcasting binary ops: y[r] = a[r] op b[r], where a row stride of 0 repeats one row
  const bin: Record<string, (v: Lanes) => void> = {
    add: (v) => v.add(), sub: (v) => v.sub(), mul: (v) => v.mul(), div: (v) => v.div(),
    max: (v) => v.max(), min: (v) => v.min(),
    gt: (v) => v.gt().bool(), lt: (v) => v.lt().bool(), eq: (v) => v.eq().bool(),
  };
  for (const [name, op] of Object.entries(bin)) {
    k[`b_${name}`] = rowKernel({ mats: ['a', 'b', 'y'] }, (c) => {
      c.each((v) => { c.at('y'); c.at('a'); v.load(); c.at('b'); v.load(); op(v); v.store(); });
    });
  }

  // row reductions (inner == 1)
  k.r_sum = rowKernel({ mats: ['x'], ptrs: ['y'] }, (c) => {
    c.init('s', 0);
    c.each((v) => { v.get(v.tmp('s')); c.at('x'); v.load().add().set(v.tmp('s')); });
    c.atRow('y'); c.total('s', 'sum'); c.f.f32Store();
  });
  k.r_max = rowKernel({ mats: ['x'], ptrs: ['y'] }, (c) => {
    // f32x4.max: a NaN anywhere in the row is the row's max, as torch.amax
    c.init('m', -Infinity);
    c.each((v) => { v.get(v.tmp('m')); c.at('x'); v.load().max().set(v.tmp('m')); });
    c.atRow('y'); c.total('m', 'max'); c.f.f32Store();
  });

  return k;
}
