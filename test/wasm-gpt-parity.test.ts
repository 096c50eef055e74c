// The GPT parity fixtures (PyTorch, build-nanogpt's model) on the wasm backend, through the
// engine's op layer: forward logits and loss, every parameter gradient (rel 1e-4), then 5
// AdamW steps with accumulation, clipping and the schedule — with 1 and 2 threads.
import { afterAll, describe, expect, it } from 'vitest';
import { clipGradNorm, configureOptimizers, getLr, setBackend } from '../src/index.js';
import { createWasmBackend, wasmSimdAvailable, type WasmBackend } from '../src/tensor/backends/wasm/index.js';
import { gptFromFixture, gradList, ids, loadTorchGpt, worstRel } from './helpers/torch-gpt.js';

const available = wasmSimdAvailable();
const fx = loadTorchGpt();
const made: WasmBackend[] = [];
afterAll(() => { setBackend('js'); for (const b of made) b.terminate(); });

describe.skipIf(!available).each([1, 2])('GPT parity with PyTorch on wasm (%i threads)', (threads) => {
  const use = (): void => { const b = createWasmBackend({ threads }); made.push(b); setBackend(b); };

  it('forward logits and loss, backward gradients (rel 1e-4)', () => {
    use();
    const model = gptFromFixture(fx);
    const { logits, loss } = model.forward(ids(fx.idx), ids(fx.targets));
    expect(logits.backend.name).toBe('wasm');
    expect(worstRel(logits.dataSync(), fx.logits.data)).toBeLessThan(1e-4);
    expect(Math.abs(loss!.item() - fx.loss) / fx.loss).toBeLessThan(1e-5);
    loss!.backward();
    const named = new Map(model.namedParameters());
    for (const g of gradList(fx)) {
      expect(worstRel(named.get(g.name)!.grad!.dataSync(), g.data), `grad of ${g.name}`).toBeLessThan(1e-4);
    }
  });

  it('5 training steps: AdamW, accumulation, clipping, warmup + cosine (rel 1e-4)', () => {
    use();
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
      opt.setLr(getLr(want.step, { maxLr: tr.max_lr, minLr: tr.min_lr, warmupSteps: tr.warmup_steps, maxSteps: tr.max_steps }));
      opt.step();
      expect(Math.abs(lossAccum - want.loss) / want.loss, `loss at step ${want.step}`).toBeLessThan(1e-4);
      expect(Math.abs(norm - want.norm) / want.norm, `norm at step ${want.step}`).toBeLessThan(1e-4);
    }
    // as in gpt-parity.test.ts: Adam's scale-free update moves near-zero-gradient entries by ~lr
    const named = new Map(model.namedParameters());
    for (const p of tr.final_params) {
      expect(worstRel(named.get(p.name)!.dataSync(), p.data), `final ${p.name}`).toBeLessThan(1e-3);
    }
  });
});
