// Tests for src/data/safetensors.ts against independent sources: byte layouts from the Rust crate's own
// tests (huggingface/safetensors tensor.rs), files written by test/fixtures/make_safetensors_fixtures.py
// (plain Python/numpy/torch), and hostile files built by hand here.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtemp, readFile, readdir, rm, truncate, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  openSafetensors, readSafetensors, writeSafetensors, toFloat32, int64ToInt32, SafetensorsError,
  SAFETENSORS_DTYPES, type SafetensorsDtype, type SafetensorsTensor, type SafetensorsTensorInput, type SafetensorsErrorKind,
} from '../src/data/safetensors.js';

const FIX = join(import.meta.dirname, 'fixtures');
let dir: string;
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'st-test-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

/** A file from an 8-byte length, a header string and data bytes, exactly as given. */
function rawFile(header: string, data: Uint8Array = new Uint8Array(0), declaredLength?: bigint): Uint8Array {
  const h = Buffer.from(header, 'utf8');
  const out = new Uint8Array(8 + h.length + data.length);
  new DataView(out.buffer).setBigUint64(0, declaredLength ?? BigInt(h.length), true);
  out.set(h, 8);
  out.set(data, 8 + h.length);
  return out;
}

let counter = 0;
async function put(bytes: Uint8Array): Promise<string> {
  const p = join(dir, `f${counter++}.safetensors`);
  await writeFile(p, bytes);
  return p;
}

async function expectError(p: string, kind: SafetensorsErrorKind, pattern?: RegExp): Promise<void> {
  const err = await openSafetensors(p).then(async (f) => { await f.close(); return null; }, (e: unknown) => e);
  expect(err).toBeInstanceOf(SafetensorsError);
  expect((err as SafetensorsError).kind).toBe(kind);
  expect((err as SafetensorsError).message).toContain(p);
  if (pattern) expect((err as SafetensorsError).message).toMatch(pattern);
}

const f32Bytes = (xs: number[]): Uint8Array => new Uint8Array(new Float32Array(xs).buffer);

describe('writer matches the Rust crate byte for byte (vectors from its tensor.rs tests)', () => {
  it('test_serialization: one F32 [1,2,3] tensor, header needs no padding', async () => {
    const p = join(dir, 'ser.safetensors');
    await writeSafetensors(p, { 'attn.0': { dtype: 'F32', shape: [1, 2, 3], data: new Float32Array([0, 1, 2, 3, 4, 5]) } });
    const expected = rawFile('{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}', f32Bytes([0, 1, 2, 3, 4, 5]));
    expect(new Uint8Array(await readFile(p))).toEqual(expected);
    expect(expected.subarray(0, 8)).toEqual(new Uint8Array([64, 0, 0, 0, 0, 0, 0, 0]));
  });
  it('test_serialization_forced_alignement: header padded with 7 spaces to 72 bytes', async () => {
    const p = join(dir, 'align.safetensors');
    await writeSafetensors(p, [['attn0', { dtype: 'F32', shape: [1, 1, 2, 3], data: new Float32Array([0, 1, 2, 3, 4, 5]) }]]);
    const bytes = new Uint8Array(await readFile(p));
    expect(bytes.subarray(0, 8)).toEqual(new Uint8Array([72, 0, 0, 0, 0, 0, 0, 0]));
    expect(Buffer.from(bytes.subarray(8, 80)).toString()).toBe('{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       ');
  });
  it('test_empty: {} padded to 8, and metadata first', async () => {
    const p = join(dir, 'empty.safetensors');
    await writeSafetensors(p, {});
    expect(new Uint8Array(await readFile(p))).toEqual(new Uint8Array([8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32]));
    await writeSafetensors(p, {}, { framework: 'pt' });
    expect(new Uint8Array(await readFile(p))).toEqual(rawFile('{"__metadata__":{"framework":"pt"}}     '));
    const f = await openSafetensors(p);
    expect(f.names).toEqual([]);
    expect(f.metadata).toEqual({ framework: 'pt' });
    await f.close();
  });
});

