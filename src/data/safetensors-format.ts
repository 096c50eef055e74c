// The safetensors format, following the spec and the Rust crate (huggingface/safetensors,
// safetensors/src/tensor.rs): u64 LE header length N, N bytes of JSON header, then the byte buffer.
// Pure: it reads through a ByteSource and writes through a callback, so Node (safetensors.ts: files)
// and a web page (bytes in memory) share every check and the exact layout.
//
// Reading is lazy: opening reads and validates only the header; `read(name)` then reads exactly that
// tensor's bytes. Every allocation is bounded by the data size, which is checked before allocating.
//
// Host storage per dtype: F32/F64 -> Float32Array/Float64Array; F16 and BF16 -> their raw bits in a
// Uint16Array (as the engine stores them, see src/tensor/dtype.ts); I64/U64 -> BigInt64Array /
// BigUint64Array (lossless; `int64ToInt32` converts with a range check); 8-bit float types and BOOL
// -> Uint8Array of raw bytes.

import { convertHost } from '../tensor/dtype.js';

/** The dtypes of the Rust crate's `Dtype` enum, in its order (increasing alignment). */
export const SAFETENSORS_DTYPES = [
  'BOOL', 'U8', 'I8', 'F8_E5M2', 'F8_E4M3', 'I16', 'U16', 'F16', 'BF16', 'I32', 'U32', 'F32', 'F64', 'I64', 'U64',
] as const;
export type SafetensorsDtype = (typeof SAFETENSORS_DTYPES)[number];

/** The typed array each dtype is read into and written from. */
export interface SafetensorsArrays {
  BOOL: Uint8Array; U8: Uint8Array; I8: Int8Array; F8_E5M2: Uint8Array; F8_E4M3: Uint8Array;
  I16: Int16Array; U16: Uint16Array; F16: Uint16Array; BF16: Uint16Array;
  I32: Int32Array; U32: Uint32Array; F32: Float32Array; F64: Float64Array;
  I64: BigInt64Array; U64: BigUint64Array;
}

/** A tensor in host memory; a union discriminated by `dtype`, so narrowing on it types `data`. */
export type SafetensorsTensor = {
  [D in SafetensorsDtype]: { dtype: D; shape: number[]; data: SafetensorsArrays[D] };
}[SafetensorsDtype];

/** A tensor to write; `data` may be a function, called only when that tensor is written (streaming). */
export type SafetensorsTensorInput = {
  [D in SafetensorsDtype]: {
    dtype: D;
    shape: readonly number[];
    data: SafetensorsArrays[D] | (() => SafetensorsArrays[D] | Promise<SafetensorsArrays[D]>);
  };
}[SafetensorsDtype];

interface SafetensorsInfo {
  dtype: SafetensorsDtype;
  shape: number[];
  /** Byte offsets relative to the start of the byte buffer, as in the header. */
  dataOffsets: [number, number];
  byteLength: number;
}

export type SafetensorsErrorKind =
  | 'io' | 'header-size' | 'header-json' | 'header-entry' | 'dtype' | 'shape' | 'offsets' | 'not-found' | 'write';

/** Every problem with a safetensors file or a write request: names the file and what is wrong. */
export class SafetensorsError extends Error {
  override readonly name = 'SafetensorsError';
  constructor(readonly file: string, readonly kind: SafetensorsErrorKind, problem: string, options?: { cause?: unknown }) {
    super(`${file}: ${problem}`, options);
  }
}

/** The Rust crate's MAX_HEADER_SIZE: a larger header is refused before anything is allocated. */
const MAX_HEADER_SIZE = 100_000_000;

const BYTES: Record<SafetensorsDtype, number> = {
  BOOL: 1, U8: 1, I8: 1, F8_E5M2: 1, F8_E4M3: 1, I16: 2, U16: 2, F16: 2, BF16: 2,
  I32: 4, U32: 4, F32: 4, F64: 8, I64: 8, U64: 8,
};

function isSafetensorsDtype(x: unknown): x is SafetensorsDtype {
  return typeof x === 'string' && Object.prototype.hasOwnProperty.call(BYTES, x);
}

