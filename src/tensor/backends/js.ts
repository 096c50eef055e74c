// The reference backend in plain TypeScript: every primitive kernel as a readable loop
// over host typed arrays. Faster backends (wasm) extend it and are tested against it.

import { noteReferenceWork, type Backend, type BinaryOp, type FusedKernels, type MatmulParams, type ReduceOp, type Storage, type UnaryOp } from '../backend.js';
import { isHalf, allocHost, convertHost, type DType, type HostArray } from '../dtype.js';
import { broadcastStrides, sizeOf, stridesOf, type Shape } from '../shape.js';

/** Host storage: a typed array and its dtype. */
export class HostStorage implements Storage {
  constructor(readonly data: HostArray, readonly dtype: DType) {}
  get size(): number { return this.data.length; }
}

const SQRT_2_OVER_PI = Math.sqrt(2 / Math.PI);

function unaryFn(op: UnaryOp): (x: number) => number {
  switch (op) {
    case 'neg': return (x) => -x;
    case 'exp': return Math.exp;
    case 'log': return Math.log;
    case 'sqrt': return Math.sqrt;
    case 'tanh': return Math.tanh;
    case 'relu': return (x) => (x > 0 ? x : x === x ? 0 : x); // NaN stays NaN
    case 'abs': return Math.abs;
    case 'step': return (x) => (x > 0 ? 1 : 0);
    // GPT-2's GELU: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))
    case 'gelu': return (x) => 0.5 * x * (1 + Math.tanh(SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)));
    case 'geluGrad': return (x) => {
      const u = SQRT_2_OVER_PI * (x + 0.044715 * x * x * x);
      const t = Math.tanh(u);
      const du = SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x);
      return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * du;
    };
  }
}

function binaryFn(op: BinaryOp): (a: number, b: number) => number {
  switch (op) {
    case 'add': return (a, b) => a + b;
    case 'sub': return (a, b) => a - b;
    case 'mul': return (a, b) => a * b;
    case 'div': return (a, b) => a / b;
    case 'pow': return Math.pow;
    // NaN propagates like torch.maximum/minimum
    case 'max': return (a, b) => (a !== a || b !== b ? NaN : a > b ? a : b);
    case 'min': return (a, b) => (a !== a || b !== b ? NaN : a < b ? a : b);
    case 'gt': return (a, b) => (a > b ? 1 : 0);
    case 'lt': return (a, b) => (a < b ? 1 : 0);
    case 'eq': return (a, b) => (a === b ? 1 : 0);
  }
}

/**
 * Visit every index of `outShape` in row-major order, tracking the flat offsets of up to
 * three broadcast inputs with an odometer (no division per element).
 */
function forEachBroadcast(outShape: Shape, strides: number[][], visit: (i: number, o0: number, o1: number, o2: number) => void): void {
  const n = sizeOf(outShape);
  const nd = outShape.length;
  const idx = new Array<number>(nd).fill(0);
  const off = [0, 0, 0];
  const st = [strides[0] ?? [], strides[1] ?? [], strides[2] ?? []];
  for (let i = 0; i < n; i++) {
    visit(i, off[0]!, off[1]!, off[2]!);
    for (let d = nd - 1; d >= 0; d--) {
      idx[d]!++;
      for (let k = 0; k < 3; k++) off[k]! += st[k]![d] ?? 0;
      if (idx[d]! < outShape[d]!) break;
      for (let k = 0; k < 3; k++) off[k]! -= (st[k]![d] ?? 0) * idx[d]!;
      idx[d] = 0;
    }
  }
}

export class JsBackend implements Backend {
  readonly name: string = 'js';
  readonly hostMemory = true;
  readonly fused: FusedKernels = {}; // the reference composes everything from primitives

  protected host(s: Storage): HostArray {
    return (s as HostStorage).data;
  }
  protected wrap(data: HostArray, dtype: DType): HostStorage {
    return new HostStorage(data, dtype);
  }
  protected alloc(size: number, dtype: DType): HostArray {
    return allocHost(dtype, size);
  }

