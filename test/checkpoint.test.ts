// Tests for src/train/checkpoint.ts: save/latest/load round trips, completeness by sidecar, and
// loadWeights' detection of HF directories vs our checkpoints (HF side: fixtures written by Python).
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { copyFile, mkdir, mkdtemp, readFile, readdir, rm, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSafetensors } from '../src/data/safetensors.js';
import { gpt2ParamSpecs, hfGpt2ConfigJson, readHfGpt2Dir, type Gpt2Config, type WeightMap, type Weight } from '../src/train/hf-gpt2.js';
import { saveCheckpoint, latestCheckpoint, listCheckpoints, loadCheckpoint, loadWeights } from '../src/train/checkpoint.js';

const FIX = join(import.meta.dirname, 'fixtures');
const TINY: Gpt2Config = { nLayer: 2, nHead: 2, nEmbd: 8, blockSize: 16, vocabSize: 16 };
let dir: string;
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'ckpt-test-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

const bits = (a: Float32Array): number[] => [...new Uint32Array(a.buffer, a.byteOffset, a.length)];

function makeWeights(c: Gpt2Config, salt: number): WeightMap {
  const w: WeightMap = new Map();
  gpt2ParamSpecs(c).forEach((s, k) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    w.set(s.name, { shape: s.shape, data: Float32Array.from({ length: n }, (_, i) => Math.cos(salt + k * 97 + i) * 0.02) });
  });
  w.set('lm_head.weight', w.get('transformer.wte.weight')!);
  return w;
}
function makeOptim(w: WeightMap): Map<string, Weight> {
  const o = new Map<string, Weight>();
  for (const [k, v] of w) {
    if (k === 'lm_head.weight') continue;
    o.set(`${k}.exp_avg`, { shape: v.shape, data: v.data.map((x) => x * 0.1) });
    o.set(`${k}.exp_avg_sq`, { shape: v.shape, data: v.data.map((x) => x * x) });
  }
  return o;
}
function expectSame(a: WeightMap | Map<string, Weight>, b: WeightMap | Map<string, Weight>): void {
  expect(new Set(a.keys())).toEqual(new Set(b.keys()));
  for (const [k, v] of a) {
    expect(b.get(k)!.shape, k).toEqual(v.shape);
    expect(bits(b.get(k)!.data), k).toEqual(bits(v.data));
  }
}

describe('save / latest / load', () => {
  it('round trips weights, optimizer state, config, step and meta bit-exactly', async () => {
    const out = join(dir, 'run1');
    await mkdir(out);
    const w = makeWeights(TINY, 1);
    const o = makeOptim(w);
    const paths = await saveCheckpoint(out, 250, { config: TINY, weights: w, optimizerState: o, meta: { val_loss: 3.28125, lr: 6e-4, shard: 3, note: 'x' } });
    expect(paths.sidecar).toBe(join(out, 'model_00250.json'));
    expect((await readdir(out)).sort()).toEqual(['model_00250.json', 'model_00250.safetensors', 'optim_00250.safetensors']);
    expect(await latestCheckpoint(out)).toBe(paths.sidecar);
    const c = await loadCheckpoint(paths.sidecar);
    expect(c.step).toBe(250);
    expect(c.config).toEqual(TINY);
    expect(c.meta).toEqual({ val_loss: 3.28125, lr: 6e-4, shard: 3, note: 'x' });
    expectSame(w, c.weights);
    expectSame(o, c.optimizerState);
    // also via the model file's path, and without the optimizer
    const c2 = await loadCheckpoint(paths.model, { optimizer: false });
    expect(c2.optimizerState.size).toBe(0);
    expectSame(w, c2.weights);
    // the sidecar reads like build-nanogpt's checkpoint dict
    const side = JSON.parse(await readFile(paths.sidecar, 'utf8')) as Record<string, unknown>;
    expect(side).toMatchObject({ step: 250, val_loss: 3.28125, config: TINY, model: 'model_00250.safetensors', optimizer: 'optim_00250.safetensors' });
  });

  it('the model file uses HF names and Conv1D layout, so HF-style loading reads it', async () => {
    const out = join(dir, 'hfcompat');
    await mkdir(out);
    const w = makeWeights(TINY, 2);
    const { model } = await saveCheckpoint(out, 7, { config: TINY, weights: w });
    const f = await openSafetensors(model);
    expect(f.info('h.0.attn.c_attn.weight').shape).toEqual([8, 24]);
    expect(f.has('transformer.wte.weight')).toBe(false);
    expect(f.metadata.format).toBe('pt');
    await f.close();
    const hf = join(dir, 'hfcompat-dir');
    await mkdir(hf);
    await copyFile(model, join(hf, 'model.safetensors'));
    await writeFile(join(hf, 'config.json'), JSON.stringify(hfGpt2ConfigJson(TINY)));
    expectSame(w, (await readHfGpt2Dir(hf)).weights);
  });

  it('latest is the highest step among complete checkpoints (numeric order, sidecar required)', async () => {
    const out = join(dir, 'run2');
    await mkdir(out);
    const w = makeWeights(TINY, 3);
    expect(await latestCheckpoint(out)).toBeNull();
    expect(await latestCheckpoint(join(dir, 'no-such-dir'))).toBeNull();
    await saveCheckpoint(out, 99999, { config: TINY, weights: w });
    await saveCheckpoint(out, 100000, { config: TINY, weights: w, optimizerState: makeOptim(w) });
    expect(await latestCheckpoint(out)).toBe(join(out, 'model_100000.json'));
    // a save interrupted before its sidecar: the model file exists, the checkpoint does not
    await saveCheckpoint(out, 200000, { config: TINY, weights: w });
    await unlink(join(out, 'model_200000.json'));
    expect(await latestCheckpoint(out)).toBe(join(out, 'model_100000.json'));
    await expect(loadCheckpoint(join(out, 'model_200000.safetensors'))).rejects.toThrow(/sidecar .*model_200000\.json is missing/);
    // an optimizer file named by the sidecar but gone: incomplete too
    await unlink(join(out, 'optim_100000.safetensors'));
    expect(await latestCheckpoint(out)).toBe(join(out, 'model_99999.json'));
    expect((await listCheckpoints(out)).map((c) => c.step)).toEqual([99999]);
    // no temp files left behind by any save
    expect((await readdir(out)).filter((n) => n.includes('.tmp'))).toEqual([]);
  });

  it('overwriting a step replaces it completely', async () => {
    const out = join(dir, 'run3');
    await mkdir(out);
    await saveCheckpoint(out, 5, { config: TINY, weights: makeWeights(TINY, 4), meta: { val_loss: 9 } });
    const w = makeWeights(TINY, 5);
    await saveCheckpoint(out, 5, { config: TINY, weights: w, meta: { val_loss: 4 } });
    const c = await loadCheckpoint(join(out, 'model_00005.json'));
    expect(c.meta.val_loss).toBe(4);
    expectSame(w, c.weights);
  });

  it('refuses reserved meta keys, bad steps and foreign sidecars', async () => {
    const out = join(dir, 'run4');
    await mkdir(out);
    const w = makeWeights(TINY, 6);
    await expect(saveCheckpoint(out, 1, { config: TINY, weights: w, meta: { step: 3 } })).rejects.toThrow(/meta keys step are reserved/);
    await expect(saveCheckpoint(out, -1, { config: TINY, weights: w })).rejects.toThrow(/step must be a non-negative integer/);
    await writeFile(join(out, 'model_00001.json'), JSON.stringify({ hello: 1 }));
    await expect(loadCheckpoint(join(out, 'model_00001.json'))).rejects.toThrow(/not a tapegrad checkpoint sidecar/);
    await expect(loadCheckpoint(join(out, 'weights.bin'))).rejects.toThrow(/not a checkpoint path/);
  });
});

