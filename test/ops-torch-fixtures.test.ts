// Every case of test/fixtures/torch_ops.json (PyTorch, float64; layout in test/fixtures/README.md)
// run through the engine in float64: the outputs, and the gradients of sum_i (out_i * G_i).sum()
// w.r.t. every float input, must match torch to ~1e-10.
import { readFileSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { F, argmax, cat, clamp, matmul, min, setBackend, stack, std, tensor, type Tensor } from '../src/index.js';
import * as ops from '../src/tensor/ops.js';
import { expectClose } from './helpers/prop.js';

interface FxTensor { shape: number[]; dtype: 'float64' | 'float32' | 'int64' | 'bool'; data: number[] }
interface FxCase {
  name: string; op: string; args: Record<string, unknown>; input_names: string[];
  inputs: FxTensor[]; outputs: FxTensor[]; G: FxTensor[]; grads: (FxTensor | null)[];
}
const fixture = JSON.parse(readFileSync(new URL('./fixtures/torch_ops.json', import.meta.url), 'utf8')) as { dtype: string; cases: FxCase[] };

function load(t: FxTensor): Tensor {
  if (t.dtype === 'int64') return tensor(Int32Array.from(t.data), { shape: t.shape });
  if (t.dtype === 'bool') return tensor(Float64Array.from(t.data), { shape: t.shape, dtype: 'float64' });
  return tensor(Float64Array.from(t.data), { shape: t.shape, dtype: 'float64', requiresGrad: true });
}

/** Run the recorded op on the engine; returns its outputs (always a list). */
function run(c: FxCase, xs: Tensor[]): Tensor[] {
  const a = c.args;
  const [x, y] = xs as [Tensor, Tensor];
  const scalar = a.scalar as number | undefined;
  const dims = a.dim === null ? undefined : (a.dim as number[] | number | undefined);
  switch (c.op) {
    case 'add': case 'sub': case 'mul': case 'div': {
      const f = ops[c.op];
      if (scalar === undefined) return [f(x, y)];
      return [a.scalar_first ? f(scalar, x) : f(x, scalar)];
    }
    case 'neg': case 'exp': case 'log': case 'sqrt': case 'tanh': case 'relu': return [x[c.op]()];
    case 'gelu': expect(a.approximate).toBe('tanh'); return [x.gelu()];
    case 'pow': return [x.pow(a.exponent as number)];
    case 'matmul': return [matmul(x, y)];
    case 'sum': case 'mean': return [x[c.op](dims, a.keepdim as boolean)];
    case 'amax': return [x.max(dims, a.keepdim as boolean)];
    case 'reshape': return [x.reshape(a.shape as number[])];
    case 'transpose': return [x.transpose(a.dim0 as number, a.dim1 as number)];
    case 'permute': return [x.permute(a.dims as number[])];
    case 'narrow': return [x.narrow(a.dim as number, a.start as number, a.length as number)];
    case 'cat': return [cat(xs, a.dim as number)];
    case 'split': return x.split(a.split_size as number | number[], a.dim as number);
    case 'softmax': return [F.softmax(x, a.dim as number)];
    case 'log_softmax': return [F.logSoftmax(x, a.dim as number)];
    case 'cross_entropy': return [F.crossEntropy(x, y, { reduction: a.reduction as 'mean' | 'sum' | 'none' })];
    case 'layer_norm': {
      expect(a.normalized_shape).toEqual([x.shape[x.ndim - 1]]);
      return [F.layerNorm(x, y, xs[2]!, a.eps as number)];
    }
    case 'embedding': return [F.embedding(y, x)]; // inputs are (weight, idx)
    case 'masked_fill': return [x.maskedFill(y, a.value as number)];
    case 'scaled_dot_product_attention':
      return [F.scaledDotProductAttention(x, y, xs[2]!, { isCausal: a.is_causal as boolean, scale: a.scale as number })];
    case 'sigmoid': return [x.sigmoid()];
    case 'clamp': return [clamp(x, a.min as number | null, a.max as number | null)];
    case 'amin': return [min(x, dims, a.keepdim as boolean)];
    case 'std': return [std(x, dims, a.keepdim as boolean, a.correction as number)];
    case 'stack': return [stack(xs, a.dim as number)];
    case 'clone': return [x.clone()];
    case 'mse_loss': return [F.mseLoss(x, y, { reduction: a.reduction as 'mean' | 'sum' })];
    case 'nll_loss': return [F.nllLoss(x, y, { reduction: a.reduction as 'mean' })];
    case 'argmax': return [argmax(x, a.dim as number)];
    default: throw new Error(`torch fixture: no engine dispatch for op '${c.op}' (case ${c.name})`);
  }
}

const data = (t: Tensor): number[] => Array.from(t.dataSync());
// float64 throughout: both sides do the same math in a (possibly) different summation order
const RTOL = 1e-10, ATOL = 1e-12;

// float64 on every CPU backend: js composes the ops, wasm runs its fused kernels' float64 paths
for (const backend of ['js', 'wasm'] as const) {
describe(`float64 (${backend} backend)`, () => {
  beforeAll(() => { setBackend(backend); });
  afterAll(() => { setBackend('js'); });

  describe('PyTorch float64 fixtures (torch_ops.json)', () => {
    it('covers every op named in the README', () => {
      const want = ['add', 'sub', 'mul', 'div', 'neg', 'exp', 'log', 'sqrt', 'tanh', 'relu', 'pow', 'gelu', 'matmul', 'sum', 'mean', 'amax',
        'reshape', 'transpose', 'permute', 'narrow', 'cat', 'split', 'softmax', 'log_softmax', 'cross_entropy', 'layer_norm', 'embedding',
        'masked_fill', 'scaled_dot_product_attention',
        'sigmoid', 'clamp', 'amin', 'std', 'stack', 'clone', 'mse_loss', 'nll_loss', 'argmax'];
      expect(fixture.dtype).toBe('float64');
      expect(new Set(fixture.cases.map((c) => c.op))).toEqual(new Set(want));
    });

    for (const c of fixture.cases) {
      it(`${c.name}`, () => {
        const xs = c.inputs.map(load);
        const outs = run(c, xs);
        expect(outs.length, 'number of outputs').toBe(c.outputs.length);
        if (c.outputs[0]!.dtype === 'int64') { // indices: exact, and nothing to differentiate
          expect(outs[0]!.dtype).toBe('int32');
          expect(outs[0]!.shape).toEqual(c.outputs[0]!.shape);
          expect(data(outs[0]!)).toEqual(c.outputs[0]!.data);
          return;
        }
        outs.forEach((o, i) => {
          const want = c.outputs[i]!;
          expect(o.shape, `output ${i} shape`).toEqual(want.shape);
          expect(o.dtype).toBe('float64');
          expectClose(data(o), want.data, RTOL, ATOL, `${c.name} output ${i}`);
        });
        const objective = outs.map((o, i) => o.mul(load({ ...c.G[i]!, dtype: 'float64' }).detach()).sum()).reduce((p, q) => p.add(q));
        objective.backward();
        c.grads.forEach((g, j) => {
          const x = xs[j]!;
          if (g === null) { expect(x.grad, `${c.input_names[j]} is a constant`).toBeNull(); return; }
          expect(x.grad, `grad of ${c.input_names[j]}`).not.toBeNull();
          expect(x.grad!.shape, `grad of ${c.input_names[j]} shape`).toEqual(g.shape);
          expectClose(data(x.grad!), g.data, RTOL, ATOL, `${c.name} grad ${c.input_names[j]}`);
        });
      });
    }
  });
});
}
