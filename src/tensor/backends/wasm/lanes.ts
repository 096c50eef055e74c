// Width-generic arithmetic for kernel bodies: the same TypeScript emits the f32x4 main loop
// (4 lanes) and the scalar f32 tail (1 lane), so the two can never disagree in their math.
// Also the transcendental pieces wasm lacks (exp, tanh, sigmoid) as polynomial code.

import type { Func, Local, ValType } from './emit.js';

export class Lanes {
  readonly type: ValType;
  /** Bytes per step (16 or 4). */
  readonly bytes: number;
  private readonly tmps = new Map<string, Local>();
  constructor(readonly f: Func, readonly w: 1 | 4) {
    this.type = w === 4 ? 'v128' : 'f32';
    this.bytes = 4 * w;
  }

  /** A lane-typed temporary shared by every use of `key` in this function. */
  tmp(key: string): Local {
    let l = this.tmps.get(key);
    if (l === undefined) { l = this.f.local(this.type); this.tmps.set(key, l); }
    return l;
  }
  local(): Local { return this.f.local(this.type); }

  load(offset = 0): this { if (this.w === 4) this.f.v128Load(offset); else this.f.f32Load(offset); return this; }
  store(offset = 0): this { if (this.w === 4) this.f.v128Store(offset); else this.f.f32Store(offset); return this; }
  /** f32 on the stack -> one lane value (splat for vectors). */
  splat(): this { if (this.w === 4) this.f.f32x4Splat(); return this; }
  /** Push a constant in every lane. */
  c(x: number): this { this.f.f32Const(x); return this.splat(); }
  /** Load an f32 scalar at the address on the stack and splat it. */
  loadScalar(offset = 0): this { if (this.w === 4) this.f.v128Load32Splat(offset); else this.f.f32Load(offset); return this; }
  get(l: Local): this { this.f.get(l); return this; }
  set(l: Local): this { this.f.set(l); return this; }
  tee(l: Local): this { this.f.tee(l); return this; }

  add(): this { if (this.w === 4) this.f.f32x4Add(); else this.f.f32Add(); return this; }
  sub(): this { if (this.w === 4) this.f.f32x4Sub(); else this.f.f32Sub(); return this; }
  mul(): this { if (this.w === 4) this.f.f32x4Mul(); else this.f.f32Mul(); return this; }
  div(): this { if (this.w === 4) this.f.f32x4Div(); else this.f.f32Div(); return this; }
  /** wasm min/max return NaN when either input is NaN (as torch.minimum/maximum). */
  min(): this { if (this.w === 4) this.f.f32x4Min(); else this.f.f32Min(); return this; }
  max(): this { if (this.w === 4) this.f.f32x4Max(); else this.f.f32Max(); return this; }
  sqrt(): this { if (this.w === 4) this.f.f32x4Sqrt(); else this.f.f32Sqrt(); return this; }
  neg(): this { if (this.w === 4) this.f.f32x4Neg(); else this.f.f32Neg(); return this; }
  abs(): this { if (this.w === 4) this.f.f32x4Abs(); else this.f.f32Abs(); return this; }

  // comparisons give a condition: an all-ones lane mask (vector) or an i32 0/1 (scalar)
  gt(): this { if (this.w === 4) this.f.f32x4Gt(); else this.f.f32Gt(); return this; }
  lt(): this { if (this.w === 4) this.f.f32x4Lt(); else this.f.f32Lt(); return this; }
  ge(): this { if (this.w === 4) this.f.f32x4Ge(); else this.f.f32Ge(); return this; }
  eq(): this { if (this.w === 4) this.f.f32x4Eq(); else this.f.f32Eq(); return this; }
  /** Condition on the stack -> 1.0 or 0.0. */
  bool(): this {
    if (this.w === 4) { this.c(1); this.f.v128And(); } else this.f.f32ConvertI32S();
    return this;
  }
  /** cond ? a : b, each pushed by its callback. */
  select(a: () => void, b: () => void, cond: () => void): this {
    a(); b(); cond();
    if (this.w === 4) this.f.v128Bitselect(); else this.f.select();
    return this;
  }

  /** Horizontal sum of the lane value on the stack -> f32, always as (l0 + l1) + (l2 + l3). */
  hsum(): this {
    if (this.w === 1) return this;
    const v = this.tmp('h');
    this.f.set(v);
    this.f.get(v).f32x4ExtractLane(0).get(v).f32x4ExtractLane(1).f32Add();
    this.f.get(v).f32x4ExtractLane(2).get(v).f32x4ExtractLane(3).f32Add().f32Add();
    return this;
  }
  hmax(): this {
    if (this.w === 1) return this;
    const v = this.tmp('h');
    this.f.set(v);
    this.f.get(v).f32x4ExtractLane(0).get(v).f32x4ExtractLane(1).f32Max();
    this.f.get(v).f32x4ExtractLane(2).get(v).f32x4ExtractLane(3).f32Max().f32Max();
    return this;
  }

