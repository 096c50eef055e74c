// Loads test/fixtures/torch_gpt_tiny.json (made by make_torch_fixtures.py) into a GPT.
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { GPT, tensor, type Tensor } from '../../src/index.js';

export interface FixTensor { shape: number[]; dtype: string; data: number[] }
export interface TorchGptFixture {
  config: { block_size: number; vocab_size: number; n_layer: number; n_head: number; n_embd: number };
  B: number; T: number;
  params: (FixTensor & { name: string })[];
  idx: FixTensor; targets: FixTensor; logits: FixTensor; loss: number;
  grads: (FixTensor & { name: string })[] | Record<string, FixTensor>;
  train: {
    grad_accum_steps: number; max_steps: number; max_lr: number; min_lr: number; warmup_steps: number;
    weight_decay: number; betas: [number, number]; eps: number; clip_grad_norm: number;
    micro_batches: { step: number; micro_step: number; x: FixTensor; y: FixTensor }[];
    steps: { step: number; loss: number; norm: number; lr: number }[];
    final_params: (FixTensor & { name: string })[];
  };
}

export function loadTorchGpt(): TorchGptFixture {
  const p = fileURLToPath(new URL('../fixtures/torch_gpt_tiny.json', import.meta.url));
  return JSON.parse(readFileSync(p, 'utf8')) as TorchGptFixture;
}

export function gptFromFixture(fx: TorchGptFixture, backend?: string): GPT {
  const c = fx.config;
  const model = new GPT({ blockSize: c.block_size, vocabSize: c.vocab_size, nLayer: c.n_layer, nHead: c.n_head, nEmbd: c.n_embd });
  const sd = new Map<string, Tensor>();
  for (const p of fx.params) sd.set(p.name, tensor(Float32Array.from(p.data), { shape: p.shape, backend }));
  model.loadStateDict(sd);
  return model;
}

export function ids(t: FixTensor, backend?: string): Tensor {
  return tensor(Int32Array.from(t.data), { shape: t.shape, backend });
}

export function gradList(fx: TorchGptFixture): (FixTensor & { name: string })[] {
  return Array.isArray(fx.grads) ? fx.grads : Object.entries(fx.grads).map(([name, t]) => ({ name, ...t }));
}

/** Normwise relative error max|a - b| / max|b| (element-wise ratios blow up on near-zero entries). */
export function worstRel(a: ArrayLike<number>, b: ArrayLike<number>): number {
  let diff = 0, scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / (scale || 1);
}
