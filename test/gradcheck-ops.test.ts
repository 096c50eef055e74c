// Property-based float64 gradchecks of every primitive op (elementwise, broadcasting binary,
// reductions, movement, where/maskedFill, matmul) over fast-check shapes and values.
// Values stay away from kinks and ties (relu/abs at 0, max/maximum ties) so that central
// finite differences are valid for any seed; tolerance is TIGHT (helpers/prop.ts).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { F, cat, clamp, gradcheck, matmul, min, stack, std, tensor, where, type Tensor } from '../src/index.js';
import * as ops from '../src/tensor/ops.js';
import { fromOp } from '../src/tensor/tensor.js';
import {
  awayFromZeroArb, broadcastPairArb, check, distinctArb, f64, forAll, shapeArb, shapedArb, size, valsArb, type Shape,
} from './helpers/prop.js';

describe('gradcheck: unary ops', () => {
  const cases: [string, (x: Tensor) => Tensor, (n: number) => fc.Arbitrary<number[]>][] = [
    ['neg', (x) => x.neg(), (n) => valsArb(n)],
    ['exp', (x) => x.exp(), (n) => valsArb(n)],
    ['log', (x) => x.log(), (n) => valsArb(n, 0.25, 3)],
    ['sqrt', (x) => x.sqrt(), (n) => valsArb(n, 0.25, 3)],
    ['tanh', (x) => x.tanh(), (n) => valsArb(n, -3, 3)],
    ['gelu', (x) => x.gelu(), (n) => valsArb(n, -4, 4)],
    ['relu', (x) => x.relu(), (n) => awayFromZeroArb(n)],
    ['abs', (x) => x.abs(), (n) => awayFromZeroArb(n)],
  ];
  for (const [name, fn, values] of cases) {
    it(name, () => {
      forAll(shapedArb(shapeArb(0, 4), values), ({ shape, data }) => check(fn, [f64(data, shape)]), 100);
    });
  }

  it('pow with a scalar exponent (positive base; integer exponents also on negative bases)', () => {
    const arb = fc.oneof(
      fc.tuple(fc.constantFrom(2.5, -0.5, 0.5, -1.5, 1.7), shapedArb(shapeArb(0, 3), (n) => valsArb(n, 0.5, 2))),
      fc.tuple(fc.constantFrom(1, 2, 3, -1, -2), shapedArb(shapeArb(0, 3), (n) => awayFromZeroArb(n, 0.5, 2))),
    );
    forAll(arb, ([p, { shape, data }]) => check((x) => x.pow(p), [f64(data, shape)]), 100);
  });
});

