// Fuzzing src/data/safetensors.ts with fast-check (fixed seed; every property holds for any seed):
// mutated valid files, random header JSON and random layouts never crash with anything but
// SafetensorsError, and a file opens exactly when a literal reading of the spec (the small reference
// check below, written from the format description, not from the reader) says it is valid.
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import fc from 'fast-check';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSafetensors, SafetensorsError, SAFETENSORS_DTYPES } from '../src/data/safetensors.js';

const SEED = 20261128;
const SIZE: Record<string, number> = { BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, I16: 2, U16: 2, F16: 2, BF16: 2, I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8 };

let dir: string;
let n = 0;
/** Outcomes of check(), so each property can assert it exercised both acceptance and refusal. */
const seen = { accepted: 0, refused: 0 };
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'st-fuzz-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

/** The spec, read literally. Returns null when valid, else a reason. Duplicate keys are invisible here. */
function specProblem(bytes: Uint8Array): string | null {
  if (bytes.length < 8) return 'short';
  const len = new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true);
  if (len > 100_000_000n || 8n + len > BigInt(bytes.length)) return 'length';
  const hn = Number(len);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, 8 + hn)));
  } catch {
    return 'json';
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) return 'not object';
  const spans: [number, number][] = [];
  for (const [k, v] of Object.entries(header)) {
    if (k === '__metadata__') {
      if (typeof v !== 'object' || v === null || Array.isArray(v) || Object.values(v).some((x) => typeof x !== 'string')) return 'metadata';
      continue;
    }
    if (typeof v !== 'object' || v === null || Array.isArray(v)) return 'entry';
    const { dtype, shape, data_offsets: o } = v as Record<string, unknown>;
    if (typeof dtype !== 'string' || !(dtype in SIZE)) return 'dtype';
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) return 'shape';
    if (!Array.isArray(o) || o.length !== 2 || !o.every((d) => Number.isSafeInteger(d) && d >= 0)) return 'offsets';
    const [b, e] = o as [number, number];
    const bytesNeeded = (shape as number[]).reduce((a, d) => a * BigInt(d), 1n) * BigInt(SIZE[dtype]!);
    if (e < b || BigInt(e - b) !== bytesNeeded) return 'count';
    spans.push([b, e]);
  }
  spans.sort((x, y) => x[0] - y[0] || x[1] - y[1]);
  let pos = 0;
  for (const [b, e] of spans) {
    if (b !== pos) return 'tiling';
    pos = e;
  }
  return pos === bytes.length - 8 - hn ? null : 'coverage';
}

/** Open, and on success read every tensor; checks the invariants a successful open promises. */
async function check(bytes: Uint8Array): Promise<void> {
  const p = join(dir, `z${n++}.safetensors`);
  await writeFile(p, bytes);
  const problem = specProblem(bytes);
  let f;
  try {
    f = await openSafetensors(p);
  } catch (e) {
    if (!(e instanceof SafetensorsError)) throw new Error(`non-SafetensorsError: ${String(e)}`);
    // The reader may refuse only what the spec refuses, or duplicate keys (which the spec check cannot see).
    if (problem === null) expect(e.message).toMatch(/more than once/);
    seen.refused++;
    return;
  } finally {
    await rm(p, { force: true }).catch(() => undefined);
  }
  try {
    expect(problem).toBeNull();
    let total = 0;
    for (const name of f.names) {
      const info = f.info(name);
      const t = await f.read(name);
      // what read allocates is exactly the declared span, which lies inside the file
      expect(t.data.byteLength).toBe(info.byteLength);
      expect(info.dataOffsets[1]).toBeLessThanOrEqual(f.size);
      total += info.byteLength;
    }
    expect(total).toBeLessThanOrEqual(f.size - 8);
    seen.accepted++;
  } finally {
    await f.close();
  }
}

