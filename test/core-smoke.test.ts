// Smoke checks of the engine core against hand-computed values.
import { describe, expect, it } from 'vitest';
import { tensor, F, gradcheck, randn, manualSeed } from '../src/index.js';

describe('core smoke', () => {
  it('adds with broadcasting and backprops', () => {
    const a = tensor([[1, 2, 3], [4, 5, 6]], { requiresGrad: true });
    const b = tensor([10, 20, 30], { requiresGrad: true });
    const c = a.mul(b).sum();
    expect(c.item()).toBe(1 * 10 + 2 * 20 + 3 * 30 + 4 * 10 + 5 * 20 + 6 * 30);
    c.backward();
    expect(a.grad!.toArray()).toEqual([[10, 20, 30], [10, 20, 30]]);
    expect(b.grad!.toArray()).toEqual([5, 7, 9]);
  });
  it('gradchecks a small composite', () => {
    manualSeed(1);
    const x = randn([3, 4], { dtype: 'float64', requiresGrad: true });
    const w = randn([5, 4], { dtype: 'float64', requiresGrad: true });
    const t = tensor(new Int32Array([1, 0, 4]));
    const r = gradcheck((x, w) => F.crossEntropy(F.linear(x!, w!).tanh(), t), [x, w]);
    expect(r.ok).toBe(true);
  });
});