describe('gradcheck: broadcasting binary ops', () => {
  const binaries: [string, (a: Tensor, b: Tensor) => Tensor][] = [
    ['add', (a, b) => a.add(b)], ['sub', (a, b) => a.sub(b)], ['mul', (a, b) => a.mul(b)],
  ];
  for (const [name, fn] of binaries) {
    it(`${name} over broadcasting pairs`, () => {
      const arb = broadcastPairArb(3).chain(([sa, sb]) => fc.tuple(fc.constant(sa), fc.constant(sb), valsArb(size(sa)), valsArb(size(sb))));
      forAll(arb, ([sa, sb, da, db]) => check(fn, [f64(da, sa), f64(db, sb)]), 100);
    });
  }

  it('div over broadcasting pairs (divisor |b| >= 0.5)', () => {
    const arb = broadcastPairArb(3).chain(([sa, sb]) =>
      fc.tuple(fc.constant(sa), fc.constant(sb), valsArb(size(sa)), awayFromZeroArb(size(sb), 0.5, 2)));
    forAll(arb, ([sa, sb, da, db]) => check((a, b) => a.div(b), [f64(da, sa), f64(db, sb)]), 100);
  });

  // a lives in [2k, 2k+0.5], b in [2k+1, 2k+1.5]: every broadcast pair differs by >= 0.5, either may win
  const noTies = (n: number, shift: number): fc.Arbitrary<number[]> =>
    fc.array(fc.tuple(fc.integer({ min: -2, max: 1 }), fc.double({ min: 0, max: 0.5, noNaN: true }))
      .map(([k, u]) => 2 * k + shift + u), { minLength: n, maxLength: n });
  for (const name of ['maximum', 'minimum'] as const) {
    it(`${name} over broadcasting pairs (no ties)`, () => {
      const arb = broadcastPairArb(3).chain(([sa, sb]) => fc.tuple(fc.constant(sa), fc.constant(sb), noTies(size(sa), 0), noTies(size(sb), 1)));
      forAll(arb, ([sa, sb, da, db]) => check((a, b) => a[name](b), [f64(da, sa), f64(db, sb)]), 100);
    });
  }

  it('scalar operands on either side', () => {
    const arb = fc.tuple(shapedArb(shapeArb(0, 3), (n) => awayFromZeroArb(n, 0.5, 2)), awayFromZeroArb(1, 0.5, 3).map((v) => v[0]!));
    forAll(arb, ([{ shape, data }, s]) => {
      const x = f64(data, shape);
      check((x) => x.add(s), [x]);
      check((x) => ops.sub(s, x), [x]);
      check((x) => x.mul(s), [x]);
      check((x) => ops.div(s, x), [x]);
      check((x) => x.div(s), [x]);
      // kinks only where x == s; |x| >= 0.5 and s is shifted off the data below
      const s2 = data.some((v) => Math.abs(v - s) < 0.05) ? 10 : s;
      check((x) => x.maximum(s2), [x]);
      check((x) => ops.minimum(s2, x), [x]);
    }, 60);
  });
});

/** A non-empty subset of the dims of a rank-r tensor, some written negative, plus keepdim. */
const dimsArb = (r: number): fc.Arbitrary<{ dims: number[] | undefined; keepdim: boolean }> =>
  fc.tuple(fc.subarray([...Array(r).keys()], { minLength: 1 }), fc.array(fc.boolean(), { minLength: r, maxLength: r }), fc.boolean(), fc.boolean())
    .map(([dims, negs, keepdim, all]) => ({ dims: all ? undefined : dims.map((d) => (negs[d] ? d - r : d)), keepdim }));

describe('gradcheck: reductions over given dims, keepdim or not', () => {
  for (const name of ['sum', 'mean', 'max'] as const) {
    it(name, () => {
      const values = name === 'max' ? (n: number) => distinctArb(n) : (n: number) => valsArb(n);
      const arb = shapedArb(shapeArb(1, 4), values).chain((x) => fc.tuple(fc.constant(x), dimsArb(x.shape.length)));
      forAll(arb, ([{ shape, data }, { dims, keepdim }]) => check((x) => x[name](dims, keepdim), [f64(data, shape)]), 30);
    });
  }
  it('sum/max of a 0-d tensor', () => {
    check((x) => x.sum(), [f64([1.5], [])]);
    check((x) => x.max(), [f64([1.5], [])]);
    check((x) => x.mean(), [f64([1.5], [])]);
  });
});

