// GPT parity with PyTorch (build-nanogpt's model, fixtures by test/fixtures/make_torch_fixtures.py):
// logits, loss, every parameter gradient, then 5 AdamW steps with clipping, accumulation and the schedule.
import { describe, expect, it } from 'vitest';
import { clipGradNorm, configureOptimizers, getLr } from '../src/index.js';
import { gptFromFixture, gradList, ids, loadTorchGpt, worstRel } from './helpers/torch-gpt.js';

const fx = loadTorchGpt();

describe('GPT parity with PyTorch (tiny config)', () => {
  it('forward logits and loss, backward gradients (rel 1e-4)', () => {
    const model = gptFromFixture(fx);
    const { logits, loss } = model.forward(ids(fx.idx), ids(fx.targets));
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
      const rel = worstRel(p!.grad!.dataSync(), g.data);
      expect(rel, `grad of ${g.name}`).toBeLessThan(1e-4);
    }
  });

  it('5 training steps: AdamW groups, accumulation, clipping, warmup + cosine (rel 1e-4)', () => {
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
