// The engine's float16/bfloat16 conversions against numpy/PyTorch reference tables
// (test/fixtures/torch_float16*.{bin,json}, written by test/fixtures/make_torch_fixtures.py).
// NaN compares as NaN: payload/sign bits of NaN results are not required to match.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { tensor } from '../src/index.js';
import {
  bfloat16BitsToFloat32,
  float16BitsToFloat32,
  float32ToBfloat16Bits,
  float32ToFloat16Bits,
} from '../src/tensor/dtype.js';

const dir = new URL('./fixtures/', import.meta.url);

function readBytes(name: string): DataView {
  const buf = readFileSync(new URL(name, dir));
  return new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
}

interface RoundMeta {
  'torch_float16_round.bin': {
    count: number;
    layout: { field: string; type: string; offset: number; count: number }[];
    groups: { name: string; start: number; count: number }[];
  };
}

const hex = (v: number, w: number): string => '0x' + (v >>> 0).toString(16).padStart(w, '0');
const isF16NaN = (h: number): boolean => (h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0;
const isBf16NaN = (h: number): boolean => (h & 0x7f80) === 0x7f80 && (h & 0x7f) !== 0;

// float32 bits -> JS number (exact float32 value)
const scratch = new DataView(new ArrayBuffer(4));
function f32FromBits(bits: number): number {
  scratch.setUint32(0, bits >>> 0, true);
  return scratch.getFloat32(0, true);
}

describe('float16 -> float32: all 65536 bit patterns vs numpy', () => {
  it('matches exactly (NaN as NaN, -0 distinguished)', () => {
    const view = readBytes('torch_float16.bin');
    expect(view.byteLength).toBe(65536 * 4);
    const bad: string[] = [];
    for (let h = 0; h < 65536; h++) {
      const want = view.getFloat32(h * 4, true);
      const got = float16BitsToFloat32(h);
      const ok = Number.isNaN(want) ? Number.isNaN(got) : Object.is(got, want);
      if (!ok) bad.push(`${hex(h, 4)}: got ${got}, numpy ${want}`);
    }
    expect(bad.length, bad.slice(0, 20).join('\n')).toBe(0);
  });

  it.each(['js', 'wasm'])('as a whole-array cast on %s (the wasm SIMD kernel and its scalar tail), bit for bit, NaN payloads too', (backend) => {
    const view = readBytes('torch_float16.bin');
    // 65536 + 3 elements: the kernel's eight-wide loop and its one-element tail both run
    const bits = Uint16Array.from({ length: 65539 }, (_, i) => i % 65536);
    const got = new Uint32Array((tensor(bits, { dtype: 'float16', backend }).to('float32').dataSync() as Float32Array).buffer);
    const bad: string[] = [];
    for (let i = 0; i < bits.length; i++) {
      const want = view.getUint32(bits[i]! * 4, true);
      // numpy keeps a NaN's payload (and so does the wasm kernel); the js reference gives the canonical NaN
      const nan = (want & 0x7f800000) === 0x7f800000 && (want & 0x7fffff) !== 0;
      const ok = nan && backend === 'js' ? (got[i]! & 0x7f800000) === 0x7f800000 && (got[i]! & 0x7fffff) !== 0 : got[i] === want;
      if (!ok) bad.push(`${hex(bits[i]!, 4)}: got ${hex(got[i]!, 8)}, numpy ${hex(want, 8)}`);
    }
    expect(bad.length, bad.slice(0, 20).join('\n')).toBe(0);
  });
});

describe('float32 -> float16 / bfloat16 rounding vs numpy / torch', () => {
  const meta = JSON.parse(readFileSync(new URL('torch_float16_round.json', dir), 'utf8')) as RoundMeta;
  const info = meta['torch_float16_round.bin'];
  const n = info.count;
  const view = readBytes('torch_float16_round.bin');
  const off = (field: string): number => {
    const f = info.layout.find((l) => l.field === field);
    if (!f) throw new Error(`no field ${field}`);
    return f.offset;
  };
  const oBits = off('f32_bits');
  const oF16 = off('f16_bits');
  const oBf16 = off('bf16_bits');
  const groupOf = (i: number): string =>
    info.groups.find((g) => i >= g.start && i < g.start + g.count)?.name ?? '?';

  it('fixture is complete', () => {
    expect(view.byteLength).toBe(8 * n);
    expect(n).toBeGreaterThan(20000);
  });

  it('float32ToFloat16Bits matches numpy astype(float16) bit-exactly (NaN as NaN)', () => {
    const bad: string[] = [];
    for (let i = 0; i < n; i++) {
      const bits = view.getUint32(oBits + 4 * i, true);
      const want = view.getUint16(oF16 + 2 * i, true);
      const got = float32ToFloat16Bits(f32FromBits(bits));
      const ok = isF16NaN(want) ? isF16NaN(got) : got === want;
      if (!ok) bad.push(`[${groupOf(i)}] f32 ${hex(bits, 8)} (${f32FromBits(bits)}): got ${hex(got, 4)}, numpy ${hex(want, 4)}`);
    }
    expect(bad.length, bad.slice(0, 20).join('\n')).toBe(0);
  });

  it('float32ToBfloat16Bits matches torch .to(bfloat16) bit-exactly (NaN as NaN)', () => {
    const bad: string[] = [];
    for (let i = 0; i < n; i++) {
      const bits = view.getUint32(oBits + 4 * i, true);
      const want = view.getUint16(oBf16 + 2 * i, true);
      const got = float32ToBfloat16Bits(f32FromBits(bits));
      const ok = isBf16NaN(want) ? isBf16NaN(got) : got === want;
      if (!ok) bad.push(`[${groupOf(i)}] f32 ${hex(bits, 8)} (${f32FromBits(bits)}): got ${hex(got, 4)}, torch ${hex(want, 4)}`);
    }
    expect(bad.length, bad.slice(0, 20).join('\n')).toBe(0);
  });

  it.each(['js', 'wasm'])('whole-array casts on %s (tensor.to, what autocast runs) give the same bits as torch, both ways', (backend) => {
    const f32 = new Float32Array(n);
    const u = new Uint32Array(f32.buffer);
    for (let i = 0; i < n; i++) u[i] = view.getUint32(oBits + 4 * i, true);
    for (const [dtype, o, isNaN16] of [['bfloat16', oBf16, isBf16NaN], ['float16', oF16, isF16NaN]] as const) {
      const half = tensor(f32, { backend }).to(dtype);
      expect(half.backend.name).toBe(backend);
      const got = half.dataSync() as Uint16Array;
      let bad = 0;
      for (let i = 0; i < n; i++) {
        const want = view.getUint16(o + 2 * i, true);
        if (isNaN16(want) ? !isNaN16(got[i]!) : got[i] !== want) bad++;
      }
      expect(bad, `${dtype}: elements whose bits differ from the reference`).toBe(0);
      // and back: every half value widens exactly (NaN stays NaN)
      const back = half.to('float32').dataSync() as Float32Array;
      for (let i = 0; i < n; i += 7) {
        const want = dtype === 'bfloat16' ? bfloat16BitsToFloat32(got[i]!) : float16BitsToFloat32(got[i]!);
        if (!Object.is(back[i], want) && !(Number.isNaN(back[i]) && Number.isNaN(want))) bad++;
      }
      expect(bad, `${dtype} -> float32`).toBe(0);
    }
  });

  it('rounded results decode back to the nearest representable value (round trip)', () => {
    const bad: string[] = [];
    for (let i = 0; i < n; i++) {
      const bits = view.getUint32(oBits + 4 * i, true);
      const x = f32FromBits(bits);
      if (Number.isNaN(x)) continue;
      const h = view.getUint16(oF16 + 2 * i, true);
      const b = view.getUint16(oBf16 + 2 * i, true);
      // decoding the reference bits must give the same value as decoding the engine's bits
      const hv = float16BitsToFloat32(float32ToFloat16Bits(x));
      const bv = bfloat16BitsToFloat32(float32ToBfloat16Bits(x));
      if (!Object.is(hv, float16BitsToFloat32(h))) bad.push(`f16 ${hex(bits, 8)}`);
      if (!Object.is(bv, bfloat16BitsToFloat32(b))) bad.push(`bf16 ${hex(bits, 8)}`);
    }
    expect(bad.length, bad.slice(0, 20).join('\n')).toBe(0);
  });
});
