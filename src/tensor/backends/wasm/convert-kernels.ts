// bfloat16/float16 <-> float32 conversions as wasm SIMD, what autocast runs on every matmul
// operand: bfloat16 -> float32 shifts the bits into the top half (exact); float32 -> bfloat16
// rounds to nearest even (x + 0x7fff + lsb, top half), a NaN staying a quiet NaN. float16 uses
// branch-free rebias tricks (F. Giesen's half<->float conversions): a float multiply or add moves
// the exponent and does the rounding, bit masks pick inf/NaN/subnormal; the same bits as
// dtype.ts's scalar float16 conversions. Eight elements a round.
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

const splat = (f: Func, v: number): Func => f.i32Const(v | 0).i32x4Splat();

/** h (i32x4 of float16 bits in the low halves) -> float32 bits. */
function f16ToF32x4(f: Func, h: Local): void {
  const em = f.local('v128'), sh = f.local('v128');
  f.get(h).i32Const(0x7fff).i32x4Splat().v128And().set(em);
  f.get(em).i32Const(13).i32x4Shl().set(sh);
  // exponent 31 (inf, NaN): all-ones float32 exponent, mantissa (payload) kept
  f.get(sh).i32Const(0x7f800000).i32x4Splat().v128Or();
  // else the bits as a float32 times 2^112 rebias the exponent; subnormals come out normalised (exact)
  f.get(sh).f32Const(2 ** 112).f32x4Splat().f32x4Mul();
  f.get(em).i32Const(0x7bff).i32x4Splat().i32x4GtS();
  f.v128Bitselect();
  f.get(h).i32Const(0x8000).i32x4Splat().v128And().i32Const(16).i32x4Shl().v128Or();
}

/** x (i32x4 of float32 bits) -> float16 bits in the low halves, round to nearest even. */
function f32ToF16x4(f: Func, x: Local): void {
  const a = f.local('v128');
  f.get(x).i32Const(0x7fffffff).i32x4Splat().v128And().set(a);
  // NaN: quiet, the top payload bits kept: ((a >> 13) & 0x7fff) | 0x200
  f.get(a).i32Const(13).i32x4ShrU(); splat(f, 0x7fff).v128And(); splat(f, 0x200).v128Or();
  // overflow (|x| >= 65536 before rounding; 65520.. rounds up to it below): inf
  splat(f, 0x7c00);
  // |x| < 2^-14, a half subnormal or 0: adding 0.5 leaves the rounded multiple of 2^-24 in the low bits
  f.get(a).f32Const(0.5).f32x4Splat().f32x4Add(); splat(f, -0x3f000000).i32x4Add();
  // normal: rebias the exponent, round to nearest even at bit 13 (a carry may reach inf: correct)
  f.get(a); splat(f, 0xc8000fff).i32x4Add().get(a).i32Const(13).i32x4ShrU(); splat(f, 1).v128And().i32x4Add().i32Const(13).i32x4ShrU();
  splat(f, 0x38800000).get(a).i32x4GtS(); // small ?
  f.v128Bitselect();
  f.get(a); splat(f, 0x477fffff).i32x4GtS(); // big ?
  f.v128Bitselect();
  f.get(a); splat(f, 0x7f800000).i32x4GtS(); // NaN ?
  f.v128Bitselect();
  f.get(x).i32Const(16).i32x4ShrU(); splat(f, 0x8000).v128And().v128Or();
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
    // the tails reuse the four-lane code on one splatted element
    f16ToF32: convertKernel(2, 4, (f, s, d) => {
      const h = f.local('v128');
      f.get(s).v128Load16x4U(0).set(h); f.get(d); f16ToF32x4(f, h); f.v128Store(0);
      f.get(s).v128Load16x4U(8).set(h); f.get(d); f16ToF32x4(f, h); f.v128Store(16);
    }, (f, s, d) => {
      const h = f.local('v128');
      f.get(s).i32Load16U(0).i32x4Splat().set(h); f.get(d); f16ToF32x4(f, h); f.i32x4ExtractLane(0).i32Store(0);
    }),
    f32ToF16: convertKernel(4, 2, (f, s, d) => {
      const x = f.local('v128'), lo = f.local('v128');
      f.get(s).v128Load(0).set(x); f32ToF16x4(f, x); f.set(lo);
      f.get(s).v128Load(16).set(x);
      f.get(d).get(lo); f32ToF16x4(f, x); f.i16x8NarrowI32x4U().v128Store(0);
    }, (f, s, d) => {
      const x = f.local('v128');
      f.get(s).i32Load(0).i32x4Splat().set(x); f.get(d); f32ToF16x4(f, x); f.i32x4ExtractLane(0).i32Store16(0);
    }),
  };
}
