// Bad input gets an error naming the op and the shapes; NaN flows through ops as NaN (no
// crash, no silent zero); empty tensors work wherever PyTorch allows them.
import { describe, expect, it } from 'vitest';
import { F, cat, ones, tensor, where, zeros, type Tensor } from '../src/index.js';
import { f64, flat } from './helpers/prop.js';

const int = (xs: number[], shape?: number[]): Tensor => tensor(Int32Array.from(xs), { shape: shape ?? [xs.length] });

describe('errors name the op and the shapes', () => {
  const cases: [string, () => unknown, RegExp[]][] = [
    ['matmul inner dims', () => zeros([2, 3]).matmul(zeros([4, 5])), [/matmul/, /\[2, 3\]/, /\[4, 5\]/, /3 and 4/]],
    ['matmul vector', () => zeros([3]).matmul(zeros([4])), [/matmul/, /\[3\]|\[1, 3\]/, /\[4\]|\[4, 1\]/]],
    ['matmul batch dims', () => zeros([2, 3, 4]).matmul(zeros([3, 4, 5])), [/matmul/, /\[2, 3, 4\]/, /\[3, 4, 5\]/]],
    ['matmul 0-d', () => zeros([]).matmul(zeros([3])), [/matmul/, /\[\]/, /\[3\]/]],
    ['linear features', () => F.linear(zeros([2, 3]), zeros([4, 5])), [/linear/, /\[2, 3\]/, /\[4, 5\]/]],
    ['add broadcast', () => zeros([2, 3]).add(zeros([4])), [/add/, /\[2, 3\]/, /\[4\]/, /broadcast/]],
    ['mul broadcast', () => zeros([2, 3, 1]).mul(zeros([4, 2])), [/mul/, /\[2, 3, 1\]/, /\[4, 2\]/]],
    ['where broadcast', () => where(zeros([3]), zeros([2]), 1), [/where/, /\[3\]/, /\[2\]/]],
    ['maskedFill mask', () => zeros([3]).maskedFill(zeros([2, 3]), 1), [/maskedFill/, /\[2, 3\]/, /\[3\]/]],
    ['expand', () => zeros([2, 3]).expand([4, 3]), [/expand/, /\[2, 3\]/, /\[4, 3\]/]],
    ['reshape size', () => zeros([2, 3]).reshape([4, 2]), [/reshape/, /\[4, 2\]/, /\[2, 3\]/, /6/]],
    ['reshape -1', () => zeros([2, 3]).reshape([4, -1]), [/reshape/, /\[4, -1\]/, /\[2, 3\]/]],
    ['reshape two -1', () => zeros([2, 3]).reshape([-1, -1]), [/reshape/, /-1/]],
    ['cat shapes', () => cat([zeros([2, 3]), zeros([2, 4])], 0), [/cat/, /\[2, 3\]/, /\[2, 4\]/]],
    ['permute', () => zeros([2, 3]).permute([0, 0]), [/permute/, /\[2, 3\]/]],
    ['dim out of range', () => zeros([2, 3]).sum(2), [/sum/, /dim 2/, /2 dims/]],
    ['narrow', () => zeros([2, 3]).narrow(1, 2, 2), [/narrow/, /\[2, 3\]/]],
    ['split', () => zeros([2, 3]).split([1, 1], 1), [/split/, /\[2, 3\]/]],
    ['embedding index too large', () => F.embedding(int([0, 5]), zeros([3, 2])), [/embedding/, /5/, /\[3, 2\]/, /0\.\.2/]],
    ['embedding negative index', () => F.embedding(int([-1]), zeros([3, 2])), [/embedding/, /-1/, /\[3, 2\]/]],
    ['embedding float index', () => F.embedding(tensor([1]), zeros([3, 2])), [/embedding/, /int32/, /float32/]],
    ['embedding 1-D weight', () => F.embedding(int([1]), zeros([3])), [/embedding/, /\[3\]/]],
    ['crossEntropy target range', () => F.crossEntropy(zeros([2, 3]), int([0, 3])), [/crossEntropy/, /3/, /\[2, 3\]/]],
    ['crossEntropy target count', () => F.crossEntropy(zeros([2, 3]), int([0, 1, 1])), [/crossEntropy/, /\[3\]/, /\[2, 3\]/]],
    ['layerNorm weight', () => F.layerNorm(zeros([2, 3]), ones([4]), null), [/layerNorm/, /\[4\]/, /\[2, 3\]/]],
    ['attention shapes', () => F.scaledDotProductAttention(zeros([2, 3, 4]), zeros([2, 3, 5]), zeros([2, 3, 4])), [/scaledDotProductAttention/, /\[2, 3, 5\]/]],
    ['matmul dtypes', () => zeros([2, 3]).matmul(zeros([3, 2], { dtype: 'float64' })), [/matmul/, /float32/, /float64/]],
    ['backward on a non-scalar', () => tensor([1, 2], { requiresGrad: true }).mul(2).backward(), [/backward/, /scalar/, /\[2\]/]],
    ['backward gradient shape', () => tensor([1, 2], { requiresGrad: true }).mul(2).backward(ones([3])), [/backward/, /\[3\]/, /\[2\]/]],
    ['backward without grad', () => zeros([1]).backward(), [/backward/, /require/]],
    ['requiresGrad on int32', () => int([1]).requiresGrad_(), [/requiresGrad/, /int32/]],
    ['ragged nested array', () => tensor([[1, 2], [3]]), [/tensor/, /ragged/]],
    ['item of many', () => zeros([2]).item(), [/item/, /\[2\]/]],
    ['max over an empty dim', () => zeros([2, 0]).max(1), [/max/, /\[2, 0\]/]],
  ];
  for (const [name, fn, patterns] of cases) {
    it(name, () => {
      let message = '';
      try { fn(); } catch (e) { message = (e as Error).message; }
      expect(message, `${name} should throw`).not.toBe('');
      for (const p of patterns) expect(message).toMatch(p);
    });
  }
});

