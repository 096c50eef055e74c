// Tape semantics as PyTorch: .grad accumulates (+=) over backward calls, noGrad records
// nothing, detach cuts the tape, zeroGrad clears, a tensor used twice gets both
// contributions, a freed graph cannot be walked twice, deep residual chains backprop
// iteratively in linear time, and integer typed arrays make int32 index tensors.
import { describe, expect, it } from 'vitest';
import { F, Tensor, isGradEnabled, noGrad, ones, tensor } from '../src/index.js';
import { fromOp } from '../src/tensor/tensor.js';
import { f64, flat } from './helpers/prop.js';

describe('gradient accumulation', () => {
  it('two backward calls (each on a fresh forward) add into .grad', () => {
    const x = f64([1, 2, 3], [3]);
    const loss = (): Tensor => x.mul(x).sum();
    loss().backward();
    expect(flat(x.grad!)).toEqual([2, 4, 6]);
    loss().backward();
    expect(flat(x.grad!)).toEqual([4, 8, 12]);
    x.mul(10).sum().backward();
    expect(flat(x.grad!)).toEqual([14, 18, 22]);
  });

  it('accumulation does not mutate an earlier .grad tensor (a new tensor each time)', () => {
    const x = f64([1, 2], [2]);
    x.mul(3).sum().backward();
    const first = x.grad!;
    x.mul(3).sum().backward();
    expect(flat(first)).toEqual([3, 3]);
    expect(flat(x.grad!)).toEqual([6, 6]);
  });

  it('zeroGrad clears, and the next backward starts from zero', () => {
    const x = f64([1, 2], [2]);
    x.mul(3).sum().backward();
    x.zeroGrad();
    expect(x.grad).toBeNull();
    x.mul(5).sum().backward();
    expect(flat(x.grad!)).toEqual([5, 5]);
  });

  it('backward with an explicit gradient for a non-scalar output', () => {
    const x = f64([1, 2, 3], [3]);
    x.mul(x).backward(f64([1, 0, -1], [3], false));
    expect(flat(x.grad!)).toEqual([2, 0, -6]);
  });

  it('grads have the leaf shape and dtype, also through broadcasting', () => {
    const b = tensor([[1], [2]], { requiresGrad: true });
    const a = tensor([[1, 2, 3]], { dtype: 'float64', requiresGrad: true });
    a.add(b).sum().backward(); // [2, 3] output
    expect([b.grad!.shape, b.grad!.dtype, flat(b.grad!)]).toEqual([[2, 1], 'float32', [3, 3]]);
    expect([a.grad!.shape, a.grad!.dtype, flat(a.grad!)]).toEqual([[1, 3], 'float64', [2, 2, 2]]);
  });
});

describe('a tensor used more than once', () => {
  it('x * x gets both contributions (2x)', () => {
    const x = f64([3, -2], [2]);
    x.mul(x).sum().backward();
    expect(flat(x.grad!)).toEqual([6, -4]);
  });
  it('a diamond: y = x * 2, z = y * y + y, and x in three places', () => {
    const x = f64([1.5], [1]);
    const y = x.mul(2);
    y.mul(y).add(y).add(x.exp()).add(x.mul(x).mul(x)).sum().backward();
    // d/dx (4x^2 + 2x + e^x + x^3) = 8x + 2 + e^x + 3x^2
    expect(x.grad!.item()).toBeCloseTo(8 * 1.5 + 2 + Math.exp(1.5) + 3 * 1.5 * 1.5, 12);
  });
  it('the same leaf as both matmul operands', () => {
    const x = f64([1, 2, 3, 4], [2, 2]);
    x.matmul(x).sum().backward();
    // d/dX sum(X X) = 1 1^T X^T + X^T 1 1^T = [[3, 7], [3, 7]] + [[4, 4], [6, 6]] (row and column sums)
    expect(flat(x.grad!)).toEqual([7, 11, 9, 13]);
  });
});

describe('noGrad and detach', () => {
  it('noGrad records nothing and restores the mode, also after a throw', () => {
    const x = f64([1, 2], [2]);
    const y = noGrad(() => { expect(isGradEnabled()).toBe(false); return x.mul(2).exp(); });
    expect(isGradEnabled()).toBe(true);
    expect(y.requiresGrad).toBe(false);
    expect(y.node).toBeNull();
    expect(() => y.sum().backward()).toThrow(/does not require grad/);
    expect(() => noGrad(() => { throw new Error('boom'); })).toThrow('boom');
    expect(isGradEnabled()).toBe(true);
    // nested: the inner call restores the outer (disabled) mode
    noGrad(() => { noGrad(() => undefined); expect(isGradEnabled()).toBe(false); });
  });
  it('a tensor made under noGrad is a constant in a later graph', () => {
    const x = f64([1, 2], [2]);
    const c = noGrad(() => x.mul(3));
    x.mul(c).sum().backward();
    expect(flat(x.grad!)).toEqual([3, 6]); // not 2 * 3x
  });
  it('detach cuts the tape but shares the values', () => {
    const x = f64([1, 2], [2]);
    const d = x.mul(x).detach();
    expect(d.requiresGrad).toBe(false);
    expect(d.isLeaf).toBe(true);
    expect(flat(d)).toEqual([1, 4]);
    x.mul(d).sum().backward();
    expect(flat(x.grad!)).toEqual([1, 4]);
    const y = x.exp();
    y.detach();
    expect(y.requiresGrad).toBe(true); // detach returns a new tensor; y itself is still on the tape
  });
});

