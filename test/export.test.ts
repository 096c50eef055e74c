// npm run export (src/train/export.ts): checkpoint -> Hugging Face GPT-2 directory. Round trip through
// --init-from bit for bit; names, shapes and Conv1D layout against the hub gpt2 key list
// (test/fixtures/hf_gpt2_124M_keys.json) and raw reads of the written file (transposes checked by index).
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { mkdtemp, readFile, readdir, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSafetensors, toFloat32 } from '../src/data/safetensors.js';
import { saveCheckpoint, loadWeights } from '../src/train/checkpoint.js';
import { gpt2ParamSpecs, type Gpt2Config, type WeightMap } from '../src/train/hf-gpt2.js';
import { exportHf, main } from '../src/train/export.js';

const FIX = join(import.meta.dirname, 'fixtures');
let dir: string;
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'export-test-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

// Sizes chosen so every dimension of the hub file maps to a distinct one here (768 -> 8, 2304 -> 24,
// 3072 -> 32, 1024 -> 16, 50257 -> 40), which makes a swapped transpose visible in the shapes alone.
const TINY: Gpt2Config = { nLayer: 2, nHead: 2, nEmbd: 8, blockSize: 16, vocabSize: 40 };
const DIM_MAP = new Map([[768, 8], [2304, 24], [3072, 32], [1024, 16], [50257, 40]]);

/** Deterministic, distinct weights with a few awkward float32 values (-0, subnormal, max). */
function makeWeights(c: Gpt2Config): WeightMap {
  const w: WeightMap = new Map();
  gpt2ParamSpecs(c).forEach((s, k) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    const data = Float32Array.from({ length: n }, (_, i) => Math.cos(k * 977 + i * 1.3) * (k + 1));
    data[0] = -0; data[n - 1] = 1e-42; if (n > 2) data[1] = 3.4028234663852886e38;
    w.set(s.name, { shape: s.shape, data });
  });
  w.set('lm_head.weight', w.get('transformer.wte.weight')!);
  return w;
}
const bits = (a: Float32Array): Uint32Array => new Uint32Array(a.buffer, a.byteOffset, a.length);

type KeyFixture = { tensors: { name: string; shape: number[]; ours: string | null }[] };

