// SGD (momentum, dampening, Nesterov, weight decay) and Adam (betas, eps, L2 weight decay) against
// torch.optim's runs on a least-squares problem (test/fixtures/torch_optim.json, float32), and the
// first-hour modules and creators: Sequential with torch's state-dict names, ReLU, GELU, Dropout,
// randint, eye.

import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { Adam, Dropout, GELU, Linear, ReLU, SGD, Sequential, eye, manualSeed, randint, tensor, type Tensor } from '../src/index.js';
import { expectClose } from './helpers/prop.js';

interface Fx { shape: number[]; data: number[] }
const fx = JSON.parse(readFileSync(new URL('./fixtures/torch_optim.json', import.meta.url), 'utf8')) as {
  x: Fx; y: Fx; w0: Fx; b0: Fx;
  runs: { name: string; optimizer: 'SGD' | 'Adam'; options: Record<string, number | boolean | number[]>; steps: { loss: number; w: Fx; b: Fx }[] }[];
};
const t = (f: Fx, requiresGrad = false): Tensor => tensor(Float32Array.from(f.data), { shape: f.shape, requiresGrad });

describe('SGD and Adam as torch.optim', () => {
  for (const run of fx.runs) {
    it(`${run.name}: 6 steps equal torch's (float32)`, () => {
      const w = t(fx.w0, true), b = t(fx.b0, true), x = t(fx.x), y = t(fx.y);
      const o = run.options;
      const opt = run.optimizer === 'SGD'
        ? new SGD([w, b], { lr: o.lr as number, momentum: o.momentum as number | undefined, dampening: o.dampening as number | undefined, nesterov: o.nesterov as boolean | undefined, weightDecay: o.weight_decay as number | undefined })
        : new Adam([w, b], { lr: o.lr as number, betas: o.betas as [number, number] | undefined, eps: o.eps as number | undefined, weightDecay: o.weight_decay as number | undefined });
      for (const want of run.steps) {
        opt.zeroGrad();
        const loss = x.matmul(w).add(b).sub(y).pow(2).mean();
        loss.backward();
        opt.step();
        expect(Math.abs(loss.item() - want.loss) / want.loss).toBeLessThan(1e-5);
        expectClose(Array.from(w.dataSync()), want.w.data, 1e-5, 1e-6, `${run.name} w`);
        expectClose(Array.from(b.dataSync()), want.b.data, 1e-5, 1e-6, `${run.name} b`);
      }
    });
  }
  it('refuses Nesterov without momentum, as torch', () => {
    expect(() => new SGD([tensor([1], { requiresGrad: true })], { nesterov: true })).toThrow(/Nesterov momentum needs momentum > 0/);
  });
});

describe('modules and creators of the first hour', () => {
  it("Sequential chains its modules and names them 0, 1, ... as torch's state dict", () => {
    manualSeed(0);
    const net = new Sequential(new Linear(3, 5), new ReLU(), new Linear(5, 2), new GELU(), new Dropout(0.5));
    expect([...net.stateDict().keys()]).toEqual(['0.weight', '0.bias', '2.weight', '2.bias']);
    net.eval(); // dropout is the identity in eval
    const x = tensor([[1, -2, 0.5]]);
    const l0 = net[0] as Linear, l2 = net[2] as Linear;
    const want = l2.forward(l0.forward(x).relu()).gelu();
    expect(Array.from(net.forward(x).dataSync())).toEqual(Array.from(want.dataSync()));
    net.train();
    const d = new Dropout(1).forward(x);
    expect(Array.from(d.dataSync(), Math.abs)).toEqual([0, 0, 0]); // (-2 * 0 is -0, as in torch)
  });

  it('randint draws int32 in [low, high) from the seeded generator; eye is the identity', () => {
    manualSeed(5);
    const r = randint(-3, 4, [1000]);
    expect(r.dtype).toBe('int32');
    const v = Array.from(r.dataSync());
    expect(Math.min(...v)).toBe(-3);
    expect(Math.max(...v)).toBe(3);
    manualSeed(5);
    expect(Array.from(randint(-3, 4, [1000]).dataSync())).toEqual(v);
    expect(() => randint(2, 2, [1])).toThrow(/low < high/);
    expect(Array.from(eye(2, 3).dataSync())).toEqual([1, 0, 0, 0, 1, 0]);
  });
});
