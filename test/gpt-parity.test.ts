// GPT parity with PyTorch (build-nanogpt's model, fixtures by test/fixtures/make_torch_fixtures.py),
// on every CPU backend: logits, loss, every parameter gradient, then 5 AdamW steps with clipping,
// accumulation and the schedule. (The gpu backend runs the same checks in gpu-parity.test.ts.)
import { afterAll, describe, expect, it } from 'vitest';
import { clipGradNorm, configureOptimizers, getLr, setBackend, type Backend } from '../src/index.js';
import { createWasmBackend, wasmSimdAvailable, type WasmBackend } from '../src/tensor/backends/wasm/index.js';
import { gptFromFixture, gradList, ids, loadTorchGpt, worstRel } from './helpers/torch-gpt.js';

const fx = loadTorchGpt();
const made: WasmBackend[] = [];
afterAll(() => { setBackend('js'); for (const b of made) b.terminate(); });

const backends: { label: string; make: () => Backend | string; skip: boolean }[] = [
  { label: 'js', make: () => 'js', skip: false },
  ...[1, 2].map((threads) => ({
    label: `wasm, ${threads} thread${threads > 1 ? 's' : ''}`,
    make: () => { const b = createWasmBackend({ threads }); made.push(b); return b; },
    skip: !wasmSimdAvailable(),
  })),
];

describe.each(backends)('GPT parity with PyTorch (tiny config) on $label', ({ label, make, skip }) => {
  it.skipIf(skip)('forward logits and loss, backward gradients (rel 1e-4)', () => {
    setBackend(make());
    const model = gptFromFixture(fx);
    const { logits, loss } = model.forward(ids(fx.idx), ids(fx.targets));
    expect(logits.backend.name).toBe(label.split(',')[0]); // really computed on the backend under test
    expect(logits.shape).toEqual(fx.logits.shape);
    expect(worstRel(logits.dataSync(), fx.logits.data)).toBeLessThan(1e-4);
    expect(Math.abs(loss!.item() - fx.loss) / fx.loss).toBeLessThan(1e-5);
    loss!.backward();
    const named = new Map(model.namedParameters());
    const grads = gradList(fx);
    expect(grads.length).toBe(named.size);
    for (const g of grads) {
      const p = named.get(g.name);
      expect(p, g.name).toBeDefined();
      expect(worstRel(p!.grad!.dataSync(), g.data), `grad of ${g.name}`).toBeLessThan(1e-4);
    }
  });

  it.skipIf(skip)('5 training steps: AdamW groups, accumulation, clipping, warmup + cosine (rel 1e-4)', () => {
    setBackend(make());
    const tr = fx.train;
    const model = gptFromFixture(fx);
    const opt = configureOptimizers(model, tr.weight_decay, tr.max_lr);
    const params = model.parameters();
    for (const want of tr.steps) {
      opt.zeroGrad();
      let lossAccum = 0;
      for (const mb of tr.micro_batches.filter((m) => m.step === want.step)) {
        const { loss } = model.forward(ids(mb.x), ids(mb.y));
        const scaled = loss!.div(tr.grad_accum_steps);
        lossAccum += scaled.item();
        scaled.backward();
      }
      const norm = clipGradNorm(params, tr.clip_grad_norm).item();
      const lr = getLr(want.step, { maxLr: tr.max_lr, minLr: tr.min_lr, warmupSteps: tr.warmup_steps, maxSteps: tr.max_steps });
      expect(Math.abs(lr - want.lr) / want.lr).toBeLessThan(1e-12);
      opt.setLr(lr);
      opt.step();
      expect(Math.abs(lossAccum - want.loss) / want.loss, `loss at step ${want.step}`).toBeLessThan(1e-4);
      expect(Math.abs(norm - want.norm) / want.norm, `norm at step ${want.step}`).toBeLessThan(1e-4);
    }
    // Final weights: Adam's update m / sqrt(v) is scale-free, so components whose gradient is
    // float32 rounding noise (biases near zero) move by up to ~lr in either direction; 1e-3.
    const named = new Map(model.namedParameters());
    for (const p of tr.final_params) {
      expect(worstRel(named.get(p.name)!.dataSync(), p.data), `final ${p.name}`).toBeLessThan(1e-3);
    }
  });
});