describe('the graph is freed after backward (as without retain_graph)', () => {
  it('a second backward through the same graph is an error, not a silent no-op', () => {
    const x = f64([1, 2], [2]);
    const loss = x.mul(x).sum();
    loss.backward();
    expect(() => loss.backward()).toThrow(/freed by an earlier backward/);
    expect(flat(x.grad!)).toEqual([2, 4]);
  });
  it('frees what each op saved as soon as its backward rule has run, not at the end (as PyTorch)', () => {
    const x = f64([0.5, -1], [2]);
    const a = x.mul(x), b = a.exp(), loss = b.sum();
    // when a's rule runs, the ops after it (exp, sum) have run theirs and hold nothing any more
    const rule = a.node!.backward;
    let later: number[] = [];
    a.node!.backward = (g) => { later = [b.node!.inputs.length, loss.node!.inputs.length]; return rule(g); };
    loss.backward();
    expect(later).toEqual([0, 0]);
    // d/dx exp(x^2) = 2x exp(x^2)
    flat(x.grad!).forEach((v, i) => expect(v).toBeCloseTo(2 * [0.5, -1][i]! * Math.exp([0.5, -1][i]! ** 2), 12));
  });
  it('reusing an intermediate from before a backward is an error, not a gradient that stops there', () => {
    const x = f64([1, 2], [2]);
    const h = x.mul(3);
    h.sum().backward();
    expect(() => h.mul(2).sum().backward()).toThrow(/freed/);
    expect(h.isLeaf).toBe(false);
  });
});

describe('post-accumulate gradient hooks (torch\'s register_post_accumulate_grad_hook)', () => {
  it('run once per backward per leaf, when its gradient is whole, output side first; the gradients are those without hooks', () => {
    const run = (hooked: boolean): { grads: number[][]; order: string[] } => {
      const w1 = f64([0.5, -1, 2], [3]), w2 = f64([1.5, 0.25, -0.5], [3]);
      const order: string[] = [];
      if (hooked) {
        // at w2's hook the backward has not reached w1 (used earlier in the forward) yet
        w2.registerPostAccumulateGradHook((t) => order.push(`w2 ${flat(t.grad!).length} w1:${w1.grad === null ? 'none' : 'done'}`));
        w1.registerPostAccumulateGradHook(() => order.push('w1'));
      }
      for (let i = 0; i < 2; i++) w1.mul(w1).tanh().mul(w2).add(w2).sum().backward(); // two backwards: accumulated
      return { grads: [flat(w1.grad!), flat(w2.grad!)], order };
    };
    const plain = run(false), hooked = run(true);
    expect(hooked.grads).toEqual(plain.grads);
    expect(hooked.order).toEqual(['w2 3 w1:none', 'w1', 'w2 3 w1:done', 'w1']);
    const h = f64([1], [1]).registerPostAccumulateGradHook(() => {});
    h.remove();
    expect(() => f64([1], [1]).mul(2).registerPostAccumulateGradHook(() => {})).toThrow(/only a leaf tensor that requires grad/);
  });
});

describe('deep graphs', () => {
  const chain = (n: number): [Tensor, Tensor] => {
    const x = f64([0.5, -1], [2]);
    let h: Tensor = x;
    // each step is a residual with two paths to the previous h (h/2 + h/2): a naive
    // recursive walk would visit 2^n paths; a topological walk visits each node once
    for (let i = 0; i < n; i++) h = h.mul(0.5).add(h.mul(0.5)).add(x.mul(1e-3));
    return [x, h.sum()];
  };
  it('2000 residual steps backprop without stack overflow, with the exact gradient', () => {
    const [x, loss] = chain(2000);
    loss.backward();
    expect(flat(x.grad!).map((v) => +v.toFixed(9))).toEqual([3, 3]); // 1 + 2000 * 1e-3
  });
  it('backward time grows linearly with depth', () => {
    const time = (n: number): number => {
      const [, loss] = chain(n);
      const t0 = performance.now();
      loss.backward();
      return performance.now() - t0;
    };
    time(500); // warm up the JIT
    const best = (n: number): number => Math.min(...Array.from({ length: 5 }, () => time(n)));
    const t1 = best(1000), t8 = best(8000);
    // Linear is ~8x, quadratic ~64x. The bound sits between them on a log scale, so a garbage
    // collection pause or a busy neighbour on a shared 2-core machine (one cost CI a 10x ratio at
    // 4x the depth) cannot fail it, while a quadratic walk still cannot pass.
    expect(t8 / t1, `1000 steps ${t1.toFixed(1)} ms, 8000 steps ${t8.toFixed(1)} ms`).toBeLessThan(24);
  });
  it('20000 chained ops (deeper than the JS stack would allow recursively)', () => {
    const x = f64([1], [1]);
    let h: Tensor = x;
    for (let i = 0; i < 20000; i++) h = h.add(1);
    h.sum().backward();
    expect(x.grad!.item()).toBe(1);
  });
});