/** A valid file built by hand: random tensors in random order, optionally unpadded header. */
const validFile = fc
  .record({
    tensors: fc.uniqueArray(
      fc.record({
        name: fc.string({ minLength: 1, maxLength: 6 }).filter((s) => s !== '__metadata__'),
        dtype: fc.constantFrom(...SAFETENSORS_DTYPES),
        shape: fc.array(fc.integer({ min: 0, max: 3 }), { maxLength: 3 }),
        seed: fc.integer({ min: 0, max: 255 }),
      }),
      { selector: (t) => t.name, maxLength: 5 },
    ),
    pad: fc.boolean(),
    meta: fc.option(fc.dictionary(fc.string({ maxLength: 4 }), fc.string({ maxLength: 4 }), { maxKeys: 2 }), { nil: undefined }),
  })
  .map(({ tensors, pad, meta }) => {
    const header: string[] = [];
    if (meta) header.push(`"__metadata__":${JSON.stringify(meta)}`);
    const chunks: Uint8Array[] = [];
    let off = 0;
    for (const t of tensors) {
      const len = t.shape.reduce((a, b) => a * b, 1) * SIZE[t.dtype]!;
      header.push(`${JSON.stringify(t.name)}:{"dtype":"${t.dtype}","shape":${JSON.stringify(t.shape)},"data_offsets":[${off},${off + len}]}`);
      chunks.push(Uint8Array.from({ length: len }, (_, i) => (t.seed + i * 31) & 255));
      off += len;
    }
    let h = Buffer.from(`{${header.join(',')}}`);
    if (pad) h = Buffer.concat([h, Buffer.alloc((8 - (h.length % 8)) % 8, 32)]);
    const out = new Uint8Array(8 + h.length + off);
    new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
    out.set(h, 8);
    let p = 8 + h.length;
    for (const c of chunks) { out.set(c, p); p += c.length; }
    return { bytes: out, tensors, chunks };
  });

