// Tests for src/train/hf-gpt2.ts: names, shapes and Conv1D transposes against HF GPT-2's published layout
// (test/fixtures/hf_gpt2_124M_keys.json) and against HF-layout directories written by
// test/fixtures/make_safetensors_fixtures.py with numpy (which transposes independently of our code).
import { describe, expect, it, beforeAll, afterAll } from 'vitest';
import { cp, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openSafetensors, readSafetensors, writeSafetensors, type SafetensorsTensorInput } from '../src/data/safetensors.js';
import {
  gpt2ParamSpecs, readHfGpt2Dir, writeHfGpt2Dir, parseHfGpt2Config, hfGpt2ConfigJson, transpose2d,
  type Gpt2Config, type WeightMap,
} from '../src/train/hf-gpt2.js';

const FIX = join(import.meta.dirname, 'fixtures');
let dir: string;
beforeAll(async () => { dir = await mkdtemp(join(tmpdir(), 'hf-test-')); });
afterAll(async () => { await rm(dir, { recursive: true, force: true }); });

const GPT2: Gpt2Config = { nLayer: 12, nHead: 12, nEmbd: 768, blockSize: 1024, vocabSize: 50257 };
const TINY: Gpt2Config = { nLayer: 2, nHead: 2, nEmbd: 8, blockSize: 16, vocabSize: 11 };

type KeyFixture = { tensors: { name: string; dtype: string; shape: number[]; ours: string | null; ours_shape: number[] | null }[] };

const bits = (a: Float32Array): number[] => [...new Uint32Array(a.buffer, a.byteOffset, a.length)];

/** Deterministic weights for a config, distinct per tensor, in our layout. */
function makeWeights(c: Gpt2Config): WeightMap {
  const w: WeightMap = new Map();
  gpt2ParamSpecs(c).forEach((s, k) => {
    const n = s.shape.reduce((a, b) => a * b, 1);
    w.set(s.name, { shape: s.shape, data: Float32Array.from({ length: n }, (_, i) => Math.sin(k * 1000 + i) * (k + 1) / 7) });
  });
  return w;
}

describe('layout of the hub gpt2 checkpoint', () => {
  it('our specs give exactly the HF parameter names, HF shapes and our shapes of gpt2 (124M)', async () => {
    const fx = JSON.parse(await readFile(join(FIX, 'hf_gpt2_124M_keys.json'), 'utf8')) as KeyFixture;
    const params = fx.tensors.filter((t) => t.ours !== null);
    const buffers = fx.tensors.filter((t) => t.ours === null);
    const specs = gpt2ParamSpecs(GPT2);
    const bySorted = <T extends { hfName?: string; name?: string }>(xs: T[], key: (x: T) => string): T[] => [...xs].sort((a, b) => (key(a) < key(b) ? -1 : 1));
    expect(bySorted(specs, (s) => s.hfName).map((s) => [s.hfName, s.hfShape, s.name, s.shape]))
      .toEqual(bySorted(params, (t) => t.name).map((t) => [t.name, t.shape, t.ours, t.ours_shape]));
    // the only non-parameters in the hub file are the 12 causal-mask buffers
    expect(buffers.map((b) => b.name).sort()).toEqual(Array.from({ length: 12 }, (_, i) => `h.${i}.attn.bias`).sort());
    expect(buffers.every((b) => b.shape.join() === '1,1,1024,1024')).toBe(true);
    expect(fx.tensors.some((t) => t.name === 'lm_head.weight')).toBe(false);
  });

  it('parameter counts are the published ones: 124,439,808 for gpt2 and 124,475,904 with the 50304 vocab', () => {
    const count = (c: Gpt2Config): number => gpt2ParamSpecs(c).reduce((a, s) => a + s.shape.reduce((x, y) => x * y, 1), 0);
    expect(count(GPT2)).toBe(124_439_808);
    expect(count({ ...GPT2, vocabSize: 50304 })).toBe(124_475_904);
  });

  it('writing the tiny config gives the same names and shapes as the Python-written HF file (minus buffers)', async () => {
    const out = join(dir, 'tiny-layout');
    await writeHfGpt2Dir(out, TINY, makeWeights(TINY));
    const ours = await openSafetensors(join(out, 'model.safetensors'));
    const theirs = await openSafetensors(join(FIX, 'hf_tiny_gpt2', 'model.safetensors'));
    const layout = (f: typeof ours): [string, string, number[]][] =>
      f.names.filter((n) => !/attn\.(masked_)?bias$/.test(n)).map((n) => [n, f.info(n).dtype, f.info(n).shape] as [string, string, number[]]).sort();
    expect(layout(ours)).toEqual(layout(theirs));
    expect(ours.metadata).toEqual({ format: 'pt' });
    await ours.close();
    await theirs.close();
  });
});