type ArrayCtor = { new (buffer: ArrayBuffer, byteOffset?: number, length?: number): SafetensorsArrays[SafetensorsDtype] };
const CTOR: Record<SafetensorsDtype, ArrayCtor> = {
  BOOL: Uint8Array, U8: Uint8Array, I8: Int8Array, F8_E5M2: Uint8Array, F8_E4M3: Uint8Array,
  I16: Int16Array, U16: Uint16Array, F16: Uint16Array, BF16: Uint16Array,
  I32: Int32Array, U32: Uint32Array, F32: Float32Array, F64: Float64Array,
  I64: BigInt64Array, U64: BigUint64Array,
};


function assertLittleEndianHost(file: string): void {
  // The format is little-endian and we view the bytes directly as typed arrays.
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new SafetensorsError(file, 'io', 'big-endian hosts are not supported (safetensors data is little-endian; typed arrays would need a byte swap)');
  }
}

/** A short, never-throwing rendering of an untrusted JSON value for error messages (deep or huge
 *  values would overflow JSON.stringify's recursion or bloat the message). */
function brief(v: unknown): string {
  let s: string | undefined;
  try {
    s = JSON.stringify(v);
  } catch {
    s = undefined;
  }
  if (s === undefined) return Array.isArray(v) ? 'a deeply nested array' : typeof v;
  return s.length > 80 ? `${s.slice(0, 77)}...` : s;
}

/** A tensor name quoted for a message, cut short if a hostile file made it huge. */
function q(name: string): string {
  return JSON.stringify(name.length > 120 ? `${name.slice(0, 117)}...` : name);
}

function fmtShape(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/** Element count of a validated shape, or Infinity when it exceeds `limit` (so callers never overflow). */
function numelBounded(shape: readonly number[], limit: number): number {
  if (shape.includes(0)) return 0;
  let n = 1;
  for (const d of shape) {
    n *= d;
    if (n > limit) return Infinity;
  }
  return n;
}

// ---- duplicate-key detection ---------------------------------------------------------------
// JSON.parse keeps the last of duplicate keys silently; a file with two entries for one tensor is
// ambiguous (serde_json in the Rust crate rejects it), so we scan the already-valid JSON text for
// keys repeated within one object, at any depth.
function findDuplicateKey(text: string): string | null {
  type Frame = { obj: boolean; keys: Set<string>; expectKey: boolean };
  const stack: Frame[] = [];
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (text.charCodeAt(j) !== 0x22) j += text.charCodeAt(j) === 0x5c /* \ */ ? 2 : 1;
      const top = stack[stack.length - 1];
      if (top && top.obj && top.expectKey) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.keys.has(key)) return key;
        top.keys.add(key);
        top.expectKey = false;
      }
      i = j;
    } else if (c === 0x7b /* { */) stack.push({ obj: true, keys: new Set(), expectKey: true });
    else if (c === 0x5b /* [ */) stack.push({ obj: false, keys: new Set(), expectKey: false });
    else if (c === 0x7d /* } */ || c === 0x5d /* ] */) stack.pop();
    else if (c === 0x2c /* , */) {
      const top = stack[stack.length - 1];
      if (top && top.obj) top.expectKey = true;
    }
  }
  return null;
}

function isPlainObject(x: unknown): x is Record<string, unknown> {
  return typeof x === 'object' && x !== null && !Array.isArray(x);
}

interface Entry extends SafetensorsInfo { name: string }

/**
 * Validate a parsed header against the size of the byte buffer; the checks of the Rust crate's
 * `Metadata::validate` (sorted by offsets, contiguous from 0, no holes or overlaps, byte count =
 * numel * dtype size, last offset = end of file) plus per-field type checks.
 * Offsets are not required to be multiples of the dtype size: the spec does not ask for it, older
 * writers ordered tensors by name, and `read` copies into a fresh (aligned) buffer anyway.
 */
