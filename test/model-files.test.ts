// Tests for src/train/model-files.ts, the web page's way to the CLI's files: a model directory's
// files held in memory are read as loadWeights reads them from disk (the HF side written by Python's
// transformers, test/fixtures/hf_tiny_gpt2), and the files it makes load with loadWeights.
import { describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadWeights } from '../src/train/checkpoint.js';
import { modelFiles, weightsFromFiles } from '../src/train/model-files.js';
import type { WeightMap } from '../src/train/hf-gpt2.js';

const HF = join(import.meta.dirname, 'fixtures', 'hf_tiny_gpt2');
const bits = (a: Float32Array): number[] => [...new Uint32Array(a.buffer, a.byteOffset, a.length)];
const same = (a: WeightMap, b: WeightMap): void => {
  expect([...a.keys()].sort()).toEqual([...b.keys()].sort());
  for (const [k, w] of a) expect(bits(w.data), k).toEqual(bits(b.get(k)!.data));
};

describe('model files in memory', () => {
  it("reads an HF directory's config.json + model.safetensors as loadWeights does", async () => {
    const files = new Map([['config.json', await readFile(join(HF, 'config.json'))], ['model.safetensors', await readFile(join(HF, 'model.safetensors'))]]);
    const got = await weightsFromFiles(files);
    const want = await loadWeights(HF);
    expect(got.config).toEqual(want.config);
    expect(got.step).toBeNull();
    same(got.weights, want.weights);
  });

  it('makes model.safetensors + config.json that loadWeights reads back bit for bit, and a safetensors that stands alone', async () => {
    const { config, weights } = await loadWeights(HF);
    const f = await modelFiles(config, weights, 42);
    const dir = await mkdtemp(join(tmpdir(), 'model-files-'));
    try {
      await writeFile(join(dir, 'model.safetensors'), f['model.safetensors']);
      await writeFile(join(dir, 'config.json'), f['config.json']);
      const back = await loadWeights(dir);
      expect(back.source).toBe('hf');
      expect(back.config).toEqual(config);
      same(back.weights, weights);
      const alone = await weightsFromFiles(new Map([['model.safetensors', f['model.safetensors']]]));
      expect(alone.step).toBe(42);
      same(alone.weights, weights);
    } finally { await rm(dir, { recursive: true, force: true }); }
  });

  it('says which file is missing', async () => {
    const st = await readFile(join(HF, 'model.safetensors'));
    await expect(weightsFromFiles(new Map([['optim_00005.safetensors', st]]))).rejects.toThrow(/no model weights among optim_00005\.safetensors/);
    await expect(weightsFromFiles(new Map([['model.safetensors', st]]))).rejects.toThrow(/model\.safetensors: cannot tell the model's config: pick config\.json/);
    await expect(weightsFromFiles(new Map([['model.safetensors', st], ['config.json', new TextEncoder().encode('{oops')]]))).rejects.toThrow(/config\.json: not valid JSON/);
  });
});
