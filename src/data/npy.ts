// .npy reader and writer for 1-D integer token arrays, byte-compatible with numpy's np.save
// (numpy/lib/format.py: header v1.0, GROWTH_AXIS_MAX_DIGITS spare spaces, 64-byte alignment).
import { closeSync, fstatSync, openSync, readFileSync, readSync } from 'node:fs';
import { writeChunksAtomic } from './fsutil.js';

/** Integer dtypes a token file may hold. fineweb.py writes uint16; int32/int64 are accepted on read. */
export type NpyDtype = 'uint16' | 'int32' | 'int64';
export type NpyData = Uint16Array | Int32Array | BigInt64Array;

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // "\x93NUMPY"
const ARRAY_ALIGN = 64; // numpy.lib.format.ARRAY_ALIGN
const GROWTH_AXIS_MAX_DIGITS = 21; // numpy.lib.format.GROWTH_AXIS_MAX_DIGITS (numpy >= 1.23)

const DESCR: Record<NpyDtype, string> = { uint16: '<u2', int32: '<i4', int64: '<i8' };
const ITEMSIZE: Record<NpyDtype, number> = { uint16: 2, int32: 4, int64: 8 };

function dtypeOf(data: NpyData): NpyDtype {
  if (data instanceof Uint16Array) return 'uint16';
  if (data instanceof Int32Array) return 'int32';
  return 'int64';
}

/**
 * The header np.save writes before a 1-D little-endian array of `length` elements. Follows
 * _write_array_header: keys sorted, repr() of values, spare spaces for the length to grow, then
 * spaces and a newline so that magic + version + length + header is a multiple of 64. numpy pads
 * by 64 - (len % 64), i.e. a full 64 when already aligned; copied as is.
 */
export function npyHeader(dtype: NpyDtype, length: number): Uint8Array {
  if (!Number.isSafeInteger(length) || length < 0) throw new Error(`npy.npyHeader: length must be a non-negative integer, got ${length}`);
  let header = `{'descr': '${DESCR[dtype]}', 'fortran_order': False, 'shape': (${length},), }`;
  header += ' '.repeat(Math.max(0, GROWTH_AXIS_MAX_DIGITS - String(length).length));
  const hlen = header.length + 1; // + '\n'
  const padlen = ARRAY_ALIGN - ((MAGIC.length + 2 + 2 + hlen) % ARRAY_ALIGN);
  const headerLen = hlen + padlen;
  const out = new Uint8Array(MAGIC.length + 4 + headerLen);
  out.set(MAGIC, 0);
  out[6] = 1; // major version
  out[7] = 0; // minor version
  out[8] = headerLen & 0xff; // little-endian uint16 length (struct '<H')
  out[9] = headerLen >> 8;
  let p = MAGIC.length + 4;
  for (let i = 0; i < header.length; i++) out[p++] = header.charCodeAt(i); // pure ASCII
  out.fill(0x20, p, p + padlen);
  out[out.length - 1] = 0x0a;
  return out;
}

/** The bytes of np.save(f, data) for a 1-D array. */
export function encodeNpy(data: NpyData): Uint8Array {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new Error('npy.encodeNpy: this host is big-endian; token files are little-endian (<u2)');
  }
  const header = npyHeader(dtypeOf(data), data.length);
  const out = new Uint8Array(header.length + data.byteLength);
  out.set(header, 0);
  out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), header.length);
  return out;
}

/** np.save(path, data) for a 1-D array, written to a temp file then renamed into place. */
export function writeNpy(path: string, data: NpyData): void {
  if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new Error('npy.writeNpy: this host is big-endian; token files are little-endian (<u2)');
  }
  writeChunksAtomic(path, [npyHeader(dtypeOf(data), data.length), new Uint8Array(data.buffer, data.byteOffset, data.byteLength)]);
}

export interface NpyHeader {
  dtype: NpyDtype;
  length: number;
  /** Byte offset of the first element. */
  dataOffset: number;
}

/**
 * Parses the header of a .npy file holding a 1-D little-endian integer array.
 * `name` is only used in error messages (usually the file path).
 */