function parseHeader(file: string, text: string, bufferLength: number): { entries: Entry[]; metadata: Record<string, string> } {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (e) {
    throw new SafetensorsError(file, 'header-json', `header is not valid JSON (${(e as Error).message}); the file is corrupt or not a safetensors file`);
  }
  if (!isPlainObject(parsed)) throw new SafetensorsError(file, 'header-json', `header must be a JSON object, got ${Array.isArray(parsed) ? 'an array' : typeof parsed}`);
  const dup = findDuplicateKey(text);
  if (dup !== null) throw new SafetensorsError(file, 'header-json', `header has the key ${q(dup)} more than once (ambiguous; JSON.parse would silently keep the last)`);

  let metadata: Record<string, string> = {};
  const entries: Entry[] = [];
  for (const name of Object.keys(parsed)) {
    const v = parsed[name];
    if (name === '__metadata__') {
      if (!isPlainObject(v)) throw new SafetensorsError(file, 'header-entry', '__metadata__ must be an object of string values');
      const pairs: [string, string][] = [];
      for (const k of Object.keys(v)) {
        const s = v[k];
        if (typeof s !== 'string') throw new SafetensorsError(file, 'header-entry', `__metadata__[${JSON.stringify(k)}] must be a string, got ${brief(s)}`);
        pairs.push([k, s]);
      }
      metadata = Object.fromEntries(pairs);
      continue;
    }
    const where = `tensor ${q(name)}`;
    if (!isPlainObject(v)) throw new SafetensorsError(file, 'header-entry', `${where}: header entry must be an object {dtype, shape, data_offsets}, got ${brief(v)}`);
    const { dtype, shape, data_offsets: offs } = v;
    if (!isSafetensorsDtype(dtype)) throw new SafetensorsError(file, 'dtype', `${where}: unknown dtype ${brief(dtype)} (supported: ${SAFETENSORS_DTYPES.join(', ')})`);
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      throw new SafetensorsError(file, 'shape', `${where}: shape must be an array of non-negative integers, got ${brief(shape)}`);
    }
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      throw new SafetensorsError(file, 'offsets', `${where}: data_offsets must be [begin, end] with non-negative integers, got ${brief(offs)}`);
    }
    const [begin, end] = offs as [number, number];
    if (end < begin) throw new SafetensorsError(file, 'offsets', `${where}: data_offsets [${begin}, ${end}] end before begin`);
    if (end > bufferLength) throw new SafetensorsError(file, 'offsets', `${where}: data_offsets [${begin}, ${end}] run past the end of the data (${bufferLength} bytes); the file is truncated or the header is wrong`);
    const dims = shape as number[];
    const byteLength = end - begin;
    const numel = numelBounded(dims, bufferLength);
    if (numel * BYTES[dtype] !== byteLength) {
      throw new SafetensorsError(file, 'shape', `${where}: shape ${fmtShape(dims)} of ${dtype} needs ${numel === Infinity ? 'more bytes than the file has' : `${numel * BYTES[dtype]} bytes`} but data_offsets [${begin}, ${end}] hold ${byteLength}`);
    }
    entries.push({ name, dtype, shape: dims, dataOffsets: [begin, end], byteLength });
  }

  // Sorted by offsets, the tensors must tile [0, bufferLength) exactly.
  const sorted = [...entries].sort((a, b) => a.dataOffsets[0] - b.dataOffsets[0] || a.dataOffsets[1] - b.dataOffsets[1]);
  let pos = 0;
  let prev = '(start of data)';
  for (const e of sorted) {
    const [b] = e.dataOffsets;
    if (b < pos) throw new SafetensorsError(file, 'offsets', `tensor ${q(e.name)} at [${e.dataOffsets.join(', ')}] overlaps ${prev} which ends at ${pos}`);
    if (b > pos) throw new SafetensorsError(file, 'offsets', `the data has a hole of ${b - pos} bytes at [${pos}, ${b}) before tensor ${q(e.name)} (the spec forbids holes)`);
    pos = e.dataOffsets[1];
    prev = `tensor ${q(e.name)}`;
  }
  if (pos !== bufferLength) {
    throw new SafetensorsError(file, 'offsets', `tensors cover ${pos} bytes but the data region is ${bufferLength} bytes (the last offset must be the end of the file)`);
  }
  return { entries: sorted, metadata };
}

// ---- reading --------------------------------------------------------------------------------

export interface SafetensorsFile {
  readonly path: string;
  /** Tensor names in file (offset) order. */
  readonly names: readonly string[];
  /** `__metadata__`, or {} when absent. */
  readonly metadata: Readonly<Record<string, string>>;
  /** Total file size in bytes. */
  readonly size: number;
  has(name: string): boolean;
  info(name: string): SafetensorsInfo;
  /** Read one tensor (one positional read of exactly its bytes). */
  read(name: string): Promise<SafetensorsTensor>;
  /** Read one floating tensor converted to float32 (F32 as is; F64 rounded; F16/BF16 decoded). */
  readFloat32(name: string): Promise<{ shape: number[]; data: Float32Array }>;
  close(): Promise<void>;
}