describe('loadWeights: what --init-from accepts', () => {
  let run: string;
  let w: WeightMap;
  beforeAll(async () => {
    run = join(dir, 'init');
    await mkdir(run);
    w = makeWeights(TINY, 7);
    await saveCheckpoint(run, 10, { config: TINY, weights: makeWeights(TINY, 8) });
    await saveCheckpoint(run, 20, { config: TINY, weights: w, optimizerState: makeOptim(w) });
  });

  it('an HF directory (Python-written fixture), also via its config.json, with vocab padding', async () => {
    const a = await loadWeights(join(FIX, 'hf_tiny_gpt2'));
    expect(a.source).toBe('hf');
    expect(a.step).toBeNull();
    expect(a.config.vocabSize).toBe(11);
    const b = await loadWeights(join(FIX, 'hf_tiny_gpt2', 'config.json'), { padVocabTo: 16 });
    expect(b.config.vocabSize).toBe(16);
    expect(b.weights.get('transformer.wte.weight')!.shape).toEqual([16, 8]);
  });

  it('a sidecar, a model file, or a run directory (its latest checkpoint)', async () => {
    for (const p of [join(run, 'model_00020.json'), join(run, 'model_00020.safetensors'), run]) {
      const r = await loadWeights(p);
      expect(r.source, p).toBe('checkpoint');
      expect(r.step, p).toBe(20);
      expect(r.path, p).toBe(join(run, 'model_00020.json'));
      expect(r.config).toEqual(TINY);
      expectSame(w, r.weights);
    }
  });

  it('a model file copied away from its sidecar, via the config in its metadata', async () => {
    const p = join(dir, 'lonely.safetensors');
    await copyFile(join(run, 'model_00020.safetensors'), p);
    const r = await loadWeights(p);
    expect(r).toMatchObject({ source: 'checkpoint', step: 20, config: TINY });
    expectSame(w, r.weights);
  });

  it('clear errors for optimizer files, missing paths and unrecognised directories', async () => {
    await expect(loadWeights(join(run, 'optim_00020.safetensors'))).rejects.toThrow(/is optimizer state, not weights/);
    await expect(loadWeights(join(dir, 'nope'))).rejects.toThrow(/does not exist; pass an HF GPT-2 directory/);
    const empty = join(dir, 'emptydir');
    await mkdir(empty);
    await expect(loadWeights(empty)).rejects.toThrow(/has neither config\.json .* nor a complete checkpoint/);
  });
});
