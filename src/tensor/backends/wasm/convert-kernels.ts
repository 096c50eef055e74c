// bfloat16 <-> float32 conversions as wasm SIMD, what autocast runs on every matmul operand:
// bfloat16 -> float32 shifts the bits into the top half (exact); float32 -> bfloat16 rounds to
// nearest even (x + 0x7fff + lsb, top half), a NaN staying a quiet NaN. Eight elements a round.
// Task t converts elements [t*chunk, min(n, (t+1)*chunk)); args: n, chunk, src, dst.

import { Func, type Local } from './emit.js';

function convertKernel(srcBytes: 2 | 4, dstBytes: 2 | 4, simd8: (f: Func, s: Local, d: Local) => void, scalar: (f: Func, s: Local, d: Local) => void): Func {
  const f = new Func(['i32', 'i32'], []);
  const task = f.param(0), args = f.param(1);
  const n = f.local('i32'), chunk = f.local('i32'), src = f.local('i32'), dst = f.local('i32');
  const start = f.local('i32'), end = f.local('i32'), i = f.local('i32');
  f.get(args).i32Load(0).set(n);
  f.get(args).i32Load(4).set(chunk);
  f.get(args).i32Load(8).set(src);
  f.get(args).i32Load(12).set(dst);
  f.get(task).get(chunk).i32Mul().set(start);
  // end = min(n, start + chunk)
  f.get(start).get(chunk).i32Add().tee(end).get(n).get(end).get(n).i32LtS().select().set(end);
  const sAt = f.local('i32'), dAt = f.local('i32');
  const addr = (): void => {
    f.get(src).get(i).i32Const(srcBytes === 2 ? 1 : 2).i32Shl().i32Add().set(sAt);
    f.get(dst).get(i).i32Const(dstBytes === 2 ? 1 : 2).i32Shl().i32Add().set(dAt);
  };
  f.get(start).set(i);
  f.block(() => f.loop(() => {
    f.get(i).i32Const(8).i32Add().get(end).i32GtS().brIf(1);
    addr();
    simd8(f, sAt, dAt);
    f.get(i).i32Const(8).i32Add().set(i);
    f.br(0);
  }));
  f.block(() => f.loop(() => {
    f.get(i).get(end).i32GeS().brIf(1);
    addr();
    scalar(f, sAt, dAt);
    f.get(i).i32Const(1).i32Add().set(i);
    f.br(0);
  }));
  return f;
}

/** x (i32x4 of float32 bits) -> its bfloat16 bits in the low half of each lane. */
function roundToBf16x4(f: Func, x: Local): void {
  const t = f.local('v128');
  // rounded = (x + 0x7fff + ((x >> 16) & 1)) >> 16
  f.get(x).i32Const(0x7fff).i32x4Splat().i32x4Add().get(x).i32Const(16).i32x4ShrU().i32Const(1).i32x4Splat().v128And().i32x4Add()
    .i32Const(16).i32x4ShrU().set(t);
  // NaN (|x| > inf): (x >> 16) | 0x40
  f.get(x).i32Const(16).i32x4ShrU().i32Const(0x40).i32x4Splat().v128Or();
  f.get(t);
  f.get(x).i32Const(0x7fffffff).i32x4Splat().v128And().i32Const(0x7f800000).i32x4Splat().i32x4GtS();
  f.v128Bitselect();
}

export function convertKernels(): Record<string, Func> {
  return {
    bf16ToF32: convertKernel(2, 4, (f, s, d) => {
      f.get(d).get(s).v128Load16x4U(0).i32Const(16).i32x4Shl().v128Store(0);
      f.get(d).get(s).v128Load16x4U(8).i32Const(16).i32x4Shl().v128Store(16);
    }, (f, s, d) => {
      f.get(d).get(s).i32Load16U(0).i32Const(16).i32Shl().i32Store(0);
    }),
    f32ToBf16: convertKernel(4, 2, (f, s, d) => {
      const a = f.local('v128'), b = f.local('v128'), x = f.local('v128');
      f.get(s).v128Load(0).set(x); roundToBf16x4(f, x); f.set(a);
      f.get(s).v128Load(16).set(x); roundToBf16x4(f, x); f.set(b);
      f.get(d).get(a).get(b).i16x8NarrowI32x4U().v128Store(0);
    }, (f, s, d) => {
      const x = f.local('i32');
      f.get(s).i32Load(0).set(x);
      f.get(d);
      f.get(x).i32Const(16).i32ShrU().i32Const(0x40).i32Or();
      f.get(x).get(x).i32Const(16).i32ShrU().i32Const(1).i32And().i32Add().i32Const(0x7fff).i32Add().i32Const(16).i32ShrU();
      f.get(x).i32Const(0x7fffffff).i32And().i32Const(0x7f800000).i32GtU();
      f.select().i32Store16(0);
    }),
  };
}