  /**
   * Pseudo-min of the two values on the stack (a, then b): b < a ? b : a, so a NaN a stays.
   * One instruction on x86 (minps), where f32x4.min's NaN and -0 rules take several; the scalar
   * tail computes the same comparison.
   */
  pmin(): this { return this.pseudo('pmin'); }
  /** Pseudo-max: a < b ? b : a (maxps). */
  pmax(): this { return this.pseudo('pmax'); }
  private pseudo(op: 'pmin' | 'pmax'): this {
    if (this.w === 4) { if (op === 'pmin') this.f.f32x4PMin(); else this.f.f32x4PMax(); return this; }
    const a = this.tmp('pa'), b = this.tmp('pb');
    this.set(b).set(a);
    if (op === 'pmin') this.select(() => this.get(b), () => this.get(a), () => this.get(b).get(a).lt());
    else this.select(() => this.get(b), () => this.get(a), () => this.get(a).get(b).lt());
    return this;
  }

  /**
   * exp(x) of the value on the stack (as XNNPACK / Cephes expf): x = n ln2 + r with
   * |r| <= ln2/2, exp(r) by its degree-6 Taylor polynomial (error < 2e-7 relative), 2^n
   * built in the exponent bits. n is rounded by adding 1.5 * 2^23 + 126 (the float's spacing
   * there is 1), which also leaves n + 126 in the low bits: shifted into the exponent field they
   * make 2^(n-1), and the polynomial's coefficients are doubled (exactly) to make up for it.
   * So n = 128 (x up to 88.7228, exp near the largest float) stays finite, and every step is
   * one instruction (no nearest, no saturating truncation). Below x = -87 (n = -126: results
   * under 2^-125) the exponent field is 0 and the result 0, a flush to zero; above 88.7228 it
   * is +inf. The softmax kernels' time is mostly this.
   */
  exp(): this {
    const f = this.f;
    const x = this.tmp('ex'), n = this.tmp('en'), r = this.tmp('er'), p2 = this.tmp('e2');
    const MAGIC = 12582912 + 126;
    this.set(x);
    this.get(x).c(88.7228).pmin().c(-87.33).pmax();             // n in [-126, 128]; a NaN stays NaN
    this.tee(r).c(Math.LOG2E).mul().c(MAGIC).add().tee(n);
    // 2^(n-1): the low bits (n + 126) shifted into the exponent field
    if (this.w === 4) f.i32Const(23).i32x4Shl();
    else f.i32ReinterpretF32().i32Const(23).i32Shl().f32ReinterpretI32();
    this.set(p2);
    this.get(n).c(MAGIC).sub().set(n);
    this.get(r).get(n).c(0.693359375).mul().sub().get(n).c(-2.12194440e-4).mul().sub().set(r); // Cody-Waite
    // 2 exp(r) = 2 + r(2 + r(1 + r(2/6 + r(2/24 + r(2/120 + 2r/720)))))
    this.get(r).c(2 / 720).mul().c(2 / 120).add();
    for (const k of [2 / 24, 2 / 6, 1, 2, 2]) this.get(r).mul().c(k).add();
    this.get(p2).mul().set(r);
    return this.select(() => this.c(Infinity), () => this.get(r), () => this.get(x).c(88.7228).gt());
  }

  /** 1 / (1 + exp(-x)), stable for both signs (exp's argument is kept finite). */
  sigmoid(): this {
    const d = this.tmp('sg');
    this.neg().c(88).min().exp().c(1).add().set(d);
    return this.c(1).get(d).div();
  }

  /**
   * tanh(x): its odd Taylor series for |x| < 0.3 (where 1 - 2/(e^2x + 1) would cancel),
   * else 2 sigmoid(2x) - 1.
   */
  tanh(): this {
    const x = this.tmp('tx'), x2 = this.tmp('tx2'), p = this.tmp('tp');
    this.set(x);
    this.get(x).get(x).mul().set(x2);
    // x (1 + x2(-1/3 + x2(2/15 + x2(-17/315 + x2 * 62/2835))))
    this.get(x2).c(62 / 2835).mul().c(-17 / 315).add();
    for (const k of [2 / 15, -1 / 3, 1]) this.get(x2).mul().c(k).add();
    this.get(x).mul().set(p);
    this.get(x).c(2).mul().sigmoid().c(2).mul().c(1).sub().set(this.tmp('tq'));
    return this.select(() => this.get(p), () => this.get(this.tmp('tq')), () => this.get(x).abs().c(0.3).lt());
  }
}

/**
 * Emit `body` over elements [0, n) of a row: first with f32x4 while 4 remain, then scalar.
 * `o` is the byte offset of the current element, for addressing every array of the row.
 */
export function lanes(f: Func, n: Local, o: Local, v4: Lanes, v1: Lanes, body: (v: Lanes) => void): void {
  const end = f.local('i32');
  f.get(n).i32Const(2).i32Shl().set(end); // bytes
  f.i32Const(0).set(o);
  f.block(() => f.loop(() => {
    f.get(o).i32Const(16).i32Add().get(end).i32GtS().brIf(1);
    body(v4);
    f.get(o).i32Const(16).i32Add().set(o).br(0);
  }));
  f.block(() => f.loop(() => {
    f.get(o).get(end).i32GeS().brIf(1);
    body(v1);
    f.get(o).i32Const(4).i32Add().set(o).br(0);
  }));
}
