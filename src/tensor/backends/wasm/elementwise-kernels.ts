// Elementwise and column kernels as wasm SIMD: GELU and the other unary ops, AdamW, the in-place
// add and scale, sums of squares (a task per fixed-size chunk), and column sums over rows (a task
// per column range: layerNorm's weight and bias gradients, reductions over a middle axis).
// Sums run in the fixed lane order of row-kernels.ts, so results do not depend on the threads.

import { Func, type Local } from './emit.js';
import { Lanes, lanes } from './lanes.js';

export function elementwiseKernels(): Record<string, Func> {
  const k: Record<string, Func> = {};
  // unary ops, elementwise over fixed-size chunks
  const k0 = Math.sqrt(2 / Math.PI);
  const un: Record<string, (v: Lanes, x: Local) => void> = {
    neg: (v) => v.neg(), abs: (v) => v.abs(), sqrt: (v) => v.sqrt(),
    relu: (v) => v.c(0).max(),
    step: (v) => v.c(0).gt().bool(),
    exp: (v) => v.exp(),
    tanh: (v) => v.tanh(),
    // gelu = 0.5 x (1 + tanh(u)) = x * sigmoid(2u), u = sqrt(2/pi) (x + 0.044715 x^3): no cancellation for x << 0
    gelu: (v, x) => {
      v.set(x).get(x).get(x).get(x).mul().get(x).mul().c(0.044715).mul().add().c(2 * k0).mul().sigmoid().get(x).mul();
    },
    // d gelu/dx = s + 2 x s (1 - s) u', s = sigmoid(2u), u' = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    geluGrad: (v, x) => {
      const s = v.tmp('gs');
      v.set(x).get(x).get(x).get(x).mul().get(x).mul().c(0.044715).mul().add().c(2 * k0).mul().sigmoid().set(s);
      v.get(s).get(x).c(2).mul().get(s).mul().c(1).get(s).sub().mul();
      v.get(x).get(x).mul().c(3 * 0.044715 * k0).mul().c(k0).add().mul().add();
    },
  };
  for (const [name, op] of Object.entries(un)) {
    k[`u_${name}`] = ewKernel(['x', 'y'], [], [], (c) => {
      c.each((v) => { c.at('y'); c.at('x'); v.load(); op(v, v.tmp('ux')); v.store(); });
    });
  }

  // AdamW (torch.optim.AdamW): decoupled decay, then Adam with bias-corrected moments, in place
  // (the arrays it writes first)
  k.adamw = ewKernel(['p', 'm', 'v', 'g'], [], ['lr', 'b1', 'b2', 'omb1', 'omb2', 'eps', 'wd', 'bc1', 'bc2'], (c) => {
    const { f } = c;
    const s = (name: string, v: Lanes): void => { f.get(c.fl[name]!); v.splat(); };
    c.each((v) => {
      const P = v.tmp('P'), M = v.tmp('M'), V = v.tmp('V');
      c.at('p'); v.load().tee(P).get(P); s('lr', v); v.mul(); s('wd', v); v.mul().sub().set(P);
      c.at('m'); s('b1', v); c.at('m'); v.load().mul(); s('omb1', v); c.at('g'); v.load().mul().add().tee(M).store();
      c.at('v'); s('b2', v); c.at('v'); v.load().mul(); s('omb2', v); c.at('g'); v.load(); c.at('g'); v.load().mul().mul().add().tee(V).store();
      c.at('p'); v.get(P); s('lr', v); v.get(M); s('bc1', v); v.div().mul();
      v.get(V); s('bc2', v); v.div().sqrt(); s('eps', v); v.add().div().sub().store();
    });
  });

  // gradient accumulation and clipping, in place: x += y, x *= factor
  k.addTo = ewKernel(['x', 'y'], [], [], (c) => {
    c.each((v) => { c.at('x'); c.at('x'); v.load(); c.at('y'); v.load().add().store(); });
  });
  k.scaleBy = ewKernel(['x'], [], ['factor'], (c) => {
    c.each((v) => { c.at('x'); c.at('x'); v.load(); c.f.get(c.fl.factor!); v.splat().mul().store(); });
  });

  // sum of squares of one chunk -> out[task] (the host adds the chunks in order)
  k.sumsq = ewKernel(['x'], ['out'], [], (c) => {
    c.init('s', 0);
    c.each((v) => { v.get(v.tmp('s')); c.at('x'); v.load().tee(v.tmp('x')).get(v.tmp('x')).mul().add().set(v.tmp('s')); });
    c.f.get(c.arg.out!).get(c.task).i32Const(2).i32Shl().i32Add(); c.total('s', 'sum'); c.f.f32Store();
  });

  // layerNorm backward for w and b: column sums over rows, a task per column range (rows in order)
  k.lnBwdWB = colKernel(['x', 'gy'], ['mean', 'rstd'], ['gw', 'gb'], (c) => {
    const { f } = c;
    const mu = f.local('f32'), rs = f.local('f32');
    c.each((v) => { c.at('gw'); v.c(0).store(); c.at('gb'); v.c(0).store(); });
    c.forRows(() => {
      c.atRow('mean'); f.f32Load().set(mu);
      c.atRow('rstd'); f.f32Load().set(rs);
      c.each((v) => {
        c.at('gw'); c.at('gw'); v.load(); c.at('gy'); v.load().tee(v.tmp('g')); c.at('x'); v.load(); f.get(mu); v.splat().sub().mul(); f.get(rs); v.splat().mul().add().store();
        c.at('gb'); c.at('gb'); v.load(); v.get(v.tmp('g')).add().store();
      });
    });
  });
  // reductions over a middle axis (inner > 1): y[o, c] = op over s of x[o, s, c]
  for (const how of ['sum', 'max'] as const) {
    k[`c_${how}`] = colKernel(['x'], [], ['y'], (c) => {
      c.each((v) => { c.at('y'); c.at('x'); v.load().store(); });
      c.forRows(() => {
        c.each((v) => { c.at('y'); c.at('y'); v.load(); c.at('x'); v.load(); if (how === 'sum') v.add(); else v.max(); v.store(); });
      }, 1);
    });
  }

  return k;
}

