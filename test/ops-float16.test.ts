// float16 tensors compute in float32 and store half, as PyTorch does: for + - * / the result
// must be exactly the float16 rounding of the float32 result. Checked with an independent
// reference (helpers/half.ts: numpy's decode table + nearest-value rounding), itself
// validated against numpy's rounding table first.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { F, tensor, type Tensor } from '../src/index.js';
import { forAll } from './helpers/prop.js';
import { bf16ToNumber, halfToNumber, halfUlps, isBf16NaN, isHalfNaN, refBf16Bits, refHalfBits } from './helpers/half.js';

const half = (bits: number[], shape?: number[]): Tensor => tensor(Uint16Array.from(bits), { dtype: 'float16', shape: shape ?? [bits.length] });
const bitsOf = (t: Tensor): number[] => { expect(t.dtype).toBe('float16'); return Array.from(t.dataSync()); };
const hex = (h: number): string => '0x' + h.toString(16).padStart(4, '0');

function expectBits(got: number[], want: number[], what: string, ulps = 0): void {
  const bad: string[] = [];
  want.forEach((w, i) => {
    const g = got[i]!;
    const ok = isHalfNaN(w) ? isHalfNaN(g) : g === w || (ulps > 0 && !isHalfNaN(g) && halfUlps(g, w) <= ulps && Math.sign(halfToNumber(g)) === Math.sign(halfToNumber(w)));
    if (!ok) bad.push(`[${i}] got ${hex(g)} (${halfToNumber(g)}), want ${hex(w)} (${halfToNumber(w)})`);
  });
  expect(bad.length, `${what}: ${bad.length} mismatches\n${bad.slice(0, 8).join('\n')}`).toBe(0);
}

// any 16-bit pattern: normals, subnormals, zeros, infinities, NaNs
const halfBits = (n: number): fc.Arbitrary<number[]> => fc.array(fc.integer({ min: 0, max: 0xffff }), { minLength: n, maxLength: n });
// "ordinary" values (|v| in ~[2^-6, 2^6]) where sums are not dominated by overflow or underflow
const ordinaryBits = (n: number): fc.Arbitrary<number[]> =>
  fc.array(fc.tuple(fc.integer({ min: 0x2400, max: 0x5400 }), fc.boolean()).map(([b, s]) => (s ? b | 0x8000 : b)), { minLength: n, maxLength: n });

describe('the reference float16/bfloat16 rounding (test helper) agrees with numpy/torch', () => {
  it('on every entry of torch_float16_round.bin', () => {
    const meta = JSON.parse(readFileSync(new URL('./fixtures/torch_float16_round.json', import.meta.url), 'utf8')) as
      { 'torch_float16_round.bin': { count: number; layout: { field: string; offset: number }[] } };
    const info = meta['torch_float16_round.bin'];
    const buf = readFileSync(new URL('./fixtures/torch_float16_round.bin', import.meta.url));
    const v = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    const off = (f: string): number => info.layout.find((l) => l.field === f)!.offset;
    const scratch = new DataView(new ArrayBuffer(4));
    const bad: string[] = [];
    for (let i = 0; i < info.count; i++) {
      scratch.setUint32(0, v.getUint32(off('f32_bits') + 4 * i, true));
      const x = scratch.getFloat32(0);
      const want = v.getUint16(off('f16_bits') + 2 * i, true);
      const got = refHalfBits(x);
      if (isHalfNaN(want) ? !isHalfNaN(got) : got !== want) bad.push(`${x}: ${hex(got)} vs numpy ${hex(want)}`);
      const wantBf = v.getUint16(off('bf16_bits') + 2 * i, true);
      const gotBf = refBf16Bits(x);
      if (isBf16NaN(wantBf) ? !isBf16NaN(gotBf) : gotBf !== wantBf) bad.push(`${x}: bf16 ${hex(gotBf)} vs torch ${hex(wantBf)}`);
    }
    expect(bad.length, bad.slice(0, 8).join('\n')).toBe(0);
  });
});

