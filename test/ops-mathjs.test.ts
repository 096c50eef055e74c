// Forward results against mathjs, an independent oracle: matmul (math.multiply), sum over
// dims (math.sum along a dim, composed), exp/log (math.exp/math.log), softmax (from math
// ops), on fast-check shapes and values, in float64 and float32.
import fc from 'fast-check';
import * as math from 'mathjs';
import { describe, it } from 'vitest';
import { F, matmul, tensor, type Tensor } from '../src/index.js';
import { expectClose, forAll, shapeArb, shapedArb, size, valsArb } from './helpers/prop.js';

type Nested = number | Nested[];
const nest = (data: number[], shape: readonly number[]): Nested => {
  if (shape.length === 0) return data[0]!;
  const inner = size(shape.slice(1));
  return Array.from({ length: shape[0]! }, (_, i) => nest(data.slice(i * inner, (i + 1) * inner), shape.slice(1)));
};
const flatten = (x: Nested): number[] => (typeof x === 'number' ? [x] : x.flatMap(flatten));
const t = (data: number[], shape: readonly number[], dtype: 'float64' | 'float32' = 'float64'): Tensor =>
  tensor(dtype === 'float64' ? Float64Array.from(data) : Float32Array.from(data), { shape });
const values = (x: Tensor): number[] => Array.from(x.dataSync());

const dim = fc.constantFrom(1, 2, 3, 4, 7);

describe('forward vs mathjs', () => {
  it('matmul: 2-D, batched (mathjs per batch), vector cases', () => {
    const arb = fc.tuple(dim, dim, dim, fc.constantFrom(0, 1, 3), fc.constantFrom('mm', 'vec-mat', 'mat-vec'))
      .chain(([m, k, n, batch, mode]) => fc.tuple(fc.constant([m, k, n, batch]), fc.constant(mode), valsArb(Math.max(batch, 1) * m * k, -3, 3), valsArb(k * n, -3, 3)));
    forAll(arb, ([[m, k, n, batch], mode, da, db]) => {
      if (mode === 'mm') {
        const sa = batch ? [batch, m!, k!] : [m!, k!];
        const got = values(matmul(t(da, sa), t(db, [k!, n!])));
        const B = nest(db, [k!, n!]) as number[][];
        const want = batch
          ? (nest(da, sa) as number[][][]).flatMap((a) => flatten(math.multiply(a, B) as Nested))
          : flatten(math.multiply(nest(da, sa) as number[][], B) as Nested);
        expectClose(got, want, 1e-13, 1e-13, 'matmul f64');
        // float32: the kernel accumulates wider than float32, so the result is within a few float32 ulps
        expectClose(values(matmul(t(da, sa, 'float32'), t(db, [k!, n!], 'float32'))), want.map(Math.fround), 1e-5, 1e-5, 'matmul f32');
      } else if (mode === 'vec-mat') {
        const v = da.slice(0, k);
        expectClose(values(matmul(t(v, [k!]), t(db, [k!, n!]))), flatten(math.multiply(v, nest(db, [k!, n!]) as number[][]) as Nested), 1e-13, 1e-13, 'vec@mat');
      } else {
        const v = db.slice(0, k);
        const A = da.slice(0, m! * k!);
        expectClose(values(matmul(t(A, [m!, k!]), t(v, [k!]))), flatten(math.multiply(nest(A, [m!, k!]) as number[][], v) as Nested), 1e-13, 1e-13, 'mat@vec');
      }
    }, 40);
  });

  it('sum over each dim, several dims, and all', () => {
    const arb = shapedArb(shapeArb(1, 4, [1, 2, 3, 5]), (n) => valsArb(n, -10, 10)).chain((x) => fc.tuple(fc.constant(x), fc.subarray([...x.shape.keys()], { minLength: 1 })));
    forAll(arb, ([{ shape, data }, dims]) => {
      const x = t(data, shape);
      // mathjs reduces one dim at a time; go from the highest dim so indices stay valid
      let want: Nested = nest(data, shape);
      for (const d of [...dims].sort((p, q) => q - p)) want = math.sum(want as number[][], d) as unknown as Nested;
      expectClose(values(x.sum(dims)), flatten(want), 1e-12, 1e-12, `sum over ${dims}`);
      expectClose(values(x.sum()), [math.sum(data)], 1e-12, 1e-12, 'sum all');
      expectClose(values(x.mean(dims)), flatten(want).map((v) => v / dims.reduce((n, d) => n * shape[d]!, 1)), 1e-12, 1e-12, 'mean');
    }, 40);
  });

  it('exp and log, elementwise', () => {
    forAll(shapedArb(shapeArb(0, 3), (n) => valsArb(n, -20, 20)), ({ shape, data }) => {
      expectClose(values(t(data, shape).exp()), data.map((v) => math.exp(v)), 1e-15, 0, 'exp');
      const pos = data.map((v) => Math.abs(v) + 1e-3);
      expectClose(values(t(pos, shape).log()), pos.map((v) => math.log(v) as number), 1e-15, 1e-15, 'log');
      expectClose(values(t(data, shape, 'float32').exp()), data.map((v) => Math.fround(math.exp(Math.fround(v)))), 1e-7, 0, 'exp f32');
    }, 30);
  });

  it('softmax over the last dim (and another dim) against exp(x - max) / sum from mathjs', () => {
    const arb = shapedArb(shapeArb(1, 3, [1, 2, 3, 5, 8]), (n) => valsArb(n, -30, 30));
    forAll(arb, ({ shape, data }) => {
      for (const dim of [shape.length - 1, 0]) {
        let x: Nested = nest(data, shape);
        // move `dim` last with mathjs, softmax every row, move it back
        const perm = [...shape.keys()];
        [perm[dim], perm[shape.length - 1]] = [perm[shape.length - 1]!, perm[dim]!];
        const permShape = perm.map((p) => shape[p]!);
        const moved = permuteNested(x, shape, perm);
        const rows = flatten(moved);
        const n = permShape[permShape.length - 1]!;
        const out: number[] = [];
        for (let r = 0; r < rows.length; r += n) {
          const row = rows.slice(r, r + n);
          const mx = math.max(row);
          const e = row.map((v) => math.exp(v - mx));
          const s = math.sum(e);
          out.push(...e.map((v) => math.divide(v, s) as number));
        }
        x = permuteNested(nest(out, permShape), permShape, perm); // a swap is its own inverse
        expectClose(values(F.softmax(t(data, shape), dim)), flatten(x), 1e-14, 1e-15, `softmax dim ${dim}`);
        expectClose(values(F.logSoftmax(t(data, shape), dim)), flatten(x).map((v) => Math.log(v)), 1e-12, 1e-12, `logSoftmax dim ${dim}`);
      }
    }, 30);
  });
});

/** Permute a nested array's axes (out axis i is input axis perm[i]), via mathjs index arithmetic. */
function permuteNested(x: Nested, shape: readonly number[], perm: readonly number[]): Nested {
  const data = flatten(x);
  const outShape = perm.map((p) => shape[p]!);
  const inStrides = shape.map((_, i) => size(shape.slice(i + 1)));
  const out = new Array<number>(data.length);
  const idx = new Array<number>(outShape.length).fill(0);
  for (let o = 0; o < data.length; o++) {
    let src = 0;
    for (let i = 0; i < idx.length; i++) src += idx[i]! * inStrides[perm[i]!]!;
    out[o] = data[src]!;
    for (let d = idx.length - 1; d >= 0; d--) { if (++idx[d]! < outShape[d]!) break; idx[d] = 0; }
  }
  return nest(out, outShape);
}
