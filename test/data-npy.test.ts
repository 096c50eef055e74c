// .npy byte compatibility with numpy: fixtures written by np.save (test/fixtures/make_npy_fixtures.py)
// must load here, and what we write must equal np.save's bytes.
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, test } from 'vitest';
import { decodeNpy, encodeNpy, npyHeader, readNpy, readTokens, writeNpy, type NpyData, type NpyDtype } from '../src/data/npy.js';

const fixtures = join(import.meta.dirname, 'fixtures');
const tmp = mkdtempSync(join(tmpdir(), 'data-npy-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

describe('npy', () => {
  test('reads numpy-written token files of each dtype with the values numpy stored', () => {
    expect(values(readNpy(join(fixtures, 'npy_u2_small.npy')))).toEqual([0, 1, 2, 50256, 65535]);
    expect(readNpy(join(fixtures, 'npy_u2_small.npy'))).toBeInstanceOf(Uint16Array);
    expect(values(readNpy(join(fixtures, 'npy_i4_small.npy')))).toEqual([-5, 0, 7, 50256, 2 ** 31 - 1]);
    expect(values(readNpy(join(fixtures, 'npy_i8_small.npy')))).toEqual([3n, 0n, 50256n, 2n ** 31n - 1n]);
    expect(Array.from(readTokens(join(fixtures, 'npy_i8_small.npy')))).toEqual([3, 0, 50256, 2 ** 31 - 1]);
    expect(readNpy(join(fixtures, 'npy_u2_empty.npy')).length).toBe(0);
    expect(readNpy(join(fixtures, 'npy_u2_1000.npy')).length).toBe(1000);
  });

  test.each(['npy_u2_empty.npy', 'npy_u2_small.npy', 'npy_u2_1000.npy', 'npy_i4_small.npy', 'npy_i8_small.npy', 'data_fw_val_000000.npy', 'data_fw_train_000007.npy'])(
    'encodeNpy(np.load(%s)) equals the np.save bytes',
    (name) => {
      const bytes = readFileSync(join(fixtures, name));
      expect(Buffer.from(encodeNpy(decodeNpy(bytes, name))).equals(bytes)).toBe(true);
      const out = join(tmp, name);
      writeNpy(out, readNpy(join(fixtures, name)));
      expect(readFileSync(out).equals(bytes)).toBe(true);
    },
  );

  test('headers equal numpy write_array_header_1_0 for lengths up to 12345678901', () => {
    const headers = JSON.parse(readFileSync(join(fixtures, 'npy_headers.json'), 'utf8')) as Record<string, string>;
    const dt: Record<string, NpyDtype> = { '<u2': 'uint16', '<i4': 'int32', '<i8': 'int64' };
    expect(Object.keys(headers).length).toBe(18);
    for (const [key, hex] of Object.entries(headers)) {
      const [descr, n] = key.split(':') as [string, string];
      expect(Buffer.from(npyHeader(dt[descr]!, Number(n))).toString('hex'), key).toBe(hex);
    }
  });

  test.each([
    ['npy_bad_2d.npy', /shape \(2, 3\)/],
    ['npy_bad_f4.npy', /dtype '<f4'/],
    ['npy_bad_be.npy', /dtype '>u2'/],
    ['npy_bad_scalar.npy', /shape \(\)/],
  ])('refuses %s naming the file', (name, why) => {
    const path = join(fixtures, name);
    expect(() => readNpy(path)).toThrow(why);
    expect(() => readNpy(path)).toThrow(path);
  });

  test('refuses a truncated file, a non-npy file and a missing file, naming them', () => {
    const good = readFileSync(join(fixtures, 'npy_u2_1000.npy'));
    expectThrow(() => decodeNpy(good.subarray(0, good.length - 1), 'cut-shard.npy'), /cut-shard\.npy holds 2127 bytes .* needs 2128/);
    expectThrow(() => decodeNpy(new TextEncoder().encode('hello world, not numpy'), 'x.txt'), /x\.txt is not a \.npy file/);
    expectThrow(() => readNpy(join(tmp, 'missing.npy')), /cannot read .*missing\.npy/);
  });

  test('round trip for any uint16/int32 array, also from an odd byte offset (fast-check, seed 42)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: 0, max: 65535 }), { maxLength: 300 }), fc.integer({ min: 0, max: 3 }), (vals, pad) => {
        const a = Uint16Array.from(vals);
        const bytes = encodeNpy(a);
        const shifted = new Uint8Array(bytes.length + pad);
        shifted.set(bytes, pad);
        expect(values(decodeNpy(shifted.subarray(pad)))).toEqual(vals);
        // The data always starts 64-aligned, as numpy guarantees for memory mapping.
        expect((bytes.length - a.byteLength) % 64).toBe(0);
        const b = Int32Array.from(vals, (v) => v - 30000);
        expect(values(decodeNpy(encodeNpy(b)))).toEqual(Array.from(b));
      }),
      { seed: 42, numRuns: 200 },
    );
  });
});

/** Elements as a plain array (the readers return a union of typed arrays). */
function values(a: NpyData): (number | bigint)[] {
  return Array.from(a as Iterable<number | bigint>);
}

function expectThrow(fn: () => unknown, msg: RegExp): void {
  expect(fn).toThrow(msg);
}