describe('reading HF directories written by Python', () => {
  const dirs: [string, string][] = [
    ['hf_tiny_gpt2', 'F32, no prefix, n_positions'],
    ['hf_tiny_gpt2_bf16_prefixed', 'BF16, transformer. prefix, n_ctx only'],
    ['hf_tiny_gpt2_f16', 'F16'],
  ];
  for (const [name, label] of dirs) {
    it(`${name} (${label}): values in our layout equal what numpy wrote`, async () => {
      const expected = JSON.parse(await readFile(join(FIX, `${name}.json`), 'utf8')) as { config: Gpt2Config; weights: Record<string, { shape: number[]; bits: number[] }> };
      const { config, weights } = await readHfGpt2Dir(join(FIX, name));
      expect(config).toEqual(expected.config);
      expect(new Set(weights.keys())).toEqual(new Set([...Object.keys(expected.weights), 'lm_head.weight']));
      for (const [k, e] of Object.entries(expected.weights)) {
        expect(weights.get(k)!.shape, k).toEqual(e.shape);
        expect(bits(weights.get(k)!.data), k).toEqual(e.bits);
      }
      expect(weights.get('lm_head.weight')).toBe(weights.get('transformer.wte.weight'));
    });
  }

  it('padVocabTo appends zero rows to wte and reports the padded vocab', async () => {
    const { config, weights } = await readHfGpt2Dir(join(FIX, 'hf_tiny_gpt2'), { padVocabTo: 16 });
    const plain = await readHfGpt2Dir(join(FIX, 'hf_tiny_gpt2'));
    expect(config.vocabSize).toBe(16);
    const wte = weights.get('transformer.wte.weight')!;
    expect(wte.shape).toEqual([16, 8]);
    expect(bits(wte.data.subarray(0, 88))).toEqual(bits(plain.weights.get('transformer.wte.weight')!.data));
    expect([...wte.data.subarray(88)]).toEqual(new Array(40).fill(0));
    expect(weights.get('lm_head.weight')).toBe(wte);
    await expect(readHfGpt2Dir(join(FIX, 'hf_tiny_gpt2'), { padVocabTo: 5 })).rejects.toThrow(/holds 11 vocabulary rows, more than the 5 asked for \(--vocab-size\)/);
  });
});