describe('NaN stays NaN (no crash, no silent number)', () => {
  const x = (): Tensor => tensor([[1, NaN, -2], [0.5, 2, 3]]);
  it('exp, log, relu, sqrt, tanh, gelu, abs', () => {
    for (const op of ['exp', 'log', 'relu', 'sqrt', 'tanh', 'gelu', 'abs', 'neg'] as const) {
      const y = flat(x()[op]());
      expect(Number.isNaN(y[1]), op).toBe(true);
      expect(y.filter(Number.isNaN).length, `${op}: only NaN inputs (and log/sqrt of negatives) give NaN`).toBe(op === 'log' || op === 'sqrt' ? 2 : 1);
    }
  });
  it('sum, mean and max reduce a NaN to NaN, and only its row', () => {
    expect(flat(x().sum(1)).map(Number.isNaN)).toEqual([true, false]);
    expect(flat(x().mean(1)).map(Number.isNaN)).toEqual([true, false]);
    expect(flat(x().max(1)).map(Number.isNaN)).toEqual([true, false]);
    expect(flat(tensor([NaN, 1, 2]).max())[0]).toBeNaN();
    expect(flat(tensor([1, 2, NaN]).max())[0]).toBeNaN();
    expect(flat(x().sum())[0]).toBeNaN();
    expect(flat(x().maximum(0)).map(Number.isNaN)).toEqual([false, true, false, false, false, false]);
    expect(flat(x().minimum(tensor([NaN, 0, 0]))).map(Number.isNaN)).toEqual([true, true, false, true, false, false]);
  });
  it('softmax / logSoftmax: a NaN row is NaN, other rows are untouched', () => {
    for (const f of [F.softmax, F.logSoftmax]) {
      const y = flat(f(x(), -1));
      expect(y.slice(0, 3).every(Number.isNaN)).toBe(true);
      expect(y.slice(3).every(Number.isFinite)).toBe(true);
    }
  });
  it('matmul: NaN and inf in one operand are not skipped where the other is zero', () => {
    expect(flat(tensor([[0, 0]]).matmul(tensor([[NaN], [1]])))[0]).toBeNaN();
    expect(flat(tensor([[0, 1]]).matmul(tensor([[Infinity], [1]])))[0]).toBeNaN(); // 0 * inf = NaN, as IEEE and torch
    expect(flat(tensor([[0, 1]], { dtype: 'float64' }).matmul(tensor([[NaN, 1], [1, 1]], { dtype: 'float64' })))).toEqual([NaN, 1]);
    expect(flat(tensor([[0, 1]]).matmul(tensor([[NaN], [1]]).T.T))[0]).toBeNaN();
  });
  it('the gradient of a NaN loss is NaN where it flows (backward does not crash)', () => {
    const w = tensor([1, 2], { requiresGrad: true });
    w.mul(tensor([NaN, 1])).sum().backward();
    expect(flat(w.grad!)[0]).toBeNaN();
    expect(flat(w.grad!)[1]).toBe(1);
  });
  it('crossEntropy of NaN logits is NaN', () => {
    expect(F.crossEntropy(tensor([[NaN, 0], [0, 1]]), int([0, 1])).item()).toBeNaN();
  });
});