/** Random access to the bytes of a safetensors file, wherever they are (a file, a Blob, memory). */
export interface ByteSource {
  readonly size: number;
  /** Fill `target` with the bytes from `position` on; rejects (naming what failed) on a failed or short read. */
  read(target: Uint8Array, position: number): Promise<void>;
  close(): Promise<void>;
}

/** Bytes already in memory (a page's downloaded or dropped file) as a ByteSource. */
export function bytesSource(bytes: Uint8Array, file = 'safetensors bytes'): ByteSource {
  return {
    size: bytes.length,
    read: async (target, position) => {
      if (position + target.length > bytes.length) throw new SafetensorsError(file, 'io', `unexpected end of data at byte ${bytes.length}`);
      target.set(bytes.subarray(position, position + target.length));
    },
    close: async () => {},
  };
}

/**
 * Validate the header of the safetensors data in `src` (named `path` in errors); tensors are read
 * later, one at a time. On Node, openSafetensors(path) opens a file this way.
 */
export async function openSafetensorsSource(path: string, src: ByteSource): Promise<SafetensorsFile> {
  try {
    assertLittleEndianHost(path);
    const size = src.size;
    if (size < 8) throw new SafetensorsError(path, 'header-size', `file is ${size} bytes, shorter than the 8-byte header length; not a safetensors file`);
    const lenBuf = new Uint8Array(8);
    await src.read(lenBuf, 0);
    const n64 = new DataView(lenBuf.buffer).getBigUint64(0, true);
    if (n64 > BigInt(MAX_HEADER_SIZE)) throw new SafetensorsError(path, 'header-size', `header length ${n64} exceeds the ${MAX_HEADER_SIZE}-byte limit; not a safetensors file or corrupt`);
    const n = Number(n64);
    if (8 + n > size) throw new SafetensorsError(path, 'header-size', `header length ${n} runs past the end of the ${size}-byte file; the file is truncated or not a safetensors file`);
    const headerBytes = new Uint8Array(n);
    await src.read(headerBytes, 8);
    let text: string;
    try {
      text = new TextDecoder('utf-8', { fatal: true }).decode(headerBytes);
    } catch {
      throw new SafetensorsError(path, 'header-json', 'header is not valid UTF-8');
    }
    const dataStart = 8 + n;
    const { entries, metadata } = parseHeader(path, text, size - dataStart);
    const byName = new Map(entries.map((e) => [e.name, e]));
    let closed = false;

    const get = (name: string): Entry => {
      const e = byName.get(name);
      if (!e) throw new SafetensorsError(path, 'not-found', `no tensor named ${q(name)} (the file has ${byName.size} tensors${byName.size ? `, e.g. ${q(entries[0]!.name)}` : ''})`);
      return e;
    };
    const read = async (name: string): Promise<SafetensorsTensor> => {
      const e = get(name);
      if (closed) throw new SafetensorsError(path, 'io', `read(${JSON.stringify(name)}) after close()`);
      // byteLength was checked against the file size in parseHeader, so this allocation is bounded.
      const buf = new ArrayBuffer(e.byteLength);
      await src.read(new Uint8Array(buf), dataStart + e.dataOffsets[0]);
      const data = new CTOR[e.dtype](buf);
      return { dtype: e.dtype, shape: [...e.shape], data } as SafetensorsTensor;
    };
    return {
      path,
      names: entries.map((e) => e.name),
      metadata,
      size,
      has: (name) => byName.has(name),
      info: (name) => {
        const e = get(name);
        return { dtype: e.dtype, shape: [...e.shape], dataOffsets: [...e.dataOffsets], byteLength: e.byteLength };
      },
      read,
      readFloat32: async (name) => {
        const t = await read(name);
        return { shape: t.shape, data: toFloat32(t, `${path}: tensor ${JSON.stringify(name)}`) };
      },
      close: async () => {
        if (closed) return;
        closed = true;
        await src.close();
      },
    };
  } catch (e) {
    await src.close();
    throw e;
  }
}