describe('write -> read round trip', () => {
  it('is bit-identical, with HF names, Conv1D transposed and a GPT2LMHeadModel config', async () => {
    const w = makeWeights(TINY);
    w.set('lm_head.weight', w.get('transformer.wte.weight')!);
    const out = join(dir, 'rt');
    await writeHfGpt2Dir(out, TINY, w);
    expect((await readdir(out)).sort()).toEqual(['config.json', 'model.safetensors']);
    const back = await readHfGpt2Dir(out);
    expect(back.config).toEqual(TINY);
    for (const [k, v] of w) {
      expect(back.weights.get(k)!.shape, k).toEqual(v.shape);
      expect(bits(back.weights.get(k)!.data), k).toEqual(bits(v.data));
    }
    // The file itself: c_fc stored [in=C, out=4C]; element [i][j] of the file is ours [j][i].
    const { tensors } = await readSafetensors(join(out, 'model.safetensors'));
    const fc = tensors.get('h.1.mlp.c_fc.weight')!;
    const ours = w.get('transformer.h.1.mlp.c_fc.weight')!;
    expect(fc.shape).toEqual([8, 32]);
    for (const [i, j] of [[0, 0], [0, 31], [7, 0], [3, 17], [7, 31]] as const) expect(fc.data[i * 32 + j]).toBe(ours.data[j * 8 + i]);
    expect(tensors.get('h.0.ln_1.weight')!.shape).toEqual([8]);
    expect(tensors.has('lm_head.weight')).toBe(false);
    expect([...tensors.keys()].some((k) => k.startsWith('transformer.'))).toBe(false);
    const cfg = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg).toMatchObject({
      architectures: ['GPT2LMHeadModel'], model_type: 'gpt2', n_layer: 2, n_head: 2, n_embd: 8, n_positions: 16, n_ctx: 16,
      vocab_size: 11, activation_function: 'gelu_new', layer_norm_epsilon: 1e-5, bos_token_id: 50256, eos_token_id: 50256,
    });
  });

  it('cropVocabTo writes only the real rows and a matching vocab_size; reading back with padVocabTo restores the shape', async () => {
    const c: Gpt2Config = { ...TINY, vocabSize: 16 };
    const w = makeWeights(c);
    const out = join(dir, 'crop');
    await writeHfGpt2Dir(out, c, w, { cropVocabTo: 11 });
    const cfg = JSON.parse(await readFile(join(out, 'config.json'), 'utf8')) as Record<string, unknown>;
    expect(cfg.vocab_size).toBe(11);
    const f = await openSafetensors(join(out, 'model.safetensors'));
    expect(f.info('wte.weight').shape).toEqual([11, 8]);
    await f.close();
    const back = await readHfGpt2Dir(out, { padVocabTo: 16 });
    expect(back.config).toEqual(c);
    const wte = back.weights.get('transformer.wte.weight')!.data;
    expect(bits(wte.subarray(0, 88))).toEqual(bits(w.get('transformer.wte.weight')!.data.subarray(0, 88)));
    expect([...wte.subarray(88)].every((x) => x === 0)).toBe(true);
  });

  it('the default export keeps our padded vocab so --init-from reads it back exactly', async () => {
    const c: Gpt2Config = { ...TINY, vocabSize: 16 };
    const w = makeWeights(c);
    const out = join(dir, 'nocrop');
    await writeHfGpt2Dir(out, c, w);
    const back = await readHfGpt2Dir(out);
    expect(back.config.vocabSize).toBe(16);
    expect(bits(back.weights.get('transformer.wte.weight')!.data)).toEqual(bits(w.get('transformer.wte.weight')!.data));
  });
});