describe('files written by the Python fixture script', () => {
  type Side = { dtype: string; shape: number[]; data_offsets: [number, number]; bits?: number[]; bits_hex?: string[]; decimal?: string[]; values?: number[]; float32_bits?: number[] };
  let side: { header_length: number; metadata: Record<string, string>; order: string[]; tensors: Record<string, Side> };
  beforeAll(async () => { side = JSON.parse(await readFile(join(FIX, 'st_dtypes.json'), 'utf8')); });

  it('reads names, order, metadata, shapes and offsets', async () => {
    const f = await openSafetensors(join(FIX, 'st_dtypes.safetensors'));
    expect(f.names).toEqual(side.order);
    expect(f.metadata).toEqual(side.metadata);
    for (const [name, s] of Object.entries(side.tensors)) {
      const info = f.info(name);
      expect(info.dtype).toBe(s.dtype);
      expect(info.shape).toEqual(s.shape);
      expect(info.dataOffsets).toEqual(s.data_offsets);
    }
    await f.close();
  });

  it('reads every dtype bit-exactly', async () => {
    const { tensors } = await readSafetensors(join(FIX, 'st_dtypes.safetensors'));
    for (const [name, s] of Object.entries(side.tensors)) {
      const t = tensors.get(name)!;
      expect(t.dtype, name).toBe(s.dtype);
      expect(t.shape, name).toEqual(s.shape);
      switch (t.dtype) {
        case 'F32': expect([...new Uint32Array(t.data.buffer)], name).toEqual(s.bits); break;
        case 'F64': expect([...new BigUint64Array(t.data.buffer)].map((b) => b.toString(16).padStart(16, '0')), name).toEqual(s.bits_hex); break;
        case 'F16': case 'BF16': expect([...t.data], name).toEqual(s.bits); break;
        case 'I64': case 'U64': expect([...t.data].map(String), name).toEqual(s.decimal); break;
        default: expect([...t.data], name).toEqual(s.values);
      }
    }
    expect(tensors.get('f32')!.data).toBeInstanceOf(Float32Array);
    expect(tensors.get('i64')!.data).toBeInstanceOf(BigInt64Array);
    expect(tensors.get('u16')!.data).toBeInstanceOf(Uint16Array);
    expect(tensors.get('i8')!.data).toBeInstanceOf(Int8Array);
  });

  it('decodes F16 and BF16 to the float32 values numpy/torch give', async () => {
    const f = await openSafetensors(join(FIX, 'st_dtypes.safetensors'));
    for (const name of ['f16', 'bf16']) {
      const { data, shape } = await f.readFloat32(name);
      expect(shape).toEqual(side.tensors[name]!.shape);
      expect([...new Uint32Array(data.buffer)]).toEqual(side.tensors[name]!.float32_bits);
    }
    const f64 = await f.readFloat32('f64');
    expect(f64.data[4]).toBe(Math.fround(3.14159265358979));
    await expect(f.readFloat32('i32')).rejects.toThrow(/not a floating type/);
    await f.close();
  });

  it('converts I64 to Int32Array only when every value fits', async () => {
    const f = await openSafetensors(join(FIX, 'st_dtypes.safetensors'));
    const small = await f.read('i64_small');
    if (small.dtype !== 'I64') throw new Error('expected I64');
    expect([...int64ToInt32(small.data)]).toEqual([50256, 0, -7, 1024]);
    const big = await f.read('i64');
    if (big.dtype !== 'I64') throw new Error('expected I64');
    expect(() => int64ToInt32(big.data, 'i64')).toThrow(/i64: element 2 = 9007199254740993 does not fit in int32/);
    await f.close();
  });

  it('our writer reproduces the Python-written file byte for byte (same Rust-crate layout)', async () => {
    const { tensors, metadata } = await readSafetensors(join(FIX, 'st_dtypes.safetensors'));
    const p = join(dir, 'rewrite.safetensors');
    // insertion order reversed: the writer must sort as the Rust crate does
    await writeSafetensors(p, [...tensors].reverse(), metadata);
    expect(Buffer.compare(await readFile(p), await readFile(join(FIX, 'st_dtypes.safetensors')))).toBe(0);
  });

  it('accepts old name-ordered files with unaligned offsets and an unpadded header', async () => {
    const s = JSON.parse(await readFile(join(FIX, 'st_name_ordered.json'), 'utf8')) as { tensors: Record<string, Side> };
    const f = await openSafetensors(join(FIX, 'st_name_ordered.safetensors'));
    expect(f.info('b').dataOffsets).toEqual(s.tensors.b!.data_offsets); // [6, 14]: not 4-aligned
    const b = await f.read('b');
    expect([...new Uint32Array(b.data.buffer as ArrayBuffer)]).toEqual(s.tensors.b!.bits);
    const a = await f.read('a');
    expect([...(a.data as Uint16Array)]).toEqual(s.tensors.a!.bits);
    await f.close();
  });
});

