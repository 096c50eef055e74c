// Forward semantics of F functions that gradchecks cannot see (a consistent forward and
// backward pass gradcheck even when the forward is wrong): dropout's mask and scale,
// attention's causal mask and scale, layerNorm's eps, crossEntropy's reductions.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { F, Generator, tensor } from '../src/index.js';
import { expectClose, f64, flat, forAll, i32, randData, valsArb } from './helpers/prop.js';

describe('dropout', () => {
  it('zeroes with probability p and scales kept values by exactly 1/(1-p) in the input dtype', () => {
    forAll(fc.tuple(fc.constantFrom(0.1, 0.25, 0.5, 0.9), fc.nat(10000)), ([p, seed]) => {
      const n = 4000;
      const data = Array.from({ length: n }, (_, i) => 1 + (i % 7));
      const y = flat(F.dropout(f64(data, [n], false), p, true, new Generator(seed)));
      const kept = y.filter((v) => v !== 0).length;
      y.forEach((v, i) => { if (v !== 0) expect(v).toBe(data[i]! * (1 / (1 - p))); });
      // binomial(n, 1-p): 5 standard deviations
      expect(Math.abs(kept - n * (1 - p))).toBeLessThan(5 * Math.sqrt(n * p * (1 - p)));
      const y32 = flat(F.dropout(tensor(Float32Array.from(data)), p, true, new Generator(seed)));
      y32.forEach((v, i) => expect(v === 0 ? 0 : v).toBe(y[i] === 0 ? 0 : Math.fround(data[i]! * Math.fround(1 / (1 - p)))));
    }, 10);
  });
  it('is the identity when not training or p = 0, zero for p = 1, and reproducible with a seed', () => {
    const x = f64([1, 2, 3], [3], false);
    expect(F.dropout(x, 0.5, false)).toBe(x);
    expect(F.dropout(x, 0)).toBe(x);
    expect(flat(F.dropout(x, 1))).toEqual([0, 0, 0]);
    expect(flat(F.dropout(x, 0.5, true, new Generator(7)))).toEqual(flat(F.dropout(x, 0.5, true, new Generator(7))));
    expect(() => F.dropout(x, 1.5)).toThrow(/dropout/);
  });
});

describe('scaledDotProductAttention forward', () => {
  it('equals softmax(q k^T * scale + mask) v computed by hand, causal or not', () => {
    forAll(fc.tuple(fc.constantFrom(1, 2, 4), fc.constantFrom(1, 3), fc.constantFrom(1, 2, 3), fc.boolean(), fc.nat(1000)), ([T, extra, D, causal, seed]) => {
      const S = T + extra - 1;
      const q = randData(T * D, seed), k = randData(S * D, seed + 1), v = randData(S * D, seed + 2);
      const scale = 1 / Math.sqrt(D);
      const want: number[] = [];
      for (let i = 0; i < T; i++) {
        const logits = Array.from({ length: S }, (_, j) => {
          if (causal && j > i + S - T) return -Infinity; // bottom-right aligned: the last query sees every key
          let s = 0;
          for (let c = 0; c < D; c++) s += q[i * D + c]! * k[j * D + c]!;
          return s * scale;
        });
        const m = Math.max(...logits);
        const e = logits.map((l) => Math.exp(l - m));
        const z = e.reduce((a, b) => a + b, 0);
        for (let c = 0; c < D; c++) want.push(e.reduce((acc, w, j) => acc + (w / z) * v[j * D + c]!, 0));
      }
      const got = F.scaledDotProductAttention(f64(q, [T, D], false), f64(k, [S, D], false), f64(v, [S, D], false), { isCausal: causal });
      expectClose(flat(got), want, 1e-12, 1e-13, 'attention');
    }, 40);
  });
});

describe('layerNorm and crossEntropy forward', () => {
  it('layerNorm uses the biased variance and eps inside the sqrt', () => {
    forAll(valsArb(6, -3, 3), (d) => {
      const eps = 0.1;
      const mu = d.reduce((a, b) => a + b, 0) / 6;
      const variance = d.reduce((a, b) => a + (b - mu) ** 2, 0) / 6;
      const want = d.map((x) => (x - mu) / Math.sqrt(variance + eps));
      expectClose(flat(F.layerNorm(f64(d, [6], false), null, null, eps)), want, 1e-13, 1e-13, 'layerNorm');
    }, 30);
  });
  it("crossEntropy: 'none' rows are logsumexp - picked logit; mean and sum reduce them", () => {
    forAll(fc.tuple(valsArb(12, -5, 5), fc.array(fc.nat(3), { minLength: 3, maxLength: 3 })), ([d, t]) => {
      const rows = [0, 1, 2].map((r) => {
        const x = d.slice(4 * r, 4 * r + 4);
        const m = Math.max(...x);
        return m + Math.log(x.reduce((a, b) => a + Math.exp(b - m), 0)) - x[t[r]!]!;
      });
      const logits = f64(d, [3, 4], false), targets = i32(t);
      expectClose(flat(F.crossEntropy(logits, targets, { reduction: 'none' })), rows, 1e-13, 1e-13, 'none');
      expectClose(flat(F.crossEntropy(logits, targets)), [rows.reduce((a, b) => a + b) / 3], 1e-13, 1e-13, 'mean');
      expectClose(flat(F.crossEntropy(logits, targets, { reduction: 'sum' })), [rows.reduce((a, b) => a + b)], 1e-13, 1e-13, 'sum');
    }, 30);
  });
});