describe('gradcheck: movement', () => {
  it('reshape (to a factorisation, with -1)', () => {
    const arb = shapedArb(shapeArb(1, 4)).chain((x) => fc.tuple(fc.constant(x), fc.shuffledSubarray(x.shape, { minLength: x.shape.length }), fc.nat(4)));
    forAll(arb, ([{ shape, data }, perm, free]) => {
      const target = [...perm];
      if (free < target.length) target[free] = -1;
      check((x) => x.reshape(target), [f64(data, shape)]);
      check((x) => x.flatten(), [f64(data, shape)]);
    }, 100);
  });

  it('transpose and permute', () => {
    const arb = shapedArb(shapeArb(2, 4)).chain((x) => fc.tuple(fc.constant(x),
      fc.shuffledSubarray([...x.shape.keys()], { minLength: x.shape.length }),
      fc.nat(x.shape.length - 1), fc.nat(x.shape.length - 1)));
    forAll(arb, ([{ shape, data }, perm, d0, d1]) => {
      check((x) => x.permute(perm), [f64(data, shape)]);
      check((x) => x.transpose(d0, d1 - shape.length), [f64(data, shape)]);
    }, 100);
  });

  it('narrow and slice', () => {
    const arb = shapedArb(shapeArb(1, 3, [1, 3, 5, 6])).chain((x) => {
      const r = x.shape.length;
      return fc.nat(r - 1).chain((dim) => {
        const n = x.shape[dim]!;
        return fc.tuple(fc.constant(x), fc.constant(dim), fc.nat(n - 1), fc.integer({ min: -n - 2, max: n + 2 }));
      }).chain(([x2, dim, start, end]) => fc.tuple(fc.constant(x2), fc.constant(dim), fc.constant(start),
        fc.integer({ min: 1, max: x2.shape[dim]! - start }), fc.constant(end)));
    });
    forAll(arb, ([{ shape, data }, dim, start, length, end]) => {
      check((x) => x.narrow(dim, start, length), [f64(data, shape)]);
      const sliced = f64(data, shape).slice(dim, start, end);
      if (sliced.size > 0) check((x) => x.slice(dim, start, end), [f64(data, shape)]);
    }, 100);
  });

  it('cat (pieces of different lengths along a dim, including an empty one) and split', () => {
    const arb = fc.tuple(shapeArb(1, 3), fc.array(fc.integer({ min: 0, max: 3 }), { minLength: 1, maxLength: 4 }), fc.nat(3))
      .chain(([base, lens, d]) => {
        const dim = d % base.length;
        const shapes = lens.map((l) => base.map((s, i) => (i === dim ? l : s)));
        return fc.tuple(fc.constant(dim), fc.constant(shapes), fc.tuple(...shapes.map((s) => valsArb(size(s)))), fc.integer({ min: 1, max: 3 }));
      });
    forAll(arb, ([dim, shapes, datas, chunk]) => {
      const xs = shapes.map((s, i) => f64(datas[i]!, s));
      if (xs.some((x) => x.size > 0)) check((...ys) => cat(ys, dim), xs);
      const whole = shapes.reduce((acc, s) => acc + s[dim]!, 0);
      if (whole === 0) return;
      const joined = cat(xs.map((x) => x.detach()), dim);
      const data = Array.from(joined.dataSync());
      const sizes = shapes.map((s) => s[dim]!);
      // each output of split differentiated on its own, and all of them together
      const pieces = (x: Tensor): Tensor[] => x.split(chunk, dim);
      const nOut = pieces(joined).length;
      for (let j = 0; j < nOut; j++) check((x) => pieces(x)[j]!, [f64(data, joined.shape)]);
      check((x) => cat(x.split(sizes, dim).map((p, j) => p.mul(j + 1)), dim), [f64(data, joined.shape)]);
    }, 60);
  });

  it('expand (size-1 dims grow, new leading dims)', () => {
    const arb = fc.tuple(fc.array(fc.tuple(fc.constantFrom(2, 3), fc.boolean()), { minLength: 1, maxLength: 3 }), fc.array(fc.constantFrom(1, 2, 3), { maxLength: 2 }))
      .chain(([dims, lead]) => {
        const shape = dims.map(([d, one]) => (one ? 1 : d));
        const target = [...lead, ...dims.map(([d]) => d)];
        return fc.tuple(fc.constant(shape), fc.constant(target), valsArb(size(shape)));
      });
    forAll(arb, ([shape, target, data]) => {
      check((x) => x.expand(target), [f64(data, shape)]);
      check((x) => x.expand(target.map((d, i) => (i >= target.length - shape.length && shape[i - target.length + shape.length] === d ? -1 : d))), [f64(data, shape)]);
    }, 60);
  });

  it('unsqueeze / squeeze', () => {
    forAll(shapedArb(shapeArb(0, 3, [1, 2, 3])), ({ shape, data }) => {
      check((x) => x.unsqueeze(0).unsqueeze(-1).squeeze(), [f64(data, shape)]);
    }, 30);
  });
});