describe('errors name the file, the tensor and the fix', () => {
  async function hfDir(name: string, config: Record<string, unknown>, tensors: [string, SafetensorsTensorInput][]): Promise<string> {
    const d = join(dir, name);
    await mkdir(d, { recursive: true });
    await writeFile(join(d, 'config.json'), JSON.stringify(config));
    await writeSafetensors(join(d, 'model.safetensors'), tensors, { format: 'pt' });
    return d;
  }
  async function tinyTensors(): Promise<[string, SafetensorsTensorInput][]> {
    const { tensors } = await readSafetensors(join(FIX, 'hf_tiny_gpt2', 'model.safetensors'));
    return [...tensors] as [string, SafetensorsTensorInput][];
  }
  const tinyConfig = async (): Promise<Record<string, unknown>> => JSON.parse(await readFile(join(FIX, 'hf_tiny_gpt2', 'config.json'), 'utf8')) as Record<string, unknown>;

  it('missing config.json / model.safetensors say what the directory needs', async () => {
    const d = join(dir, 'empty');
    await mkdir(d, { recursive: true });
    await expect(readHfGpt2Dir(d)).rejects.toThrow(/no config\.json\. A Hugging Face GPT-2 directory must contain config\.json and model\.safetensors/);
    await writeFile(join(d, 'config.json'), JSON.stringify(await tinyConfig()));
    await writeFile(join(d, 'pytorch_model.bin'), 'x');
    await expect(readHfGpt2Dir(d)).rejects.toThrow(/no model\.safetensors \(it has pytorch_model\.bin.*huggingface-cli download gpt2/);
  });

  it('a shape that disagrees with the config names the tensor and both shapes', async () => {
    const d = await hfDir('badshape', { ...(await tinyConfig()), n_positions: 32 }, await tinyTensors());
    await expect(readHfGpt2Dir(d)).rejects.toThrow(/the config says .*n_positions 32 but wpe\.weight is \[16, 8\]/);
  });

  it('a Conv1D weight stored in Linear layout is caught', async () => {
    const ts = await tinyTensors();
    const i = ts.findIndex(([n]) => n === 'h.0.mlp.c_fc.weight');
    ts[i] = ['h.0.mlp.c_fc.weight', { dtype: 'F32', shape: [32, 8], data: new Float32Array(256) }];
    await expect(readHfGpt2Dir(await hfDir('linear', await tinyConfig(), ts))).rejects.toThrow(/h\.0\.mlp\.c_fc\.weight has shape \[32, 8\] .* needs \[8, 32\] in HF layout \(\[32, 8\] as our transformer\.h\.0\.mlp\.c_fc\.weight\)/);
  });

  it('missing and unknown tensors are listed', async () => {
    const ts = (await tinyTensors()).filter(([n]) => n !== 'ln_f.bias' && n !== 'h.1.ln_2.weight');
    await expect(readHfGpt2Dir(await hfDir('missing', await tinyConfig(), ts))).rejects.toThrow(/missing tensors h\.1\.ln_2\.weight, ln_f\.bias for n_layer=2/);
    const more = [...(await tinyTensors()), ['score.weight', { dtype: 'F32', shape: [2, 8], data: new Float32Array(16) }] as [string, SafetensorsTensorInput]];
    await expect(readHfGpt2Dir(await hfDir('unknown', await tinyConfig(), more))).rejects.toThrow(/not GPT-2 parameters: score\.weight/);
    await expect(readHfGpt2Dir(await hfDir('fewer-layers', { ...(await tinyConfig()), n_layer: 1 }, await tinyTensors()))).rejects.toThrow(/the config says n_layer 1.* but the weights file holds 2 layers \(h\.0 \.\. h\.1\)/);
  });

  it('an untied lm_head is refused; a tied one is accepted', async () => {
    const ts = await tinyTensors();
    const wte = ts.find(([n]) => n === 'wte.weight')![1];
    const tied = await hfDir('tied', await tinyConfig(), [...ts, ['lm_head.weight', wte]]);
    expect((await readHfGpt2Dir(tied)).weights.has('lm_head.weight')).toBe(true);
    const untied = await hfDir('untied', await tinyConfig(), [...ts, ['lm_head.weight', { dtype: 'F32', shape: [11, 8], data: new Float32Array(88) }]]);
    await expect(readHfGpt2Dir(untied)).rejects.toThrow(/lm_head\.weight differs from wte\.weight/);
  });

  it('config.json settings our GPT cannot represent are refused', () => {
    const base = { n_layer: 2, n_head: 2, n_embd: 8, n_positions: 16, vocab_size: 11 };
    expect(parseHfGpt2Config(base)).toEqual(TINY);
    expect(parseHfGpt2Config({ ...base, n_positions: undefined, n_ctx: 16 })).toEqual(TINY);
    expect(() => parseHfGpt2Config({ ...base, activation_function: 'relu' }, 'c.json')).toThrow(/c\.json: activation_function "relu"/);
    expect(() => parseHfGpt2Config({ ...base, model_type: 'llama' })).toThrow(/model_type is "llama", expected "gpt2"/);
    expect(() => parseHfGpt2Config({ ...base, n_head: 3 })).toThrow(/n_embd 8 is not divisible by n_head 3/);
    expect(() => parseHfGpt2Config({ ...base, n_inner: 16 })).toThrow(/n_inner 16 is not 4 \* n_embd = 32/);
    expect(() => parseHfGpt2Config({ ...base, layer_norm_epsilon: 1e-6 })).toThrow(/layer_norm_epsilon/);
    expect(() => parseHfGpt2Config({ ...base, vocab_size: 0 })).toThrow(/"vocab_size" must be a positive integer/);
    expect(() => parseHfGpt2Config({ ...base, n_positions: undefined })).toThrow(/needs "n_positions"/);
    // our own export parses back to the same config
    expect(parseHfGpt2Config(hfGpt2ConfigJson(TINY))).toEqual(TINY);
  });

  it('writing refuses weights that do not match the config, before touching the directory', async () => {
    const w = makeWeights(TINY);
    w.set('transformer.h.0.attn.c_attn.weight', { shape: [8, 24], data: new Float32Array(192) });
    const out = join(dir, 'refused');
    await expect(writeHfGpt2Dir(out, TINY, w)).rejects.toThrow(/transformer\.h\.0\.attn\.c_attn\.weight has shape \[8, 24\] but the config needs \[24, 8\]/);
    expect(await readdir(out)).toEqual([]);
    const w2 = makeWeights(TINY);
    w2.set('lm_head.weight', { shape: [11, 8], data: new Float32Array(88) });
    await expect(writeHfGpt2Dir(out, TINY, w2)).rejects.toThrow(/lm_head\.weight differs/);
    const w3 = makeWeights(TINY);
    w3.set('transformer.h.0.attn.c_attn.weight.exp_avg', { shape: [1], data: new Float32Array(1) });
    await expect(writeHfGpt2Dir(out, TINY, w3)).rejects.toThrow(/not GPT-2 parameters: transformer\.h\.0\.attn\.c_attn\.weight\.exp_avg/);
    w3.delete('transformer.h.0.attn.c_attn.weight.exp_avg');
    w3.delete('transformer.ln_f.bias');
    await expect(writeHfGpt2Dir(out, TINY, w3)).rejects.toThrow(/lack transformer\.ln_f\.bias/);
  });
});

describe('sharded checkpoints (model.safetensors.index.json)', () => {
  it('reads tensors spread over shards as one checkpoint', async () => {
    const d = join(dir, 'sharded');
    await mkdir(d, { recursive: true });
    await cp(join(FIX, 'hf_tiny_gpt2', 'config.json'), join(d, 'config.json'));
    const { tensors } = await readSafetensors(join(FIX, 'hf_tiny_gpt2', 'model.safetensors'));
    const names = [...tensors.keys()];
    const half = Math.floor(names.length / 2);
    const shards = [names.slice(0, half), names.slice(half)];
    const weightMap: Record<string, string> = {};
    for (const [i, part] of shards.entries()) {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      await writeSafetensors(join(d, file), part.map((n) => [n, tensors.get(n)!] as [string, SafetensorsTensorInput]), { format: 'pt' });
      for (const n of part) weightMap[n] = file;
    }
    await writeFile(join(d, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    const sharded = await readHfGpt2Dir(d);
    const single = await readHfGpt2Dir(join(FIX, 'hf_tiny_gpt2'));
    for (const [k, v] of single.weights) expect(bits(sharded.weights.get(k)!.data), k).toEqual(bits(v.data));
  });
});

describe('transpose2d', () => {
  it('moves [r][c] to [c][r]', () => {
    expect([...transpose2d(new Float32Array([1, 2, 3, 4, 5, 6]), 2, 3)]).toEqual([1, 4, 2, 5, 3, 6]);
  });
  it('handles sizes that are not multiples of the tile', () => {
    for (const [r, c] of [[37, 70], [1, 65], [65, 1], [33, 33]] as const) {
      const src = Float32Array.from({ length: r * c }, (_, i) => i);
      const t = transpose2d(src, r, c);
      for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) if (t[j * r + i] !== i * c + j) throw new Error(`${r}x${c} at ${i},${j}`);
    }
  });
});