// ---- conversions ----------------------------------------------------------------------------

/** A floating tensor as float32: F32 returned as is (not copied), F64 rounded to nearest, F16/BF16 decoded exactly. */
export function toFloat32(t: SafetensorsTensor, what = 'tensor'): Float32Array {
  switch (t.dtype) {
    case 'F32': return t.data; // no copy: callers own what read() returned
    case 'F64': return Float32Array.from(t.data);
    case 'F16': return convertHost(t.data, 'float16', 'float32') as Float32Array;
    case 'BF16': return convertHost(t.data, 'bfloat16', 'float32') as Float32Array;
    default:
      throw new Error(`${what}: dtype ${t.dtype} is not a floating type; expected F32, F64, F16 or BF16`);
  }
}

/** I64 data as Int32Array, refusing values outside the int32 range (token ids and counters fit). */
export function int64ToInt32(data: BigInt64Array, what = 'tensor'): Int32Array {
  const out = new Int32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v > 2147483647n || v < -2147483648n) throw new RangeError(`${what}: element ${i} = ${v} does not fit in int32; keep it as BigInt64Array`);
    out[i] = Number(v);
  }
  return out;
}

// ---- writing --------------------------------------------------------------------------------

/** Compare names as the Rust crate does (String's Ord: UTF-8 bytes), so our file layout equals its. */
function compareUtf8(a: string, b: string): number {
  const x = utf8.encode(a), y = utf8.encode(b);
  const n = Math.min(x.length, y.length);
  for (let i = 0; i < n; i++) if (x[i] !== y[i]) return x[i]! - y[i]!;
  return x.length - y.length;
}
const utf8 = new TextEncoder();

/**
 * The layout of a file (writeSafetensors, safetensorsBytes): Layout as the Rust crate's `serialize_to_file`: tensors sorted by dtype, largest alignment first,
 * then by name; compact JSON header with `__metadata__` first; header padded with spaces to a
 * multiple of 8 so every tensor starts aligned. Tensors whose `data` is a function are produced one
 * at a time while writing, so a caller never needs all of them in memory at once.
 */
export type TensorsInput = Record<string, SafetensorsTensorInput> | Map<string, SafetensorsTensorInput> | ReadonlyArray<readonly [string, SafetensorsTensorInput]>;

/** A checked write request: the 8-byte length, the padded header, and the tensors in file order. */
interface SafetensorsPlan {
  path: string;
  prefix: Uint8Array;
  header: Uint8Array;
  list: [string, SafetensorsTensorInput][];
}