describe('gradcheck: where / maskedFill', () => {
  // cond takes one operand's shape, so all three broadcast together
  const triple = fc.tuple(broadcastPairArb(3), fc.boolean()).map(([[sa, sb], useA]) => [sa, sb, [useA ? sa : sb]] as const);
  it('where(cond, a, b) with cond, a and b broadcasting', () => {
    const arb = triple.chain(([sa, sb, [sc]]) => fc.tuple(fc.constant(sa), fc.constant(sb), fc.constant(sc!),
      valsArb(size(sa)), valsArb(size(sb)), fc.array(fc.boolean(), { minLength: size(sc!), maxLength: size(sc!) })));
    forAll(arb, ([sa, sb, sc, da, db, dc]) => {
      const cond = f64(dc.map(Number), sc, false);
      check((a, b) => where(cond, a, b), [f64(da, sa), f64(db, sb)]);
      check((a) => where(cond, a, 0.5), [f64(da, sa)]);
      check((b) => where(cond, -1, b), [f64(db, sb)]);
    }, 100);
  });
  it('maskedFill with a mask that broadcasts to x', () => {
    const arb = broadcastPairArb(3).map(([sa, sb]) => {
      const out = sa.length >= sb.length ? sa : sb;
      const n = Math.max(sa.length, sb.length);
      const x = out.map((_, i) => Math.max(sa[sa.length - n + i] ?? 1, sb[sb.length - n + i] ?? 1));
      return [x, sb.length <= x.length ? sb : sa] as [Shape, Shape];
    }).chain(([sx, sm]) => fc.tuple(fc.constant(sx), fc.constant(sm), valsArb(size(sx)),
      fc.array(fc.boolean(), { minLength: size(sm), maxLength: size(sm) }), fc.double({ min: -3, max: 3, noNaN: true })));
    forAll(arb, ([sx, sm, dx, dm, v]) => {
      const mask = f64(dm.map(Number), sm, false);
      check((x) => x.maskedFill(mask, v), [f64(dx, sx)]);
    }, 100);
  });
});

describe('gradcheck: matmul', () => {
  const dim = fc.constantFrom(1, 2, 3, 5);
  it('2-D, batched, broadcast batch dims, 1-D operands', () => {
    const arb = fc.tuple(dim, dim, dim, broadcastPairArb(2), fc.constantFrom('mm', 'vec-mat', 'mat-vec', 'vec-vec'), fc.boolean())
      .chain(([m, k, n, [ba, bb], mode, batched]) => {
        const a: Shape = mode === 'vec-mat' || mode === 'vec-vec' ? [k] : [...(batched ? ba : []), m, k];
        const b: Shape = mode === 'mat-vec' || mode === 'vec-vec' ? [k] : [...(batched ? bb : []), k, n];
        return fc.tuple(fc.constant(a), fc.constant(b), valsArb(size(a)), valsArb(size(b)));
      });
    forAll(arb, ([sa, sb, da, db]) => {
      check((a, b) => matmul(a, b), [f64(da, sa), f64(db, sb)]);
      check((a, b) => a.matmul(b), [f64(da, sa), f64(db, sb, false)]);
      check((a, b) => a.matmul(b), [f64(da, sa, false), f64(db, sb)]);
    }, 150);
  });
  it('transposed operands (x.T @ y, x @ y.T, batched)', () => {
    const arb = fc.tuple(dim, dim, dim, fc.constantFrom<Shape>([], [2], [3, 1]))
      .chain(([m, k, n, batch]) => fc.tuple(fc.constant([...batch, k, m]), fc.constant([n, k]), valsArb(size(batch) * k * m), valsArb(n * k)));
    forAll(arb, ([sa, sb, da, db]) => {
      check((a, b) => a.T.matmul(b.T), [f64(da, sa), f64(db, sb)]);
      check((a, b) => b.matmul(a).sum(0).mul(0.5), [f64(da, sa), f64(db, sb)]);
    }, 60);
  });
});