/** Deterministic test data for a dtype: a spread of values incl. extremes. */
function sample(dtype: SafetensorsDtype, n: number): SafetensorsTensor['data'] {
  const ints = (lo: number, hi: number): number[] => Array.from({ length: n }, (_, i) => (i === 0 ? lo : i === 1 ? hi : lo + ((i * 2654435761) % (hi - lo + 1))));
  switch (dtype) {
    case 'F32': return new Float32Array(Array.from({ length: n }, (_, i) => (i % 3 ? Math.sin(i) * 1e3 : -i / 7)));
    case 'F64': return new Float64Array(Array.from({ length: n }, (_, i) => Math.cos(i) / 3 + i * 1e-12));
    case 'F16': case 'BF16': case 'U16': return new Uint16Array(ints(0, 65535));
    case 'I16': return new Int16Array(ints(-32768, 32767));
    case 'I32': return new Int32Array(ints(-2147483648, 2147483647));
    case 'U32': return new Uint32Array(ints(0, 4294967295));
    case 'I8': return new Int8Array(ints(-128, 127));
    case 'U8': case 'BOOL': case 'F8_E4M3': case 'F8_E5M2': return new Uint8Array(ints(0, dtype === 'BOOL' ? 1 : 255));
    case 'I64': return new BigInt64Array(Array.from({ length: n }, (_, i) => (i === 0 ? -(2n ** 63n) : i === 1 ? 2n ** 63n - 1n : BigInt(i) * 123456789012345n)));
    case 'U64': return new BigUint64Array(Array.from({ length: n }, (_, i) => (i === 1 ? 2n ** 64n - 1n : BigInt(i) * 98765432109876n)));
  }
}

describe('round trip', () => {
  it('every dtype, several shapes including scalar and empty', async () => {
    const shapes = [[], [0], [5], [2, 3], [2, 0, 4], [3, 1, 2]];
    const input = new Map<string, SafetensorsTensorInput>();
    for (const dtype of SAFETENSORS_DTYPES) {
      shapes.forEach((shape, k) => {
        const n = shape.reduce((a, b) => a * b, 1);
        input.set(`${dtype}.${k}`, { dtype, shape, data: sample(dtype, n) } as SafetensorsTensorInput);
      });
    }
    const p = join(dir, 'rt.safetensors');
    await writeSafetensors(p, input, { note: 'round trip' });
    const { tensors, metadata } = await readSafetensors(p);
    expect(metadata).toEqual({ note: 'round trip' });
    expect(new Set(tensors.keys())).toEqual(new Set(input.keys()));
    for (const [name, t] of input) {
      const r = tensors.get(name)!;
      expect(r.dtype).toBe(t.dtype);
      expect(r.shape).toEqual(t.shape);
      expect(r.data.constructor).toBe((t.data as object).constructor);
      expect(Buffer.from(r.data.buffer, r.data.byteOffset, r.data.byteLength)).toEqual(Buffer.from((t.data as Uint8Array).buffer));
    }
    // every tensor starts at a multiple of its element size (the writer's alignment sort)
    const f = await openSafetensors(p);
    const dataStart = f.size - f.names.reduce((s, n) => s + f.info(n).byteLength, 0);
    const elemSize: Record<string, number> = { F64: 8, I64: 8, U64: 8, F32: 4, I32: 4, U32: 4, F16: 2, BF16: 2, U16: 2, I16: 2 };
    for (const name of f.names) {
      const info = f.info(name);
      expect((dataStart + info.dataOffsets[0]) % (elemSize[info.dtype] ?? 1), name).toBe(0);
    }
    await f.close();
  });

  it('streams tensors given as functions, called once each, in file order', async () => {
    const calls: string[] = [];
    const p = join(dir, 'lazy.safetensors');
    await writeSafetensors(p, {
      b: { dtype: 'F32', shape: [2], data: () => { calls.push('b'); return new Float32Array([1, 2]); } },
      a: { dtype: 'F64', shape: [1], data: async () => { calls.push('a'); return new Float64Array([3]); } },
    });
    expect(calls).toEqual(['a', 'b']); // F64 sorts first (larger alignment)
    const { tensors } = await readSafetensors(p);
    expect([...tensors.get('b')!.data]).toEqual([1, 2]);
  });

  it('subarray views are written from their own bytes, not the whole buffer', async () => {
    const big = new Float32Array([9, 1, 2, 3, 9]);
    const p = join(dir, 'view.safetensors');
    await writeSafetensors(p, { v: { dtype: 'F32', shape: [3], data: big.subarray(1, 4) } });
    expect([...(await readSafetensors(p)).tensors.get('v')!.data]).toEqual([1, 2, 3]);
  });

  it('a tensor named __proto__ is an ordinary tensor', async () => {
    const p = join(dir, 'proto.safetensors');
    await writeSafetensors(p, [['__proto__', { dtype: 'I32', shape: [1], data: new Int32Array([5]) }]]);
    const f = await openSafetensors(p);
    expect(f.names).toEqual(['__proto__']);
    expect([...(await f.read('__proto__')).data]).toEqual([5]);
    await f.close();
  });
});

