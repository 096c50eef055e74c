// Property-based float64 gradchecks of the F functions (softmax family, cross-entropy,
// layerNorm, embedding, attention, dropout, linear) and of a whole transformer block written
// inline (nanoGPT's Block: ln_1, c_attn, heads via reshape/transpose, c_proj, ln_2, gelu MLP).
import fc from 'fast-check';
import { afterAll, beforeAll, describe, it } from 'vitest';
import { F, Generator, setBackend, tensor, type Tensor } from '../src/index.js';
import { check, distinctArb, f64, forAll, i32, shapeArb, shapedArb, size, valsArb } from './helpers/prop.js';

const dim = fc.constantFrom(1, 2, 3, 5);

// float64 on every CPU backend: js composes the ops, wasm runs its fused kernels' float64 paths
for (const backend of ['js', 'wasm'] as const) {
describe(`nn gradchecks (${backend} backend)`, () => {
  beforeAll(() => { setBackend(backend); });
  afterAll(() => { setBackend('js'); });

  describe('gradcheck: softmax family', () => {
    for (const name of ['softmax', 'logSoftmax'] as const) {
      it(`${name} over any dim`, () => {
        const arb = shapedArb(shapeArb(1, 4), (n) => valsArb(n, -4, 4)).chain((x) => fc.tuple(fc.constant(x), fc.integer({ min: -x.shape.length, max: x.shape.length - 1 })));
        forAll(arb, ([{ shape, data }, d]) => check((x) => F[name](x, d), [f64(data, shape)]), 80);
      });
    }
    it('softmax of a row with a large offset (max-subtraction keeps it finite)', () => {
      check((x) => F.softmax(x.add(f64([0, 0, 0, 700, 700, 700], [2, 3], false)), -1), [f64([0.1, -0.3, 0.5, 0.2, 0.9, -1], [2, 3])]);
      check((x) => F.logSoftmax(x.add(f64([0, 0, 0, 700, 700, 700], [2, 3], false)), -1), [f64([0.1, -0.3, 0.5, 0.2, 0.9, -1], [2, 3])]);
    });
  });

  describe('gradcheck: crossEntropy', () => {
    it("mean, sum and 'none' over [N, V] and [B, T, V] logits", () => {
      const arb = fc.tuple(fc.constantFrom<number[]>([], [2]), dim, fc.constantFrom(2, 3, 7), fc.constantFrom('mean', 'sum', 'none'))
        .chain(([lead, n, v, reduction]) => fc.tuple(fc.constant([...lead, n]), fc.constant(v), fc.constant(reduction),
          valsArb(size(lead) * n * v, -3, 3), fc.array(fc.nat(v - 1), { minLength: size(lead) * n, maxLength: size(lead) * n })));
      forAll(arb, ([rows, v, reduction, data, targets]) => {
        const t = i32(targets, rows);
        check((x) => F.crossEntropy(x, t, { reduction }), [f64(data, [...rows, v])]);
      }, 80);
    });
  });

  describe('gradcheck: linearCrossEntropy', () => {
    it('x [B, T, C] or [N, C] and weight [V, C] against targets (the lm_head and its loss as one op)', () => {
      const arb = fc.tuple(fc.constantFrom<number[]>([], [2]), dim, dim, fc.constantFrom(2, 3, 7))
        .chain(([lead, n, c, v]) => fc.tuple(fc.constant([...lead, n]), fc.constant(c), fc.constant(v),
          valsArb(size(lead) * n * c, -2, 2), valsArb(v * c, -2, 2), fc.array(fc.nat(v - 1), { minLength: size(lead) * n, maxLength: size(lead) * n })));
      forAll(arb, ([rows, c, v, xd, wd, targets]) => {
        const t = i32(targets, rows);
        check((x, w) => F.linearCrossEntropy(x, w!, t), [f64(xd, [...rows, c]), f64(wd, [v, c])]);
      }, 60);
    });
  });

  describe('gradcheck: layerNorm', () => {
    // x values are pairwise separated (distinctArb), so no row is near-constant: there the
    // normalisation is eps-dominated, 1/sqrt(var + eps) has huge curvature and finite differences
    // (not the gradient) lose the tight tolerance
    it('over the last dim, with and without affine params', () => {
      const arb = fc.tuple(shapeArb(0, 2), fc.constantFrom(2, 3, 5, 8), fc.constantFrom('both', 'weight', 'none'))
        .chain(([lead, c, affine]) => fc.tuple(fc.constant([...lead, c]), fc.constant(affine),
          distinctArb(size(lead) * c, -2, 2), valsArb(c, 0.5, 1.5), valsArb(c)));
      forAll(arb, ([shape, affine, dx, dw, db]) => {
        const c = shape[shape.length - 1]!;
        if (affine === 'both') check((x, w, b) => F.layerNorm(x, w, b), [f64(dx, shape), f64(dw, [c]), f64(db, [c])]);
        else if (affine === 'weight') check((x, w) => F.layerNorm(x, w, null, 1e-5), [f64(dx, shape), f64(dw, [c])]);
        else check((x) => F.layerNorm(x, null, null, 1e-3), [f64(dx, shape)]);
      }, 80);
    });
  });

  describe('gradcheck: embedding', () => {
    it('any index shape, with repeated indices (backward scatter-adds)', () => {
      const arb = fc.tuple(fc.constantFrom(1, 3, 6), fc.constantFrom(1, 2, 4), shapeArb(0, 2, [1, 2, 3, 4]))
        .chain(([v, c, ishape]) => fc.tuple(fc.constant(v), fc.constant(c), fc.constant(ishape), valsArb(v * c),
          fc.array(fc.nat(v - 1), { minLength: size(ishape), maxLength: size(ishape) })));
      forAll(arb, ([v, c, ishape, dw, idx]) => {
        const ix = i32(idx, ishape);
        check((w) => F.embedding(ix, w), [f64(dw, [v, c])]);
        check((w) => F.embedding(ix, w).mul(F.embedding(ix, w)), [f64(dw, [v, c])]);
      }, 80);
    });
  });

  describe('gradcheck: scaledDotProductAttention', () => {
    it('causal and not, T == S and T != S, batch dims', () => {
      const arb = fc.tuple(fc.constantFrom<number[]>([], [2], [2, 2]), dim, dim, fc.constantFrom(1, 2, 4), fc.constantFrom(1, 3), fc.boolean(), fc.boolean())
        .chain(([batch, t, sExtra, d, dv, causal, scaled]) => {
          const s = causal ? t + sExtra - 1 : sExtra; // causal needs S >= T so every query sees a key
          return fc.tuple(fc.constant(batch), fc.constant([t, s, d, dv]), fc.constant(causal), fc.constant(scaled ? 0.7 : undefined),
            valsArb(size(batch) * t * d), valsArb(size(batch) * s * d), valsArb(size(batch) * s * dv));
        });
      forAll(arb, ([batch, [t, s, d, dv], isCausal, scale, dq, dk, dvv]) => {
        check((q, k, v) => F.scaledDotProductAttention(q, k, v, { isCausal, scale }),
          [f64(dq, [...batch, t!, d!]), f64(dk, [...batch, s!, d!]), f64(dvv, [...batch, s!, dv!])]);
      }, 80);
    });
  });

  describe('gradcheck: dropout and linear', () => {
    it('dropout with a fixed generator (same mask on every evaluation)', () => {
      const arb = fc.tuple(shapedArb(shapeArb(1, 3)), fc.constantFrom(0, 0.1, 0.5, 0.9), fc.nat(1000));
      forAll(arb, ([{ shape, data }, p, seed]) => {
        check((x) => F.dropout(x, p, true, new Generator(seed)), [f64(data, shape)]);
        check((x) => F.dropout(x, p, false), [f64(data, shape)]);
      }, 60);
    });

    it('F.linear with and without bias, on [in], [N, in] and [B, T, in] inputs', () => {
      const arb = fc.tuple(fc.constantFrom<number[]>([], [3], [2, 3]), dim, dim, fc.boolean())
        .chain(([lead, nin, nout, bias]) => fc.tuple(fc.constant(lead), fc.constant(nin), fc.constant(nout), fc.constant(bias),
          valsArb(size(lead) * nin), valsArb(nout * nin), valsArb(nout)));
      forAll(arb, ([lead, nin, nout, bias, dx, dw, db]) => {
        const inputs = [f64(dx, [...lead, nin]), f64(dw, [nout, nin])];
        if (bias) check((x, w, b) => F.linear(x, w, b), [...inputs, f64(db, [nout])]);
        else check((x, w) => F.linear(x, w), inputs);
      }, 80);
    });
  });

  // ---- a transformer block, written inline ------------------------------------------------------

  interface BlockParams {
    ln1w: Tensor; ln1b: Tensor; attnW: Tensor; attnB: Tensor; projW: Tensor; projB: Tensor;
    ln2w: Tensor; ln2b: Tensor; fcW: Tensor; fcB: Tensor; fcProjW: Tensor; fcProjB: Tensor;
  }
  const PARAM_NAMES = ['ln1w', 'ln1b', 'attnW', 'attnB', 'projW', 'projB', 'ln2w', 'ln2b', 'fcW', 'fcB', 'fcProjW', 'fcProjB'] as const;

  /** nanoGPT's Block.forward: x + attn(ln_1(x)), then x + mlp(ln_2(x)). */
  function block(x: Tensor, p: BlockParams, nHead: number): Tensor {
    const [B, T, C] = x.shape as [number, number, number];
    const hs = C / nHead;
    const qkv = F.linear(F.layerNorm(x, p.ln1w, p.ln1b), p.attnW, p.attnB); // (B, T, 3C)
    const [q, k, v] = qkv.split(C, 2).map((t) => t.reshape([B, T, nHead, hs]).transpose(1, 2)); // (B, nh, T, hs)
    const y = F.scaledDotProductAttention(q!, k!, v!, { isCausal: true }) // (B, nh, T, hs)
      .transpose(1, 2).reshape([B, T, C]);
    x = x.add(F.linear(y, p.projW, p.projB));
    const h = F.linear(F.layerNorm(x, p.ln2w, p.ln2b), p.fcW, p.fcB).gelu(); // (B, T, 4C)
    return x.add(F.linear(h, p.fcProjW, p.fcProjB));
  }

  describe('gradcheck: transformer block', () => {
    it("the block output's sum w.r.t. the input and every weight", () => {
      const B = 2, T = 3, C = 4, nHead = 2;
      const shapes: Record<(typeof PARAM_NAMES)[number], number[]> = {
        ln1w: [C], ln1b: [C], attnW: [3 * C, C], attnB: [3 * C], projW: [C, C], projB: [C],
        ln2w: [C], ln2b: [C], fcW: [4 * C, C], fcB: [4 * C], fcProjW: [C, 4 * C], fcProjB: [C],
      };
      // x pairwise separated, so ln_1 rows are never near-constant (see the layerNorm test)
      const arb = fc.tuple(distinctArb(B * T * C), ...PARAM_NAMES.map((n) => (n.startsWith('ln') && n.endsWith('w') ? valsArb(size(shapes[n]), 0.5, 1.5) : valsArb(size(shapes[n]), -0.6, 0.6))));
      forAll(arb, ([dx, ...dp]) => {
        const inputs = [f64(dx, [B, T, C]), ...PARAM_NAMES.map((n, i) => f64(dp[i]!, shapes[n]))];
        check((x, ...ps) => {
          const p = Object.fromEntries(PARAM_NAMES.map((n, i) => [n, ps[i]!])) as unknown as BlockParams;
          return block(x!, p, nHead).sum();
        }, inputs);
      }, 8);
    });

    it('two stacked blocks with dropout-free residuals keep the tight tolerance', () => {
      const B = 1, T = 4, C = 4;
      const gen = new Generator(3);
      const rnd = (shape: number[], lo = -0.5, hi = 0.5): Tensor => f64(Array.from({ length: size(shape) }, () => lo + (hi - lo) * gen.random()), shape);
      const params = (): Tensor[] => [rnd([C], 0.8, 1.2), rnd([C]), rnd([3 * C, C]), rnd([3 * C]), rnd([C, C]), rnd([C]),
        rnd([C], 0.8, 1.2), rnd([C]), rnd([4 * C, C]), rnd([4 * C]), rnd([C, 4 * C]), rnd([C])];
      const p1 = params(), p2 = params();
      const asParams = (ps: Tensor[]): BlockParams => Object.fromEntries(PARAM_NAMES.map((n, i) => [n, ps[i]!])) as unknown as BlockParams;
      const x = rnd([B, T, C], -1, 1);
      check((x, ...ps) => block(block(x!, asParams(ps.slice(0, 12)), 2), asParams(ps.slice(12)), 1), [x, ...p1, ...p2]);
    });
  });

  it('tensor() sanity for the helpers', () => {
    check((x) => x.mul(tensor(2, { dtype: 'float64' })), [f64([1, 2], [2])]);
  });
});
}
