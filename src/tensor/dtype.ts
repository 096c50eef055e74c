// Data types and their host storage: float32/float64/int32 in their typed arrays,
// float16 (IEEE half) and bfloat16 as raw bits in Uint16Array, converted with round-to-nearest-even.

export type DType = 'float32' | 'float64' | 'float16' | 'bfloat16' | 'int32';
export type HostArray = Float32Array | Float64Array | Uint16Array | Int32Array;

export const DTYPES: readonly DType[] = ['float32', 'float64', 'float16', 'bfloat16', 'int32'];

export function isFloat(d: DType): boolean {
  return d !== 'int32';
}

/** Half-width floats are stored as bits and computed in float32. */
export function isHalf(d: DType): boolean {
  return d === 'float16' || d === 'bfloat16';
}

export function allocHost(dtype: DType, size: number): HostArray {
  switch (dtype) {
    case 'float32': return new Float32Array(size);
    case 'float64': return new Float64Array(size);
    case 'float16':
    case 'bfloat16': return new Uint16Array(size);
    case 'int32': return new Int32Array(size);
  }
}

// ---- float16 <-> float32 -------------------------------------------------------------
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float32 value -> IEEE half bits, round to nearest even (incl. subnormals, inf, NaN). */
export function float32ToFloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0); // inf / NaN (quiet, keeps payload top bits)
  const e = exp - 127 + 15; // rebias
  if (e >= 0x1f) return sign | 0x7c00; // overflow -> inf
  if (e <= 0) {
    // subnormal half (or zero): shift the implicit-1 mantissa right, rounding to nearest even
    if (e < -10) return sign; // too small even for the smallest subnormal (rounds to 0)
    const m = mant | 0x800000;
    const shift = 14 - e; // 24-bit mantissa -> 10-bit subnormal field
    const half = 1 << (shift - 1);
    const rest = m & ((1 << shift) - 1);
    let out = m >>> shift;
    if (rest > half || (rest === half && (out & 1))) out++;
    return sign | out; // a carry into bit 10 correctly yields the smallest normal
  }
  let out = (e << 10) | (mant >>> 13);
  const rest = mant & 0x1fff;
  if (rest > 0x1000 || (rest === 0x1000 && (out & 1))) out++; // may carry into exponent: correct (up to inf)
  return sign | out;
}

/** IEEE half bits -> float32 value (exact). */
export function float16BitsToFloat32(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** float32 value -> bfloat16 bits (top 16 bits of float32, round to nearest even; NaN stays NaN). */
export function float32ToBfloat16Bits(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  if ((x & 0x7f800000) === 0x7f800000 && (x & 0x7fffff)) return (x >>> 16) | 0x40; // quiet NaN
  const rounded = x + 0x7fff + ((x >>> 16) & 1);
  return (rounded >>> 16) & 0xffff;
}

export function bfloat16BitsToFloat32(b: number): number {
  u32[0] = b << 16;
  return f32[0]!;
}

/** Convert a host array between dtypes (numbers pass through float32 rounding for half types). */
export function convertHost(src: HostArray, from: DType, to: DType): HostArray {
  const n = src.length;
  const out = allocHost(to, n);
  if (from === to) { out.set(src as never); return out; }
  // the conversions autocast does all the time, as tight loops over the bits
  if (from === 'bfloat16' && to === 'float32') { bfloat16ToFloat32Bulk(src as Uint16Array, out as Float32Array); return out; }
  if (from === 'float32' && to === 'bfloat16') { float32ToBfloat16Bulk(src as Float32Array, out as Uint16Array); return out; }
  if (from === 'float16' && to === 'float32') {
    const t = float16Table(), o = out as Float32Array;
    for (let i = 0; i < n; i++) o[i] = t[src[i]!]!;
    return out;
  }
  const get: (i: number) => number =
    from === 'float16' ? (i) => float16BitsToFloat32(src[i]!) :
    from === 'bfloat16' ? (i) => bfloat16BitsToFloat32(src[i]!) :
    (i) => src[i]!;
  if (to === 'float16') for (let i = 0; i < n; i++) out[i] = float32ToFloat16Bits(get(i));
  else if (to === 'bfloat16') for (let i = 0; i < n; i++) out[i] = float32ToBfloat16Bits(get(i));
  else if (to === 'int32') for (let i = 0; i < n; i++) out[i] = Math.trunc(get(i));
  else for (let i = 0; i < n; i++) out[i] = get(i);
  return out;
}

/** bfloat16 bits -> float32: the bits shifted into the top half (exact). */
function bfloat16ToFloat32Bulk(src: Uint16Array, out: Float32Array): void {
  const o = new Uint32Array(out.buffer, out.byteOffset, out.length);
  for (let i = 0; i < src.length; i++) o[i] = src[i]! << 16;
}

/** float32 -> bfloat16 bits, round to nearest even (NaN stays a quiet NaN), as float32ToBfloat16Bits. */
function float32ToBfloat16Bulk(src: Float32Array, out: Uint16Array): void {
  const x = new Uint32Array(src.buffer, src.byteOffset, src.length);
  for (let i = 0; i < x.length; i++) out[i] = bfloat16BitsOfF32Bits(x[i]!);
}

/** float32 bits -> bfloat16 bits, round to nearest even (a NaN stays a quiet NaN). */
function bfloat16BitsOfF32Bits(v: number): number {
  return (v & 0x7fffffff) > 0x7f800000 ? (v >>> 16) | 0x40 : (v + 0x7fff + ((v >>> 16) & 1)) >>> 16;
}

let f16Table: Float32Array | null = null;
/** Every float16 bit pattern's float32 value (256 KiB, made once): decoding becomes a lookup. */
function float16Table(): Float32Array {
  if (!f16Table) {
    f16Table = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) f16Table[h] = float16BitsToFloat32(h);
  }
  return f16Table;
}

/**
 * Round float32 values in place to the nearest `dtype` value (to nearest even; NaN stays NaN), as
 * a cast to the half type and back: what torch.autocast does to a value it stores in a half type.
 */
export function roundToHalfInPlace(a: Float32Array, dtype: 'float16' | 'bfloat16'): Float32Array {
  const x = new Uint32Array(a.buffer, a.byteOffset, a.length);
  if (dtype === 'bfloat16') {
    for (let i = 0; i < x.length; i++) x[i] = bfloat16BitsOfF32Bits(x[i]!) << 16;
  } else {
    const t = float16Table();
    for (let i = 0; i < a.length; i++) a[i] = t[float32ToFloat16Bits(a[i]!)]!;
  }
  return a;
}