describe('float16 arithmetic: computed in float32, stored as half', () => {
  const binOps: [string, (a: Tensor, b: Tensor) => Tensor, (x: number, y: number) => number][] = [
    ['add', (a, b) => a.add(b), (x, y) => x + y],
    ['sub', (a, b) => a.sub(b), (x, y) => x - y],
    ['mul', (a, b) => a.mul(b), (x, y) => x * y],
    ['div', (a, b) => a.div(b), (x, y) => x / y],
    ['maximum', (a, b) => a.maximum(b), (x, y) => (Number.isNaN(x) || Number.isNaN(y) ? NaN : Math.max(x, y))],
  ];
  for (const [name, op, ref] of binOps) {
    it(`${name}: tensor op tensor (any bit patterns, with broadcasting)`, () => {
      forAll(fc.tuple(halfBits(12), halfBits(4)), ([a, b]) => {
        const want = a.map((h, i) => refHalfBits(Math.fround(ref(halfToNumber(h), halfToNumber(b[i % 4]!)))));
        expectBits(bitsOf(op(half(a, [3, 4]), half(b, [4]))), want, name);
      }, 200);
    });
  }

  it('tensor op number: the number is a float32 operand (not rounded to half first), result stays float16', () => {
    const arb = fc.tuple(ordinaryBits(8), fc.double({ min: -100, max: 100, noNaN: true }).filter((s) => Math.abs(s) > 1e-3));
    forAll(arb, ([a, s]) => {
      const x = half(a);
      const fs = Math.fround(s);
      const av = a.map(halfToNumber);
      expectBits(bitsOf(x.add(s)), av.map((v) => refHalfBits(Math.fround(v + fs))), 'add scalar');
      expectBits(bitsOf(x.mul(s)), av.map((v) => refHalfBits(Math.fround(v * fs))), 'mul scalar');
      expectBits(bitsOf(x.div(s)), av.map((v) => refHalfBits(Math.fround(v / fs))), 'div scalar');
      expectBits(bitsOf(x.sub(s)), av.map((v) => refHalfBits(Math.fround(v - fs))), 'sub scalar');
    }, 200);
  });

  it('float16 with float32 promotes to float32 (exact float32 result); with int32 stays float16', () => {
    forAll(fc.tuple(halfBits(6), fc.array(fc.float({ noNaN: true, min: -1000, max: 1000 }), { minLength: 6, maxLength: 6 })), ([a, b]) => {
      const y = half(a).add(tensor(Float32Array.from(b)));
      expect(y.dtype).toBe('float32');
      const want = a.map((h, i) => Math.fround(halfToNumber(h) + Math.fround(b[i]!)));
      Array.from(y.dataSync()).forEach((g, i) => expect(Number.isNaN(want[i]!) ? Number.isNaN(g) : g === want[i]).toBe(true));
      const z = half(a).mul(tensor(new Int32Array([1, 2, 3, -1, 0, 7])));
      expectBits(bitsOf(z), a.map((h, i) => refHalfBits(Math.fround(halfToNumber(h) * [1, 2, 3, -1, 0, 7][i]!))), 'f16 * int32');
    }, 100);
  });

  it('unary ops: exactly rounded ones bit-exact, transcendental within 1 half ulp', () => {
    forAll(ordinaryBits(16), (a) => {
      const x = half(a), av = a.map(halfToNumber);
      expectBits(bitsOf(x.neg()), av.map((v) => refHalfBits(-v)), 'neg');
      expectBits(bitsOf(x.abs()), av.map((v) => refHalfBits(Math.abs(v))), 'abs');
      expectBits(bitsOf(x.relu()), av.map((v) => refHalfBits(v > 0 ? v : 0)), 'relu');
      expectBits(bitsOf(x.abs().sqrt()), av.map((v) => refHalfBits(Math.fround(Math.sqrt(Math.abs(v))))), 'sqrt');
      expectBits(bitsOf(x.exp()), av.map((v) => refHalfBits(Math.fround(Math.exp(v)))), 'exp', 1);
      expectBits(bitsOf(x.tanh()), av.map((v) => refHalfBits(Math.fround(Math.tanh(v)))), 'tanh', 1);
      expectBits(bitsOf(x.pow(2)), av.map((v) => refHalfBits(Math.fround(v * v))), 'pow 2');
    }, 100);
  });

  it('sum and matmul accumulate in (at least) float32 and round once to half', () => {
    forAll(fc.tuple(ordinaryBits(64), ordinaryBits(16)), ([a, b]) => {
      const av = a.map(halfToNumber), bv = b.map(halfToNumber);
      // 64 terms summed in float16 would drift by many half ulps; wide accumulation is within 1
      const s = av.reduce((p, q) => p + q, 0);
      expectBits(bitsOf(half(a).sum()), [refHalfBits(s)], 'sum', 1);
      const rows = half(a, [4, 16]).matmul(half(b, [16, 1]));
      const want = [0, 1, 2, 3].map((r) => refHalfBits(av.slice(16 * r, 16 * r + 16).reduce((p, q, j) => p + q * bv[j]!, 0)));
      expectBits(bitsOf(rows), want, 'matmul', 1);
      expectBits(bitsOf(half(a, [4, 16]).mean(1)), [0, 1, 2, 3].map((r) => refHalfBits(av.slice(16 * r, 16 * r + 16).reduce((p, q) => p + q, 0) / 16)), 'mean', 1);
    }, 100);
  });

  it('mean rounds once: sum and divide in float32 (a half-rounded sum / 3 is an ulp off a quarter of the time)', () => {
    forAll(ordinaryBits(12), (a) => {
      const av = a.map(halfToNumber);
      const want = [0, 1, 2, 3].map((r) => refHalfBits(Math.fround(Math.fround(av[3 * r]! + av[3 * r + 1]! + av[3 * r + 2]!) / 3)));
      expectBits(bitsOf(half(a, [4, 3]).mean(1)), want, 'mean of 3');
    }, 100);
  });

  it('softmax, logSoftmax and layerNorm on float16 compute in float32 and round once (as a fused kernel does)', () => {
    forAll(fc.tuple(ordinaryBits(10), ordinaryBits(5), ordinaryBits(5)), ([a, w, b]) => {
      const x = half(a, [2, 5]);
      const once = (f: (t: Tensor) => Tensor): number[] => Array.from(f(x.float()).dataSync()).map(refHalfBits);
      expectBits(bitsOf(F.softmax(x, -1)), once((t) => F.softmax(t, -1)), 'softmax');
      expectBits(bitsOf(F.softmax(x, 0)), once((t) => F.softmax(t, 0)), 'softmax dim 0');
      expectBits(bitsOf(F.logSoftmax(x, -1)), once((t) => F.logSoftmax(t, -1)), 'logSoftmax');
      const [hw, hb] = [half(w), half(b)];
      expectBits(bitsOf(F.layerNorm(x, hw, hb)), once((t) => F.layerNorm(t, hw.float(), hb.float())), 'layerNorm');
    }, 50);
  });

  it('float16 composites get float16 gradients', () => {
    const x = half([0x3c00, 0x4000, 0x4200, 0x4400, 0xbc00, 0x3800], [2, 3]).requiresGrad_();
    const w = half([0x3c00, 0x3c00, 0x3c00]).requiresGrad_();
    F.layerNorm(F.softmax(x, -1), w, null).mul(half([0x3c00, 0x4000, 0x4200, 0x4400, 0xbc00, 0x3800], [2, 3])).sum().backward();
    expect([x.grad!.dtype, w.grad!.dtype]).toEqual(['float16', 'float16']);
    expect((x.grad!.toArray() as number[][]).flat().every(Number.isFinite)).toBe(true);
  });
});