export function parseNpyHeader(bytes: Uint8Array, name: string, totalBytes = bytes.length): NpyHeader {
  const fix = 'expected a 1-D integer array saved with np.save (dtype uint16, int32 or int64, little-endian)';
  for (let i = 0; i < MAGIC.length; i++) {
    if (bytes[i] !== MAGIC[i]) throw new Error(`npy: ${name} is not a .npy file (bad magic); ${fix}`);
  }
  const major = bytes[6];
  let headerLen: number;
  let start: number;
  if (major === 1) {
    headerLen = bytes[8]! | (bytes[9]! << 8);
    start = 10;
  } else if (major === 2 || major === 3) {
    headerLen = (bytes[8]! | (bytes[9]! << 8) | (bytes[10]! << 16)) + bytes[11]! * 2 ** 24;
    start = 12;
  } else {
    throw new Error(`npy: ${name} has unsupported format version ${major}.${bytes[7]}; ${fix}`);
  }
  if (bytes.length < start + headerLen) throw new Error(`npy: ${name} is truncated inside its header; ${fix}`);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(start, start + headerLen));
  const descr = /'descr':\s*'([^']*)'/.exec(header)?.[1];
  const fortran = /'fortran_order':\s*(True|False)/.exec(header)?.[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)?.[1];
  if (descr === undefined || fortran === undefined || shape === undefined) {
    throw new Error(`npy: ${name} has a malformed header ${JSON.stringify(header.trim())}; ${fix}`);
  }
  const dims = shape.split(',').map((s) => s.trim()).filter((s) => s !== '');
  if (dims.length !== 1 || !/^\d+$/.test(dims[0]!)) {
    throw new Error(`npy: ${name} has shape (${shape}); ${fix}`);
  }
  const dtype = (Object.keys(DESCR) as NpyDtype[]).find((d) => DESCR[d] === descr);
  if (dtype === undefined) throw new Error(`npy: ${name} has dtype '${descr}'; ${fix}`);
  const length = Number(dims[0]);
  const dataOffset = start + headerLen;
  const expected = dataOffset + length * ITEMSIZE[dtype];
  if (totalBytes !== expected) {
    throw new Error(
      `npy: ${name} holds ${totalBytes} bytes but its header (shape (${length},), ${descr}) needs ${expected}; ` +
        'the file is truncated or was still being written',
    );
  }
  return { dtype, length, dataOffset };
}

/** Reads a 1-D integer .npy file (np.load). Little-endian hosts only, like the files. */
export function decodeNpy(bytes: Uint8Array, name = '<buffer>'): NpyData {
  const { dtype, length, dataOffset } = parseNpyHeader(bytes, name);
  const size = ITEMSIZE[dtype];
  const off = bytes.byteOffset + dataOffset;
  // A typed-array view needs an aligned offset; the header keeps it 64-aligned within the
  // file, but the Buffer itself may start anywhere in a pooled allocation, so copy then.
  const buf: ArrayBufferLike =
    off % size === 0 ? bytes.buffer : bytes.slice(dataOffset, dataOffset + length * size).buffer;
  const at = off % size === 0 ? off : 0;
  if (dtype === 'uint16') return new Uint16Array(buf, at, length);
  if (dtype === 'int32') return new Int32Array(buf, at, length);
  return new BigInt64Array(buf, at, length);
}

/** Check a .npy file's header against its size without reading its data (the first 64 KiB at most). */
export function readNpyHeader(path: string): NpyHeader {
  let fd: number | null = null;
  try {
    fd = openSync(path, 'r');
    const size = fstatSync(fd).size;
    const head = Buffer.alloc(Math.min(size, 65536));
    readSync(fd, head, 0, head.length, 0);
    return parseNpyHeader(head, path, size);
  } catch (e) {
    if ((e as Error).message.startsWith('npy: ')) throw e;
    throw new Error(`npy: cannot read ${path}: ${(e as Error).message}`);
  } finally {
    if (fd !== null) closeSync(fd);
  }
}

export function readNpy(path: string): NpyData {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    throw new Error(`npy: cannot read ${path}: ${(e as Error).message}`);
  }
  return decodeNpy(bytes, path);
}

/**
 * Reads a token file as build-nanogpt's load_tokens does (np.load then astype(int32)),
 * keeping uint16 files as Uint16Array to halve memory. int64 values outside int32 are an error.
 */
export function readTokens(path: string): Uint16Array | Int32Array {
  const data = readNpy(path);
  if (!(data instanceof BigInt64Array)) return data;
  const out = new Int32Array(data.length);
  for (let i = 0; i < data.length; i++) {
    const v = data[i]!;
    if (v < -2147483648n || v > 2147483647n) {
      throw new Error(`npy: ${path} token ${v} at index ${i} does not fit int32`);
    }
    out[i] = Number(v);
  }
  return out;
}