describe('gradcheck itself', () => {
  it('catches a backward rule that is wrong by a small relative amount', () => {
    // y = x^2 with a backward of 2x(1 + 1e-4): the default tolerance (rtol 1e-3) passes it, TIGHT does not
    const badSquare = (x: Tensor): Tensor => fromOp('badSquare', x.backend.binary('mul', x.storage, x.shape, x.storage, x.shape, x.shape), x.shape, [x],
      (g) => [g.mul(x.detach()).mul(2 * (1 + 1e-4))]);
    const x = f64([0.5, -1.25, 2], [3]);
    expect(gradcheck(badSquare, [x], { raiseException: false }).ok).toBe(true);
    expect(() => check(badSquare, [x])).toThrow(/gradcheck FAILED: worst at input 0/);
    check((x) => x.mul(x), [x]);
  });
  it('skips inputs that do not require grad, and rejects float32 inputs', () => {
    const c = f64([1, 2, 3], [3], false);
    check((x, c) => x.mul(c), [f64([0.5, 1, 1.5], [3]), c]);
    expect(() => gradcheck((x) => x.exp(), [tensor([1, 2], { requiresGrad: true })])).toThrow(/float64/);
  });
});

describe('gradcheck: the composed ops (sigmoid, clamp, min, std, stack, losses)', () => {
  it('sigmoid', () => {
    forAll(shapedArb(shapeArb(0, 3), (n) => valsArb(n, -4, 4)), ({ shape, data }) => check((x) => x.sigmoid(), [f64(data, shape)]), 60);
  });
  it('clamp to [-1, 0.5] (values away from the bounds, where it has no derivative)', () => {
    const arb = shapedArb(shapeArb(1, 3), (n) => fc.array(fc.oneof(fc.double({ min: -2, max: -1.1, noNaN: true }),
      fc.double({ min: -0.9, max: 0.4, noNaN: true }), fc.double({ min: 0.6, max: 2, noNaN: true })), { minLength: n, maxLength: n }));
    forAll(arb, ({ shape, data }) => check((x) => clamp(x, -1, 0.5), [f64(data, shape)]), 60);
  });
  it('min over a dim (distinct values: no ties)', () => {
    forAll(shapedArb(shapeArb(1, 3), (n) => distinctArb(n)), ({ shape, data }) => check((x) => min(x, -1), [f64(data, shape)]), 60);
  });
  it('std over a dim and over all (two values or more)', () => {
    forAll(shapedArb(shapeArb(1, 3, [2, 3, 4]), (n) => distinctArb(n)), ({ shape, data }) => {
      check((x) => std(x, -1, true), [f64(data, shape)]);
      check((x) => std(x), [f64(data, shape)]);
    }, 40);
  });
  it('stack', () => {
    forAll(shapedArb(shapeArb(0, 3)), ({ shape, data }) => check((a, b) => stack([a, b.mul(2)], 0), [f64(data, shape), f64(data.map((v) => v + 1), shape)]), 40);
  });
  it('mseLoss and nllLoss', () => {
    forAll(shapedArb(shapeArb(1, 3)), ({ shape, data }) => check((a, b) => F.mseLoss(a, b), [f64(data, shape), f64(data.map((v) => v * 0.5 - 0.1), shape)]), 40);
    const t = tensor(Int32Array.of(2, 0, 1));
    forAll(shapedArb(fc.constant([3, 4])), ({ shape, data }) => check((x) => F.nllLoss(x, t), [f64(data, shape)]), 20);
  });
});
