// linearCrossEntropy under autocast on any backend, checked against the js backend's composite
// (torch.autocast's linear in the half type, then the float32 loss, differentiated op by op).

import { expect } from 'vitest';
import { F, autocast, tensor, type Backend } from '../../src/index.js';
import { JsBackend } from '../../src/tensor/backends/js.js';
import { convertHost } from '../../src/tensor/dtype.js';
import { Generator } from '../../src/tensor/random.js';

/** Loss, x's and w's gradients of linearCrossEntropy under autocast(dtype) on `be`. */
async function run(be: Backend, dtype: 'float16' | 'bfloat16', rows: number, cols: number, classes: number): Promise<Float32Array[]> {
  const g = new Generator(rows + cols + classes);
  const vals = (n: number): Float32Array => Float32Array.from({ length: n }, () => 2 * g.random() - 1);
  const x = tensor(vals(rows * cols), { shape: [rows, cols], backend: be, requiresGrad: true });
  const w = tensor(vals(classes * cols), { shape: [classes, cols], backend: be, requiresGrad: true });
  const t = tensor(Int32Array.from({ length: rows }, (_, i) => (i * 7) % classes), { backend: be });
  const loss = autocast(dtype, () => F.linearCrossEntropy(x, w, t));
  expect(loss.dtype).toBe('float32');
  loss.backward();
  return Promise.all([loss, x.grad!, w.grad!].map(async (v) => Float32Array.from(await v.data())));
}

/**
 * The fused kernel of `be` against the composite on js: the gradients are values of the half type
 * (rounded where autocast stores them) and agree with the composite's to about one half ulp: a
 * float32 sum taken in another order may round a logit's gradient the other way, which moves a
 * gradient by one ulp of its largest terms (a twentieth of the largest gradient covers it); the
 * loss to float32 rounding. (float16 at many classes underflows each logit's gradient, p / rows, to
 * 0 or a subnormal: there any order flips it, so it is checked at few classes.)
 */
export async function expectAutocastLinearCrossEntropy(be: Backend, rows = 150, cols = 6, classes = 11,
  dtypes: readonly ('float16' | 'bfloat16')[] = ['bfloat16', 'float16']): Promise<void> {
  for (const dtype of dtypes) {
    const [want, got] = [await run(new JsBackend(), dtype, rows, cols, classes), await run(be, dtype, rows, cols, classes)];
    expect(Math.abs(got[0]![0]! - want[0]![0]!), `${dtype} loss`).toBeLessThan(1e-5 * Math.abs(want[0]![0]!));
    const ulp = dtype === 'bfloat16' ? 2 ** -7 : 2 ** -10; // the spacing relative to the value's power of two
    for (const i of [1, 2]) {
      const asHalf = convertHost(convertHost(got[i]!, 'float32', dtype), dtype, 'float32');
      expect(Array.from(got[i]!), `${dtype} gradient ${i} is rounded to ${dtype}`).toEqual(Array.from(asHalf));
      let scale = 0;
      for (const v of want[i]!) scale = Math.max(scale, Math.abs(v));
      want[i]!.forEach((w, j) => expect(Math.abs(got[i]![j]! - w), `${dtype} gradient ${i}[${j}]`).toBeLessThanOrEqual(ulp * (Math.abs(w) + 0.05 * scale)));
    }
  }
}