describe('reading is lazy: one positional read per tensor', () => {
  it('a tensor before a truncated region still reads; the cut one fails with io', async () => {
    const p = join(dir, 'trunc.safetensors');
    await writeSafetensors(p, { a: { dtype: 'F32', shape: [4], data: new Float32Array([1, 2, 3, 4]) }, b: { dtype: 'F32', shape: [1000], data: new Float32Array(1000).fill(7) } });
    const f = await openSafetensors(p); // header validated against the full size
    await truncate(p, f.size - 100);
    expect([...(await f.read('a')).data]).toEqual([1, 2, 3, 4]);
    await expect(f.read('b')).rejects.toMatchObject({ name: 'SafetensorsError', kind: 'io' });
    await expect(f.read('nope')).rejects.toMatchObject({ kind: 'not-found' });
    await f.close();
    await expectError(p, 'offsets', /past the end/);
  });
});

describe('hostile files give SafetensorsError naming the file and the problem', () => {
  const T = (dtype: string, shape: unknown, offs: unknown): string => JSON.stringify({ dtype, shape, data_offsets: offs });
  const cases: [string, () => Uint8Array, SafetensorsErrorKind, RegExp][] = [
    ['shorter than 8 bytes', () => new Uint8Array([1, 2, 3]), 'header-size', /shorter than the 8-byte/],
    ['header length 2^64-1', () => rawFile('{}', undefined, 2n ** 64n - 1n), 'header-size', /exceeds the 100000000-byte limit/],
    ['header length just over 100 MB', () => rawFile('{}', undefined, 100_000_001n), 'header-size', /limit/],
    ['header length past end of file', () => rawFile('{}', undefined, 1000n), 'header-size', /runs past the end/],
    ['invalid UTF-8', () => { const b = rawFile('{"a":1}'); b[10] = 0xff; return b; }, 'header-json', /UTF-8/],
    ['not JSON', () => rawFile('{"a":'), 'header-json', /not valid JSON/],
    ['JSON array', () => rawFile('[1,2]'), 'header-json', /must be a JSON object, got an array/],
    ['JSON number', () => rawFile('42'), 'header-json', /got number/],
    ['JSON null', () => rawFile('null'), 'header-json', /got object/],
    ['entry not an object', () => rawFile('{"a":5}'), 'header-entry', /tensor "a": header entry must be an object/],
    ['entry is an array', () => rawFile('{"a":["F32"]}'), 'header-entry', /must be an object/],
    ['metadata value not a string', () => rawFile('{"__metadata__":{"n":1}}'), 'header-entry', /__metadata__\["n"\] must be a string/],
    ['metadata not an object', () => rawFile('{"__metadata__":"x"}'), 'header-entry', /__metadata__ must be an object/],
    ['unknown dtype', () => rawFile(`{"a":${T('F128', [1], [0, 16])}}`, new Uint8Array(16)), 'dtype', /unknown dtype "F128"/],
    ['dtype missing', () => rawFile('{"a":{"shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4)), 'dtype', /unknown dtype undefined/],
    ['negative shape', () => rawFile(`{"a":${T('F32', [-1], [0, 4])}}`, new Uint8Array(4)), 'shape', /non-negative integers, got \[-1\]/],
    ['fractional shape', () => rawFile(`{"a":${T('F32', [1.5], [0, 4])}}`, new Uint8Array(4)), 'shape', /non-negative/],
    ['shape not an array', () => rawFile(`{"a":${T('F32', 4, [0, 16])}}`, new Uint8Array(16)), 'shape', /got 4/],
    ['astronomic shape', () => rawFile(`{"a":${T('F32', [1e15, 1e15], [0, 4])}}`, new Uint8Array(4)), 'shape', /needs more bytes than the file has/],
    ['shape/byte count mismatch', () => rawFile(`{"a":${T('F32', [3], [0, 8])}}`, new Uint8Array(8)), 'shape', /needs 12 bytes but data_offsets \[0, 8\] hold 8/],
    ['offsets wrong arity', () => rawFile(`{"a":${T('F32', [1], [0, 4, 8])}}`, new Uint8Array(4)), 'offsets', /\[begin, end\]/],
    ['offsets negative', () => rawFile(`{"a":${T('F32', [1], [-4, 0])}}`, new Uint8Array(4)), 'offsets', /non-negative/],
    ['offsets reversed', () => rawFile(`{"a":${T('F32', [0], [4, 0])}}`, new Uint8Array(4)), 'offsets', /end before begin/],
    ['offsets past the end', () => rawFile(`{"a":${T('F32', [2], [0, 8])}}`, new Uint8Array(4)), 'offsets', /run past the end of the data \(4 bytes\)/],
    ['overlap', () => rawFile(`{"a":${T('F32', [2], [0, 8])},"b":${T('F32', [2], [4, 12])}}`, new Uint8Array(12)), 'offsets', /tensor "b" at \[4, 12\] overlaps tensor "a"/],
    ['hole', () => rawFile(`{"a":${T('F32', [1], [0, 4])},"b":${T('F32', [1], [8, 12])}}`, new Uint8Array(12)), 'offsets', /hole of 4 bytes at \[4, 8\)/],
    ['hole at start', () => rawFile(`{"a":${T('F32', [1], [4, 8])}}`, new Uint8Array(8)), 'offsets', /hole/],
    ['trailing bytes', () => rawFile(`{"a":${T('F32', [1], [0, 4])}}`, new Uint8Array(12)), 'offsets', /cover 4 bytes but the data region is 12/],
    ['duplicate tensor name', () => rawFile(`{"a":${T('F32', [1], [0, 4])},"a":${T('F32', [1], [4, 8])}}`, new Uint8Array(8)), 'header-json', /key "a" more than once/],
    ['duplicate name via escapes', () => rawFile(`{"a":${T('F32', [1], [0, 4])},"\\u0061":${T('F32', [1], [4, 8])}}`, new Uint8Array(8)), 'header-json', /"a" more than once/],
    ['deeply nested entry', () => rawFile(`{"a":${'['.repeat(20000)}${']'.repeat(20000)}}`), 'header-entry', /must be an object \{dtype, shape, data_offsets\}, got a deeply nested array|got \[\[\[/],
    ['huge name is cut short in the message', () => rawFile(`{${JSON.stringify('n'.repeat(100000))}:5}`), 'header-entry', /tensor "n{117}\.\.\.": header entry/],
    ['duplicate field inside an entry', () => rawFile('{"a":{"dtype":"F32","dtype":"F64","shape":[1],"data_offsets":[0,4]}}', new Uint8Array(4)), 'header-json', /"dtype" more than once/],
  ];
  for (const [label, make, kind, pattern] of cases) {
    it(label, async () => { await expectError(await put(make()), kind, pattern); });
  }

  it('same-named keys in different objects are not duplicates', async () => {
    const p = await put(rawFile('{"__metadata__":{"dtype":"x"},"dtype":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}', f32Bytes([2])));
    const f = await openSafetensors(p);
    expect([...(await f.read('dtype')).data]).toEqual([2]);
    await f.close();
  });

  it('a missing file is an io error', async () => {
    await expectError(join(dir, 'does-not-exist.safetensors'), 'io', /cannot open/);
  });
});

describe('writer refuses bad input and leaves no temp file', () => {
  const bad: [string, Record<string, SafetensorsTensorInput> | [string, SafetensorsTensorInput][], RegExp][] = [
    ['wrong array type', { a: { dtype: 'F32', shape: [2], data: new Float64Array(2) as unknown as Float32Array } }, /F32 needs its data as Float32Array, got Float64Array/],
    ['F16 as Float32Array', { a: { dtype: 'F16', shape: [2], data: new Float32Array(2) as unknown as Uint16Array } }, /Uint16Array of raw bits/],
    ['wrong length', { a: { dtype: 'F32', shape: [2, 2], data: new Float32Array(3) } }, /shape \[2, 2\] has 4 elements but data has 3/],
    ['negative shape', { a: { dtype: 'F32', shape: [-1], data: new Float32Array(0) } }, /non-negative/],
    ['reserved name', { __metadata__: { dtype: 'F32', shape: [1], data: new Float32Array(1) } }, /reserved/],
    ['duplicate name', [['a', { dtype: 'F32', shape: [1], data: new Float32Array(1) }], ['a', { dtype: 'F32', shape: [1], data: new Float32Array(1) }]], /given twice/],
    ['unknown dtype', { a: { dtype: 'F128' as 'F32', shape: [1], data: new Float32Array(1) } }, /unknown dtype/],
    ['lazy data of the wrong length', { a: { dtype: 'F32', shape: [3], data: () => new Float32Array(2) } }, /3 elements but data has 2/],
  ];
  for (const [label, tensors, pattern] of bad) {
    it(label, async () => {
      const sub = await mkdtemp(join(dir, 'w-'));
      const p = join(sub, 'out.safetensors');
      await expect(writeSafetensors(p, tensors)).rejects.toThrow(SafetensorsError);
      await expect(writeSafetensors(p, tensors)).rejects.toThrow(pattern);
      expect(await readdir(sub)).toEqual([]);
    });
  }
  it('non-string metadata', async () => {
    await expect(writeSafetensors(join(dir, 'm.safetensors'), {}, { n: 1 as unknown as string })).rejects.toThrow(/metadata\["n"\] must be a string/);
  });
  it('missing directory names the path', async () => {
    await expect(writeSafetensors(join(dir, 'no', 'such', 'x.safetensors'), {})).rejects.toThrow(/cannot create temp file .*does the directory exist/);
  });
  it('an existing file is replaced only when the new one is complete', async () => {
    const p = join(dir, 'keep.safetensors');
    await writeSafetensors(p, { a: { dtype: 'F32', shape: [1], data: new Float32Array([1]) } });
    await expect(writeSafetensors(p, { a: { dtype: 'F32', shape: [1], data: () => { throw new Error('boom'); } } })).rejects.toThrow(/boom/);
    expect([...(await readSafetensors(p)).tensors.get('a')!.data]).toEqual([1]);
  });
});

describe('toFloat32', () => {
  it('F16 specials decode as IEEE half (values from the IEEE 754 binary16 table)', () => {
    const bits = new Uint16Array([0x0000, 0x8000, 0x3c00, 0xc000, 0x7bff, 0x0400, 0x0001, 0x7c00, 0xfc00, 0x3555]);
    const out = toFloat32({ dtype: 'F16', shape: [10], data: bits });
    expect([...out.subarray(0, 9)]).toEqual([0, -0, 1, -2, 65504, 2 ** -14, 2 ** -24, Infinity, -Infinity]);
    expect(out[9]).toBeCloseTo(0.333251953125, 12);
    expect(toFloat32({ dtype: 'F16', shape: [1], data: new Uint16Array([0x7e00]) })[0]).toBeNaN();
  });
  it('BF16 is the top half of the float32 bits', () => {
    const out = toFloat32({ dtype: 'BF16', shape: [3], data: new Uint16Array([0x3f80, 0xc049, 0x7f80]) });
    expect([...out]).toEqual([1, -3.140625, Infinity]);
  });
});
