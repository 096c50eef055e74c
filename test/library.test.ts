// The library as an importer meets it, through `import ... from 'tapegrad'` only (the package's own
// exports, built to dist/): a checkpoint of `npm run train` loaded back to the run's validation loss,
// state dicts loaded strictly or reporting what did not match (Hugging Face's names and layout
// included), tensors printed as torch prints them, and the GPT-2 tokenizer.

import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { writeTinyShards } from './helpers/tiny-data.js';
import { readTokens } from '../src/data/npy.js';

// the package by its name: what an importer gets (Node resolves a package's own name through its "exports")
const tg = await import('tapegrad');
const { GPT, loadCheckpoint, saveCheckpoint, gpt2Tokenizer, tensor, arange, manualSeed, randn, noGrad, configureOptimizers } = tg;

const root = join(import.meta.dirname, '..');
let work = '', data = '';
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'tapegrad-library-'));
  data = join(work, 'data');
  mkdirSync(data);
  writeTinyShards(data, { seed: 7, noise: 0.1, stride: 7, val: 200, train: [300] });
});

/** The val shard's tokens (the data, not the library under test, so read with the npy module). */
function valTokens(): Uint16Array | Int32Array {
  return readTokens(join(data, 'tiny_val_000000.npy'));
}

describe('tapegrad as a library', () => {
  it('loads a checkpoint of npm run train (GPT.fromPretrained, loadCheckpoint) and gets its validation loss back', async () => {
    const out = join(work, 'run');
    const r = spawnSync(process.execPath, [join(root, 'dist/train/cli.js'), '--n-layer', '1', '--n-head', '2', '--n-embd', '16', '--block-size', '16',
      '--vocab-size', '64', '--batch-size', '2', '--seq-len', '8', '--max-steps', '4', '--eval-interval', '0', '--val-steps', '2',
      '--sample-interval', '0', '--backend', 'js', '--data-dir', data, '--out-dir', out], { encoding: 'utf8', timeout: 120_000 });
    expect(r.status, `${r.stdout}${r.stderr}`).toBe(0);
    const ck = await loadCheckpoint(join(out, 'model_00003.json'));
    const valLoss = ck.meta.val_loss as number;
    expect(valLoss).toBeGreaterThan(0);
    const model = await GPT.fromPretrained(out);
    expect(model.training).toBe(false);
    // the run's validation: val-steps batches of B x T from the start of the val shard, averaged
    const toks = valTokens(), B = 2, T = 8;
    let sum = 0;
    for (let s = 0; s < 2; s++) {
      const at = s * B * T;
      const x = tensor(Int32Array.from(toks.subarray(at, at + B * T)), { shape: [B, T] });
      const y = tensor(Int32Array.from(toks.subarray(at + 1, at + B * T + 1)), { shape: [B, T] });
      sum += noGrad(() => model.forward(x, y).loss!.item());
    }
    expect(Math.abs(sum / 2 - valLoss)).toBeLessThan(1e-5);
    // and the weights loaded by hand equal them
    const again = new GPT(ck.config, { init: false });
    expect(again.loadStateDict(ck.weights)).toEqual({ missingKeys: [], unexpectedKeys: [] });
  });

  it('saveCheckpoint writes what loadCheckpoint and GPT.fromPretrained read (AdamW state too)', async () => {
    manualSeed(1);
    const model = new GPT({ blockSize: 8, vocabSize: 32, nLayer: 1, nHead: 2, nEmbd: 8 });
    const opt = configureOptimizers(model, 0.1, 1e-2);
    const x = tensor(Int32Array.from({ length: 16 }, (_, i) => i % 32), { shape: [2, 8] });
    model.forward(x, x).loss!.backward();
    opt.step();
    const dir = join(work, 'saved');
    const sidecar = await saveCheckpoint(dir, 7, model, { optimizer: opt, meta: { note: 'hello' } });
    expect(sidecar).toBe(join(dir, 'model_00007.json'));
    const ck = await loadCheckpoint(sidecar);
    expect(ck.step).toBe(7);
    expect(ck.meta.note).toBe('hello');
    expect(ck.optimizerState.size).toBe(2 * model.parameters().length);
    const back = await GPT.fromPretrained(sidecar);
    const want = noGrad(() => model.forward(x, x).loss!.item()), got = noGrad(() => back.forward(x, x).loss!.item());
    expect(got).toBe(want);
  });

  it('loadStateDict is strict by default, reports missing and unexpected keys when not, and never loads nothing silently', () => {
    manualSeed(2);
    const model = new GPT({ blockSize: 8, vocabSize: 32, nLayer: 1, nHead: 2, nEmbd: 8 });
    const sd = new Map(model.stateDict());
    sd.delete('transformer.ln_f.bias');
    sd.set('extra.weight', randn([2]));
    expect(() => model.loadStateDict(sd)).toThrow(/missing keys 'transformer\.ln_f\.bias'; unexpected keys 'extra\.weight'/);
    expect(model.loadStateDict(sd, false)).toEqual({ missingKeys: ['transformer.ln_f.bias'], unexpectedKeys: ['extra.weight'] });
    // another model's keys: an error even when not strict (it used to load nothing and return)
    expect(() => model.loadStateDict({ 'encoder.layer.0.weight': randn([8, 8]) }, false)).toThrow(/none of the source's 1 keys/);
  });

  it("loadStateDict reads Hugging Face's GPT-2 names and Conv1D layout", () => {
    manualSeed(3);
    const C = 8, model = new GPT({ blockSize: 8, vocabSize: 32, nLayer: 2, nHead: 2, nEmbd: C });
    // as the hub's model.safetensors: no `transformer.` prefix, Conv1D weights [in, out], mask buffers
    const hf = new Map<string, InstanceType<typeof tg.Tensor>>();
    for (const [name, p] of model.stateDict()) {
      if (name === 'lm_head.weight') continue;
      const conv1d = /\.(c_attn|c_proj|c_fc)\.weight$/.test(name);
      hf.set(name.replace(/^transformer\./, ''), conv1d ? p.transpose(0, 1) : p);
    }
    for (let i = 0; i < 2; i++) hf.set(`h.${i}.attn.bias`, tg.ones([1, 1, 8, 8]));
    const fresh = new GPT({ blockSize: 8, vocabSize: 32, nLayer: 2, nHead: 2, nEmbd: C }, { init: false });
    expect(fresh.loadStateDict(hf)).toEqual({ missingKeys: [], unexpectedKeys: [] });
    const x = tensor(Int32Array.from({ length: 8 }, (_, i) => (i * 5) % 32), { shape: [1, 8] });
    expect(Array.from(fresh.forward(x).logits.dataSync())).toEqual(Array.from(model.forward(x).logits.dataSync()));
  });

  it('prints tensors as torch does: values aligned, four decimals or scientific, summarised past 1000 elements', () => {
    // the expected strings are torch 2.x's repr of the same tensors
    expect(String(tensor([[0.1, -2.5], [3.25, 4]]))).toBe('tensor([[ 0.1000, -2.5000],\n        [ 3.2500,  4.0000]])');
    expect(String(tensor([1, 2, 3]))).toBe('tensor([1., 2., 3.])');
    expect(String(tensor(Int32Array.of(0, 2, 1, 2)))).toBe('tensor([0, 2, 1, 2], dtype=int32)');
    expect(String(tensor([1e-6, 1, 1e5]))).toBe('tensor([1.0000e-06, 1.0000e+00, 1.0000e+05])');
    expect(String(tensor(5))).toBe('tensor(5.)');
    expect(String(tensor([NaN, Infinity, 1.5]))).toBe('tensor([   nan,    inf, 1.5000])');
    expect(String(arange(0, 2000).reshape([40, 50]))).toBe([
      'tensor([[   0.,    1.,    2.,  ...,   47.,   48.,   49.],',
      '        [  50.,   51.,   52.,  ...,   97.,   98.,   99.],',
      '        [ 100.,  101.,  102.,  ...,  147.,  148.,  149.],',
      '        ...,',
      '        [1850., 1851., 1852.,  ..., 1897., 1898., 1899.],',
      '        [1900., 1901., 1902.,  ..., 1947., 1948., 1949.],',
      '        [1950., 1951., 1952.,  ..., 1997., 1998., 1999.]])'].join('\n'));
    expect(String(tensor([1, 2], { requiresGrad: true }))).toBe('tensor([1., 2.], requiresGrad=true)');
  });

  it('an importer computing on the default reference backend is told once how to get the fast one; one who chose is not', () => {
    const script = (choose: boolean): string => `const t = await import('tapegrad'); ${choose ? "t.setBackend('js');" : ''}
      for (let i = 0; i < 3; i++) t.randn([300, 300]).matmul(t.randn([300, 300]));`;
    const run = (choose: boolean): string => spawnSync(process.execPath, ['--input-type=module', '-e', script(choose)], { cwd: root, encoding: 'utf8' }).stderr;
    const told = run(false);
    expect(told.match(/createWasmBackend\(\)/g)?.length).toBe(1);
    expect(run(true)).not.toMatch(/reference backend/);
  });

  it('exports the GPT-2 tokenizer: encode and decode as tiktoken', () => {
    const tok = gpt2Tokenizer();
    expect(tok.encode('Hello world')).toEqual([15496, 995]); // tiktoken's gpt2 ids
    expect(tok.decode([15496, 995])).toBe('Hello world');
  });
});