  // ---- memory ----
  fromHost(data: HostArray, dtype: DType): Storage { return this.wrap(data, dtype); }
  full(size: number, dtype: DType, value: number): Storage {
    const out = this.alloc(size, dtype);
    if (!Object.is(value, 0)) { // -0 must be written: the buffer starts as +0
      const v = dtype === 'float16' || dtype === 'bfloat16' ? convertHost(Float32Array.of(value), 'float32', dtype)[0]! : value;
      out.fill(v);
    }
    return this.wrap(out, dtype);
  }
  read(s: Storage): Promise<HostArray> { return Promise.resolve(this.host(s)); }
  hostView(s: Storage): HostArray { return this.host(s); }
  readSync(s: Storage): HostArray { return this.host(s); }
  dispose(_s: Storage, _reason?: string): void { /* garbage collected */ }

  // ---- elementwise ----
  cast(x: Storage, to: DType): Storage {
    return this.wrap(convertHost(this.host(x), x.dtype, to), to);
  }

  unary(op: UnaryOp, x: Storage): Storage {
    const a = this.host(x);
    const out = this.alloc(a.length, x.dtype);
    const f = unaryFn(op);
    for (let i = 0; i < a.length; i++) out[i] = f(a[i]!);
    return this.wrap(out, x.dtype);
  }

  binary(op: BinaryOp, a: Storage, aShape: Shape, b: Storage, bShape: Shape, outShape: Shape): Storage {
    const x = this.host(a), y = this.host(b);
    const n = sizeOf(outShape);
    const out = this.alloc(n, a.dtype);
    const f = binaryFn(op);
    if (x.length === n && y.length === n) {
      for (let i = 0; i < n; i++) out[i] = f(x[i]!, y[i]!);
    } else if (y.length === 1 && x.length === n) {
      const s = y[0]!;
      for (let i = 0; i < n; i++) out[i] = f(x[i]!, s);
    } else {
      forEachBroadcast(outShape, [broadcastStrides(aShape, outShape), broadcastStrides(bShape, outShape)],
        (i, oa, ob) => { out[i] = f(x[oa]!, y[ob]!); });
    }
    return this.wrap(out, a.dtype);
  }

  where(cond: Storage, condShape: Shape, a: Storage, aShape: Shape, b: Storage, bShape: Shape, outShape: Shape): Storage {
    const c = this.host(cond), x = this.host(a), y = this.host(b);
    const out = this.alloc(sizeOf(outShape), a.dtype);
    forEachBroadcast(outShape,
      [broadcastStrides(condShape, outShape), broadcastStrides(aShape, outShape), broadcastStrides(bShape, outShape)],
      (i, oc, oa, ob) => { out[i] = c[oc] !== 0 ? x[oa]! : y[ob]!; });
    return this.wrap(out, a.dtype);
  }

  // ---- reductions ----
  reduce(op: ReduceOp, x: Storage, outer: number, size: number, inner: number): Storage {
    const a = this.host(x);
    const out = this.alloc(outer * inner, x.dtype);
    for (let o = 0; o < outer; o++) {
      for (let i = 0; i < inner; i++) {
        const base = o * size * inner + i;
        let acc = op === 'sum' ? 0 : -Infinity;
        for (let r = 0; r < size; r++) {
          const v = a[base + r * inner]!;
          if (op === 'sum') acc += v;
          else if (v > acc || v !== v) acc = v; // NaN wins, as in torch.amax
          if (acc !== acc && op === 'max') break;
        }
        out[o * inner + i] = acc;
      }
    }
    return this.wrap(out, x.dtype);
  }