describe('index tensors from integer typed arrays', () => {
  it('tensor(Uint16Array) is int32 with the values kept (GPT-2 token ids above 32767)', () => {
    const t = tensor(new Uint16Array([0, 1, 50256, 65535]));
    expect(t.dtype).toBe('int32');
    expect(flat(t)).toEqual([0, 1, 50256, 65535]);
    expect(tensor(new Uint16Array([1, 2, 3, 4]), { shape: [2, 2] }).shape).toEqual([2, 2]);
    for (const arr of [new Int32Array([1]), new Uint8Array([1]), new Int16Array([1]), new Uint32Array([1]), new BigInt64Array([1n])]) {
      expect(tensor(arr).dtype).toBe('int32');
    }
  });
  it('embedding and crossEntropy accept them, and the gradient scatter-adds repeated ids', () => {
    const w = tensor([[1, 2], [3, 4], [5, 6]], { dtype: 'float64', requiresGrad: true });
    const idx = tensor(new Uint16Array([2, 0, 2]));
    const e = F.embedding(idx, w);
    expect(e.toArray()).toEqual([[5, 6], [1, 2], [5, 6]]);
    e.sum().backward();
    expect(w.grad!.toArray()).toEqual([[1, 1], [0, 0], [2, 2]]);
    const loss = F.crossEntropy(tensor([[0, 0, 0], [0, 0, 0]]), tensor(new Uint16Array([1, 2])));
    expect(loss.item()).toBeCloseTo(Math.log(3), 6);
  });
  it('embedding keeps the index shape: [B, T] ids give [B, T, C]', () => {
    const idx = tensor(new Uint16Array([0, 1, 2, 1, 0, 2]), { shape: [2, 3] });
    expect(F.embedding(idx, ones([3, 4])).shape).toEqual([2, 3, 4]);
  });
});

describe('edge cases of backward rules', () => {
  it('pow(x, 0) has gradient 0, also at x = 0 (as torch), not NaN', () => {
    const x = f64([0, 2, -3], [3]);
    x.pow(0).sum().backward();
    expect(flat(x.grad!)).toEqual([0, 0, 0]);
  });
  it('relu/abs at exactly 0 and maximum ties follow torch: 0, 0 and an even split', () => {
    const x = f64([0], [1]);
    x.relu().add(x.abs()).sum().backward();
    expect(flat(x.grad!)).toEqual([0]);
    const a = f64([1, 2], [2]), b = f64([1, 3], [2]);
    a.maximum(b).sum().backward();
    expect([flat(a.grad!), flat(b.grad!)]).toEqual([[0.5, 0], [0.5, 1]]);
  });
  it('a masked (-inf) softmax entry gets gradient 0, not NaN', () => {
    const x = f64([0, 5, 1], [3]);
    x.maskedFill(tensor([0, 1, 0]), -Infinity).softmax().mul(f64([1, 2, 3], [3], false)).sum().backward();
    expect(flat(x.grad!).every(Number.isFinite)).toBe(true);
    expect(flat(x.grad!)[1]).toBe(0);
  });
});

describe('gradient shapes are checked centrally', () => {
  it('a backward rule returning a gradient of the wrong shape fails naming the op and both shapes', () => {
    const x = tensor([1, 2, 3], { requiresGrad: true });
    const bad = fromOp('myOp', x.storage, x.shape, [x], () => [tensor([1, 2])]);
    expect(() => bad.sum().backward()).toThrow(/myOp backward: gradient shape \[2\] does not match the input \[3\]/);
  });
  it('a gradient in another dtype is cast to the leaf dtype', () => {
    const x = tensor([1, 2], { dtype: 'float64', requiresGrad: true });
    x.float().mul(3).half().sum().backward();
    expect([x.grad!.dtype, flat(x.grad!)]).toEqual(['float64', [3, 3]]);
  });
});