interface EwCtx {
  f: Func;
  task: Local;
  arg: Record<string, Local>;
  fl: Record<string, Local>;
  at(name: string): void;
  each(body: (v: Lanes) => void): void;
  init(name: string, value: number): void;
  total(name: string, how: 'sum' | 'max'): void;
}

/**
 * Elementwise over chunks: task t handles elements [t*chunk, min(n, (t+1)*chunk)).
 * args: n, chunk, arrays..., ptrs..., floats...
 */
function ewKernel(arrays: string[], ptrs: string[], floats: string[], body: (c: EwCtx) => void): Func {
  const f = new Func(['i32', 'i32'], []);
  const task = f.param(0), args = f.param(1);
  const v4 = new Lanes(f, 4), v1 = new Lanes(f, 1);
  const I = (): Local => f.local('i32');
  const n = I(), chunk = I(), start = I(), len = I(), o = I();
  let slot = 0;
  const ld = (l: Local): void => { f.get(args).i32Load(4 * slot++).set(l); };
  ld(n); ld(chunk);
  const arg: Record<string, Local> = {}, fl: Record<string, Local> = {};
  for (const a of [...arrays, ...ptrs]) { arg[a] = I(); ld(arg[a]!); }
  for (const x of floats) { fl[x] = f.local('f32'); f.get(args).f32Load(4 * slot++).set(fl[x]!); }
  f.get(task).get(chunk).i32Mul().set(start);
  f.get(n).get(start).i32Sub().tee(len).get(chunk).get(len).get(chunk).i32LtS().select().set(len);
  for (const a of arrays) f.get(arg[a]!).get(start).i32Const(2).i32Shl().i32Add().set(arg[a]!);
  body({
    f, task, arg, fl,
    at: (name) => { f.get(arg[name]!).get(o).i32Add(); },
    each: (b) => lanes(f, len, o, v4, v1, b),
    init: (name, value) => { v4.c(value).set(v4.tmp(name)); v1.c(value).set(v1.tmp(name)); },
    total: (name, how) => {
      v4.get(v4.tmp(name)); if (how === 'sum') v4.hsum(); else v4.hmax();
      v1.get(v1.tmp(name));
      if (how === 'sum') f.f32Add(); else f.f32Max();
    },
  });
  return f;
}

interface ColCtx {
  f: Func;
  at(name: string): void;
  atRow(name: string): void;
  each(body: (v: Lanes) => void): void;
  /** Loop over rows from `from`, advancing the row arrays one row each time. */
  forRows(body: () => void, from?: number): void;
}

/**
 * Column-range kernels: task t is (o, column block) of x viewed as [outer, rows, cols];
 * each owns columns [c0, c0 + cw) of its outer slice and walks the rows in order.
 * args: outer, rows, cols, cw, rowArrays..., perRow..., outs...  (outs are [outer, cols])
 */
function colKernel(rowArrays: string[], perRow: string[], outs: string[], body: (c: ColCtx) => void): Func {
  const f = new Func(['i32', 'i32'], []);
  const task = f.param(0), args = f.param(1);
  const v4 = new Lanes(f, 4), v1 = new Lanes(f, 1);
  const I = (): Local => f.local('i32');
  const outer = I(), rows = I(), cols = I(), cw = I(), nb = I(), ob = I(), c0 = I(), len = I(), o = I(), r = I();
  let slot = 0;
  const ld = (l: Local): void => { f.get(args).i32Load(4 * slot++).set(l); };
  ld(outer); ld(rows); ld(cols); ld(cw);
  const arg: Record<string, Local> = {};
  for (const a of [...rowArrays, ...perRow, ...outs]) { arg[a] = I(); ld(arg[a]!); }
  // task -> (outer index ob, column block), blocks per outer = ceil(cols / cw)
  f.get(cols).get(cw).i32Add().i32Const(1).i32Sub().get(cw).i32DivS().set(nb);
  f.get(task).get(nb).i32DivS().set(ob);
  f.get(task).get(nb).i32RemS().get(cw).i32Mul().set(c0);
  f.get(cols).get(c0).i32Sub().tee(len).get(cw).get(len).get(cw).i32LtS().select().set(len);
  for (const a of rowArrays) {
    f.get(arg[a]!).get(ob).get(rows).i32Mul().get(cols).i32Mul().get(c0).i32Add().i32Const(2).i32Shl().i32Add().set(arg[a]!);
  }
  for (const a of outs) f.get(arg[a]!).get(ob).get(cols).i32Mul().get(c0).i32Add().i32Const(2).i32Shl().i32Add().set(arg[a]!);
  void outer;
  body({
    f,
    at: (name) => { f.get(arg[name]!).get(o).i32Add(); },
    atRow: (name) => { f.get(arg[name]!).get(r).i32Const(2).i32Shl().i32Add(); },
    each: (b) => lanes(f, len, o, v4, v1, b),
    forRows: (b, from = 0) => {
      if (from) for (const a of rowArrays) f.get(arg[a]!).get(cols).i32Const(4 * from).i32Mul().i32Add().set(arg[a]!);
      f.for(r, () => f.i32Const(from), () => f.get(rows), 1, () => {
        b();
        for (const a of rowArrays) f.get(arg[a]!).get(cols).i32Const(2).i32Shl().i32Add().set(arg[a]!);
      });
    },
  });
  return f;
}