describe('export', () => {
  it('export then --init-from gives the identical arrays (bit for bit, from a checkpoint sidecar)', async () => {
    const weights = makeWeights(TINY);
    const ck = join(dir, 'run1');
    await saveCheckpoint(ck, 7, { config: TINY, weights, meta: { val_loss: 1 } });
    const out = join(dir, 'hf1');
    const r = await exportHf(join(ck, 'model_00007.json'), out);
    expect(r.step).toBe(7);
    expect(r.vocabSize).toBe(40);
    const back = await loadWeights(out);
    expect(back.source).toBe('hf');
    expect(back.config).toEqual(TINY);
    for (const s of gpt2ParamSpecs(TINY)) expect(bits(back.weights.get(s.name)!.data), s.name).toEqual(bits(weights.get(s.name)!.data));
    expect(await readdir(out)).toEqual(['config.json', 'model.safetensors']); // no temp files
  });

  it('names, shapes and Conv1D [in, out] layout are those of the hub gpt2 file; values transposed by index', async () => {
    const weights = makeWeights(TINY);
    const ck = join(dir, 'run2');
    await saveCheckpoint(ck, 3, { config: TINY, weights });
    const out = join(dir, 'hf2');
    await exportHf(ck, out); // a training out dir: its newest checkpoint
    const fx = JSON.parse(await readFile(join(FIX, 'hf_gpt2_124M_keys.json'), 'utf8')) as KeyFixture;
    // the hub layout for 2 layers: drop h.2..h.11 and the attn.bias buffers, map the dimensions
    const want = fx.tensors
      .filter((t) => t.ours !== null && !/^h\.([2-9]|1\d)\./.test(t.name))
      .map((t) => [t.name, t.shape.map((d) => DIM_MAP.get(d) ?? NaN)] as const)
      .sort((a, b) => (a[0] < b[0] ? -1 : 1));
    const f = await openSafetensors(join(out, 'model.safetensors'));
    try {
      const got = [...f.names].filter((n) => n !== '__metadata__').sort().map((n) => [n, f.info(n).shape] as const);
      expect(got).toEqual(want);
      expect(f.metadata.format).toBe('pt'); // transformers refuses safetensors without it
      // Conv1D: file[i][o] == ours[o][i]; plain tensors unchanged
      const cAttn = toFloat32(await f.read('h.1.attn.c_attn.weight'), 'c_attn');
      const oursAttn = weights.get('transformer.h.1.attn.c_attn.weight')!.data; // [24, 8]
      for (let o = 0; o < 24; o++) for (let i = 0; i < 8; i++) expect(Object.is(cAttn[i * 24 + o], oursAttn[o * 8 + i])).toBe(true);
      const fc = toFloat32(await f.read('h.0.mlp.c_proj.weight'), 'c_proj'); // file [32, 8], ours [8, 32]
      const oursFc = weights.get('transformer.h.0.mlp.c_proj.weight')!.data;
      for (let o = 0; o < 8; o++) for (let i = 0; i < 32; i++) expect(Object.is(fc[i * 8 + o], oursFc[o * 32 + i])).toBe(true);
      expect(bits(toFloat32(await f.read('wpe.weight'), 'wpe'))).toEqual(bits(weights.get('transformer.wpe.weight')!.data));
    } finally {
      await f.close();
    }
    const cfg = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg).toMatchObject({
      architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', activation_function: 'gelu_new',
      n_layer: 2, n_head: 2, n_embd: 8, n_positions: 16, n_ctx: 16, vocab_size: 40, layer_norm_epsilon: 1e-5, tie_word_embeddings: true,
    });
  });

  it('--vocab-size 50257 drops the padding rows of a 50304 vocabulary and keeps the rest bit for bit', async () => {
    const c: Gpt2Config = { nLayer: 1, nHead: 1, nEmbd: 4, blockSize: 8, vocabSize: 50304 };
    const weights = makeWeights(c);
    const ck = join(dir, 'run3');
    await saveCheckpoint(ck, 1, { config: c, weights });
    const out = join(dir, 'hf3');
    const r = await exportHf(ck, out, { vocabSize: 50257 });
    expect(r.vocabSize).toBe(50257);
    const back = await loadWeights(out);
    expect(back.config.vocabSize).toBe(50257);
    expect(bits(back.weights.get('transformer.wte.weight')!.data)).toEqual(bits(weights.get('transformer.wte.weight')!.data.subarray(0, 50257 * 4)));
    // and the trainer's --init-from pads it back to 50304 with zero rows
    const padded = await loadWeights(out, { padVocabTo: 50304 });
    expect(padded.weights.get('transformer.wte.weight')!.data.subarray(50257 * 4).every((v) => v === 0)).toBe(true);
  });

  it('refuses what would lose data or shadow checkpoints, naming the fix', async () => {
    const ck = join(dir, 'run4');
    await saveCheckpoint(ck, 2, { config: TINY, weights: makeWeights(TINY) });
    await expect(exportHf(ck, join(dir, 'x'), { vocabSize: 41 })).rejects.toThrow(/--vocab-size 41: .* has 40 vocabulary rows/);
    await expect(exportHf(ck, join(dir, 'x'), { vocabSize: 39 })).rejects.toThrow(/would drop real tokens of GPT-2's tokenizer \(50,257 tokens\) \(ids below 40\); use --vocab-size 40/);
    await expect(exportHf(ck, ck)).rejects.toThrow(/holds training checkpoints/);
    await expect(exportHf(join(dir, 'missing'), join(dir, 'x'))).rejects.toThrow(/does not exist/);
    // an earlier export is not replaced without --overwrite (it once was, silently)
    const again = join(dir, 'again');
    await exportHf(ck, again);
    await expect(exportHf(ck, again)).rejects.toThrow(/already holds config\.json and model\.safetensors .*--overwrite/);
    await exportHf(ck, again, { overwrite: true });
    await expect(exportHf(ck, join(dir, 'x'), { vocabSize: 41 })).rejects.not.toThrow(/e\.g\. 50257/);
  });

  it('npm run export -- --init-from --out-dir (and the old --checkpoint --out)', async () => {
    const ck = join(dir, 'run5');
    await saveCheckpoint(ck, 12, { config: TINY, weights: makeWeights(TINY) });
    const logs: string[] = [];
    const orig = console.log;
    console.log = (s: string) => { logs.push(s); };
    try {
      expect(await main(['--checkpoint', join(ck, 'model_00012.safetensors'), '--out', join(dir, 'hf5')])).toBe(0);
    } finally {
      console.log = orig;
    }
    expect(logs[0]).toMatch(/^exported .*model_00012\.json \(step 12\): 2 layers, 2 heads, 8 embd, block 16, vocab 40$/);
    expect((await loadWeights(join(dir, 'hf5'))).config).toEqual(TINY);
    console.log = () => {};
    try {
      expect(await main(['--init-from', ck, '--out-dir', join(dir, 'hf7')])).toBe(0);
    } finally {
      console.log = orig;
    }
    expect((await loadWeights(join(dir, 'hf7'))).config).toEqual(TINY);
    await expect(main(['--out', join(dir, 'hf6')])).rejects.toThrow(/--init-from is required: model_<step>.json/);
  });
});