  // ---- matmul ----
  matmul(a: Storage, b: Storage, p: MatmulParams): Storage {
    if (isHalf(a.dtype) || isHalf(b.dtype)) return this.matmul(this.cast(a, 'float32'), this.cast(b, 'float32'), p); // float32 out
    const A = this.host(a), B = this.host(b);
    const { batch, m, n, k, transA, transB, aBatchStride, bBatchStride } = p;
    noteReferenceWork(this, batch * m * n * k);
    const C = this.alloc(batch * m * n, a.dtype);
    const row = new Float64Array(n);
    for (let bt = 0; bt < batch; bt++) {
      const ao = bt * aBatchStride, bo = bt * bBatchStride, co = bt * m * n;
      for (let i = 0; i < m; i++) {
        if (!transB) {
          // C[i, :] = sum_p A[i, p] * B[p, :]  (B rows are contiguous)
          row.fill(0);
          for (let q = 0; q < k; q++) {
            const aiq = transA ? A[ao + q * m + i]! : A[ao + i * k + q]!; // no skip at 0: 0 * NaN/inf must stay NaN
            const br = bo + q * n;
            for (let j = 0; j < n; j++) row[j]! += aiq * B[br + j]!;
          }
          for (let j = 0; j < n; j++) C[co + i * n + j] = row[j]!;
        } else {
          // C[i, j] = A[i, :] . B[j, :]  (B stored [n, k])
          for (let j = 0; j < n; j++) {
            let acc = 0;
            const br = bo + j * k;
            if (transA) for (let q = 0; q < k; q++) acc += A[ao + q * m + i]! * B[br + q]!;
            else { const ar = ao + i * k; for (let q = 0; q < k; q++) acc += A[ar + q]! * B[br + q]!; }
            C[co + i * n + j] = acc;
          }
        }
      }
    }
    return this.wrap(C, a.dtype);
  }

  // ---- movement ----
  strided(x: Storage, outShape: Shape, strides: readonly number[], offset: number): Storage {
    const a = this.host(x);
    const out = this.alloc(sizeOf(outShape), x.dtype);
    forEachBroadcast(outShape, [[...strides]], (i, o) => { out[i] = a[offset + o]!; });
    return this.wrap(out, x.dtype);
  }

  pad(x: Storage, shape: Shape, before: readonly number[], after: readonly number[]): Storage {
    const a = this.host(x);
    const outShape = shape.map((d, i) => d + before[i]! + after[i]!);
    const out = this.alloc(sizeOf(outShape), x.dtype);
    const ost = stridesOf(outShape);
    let base = 0;
    for (let d = 0; d < shape.length; d++) base += before[d]! * ost[d]!;
    // walk the input; its element lands at base + sum idx_d * outStride_d
    forEachBroadcast(shape, [ost], (i, o) => { out[base + o] = a[i]!; });
    return this.wrap(out, x.dtype);
  }

  // ---- indexing ----
  checkIndices(op: string, idx: Storage, limit: number, what: string, context: string): void {
    const d = this.host(idx);
    for (let i = 0; i < d.length; i++) {
      const v = d[i]!;
      if (v < 0 || v >= limit) throw new Error(`${op}: ${what} out of range: ${v} at flat position ${i} (${context}); valid values are 0..${limit - 1}`);
    }
  }

  gatherRows(table: Storage, cols: number, idx: Storage, n: number): Storage {
    const t = this.host(table), ix = this.host(idx);
    const out = this.alloc(n * cols, table.dtype);
    for (let r = 0; r < n; r++) out.set(t.subarray(ix[r]! * cols, ix[r]! * cols + cols) as never, r * cols);
    return this.wrap(out, table.dtype);
  }

  scatterAddRows(src: Storage, cols: number, idx: Storage, n: number, rows: number): Storage {
    const s = this.host(src), ix = this.host(idx);
    const out = this.alloc(rows * cols, src.dtype);
    for (let r = 0; r < n; r++) {
      const o = ix[r]! * cols, i = r * cols;
      for (let c = 0; c < cols; c++) out[o + c]! += s[i + c]!;
    }
    return this.wrap(out, src.dtype);
  }

  pickLast(x: Storage, rows: number, cols: number, idx: Storage): Storage {
    const a = this.host(x), ix = this.host(idx);
    const out = this.alloc(rows, x.dtype);
    for (let r = 0; r < rows; r++) out[r] = a[r * cols + ix[r]!]!;
    return this.wrap(out, x.dtype);
  }

  scatterLast(g: Storage, rows: number, cols: number, idx: Storage): Storage {
    const a = this.host(g), ix = this.host(idx);
    const out = this.alloc(rows * cols, g.dtype);
    for (let r = 0; r < rows; r++) out[r * cols + ix[r]!] = a[r]!;
    return this.wrap(out, g.dtype);
  }
}
