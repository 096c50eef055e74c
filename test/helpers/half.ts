// An independent float16 reference for tests: decoding from numpy's table of all 65536 bit
// patterns (test/fixtures/torch_float16.bin), and float32 -> float16 rounding by nearest-value
// search over that table (ties to the even bit pattern). It shares no code with src/tensor/dtype.ts.
import { readFileSync } from 'node:fs';

const view = (() => {
  const buf = readFileSync(new URL('../fixtures/torch_float16.bin', import.meta.url));
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
})();

/** numpy's float32 value of each float16 bit pattern. */
export const HALF_VALUES: Float32Array = Float32Array.from({ length: 65536 }, (_, h) => view.getFloat32(4 * h, true));

/** Decode float16 bits with numpy's table. */
export function halfToNumber(h: number): number {
  return HALF_VALUES[h & 0xffff]!;
}

export const isHalfNaN = (h: number): boolean => Number.isNaN(HALF_VALUES[h & 0xffff]!);

const MAX_FINITE_BITS = 0x7bff; // 65504; 0x7c00 is +inf

/** float32 (or any number) -> float16 bits, round to nearest, ties to even, overflow to inf. */
export function refHalfBits(v: number): number {
  if (Number.isNaN(v)) return 0x7e00;
  const sign = v < 0 || Object.is(v, -0) ? 0x8000 : 0;
  const a = Math.abs(v);
  // the positive finite patterns 0..0x7bff decode to increasing values: binary search the lower neighbour
  let lo = 0, hi = MAX_FINITE_BITS;
  if (a >= HALF_VALUES[MAX_FINITE_BITS]!) {
    const top = HALF_VALUES[MAX_FINITE_BITS]!, ulp = top - HALF_VALUES[MAX_FINITE_BITS - 1]!;
    // halfway to the next (unrepresentable) value 65536 rounds to inf (65504 has an odd mantissa)
    return sign | (a >= top + ulp / 2 ? 0x7c00 : MAX_FINITE_BITS);
  }
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (HALF_VALUES[mid]! <= a) lo = mid; else hi = mid;
  }
  const dl = a - HALF_VALUES[lo]!, dh = HALF_VALUES[hi]! - a;
  const bits = dl < dh ? lo : dh < dl ? hi : (lo & 1 ? hi : lo);
  return sign | bits;
}

/** Distance in float16 steps between two finite bit patterns (for kernels not exactly rounded). */
export function halfUlps(a: number, b: number): number {
  const ord = (h: number): number => (h & 0x8000 ? -(h & 0x7fff) : h);
  return Math.abs(ord(a) - ord(b));
}

// ---- bfloat16: the top 16 bits of a float32; rounding by comparing the two neighbours ----
const bfScratch = new DataView(new ArrayBuffer(4));
export function bf16ToNumber(b: number): number {
  bfScratch.setUint32(0, (b & 0xffff) << 16);
  return bfScratch.getFloat32(0);
}
/** float32 value -> bfloat16 bits, nearest with ties to even; past the max-finite midpoint -> inf. */
export function refBf16Bits(v: number): number {
  const f = Math.fround(v);
  if (Number.isNaN(f)) return 0x7fc0;
  bfScratch.setFloat32(0, f);
  const bits = bfScratch.getUint32(0);
  const lo = bits >>> 16;
  if ((bits & 0xffff) === 0) return lo;
  const hi = lo + 1; // one step away from zero (the sign bit is in lo)
  const mag = (b: number): number => ((b & 0x7fff) === 0x7f80 ? 2 ** 128 : Math.abs(bf16ToNumber(b)));
  const dl = Math.abs(f) - mag(lo), dh = mag(hi) - Math.abs(f);
  return dl < dh ? lo : dh < dl ? hi : (lo & 1 ? hi : lo);
}
export const isBf16NaN = (b: number): boolean => Number.isNaN(bf16ToNumber(b));