/** Check a write request and lay it out (everything that can be refused is refused here, before any byte is written). */
function planSafetensors(path: string, tensors: TensorsInput, metadata?: Record<string, string>): SafetensorsPlan {
  assertLittleEndianHost(path);
  const list: [string, SafetensorsTensorInput][] =
    tensors instanceof Map ? [...tensors] : Array.isArray(tensors) ? tensors.map(([n, t]) => [n, t]) : Object.entries(tensors as Record<string, SafetensorsTensorInput>);
  const seen = new Set<string>();
  for (const [name, t] of list) {
    const where = `tensor ${JSON.stringify(name)}`;
    if (name === '__metadata__') throw new SafetensorsError(path, 'write', `"__metadata__" is reserved for file metadata and cannot name a tensor`);
    if (seen.has(name)) throw new SafetensorsError(path, 'write', `${where} is given twice`);
    seen.add(name);
    if (!isSafetensorsDtype(t.dtype)) throw new SafetensorsError(path, 'dtype', `${where}: unknown dtype ${JSON.stringify(t.dtype)} (supported: ${SAFETENSORS_DTYPES.join(', ')})`);
    if (!t.shape.every((d) => Number.isSafeInteger(d) && d >= 0)) throw new SafetensorsError(path, 'shape', `${where}: shape ${fmtShape(t.shape)} must hold non-negative integers`);
    if (typeof t.data !== 'function') checkData(path, name, t, t.data);
  }
  if (metadata) {
    for (const [k, v] of Object.entries(metadata)) {
      if (typeof v !== 'string') throw new SafetensorsError(path, 'write', `metadata[${JSON.stringify(k)}] must be a string (safetensors metadata is a str -> str map), got ${typeof v}`);
    }
  }
  const order = [...SAFETENSORS_DTYPES];
  list.sort(([an, a], [bn, b]) => order.indexOf(b.dtype) - order.indexOf(a.dtype) || compareUtf8(an, bn));

  // Header text built by hand (not via an object) so a tensor named "__proto__" stays an ordinary key.
  const parts: string[] = [];
  if (metadata) {
    const m = Object.entries(metadata).map(([k, v]) => `${JSON.stringify(k)}:${JSON.stringify(v)}`);
    parts.push(`"__metadata__":{${m.join(',')}}`);
  }
  let offset = 0;
  for (const [name, t] of list) {
    const n = t.shape.reduce((a, b) => a * b, 1) * BYTES[t.dtype];
    if (!Number.isSafeInteger(n)) throw new SafetensorsError(path, 'shape', `tensor ${JSON.stringify(name)}: shape ${fmtShape(t.shape)} is too large`);
    parts.push(`${JSON.stringify(name)}:{"dtype":"${t.dtype}","shape":[${t.shape.join(',')}],"data_offsets":[${offset},${offset + n}]}`);
    offset += n;
  }
  const text = `{${parts.join(',')}}`;
  // padded with spaces to a multiple of 8 bytes (of UTF-8, not of UTF-16 code units)
  const raw = new TextEncoder().encode(text);
  const header = new Uint8Array(Math.ceil(raw.length / 8) * 8).fill(0x20);
  header.set(raw);
  if (header.length > MAX_HEADER_SIZE) throw new SafetensorsError(path, 'write', `header would be ${header.length} bytes, over the ${MAX_HEADER_SIZE}-byte limit readers enforce`);
  const prefix = new Uint8Array(8);
  new DataView(prefix.buffer).setBigUint64(0, BigInt(header.length), true);
  return { path, prefix, header, list };
}

/** Stream a planned file's bytes to `put`, producing streamed tensors one at a time. */
async function emitSafetensors(plan: SafetensorsPlan, put: (bytes: Uint8Array) => Promise<void>): Promise<void> {
  const { path, list } = plan;
  await put(plan.prefix);
  await put(plan.header);
  for (const [name, t] of list) {
    const data = typeof t.data === 'function' ? await t.data() : t.data;
    checkData(path, name, t, data);
    await put(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
  }
}

/**
 * Check a write request (a refused one writes nothing), then hand `write` the function that emits
 * the file's bytes: Node's writeSafetensors gives it a temp file, safetensorsBytes an array.
 */
export async function writeSafetensorsWith(
  path: string, tensors: TensorsInput, metadata: Record<string, string> | undefined,
  write: (emit: (put: (bytes: Uint8Array) => Promise<void>) => Promise<void>) => Promise<void>,
): Promise<void> {
  const plan = planSafetensors(path, tensors, metadata);
  await write((put) => emitSafetensors(plan, put));
}

/**
 * A whole safetensors file in memory, laid out exactly as writeSafetensors writes it (for a page's
 * download; `name` only appears in errors).
 */
export async function safetensorsBytes(tensors: TensorsInput, metadata?: Record<string, string>, name = 'model.safetensors'): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  await writeSafetensorsWith(name, tensors, metadata, (emit) => emit(async (b) => { parts.push(b.slice()); }));
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

function checkData(path: string, name: string, t: { dtype: SafetensorsDtype; shape: readonly number[] }, data: unknown): void {
  const where = `tensor ${JSON.stringify(name)}`;
  const Ctor = CTOR[t.dtype];
  if (!(data instanceof Ctor)) {
    const got = data === null || typeof data !== 'object' ? typeof data : (data as object).constructor.name;
    throw new SafetensorsError(path, 'write', `${where}: dtype ${t.dtype} needs its data as ${Ctor.name}${t.dtype === 'F16' || t.dtype === 'BF16' ? ' of raw bits' : ''}, got ${got}`);
  }
  const numel = t.shape.reduce((a, b) => a * b, 1);
  if ((data as ArrayLike<unknown>).length !== numel) {
    throw new SafetensorsError(path, 'shape', `${where}: shape ${fmtShape(t.shape)} has ${numel} elements but data has ${(data as ArrayLike<unknown>).length}`);
  }
}
