// What each step of docs/WORKFLOW.md costs on this machine's CPU, measured in one run so the table
// there can cite it: GPT-2 tokenizing rate per thread, GPT-2 124M forward and training step on
// the wasm backend, sampling and HellaSwag scoring with the default (nano) model.
// `npm run bench -- --only=workflow`.

import { join } from 'node:path';
import { EmbeddedCorpusSource } from '../src/data/sources.js';
import { BpeTokenizer, trainBpe } from '../src/data/bpe.js';
import { tokenizeDocuments } from '../src/data/tokenize-pool.js';
import { GPT, GPT_PRESETS } from '../src/nn/gpt.js';
import { configureOptimizers } from '../src/optim/index.js';
import { getBackend, setBackend } from '../src/tensor/backend.js';
import { createWasmBackend } from '../src/tensor/backends/wasm/index.js';
import { manualSeed } from '../src/tensor/random.js';
import { noGrad, tensor } from '../src/tensor/index.js';
import { evaluateHellaswag } from '../src/train/hellaswag.js';
import { sample } from '../src/train/generate-text.js';

export interface CostRow { config: string; value: number; unit: string; extra?: string }

const seconds = async (f: () => Promise<unknown> | unknown): Promise<number> => {
  const t0 = performance.now();
  await f();
  return (performance.now() - t0) / 1000;
};

export async function benchWorkflowCosts(repo: string, log: (r: CostRow) => void): Promise<void> {
  // 1. tokenizing: GPT-2's BPE on this thread over the first 20,000 sentences of the embedded corpus
  const docs: string[] = [];
  for await (const d of new EmbeddedCorpusSource().documents(0)) { docs.push(d); if (docs.length === 20_000) break; }
  let tokens = 0;
  const tok = await seconds(async () => { for await (const b of tokenizeDocuments(docs, { workers: 0 })) tokens += b.tokens.length; });
  log({ config: 'tokenize (GPT-2 BPE, 1 thread)', value: tokens / tok, unit: 'tok/s', extra: `${tokens} tokens of 20,000 sentences` });

  const before = getBackend();
  setBackend(createWasmBackend({ threads: 2 }));
  try {
    // 2. GPT-2 124M on the wasm backend: a 4 x 20-token forward, and one training step of 1 x 64 tokens
    manualSeed(0);
    const gpt2 = new GPT(GPT_PRESETS.gpt2!);
    const idx = (B: number, T: number): ReturnType<typeof tensor> => tensor(Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % 50257), { shape: [B, T] });
    const x4 = idx(4, 20);
    await seconds(() => noGrad(() => gpt2.forward(x4).logits.data())); // warm-up
    const fwd = await seconds(() => noGrad(() => gpt2.forward(x4).logits.data()));
    log({ config: 'GPT-2 124M forward 4 x 20', value: fwd, unit: 's', extra: `${(80 / fwd).toFixed(1)} tok/s` });
    const opt = configureOptimizers(gpt2, 0.1, 6e-4);
    const x = idx(1, 64), y = idx(1, 64);
    const step = async (): Promise<void> => { opt.zeroGrad(); const loss = gpt2.forward(x, y).loss!; loss.backward(); opt.step(); await loss.data(); };
    await seconds(step);
    const st = await seconds(step);
    log({ config: 'GPT-2 124M train step 1 x 64', value: st, unit: 's', extra: `${(64 / st).toFixed(1)} tok/s; a 524,288-token step: ${(524_288 / (64 / st) / 3600).toFixed(1)} h` });

    // 3-4. the default model (nano, its 1,024-token vocabulary): 4 x 32 sampled tokens, and HellaSwag per example
    manualSeed(0);
    const nano = new GPT({ ...GPT_PRESETS.nano!, vocabSize: 1024 });
    const bpe = new BpeTokenizer(trainBpe(docs.slice(0, 5000), 1024)); // a stand-in for the corpus's: the same size
    const s = await sample(nano, { prompt: "Hello, I'm a language model,", numSamples: 4, maxTokens: 32, topK: 50, temperature: 1, seed: 42, kvCache: true }, bpe);
    log({ config: 'nano: sample 4 x 32 (KV cache)', value: s.seconds, unit: 's' });
    const n = 10;
    const h = await seconds(() => evaluateHellaswag(nano, join(repo, 'test', 'fixtures', 'hellaswag_examples.jsonl'), { limit: n, print: () => {}, progress: false, tokenizer: bpe }));
    log({ config: 'nano: HellaSwag per example', value: h / n, unit: 's', extra: `${n} examples` });
  } finally {
    setBackend(before);
  }
}