describe('bfloat16 arithmetic: computed in float32, stored as bfloat16', () => {
  const bf = (bits: number[], shape?: number[]): Tensor => tensor(Uint16Array.from(bits), { dtype: 'bfloat16', shape: shape ?? [bits.length] });
  const ops: [string, (a: Tensor, b: Tensor | number) => Tensor, (x: number, y: number) => number][] = [
    ['add', (a, b) => a.add(b), (x, y) => x + y], ['sub', (a, b) => a.sub(b), (x, y) => x - y],
    ['mul', (a, b) => a.mul(b), (x, y) => x * y], ['div', (a, b) => a.div(b), (x, y) => x / y],
  ];
  it('tensor op tensor and tensor op number round the float32 result once', () => {
    forAll(fc.tuple(halfBits(8), halfBits(8), fc.double({ min: -50, max: 50, noNaN: true })), ([a, b, s]) => {
      for (const [name, op, ref] of ops) {
        const y = op(bf(a), bf(b));
        expect(y.dtype).toBe('bfloat16');
        const want = a.map((h, i) => refBf16Bits(Math.fround(ref(bf16ToNumber(h), bf16ToNumber(b[i]!)))));
        const got = Array.from(y.dataSync());
        want.forEach((w, i) => expect(isBf16NaN(w) ? isBf16NaN(got[i]!) : got[i] === w, `${name} [${i}]`).toBe(true));
        const ys = Array.from(op(bf(a), s).dataSync());
        a.forEach((h, i) => {
          const w = refBf16Bits(Math.fround(ref(bf16ToNumber(h), Math.fround(s))));
          expect(isBf16NaN(w) ? isBf16NaN(ys[i]!) : ys[i] === w, `${name} scalar [${i}]`).toBe(true);
        });
      }
    }, 100);
  });
});

describe('float16 gradients', () => {
  it('flow in float16 and equal the half rounding of the float32 gradient', () => {
    forAll(ordinaryBits(6), (a) => {
      const x = half(a).requiresGrad_();
      x.mul(x).mul(0.5).sum().backward(); // d/dx x^2/2 = x
      expect(x.grad!.dtype).toBe('float16');
      expectBits(bitsOf(x.grad!), a.map((h) => refHalfBits(halfToNumber(h))), 'grad of x^2/2', 1);
    }, 50);
  });

  it('embedding with a float16 table scatter-adds the gradient as numbers, not as raw bits', () => {
    const w = half([0x3c00, 0x4000, 0x4200, 0x4400], [2, 2]).requiresGrad_(); // [[1, 2], [3, 4]]
    const idx = tensor(new Int32Array([1, 1, 0]));
    F.embedding(idx, w).sum().backward();
    expect(w.grad!.dtype).toBe('float16');
    expect(w.grad!.toArray()).toEqual([[1, 1], [2, 2]]);
  });

  it('dropout keeps the float16 dtype', () => {
    const x = half([0x3c00, 0x4000, 0x4200, 0x4400]);
    const y = F.dropout(x, 0.5, true);
    expect(y.dtype).toBe('float16');
    y.toArray();
    (y.toArray() as number[]).forEach((v, i) => expect([0, 2 * halfToNumber(x.dataSync()[i]!)]).toContain(v));
  });
});