describe('fuzz', () => {
  it('valid hand-built files open and read back their bytes', async () => {
    await fc.assert(
      fc.asyncProperty(validFile, async ({ bytes, tensors, chunks }) => {
        expect(specProblem(bytes)).toBeNull();
        const p = join(dir, `v${n++}.safetensors`);
        await writeFile(p, bytes);
        const f = await openSafetensors(p);
        try {
          expect([...f.names].sort()).toEqual(tensors.map((t) => t.name).sort());
          for (let i = 0; i < tensors.length; i++) {
            const t = await f.read(tensors[i]!.name);
            expect(t.shape).toEqual(tensors[i]!.shape);
            expect(new Uint8Array(t.data.buffer)).toEqual(chunks[i]);
          }
        } finally {
          await f.close();
          await rm(p, { force: true });
        }
      }),
      { seed: SEED, numRuns: 150 },
    );
  });

  it('mutated valid files: byte flips, truncation, appended bytes, rewritten length', async () => {
    seen.accepted = seen.refused = 0;
    const mutation = fc.oneof(
      fc.record({ kind: fc.constant('flip' as const), at: fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }) }),
      fc.record({ kind: fc.constant('truncate' as const), keep: fc.nat() }),
      fc.record({ kind: fc.constant('append' as const), extra: fc.uint8Array({ minLength: 1, maxLength: 16 }) }),
      fc.record({ kind: fc.constant('length' as const), len: fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }) }),
      fc.record({ kind: fc.constant('lengthNear' as const), delta: fc.integer({ min: -16, max: 16 }) }),
    );
    await fc.assert(
      fc.asyncProperty(validFile, mutation, async ({ bytes }, m) => {
        let b = bytes.slice();
        if (m.kind === 'flip') for (const [i, v] of m.at) b[i % b.length] = v;
        else if (m.kind === 'truncate') b = b.slice(0, m.keep % (b.length + 1));
        else if (m.kind === 'append') { const c = new Uint8Array(b.length + m.extra.length); c.set(b); c.set(m.extra, b.length); b = c; }
        else if (m.kind === 'length') new DataView(b.buffer).setBigUint64(0, m.len, true);
        else { const dv = new DataView(b.buffer); dv.setBigUint64(0, BigInt(Math.max(0, Number(dv.getBigUint64(0, true)) + m.delta)), true); }
        await check(b);
      }),
      { seed: SEED, numRuns: 400 },
    );
    expect(seen.accepted).toBeGreaterThan(0);
    expect(seen.refused).toBeGreaterThan(0);
    seen.accepted = seen.refused = 0;
  });

  it('random JSON headers with random data lengths', async () => {
    seen.accepted = seen.refused = 0;
    await fc.assert(
      fc.asyncProperty(fc.json({ maxDepth: 3 }), fc.nat({ max: 64 }), async (json, dataLen) => {
        const h = Buffer.from(json);
        const b = new Uint8Array(8 + h.length + dataLen);
        new DataView(b.buffer).setBigUint64(0, BigInt(h.length), true);
        b.set(h, 8);
        await check(b);
      }),
      { seed: SEED, numRuns: 300 },
    );
  });

  it('random header entries near the valid set (dtypes, shapes, offsets, metadata)', async () => {
    const num = fc.oneof(fc.integer({ min: -2, max: 40 }), fc.constantFrom(0.5, 1e300, -0, 2 ** 53, Number.MAX_SAFE_INTEGER));
    const entry = fc.oneof(
      { weight: 8, arbitrary: fc.record({ dtype: fc.oneof(fc.constantFrom(...SAFETENSORS_DTYPES), fc.constantFrom('F128', 'f32', '', 'C64')), shape: fc.array(num, { maxLength: 3 }), data_offsets: fc.array(num, { minLength: 1, maxLength: 3 }) }) },
      { weight: 1, arbitrary: fc.jsonValue({ maxDepth: 1 }) },
    );
    const header = fc.dictionary(fc.constantFrom('a', 'b', 'c', '__metadata__', 'd'), entry, { maxKeys: 4 });
    await fc.assert(
      fc.asyncProperty(header, fc.nat({ max: 64 }), async (hdr, dataLen) => {
        const h = Buffer.from(JSON.stringify(hdr));
        const b = new Uint8Array(8 + h.length + dataLen);
        new DataView(b.buffer).setBigUint64(0, BigInt(h.length), true);
        b.set(h, 8);
        await check(b);
      }),
      { seed: SEED, numRuns: 400 },
    );
    expect(seen.accepted).toBeGreaterThan(0);
    expect(seen.refused).toBeGreaterThan(0);
    seen.accepted = seen.refused = 0;
  });

  it('duplicate keys are found however the names are spelled; distinct names never are', async () => {
    // \uXXXX-escape some characters of the second spelling, so the duplicate is only visible after decoding
    const spell = (name: string, mask: number): string =>
      '"' + [...name].map((ch, i) => {
        const code = ch.codePointAt(0)!;
        if (code > 0xffff || !((mask >> (i % 16)) & 1)) return JSON.stringify(ch).slice(1, -1);
        return `\\u${code.toString(16).padStart(4, '0')}`;
      }).join('') + '"';
    const entry = (off: number): string => `{"dtype":"U8","shape":[1],"data_offsets":[${off},${off + 1}]}`;
    await fc.assert(
      fc.asyncProperty(fc.string({ minLength: 1, maxLength: 8, unit: 'binary' }), fc.string({ minLength: 1, maxLength: 8, unit: 'binary' }), fc.nat(0xffff), fc.boolean(),
        async (x, y, mask, pretty) => {
          if (x === '__metadata__' || y === '__metadata__') return;
          const sep = pretty ? ',\n  ' : ',';
          for (const [a, b] of [[x, x], [x, y]] as const) {
            const h = Buffer.from(`{${spell(a, 0)}:${entry(0)}${sep}${spell(b, mask)} : ${entry(1)}}`);
            const bytes = new Uint8Array(8 + h.length + 2);
            new DataView(bytes.buffer).setBigUint64(0, BigInt(h.length), true);
            bytes.set(h, 8);
            const p = join(dir, `d${n++}.safetensors`);
            await writeFile(p, bytes);
            const r = await openSafetensors(p).then(async (f) => { await f.close(); return 'ok'; }, (e: SafetensorsError) => e.message);
            if (a === b) expect(r).toMatch(/more than once/);
            else expect(r).toBe('ok');
            await rm(p);
          }
        }),
      { seed: SEED, numRuns: 200 },
    );
  });

  it('tiny hand-made tilings: offsets that are contiguous are accepted, anything else refused', async () => {
    const span = fc.tuple(fc.integer({ min: 0, max: 12 }), fc.integer({ min: 0, max: 12 }));
    await fc.assert(
      fc.asyncProperty(fc.array(span, { minLength: 1, maxLength: 3 }), fc.integer({ min: 0, max: 16 }), async (spans, dataLen) => {
        const parts = spans.map(([b, e], i) => `"t${i}":{"dtype":"U8","shape":[${Math.max(0, e - b)}],"data_offsets":[${b},${e}]}`);
        const h = Buffer.from(`{${parts.join(',')}}`);
        const out = new Uint8Array(8 + h.length + dataLen);
        new DataView(out.buffer).setBigUint64(0, BigInt(h.length), true);
        out.set(h, 8);
        await check(out);
      }),
      { seed: SEED, numRuns: 300 },
    );
    expect(seen.accepted).toBeGreaterThan(0);
    expect(seen.refused).toBeGreaterThan(0);
    seen.accepted = seen.refused = 0;
  });
});