describe('empty tensors where PyTorch allows them', () => {
  it('zeros([0, 3]).sum(0) is zeros [3]; sum() is 0; mean() is NaN', () => {
    const s = zeros([0, 3]).sum(0);
    expect(s.shape).toEqual([3]);
    expect(flat(s)).toEqual([0, 0, 0]);
    expect(zeros([0, 3]).sum(1).shape).toEqual([0]);
    expect(zeros([0, 3]).sum(0, true).shape).toEqual([1, 3]);
    expect(zeros([0, 3]).sum().item()).toBe(0);
    expect(zeros([0, 3]).mean().item()).toBeNaN();
    expect(zeros([2, 0]).max(0).shape).toEqual([0]);
  });
  it('matmul with k = 0 gives zeros; with m = 0 an empty result', () => {
    const y = ones([2, 0]).matmul(ones([0, 3]));
    expect(y.shape).toEqual([2, 3]);
    expect(flat(y)).toEqual([0, 0, 0, 0, 0, 0]);
    expect(ones([4, 2, 0]).matmul(ones([0, 3])).shape).toEqual([4, 2, 3]);
    expect(ones([0, 2]).matmul(ones([2, 3])).shape).toEqual([0, 3]);
    expect(ones([0]).matmul(ones([0])).item()).toBe(0);
    const a = f64([], [2, 0]), b = f64([], [0, 3]);
    a.matmul(b).sum().backward();
    expect([a.grad!.shape, b.grad!.shape]).toEqual([[2, 0], [0, 3]]);
  });
  it('cat with an empty piece', () => {
    const a = f64([], [0, 3]), b = f64([1, 2, 3, 4, 5, 6], [2, 3]);
    const y = cat([a, b, a], 0);
    expect(y.toArray()).toEqual([[1, 2, 3], [4, 5, 6]]);
    y.mul(2).sum().backward();
    expect(a.grad!.shape).toEqual([0, 3]);
    expect(flat(b.grad!)).toEqual([2, 2, 2, 2, 2, 2]);
    expect(cat([zeros([2, 0]), ones([2, 2])], 1).toArray()).toEqual([[1, 1], [1, 1]]);
    expect(cat([zeros([0, 3]), zeros([0, 3])], 0).shape).toEqual([0, 3]);
  });
  it('reshape, transpose, expand, slice and split of empty tensors', () => {
    expect(zeros([0, 3]).reshape([3, 0]).shape).toEqual([3, 0]);
    expect(zeros([0, 3]).reshape([-1, 3]).shape).toEqual([0, 3]);
    expect(zeros([0, 3]).reshape([0]).shape).toEqual([0]);
    expect(zeros([2, 0, 3]).transpose(0, 2).shape).toEqual([3, 0, 2]);
    expect(zeros([0, 1]).expand([0, 4]).shape).toEqual([0, 4]);
    expect(ones([3, 2]).slice(0, 2, 2).shape).toEqual([0, 2]);
    expect(ones([3, 2]).narrow(0, 1, 0).shape).toEqual([0, 2]);
    expect(ones([0, 2]).split(2, 1).map((t) => t.shape)).toEqual([[0, 2]]);
    expect(ones([0, 2]).split(2, 0).map((t) => t.shape)).toEqual([[0, 2]]); // one empty chunk, as torch
  });
  it('elementwise ops, softmax and layerNorm on empty tensors', () => {
    expect(zeros([0, 3]).exp().add(ones([3])).shape).toEqual([0, 3]);
    expect(F.softmax(zeros([0, 3]), -1).shape).toEqual([0, 3]);
    expect(F.softmax(zeros([2, 0]), -1).shape).toEqual([2, 0]);
    expect(F.logSoftmax(zeros([2, 0]), -1).shape).toEqual([2, 0]);
    expect(F.layerNorm(zeros([0, 4]), ones([4]), zeros([4])).shape).toEqual([0, 4]);
    expect(F.embedding(int([], [0]), ones([3, 2])).shape).toEqual([0, 2]);
  });
});

describe('tensor() options', () => {
  it('a flat nested list with a shape takes that shape (as typed arrays do), or fails naming both', () => {
    expect(tensor([1, 2, 3, 4], { shape: [2, 2] }).toArray()).toEqual([[1, 2], [3, 4]]);
    expect(() => tensor([1, 2, 3], { shape: [2, 2] })).toThrow(/tensor: 3 values cannot have shape \[2, 2\]/);
  });
});

describe('signed zero', () => {
  it('full/number operands keep -0 (x * -0 is -0 for positive x, as IEEE and torch)', () => {
    expect(Object.is(tensor([-0]).item(), -0)).toBe(true);
    expect(Object.is(zeros([1]).add(-0).item(), 0)).toBe(true);
    expect(Object.is(ones([1]).mul(-0).item(), -0)).toBe(true);
    expect(Object.is(ones([1], { dtype: 'float16' }).mul(-0).item(), -0)).toBe(true);
  });
});

describe('int32 inputs to float-valued ops (as torch)', () => {
  it('true division and exp/log/sqrt/tanh/gelu give float32, not truncated ints', () => {
    const i = int([1, 3, 4]);
    expect([i.div(2).dtype, flat(i.div(2))]).toEqual(['float32', [0.5, 1.5, 2]]);
    expect(flat(i.div(int([2, 2, 8])))).toEqual([0.5, 1.5, 0.5]);
    for (const op of ['exp', 'log', 'sqrt', 'tanh', 'gelu'] as const) {
      const y = i[op]();
      expect(y.dtype, op).toBe('float32');
      expect(flat(y), op).toEqual(flat(tensor([1, 3, 4])[op]()));
    }
    // ops that stay integral keep int32
    expect([i.neg().dtype, i.abs().dtype, i.relu().dtype, i.mul(2).dtype, i.add(1).dtype, i.sum().dtype]).toEqual(Array(6).fill('int32'));
  });
  it('mean of an int32 tensor is an error naming the op and shape (torch refuses too)', () => {
    expect(() => int([1, 2]).mean()).toThrow(/mean: int32 input of shape \[2\]/);
  });
});
