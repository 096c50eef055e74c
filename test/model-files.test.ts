// Tests for src/train/model-files.ts, the web page's way to the CLI's files: a model directory's
// files held in memory are read as loadWeights reads them from disk (the HF side written by Python's
// transformers, test/fixtures/hf_tiny_gpt2), and the files it makes load with loadWeights.
import { describe, expect, it } from 'vitest';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadTokenizerSpec, loadWeights } from '../src/train/checkpoint.js';
import { trainBpe } from '../src/data/bpe.js';
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
      expect([...f.keys()]).toEqual(['model.safetensors', 'config.json']); // GPT-2's tokenizer: no tokenizer file
      for (const [name, bytes] of f) await writeFile(join(dir, name), bytes);
      const back = await loadWeights(dir);
      expect(back.source).toBe('hf');
      expect(back.config).toEqual(config);
      expect(back.tokenizer).toEqual({ type: 'gpt2' });
      same(back.weights, weights);
      const alone = await weightsFromFiles(new Map([['model.safetensors', f.get('model.safetensors')!]]));
      expect(alone.step).toBe(42);
      same(alone.weights, weights);
    } finally { await rm(dir, { recursive: true, force: true }); }
  });

  it('carries a learned BPE: the tokenizer file, and the safetensors metadata when the file is alone', async () => {
    const { config, weights } = await loadWeights(HF);
    const tokenizer = trainBpe(['one two three two one two'], 262);
    const f = await modelFiles(config, weights, 3, tokenizer);
    expect([...f.keys()]).toEqual(['model.safetensors', 'config.json', 'tapegrad_tokenizer.json']);
    const dir = await mkdtemp(join(tmpdir(), 'model-files-'));
    try {
      for (const [name, bytes] of f) await writeFile(join(dir, name), bytes);
      expect((await loadWeights(dir)).tokenizer).toEqual(tokenizer);
      expect(await loadTokenizerSpec(dir)).toEqual(tokenizer);
      expect(await loadTokenizerSpec(join(dir, 'model.safetensors'))).toEqual(tokenizer);
      expect((await weightsFromFiles(f)).tokenizer).toEqual(tokenizer);
      expect((await weightsFromFiles(new Map([['model.safetensors', f.get('model.safetensors')!]]))).tokenizer).toEqual(tokenizer);
      // a tokenizer file that cannot be rebuilt is named, not read as GPT-2's
      await writeFile(join(dir, 'tapegrad_tokenizer.json'), JSON.stringify({ type: 'bpe', merges: [[999, 1]] }));
      await expect(loadWeights(dir)).rejects.toThrow(/tapegrad_tokenizer\.json: its tokenizer cannot be rebuilt \(BpeTokenizer: merge 0 is \[999,1\]/);
    } finally { await rm(dir, { recursive: true, force: true }); }
  });

  it('says which file is missing', async () => {
    const st = await readFile(join(HF, 'model.safetensors'));
    await expect(weightsFromFiles(new Map([['optim_00005.safetensors', st]]))).rejects.toThrow(/no model weights among optim_00005\.safetensors/);
    await expect(weightsFromFiles(new Map([['model.safetensors', st]]))).rejects.toThrow(/model\.safetensors: cannot tell the model's config: pick config\.json/);
    await expect(weightsFromFiles(new Map([['model.safetensors', st], ['config.json', new TextEncoder().encode('{oops')]]))).rejects.toThrow(/config\.json: not valid JSON/);
  });
});
