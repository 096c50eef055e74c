// The README's TypeScript example must run as written (with 'tapegrad' pointed at src/).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it, vi } from 'vitest';

describe('README', () => {
  it('its first ts example runs and prints a loss and the gradient shape', async () => {
    const readme = readFileSync(join(import.meta.dirname, '../README.md'), 'utf8');
    const block = /```ts\n([\s\S]*?)```/.exec(readme)?.[1];
    expect(block).toBeDefined();
    const src = join(import.meta.dirname, '../src/index.js');
    const dir = mkdtempSync(join(import.meta.dirname, '.tmp-readme-'));
    const file = join(dir, 'example.ts');
    writeFileSync(file, block!.replace(/from 'tapegrad'/g, `from '${src}'`));
    const logs: unknown[][] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => { logs.push(a); });
    try { await import(file); } finally { spy.mockRestore(); }
    expect(typeof logs[0]![0]).toBe('number');
    expect(Number.isFinite(logs[0]![0] as number)).toBe(true);
    expect(logs[0]![1]).toEqual([3, 8]);
  });
});

describe('README: a trained model in your own code', () => {
  it('its second ts example loads a checkpoint, samples and reads the meta', async () => {
    const readme = readFileSync(join(import.meta.dirname, '../README.md'), 'utf8');
    const block = [...readme.matchAll(/```ts\n([\s\S]*?)```/g)][1]?.[1];
    expect(block).toMatch(/GPT\.fromPretrained\('out'\)/);
    const src = join(import.meta.dirname, '../src/index.js');
    const { GPT, saveCheckpoint, manualSeed, trainBpe } = await import('../src/index.js');
    const dir = mkdtempSync(join(import.meta.dirname, '.tmp-readme-'));
    manualSeed(0);
    // as npm run train leaves it: a learned BPE recorded with the weights
    const tokenizer = trainBpe(['Once upon a time there was a time upon a time'], 270);
    const model = new GPT({ blockSize: 64, vocabSize: 320, nLayer: 1, nHead: 2, nEmbd: 8 });
    await saveCheckpoint(dir, 4999, model, { meta: { val_loss: 10.5, tokenizer } });
    const file = join(dir, 'example.ts');
    writeFileSync(file, block!.replace(/from 'tapegrad'/g, `from '${src}'`).replace(/'out'/g, JSON.stringify(dir)).replace(/'out\//g, `'${dir}/`));
    const logs: unknown[][] = [];
    const spy = vi.spyOn(console, 'log').mockImplementation((...a: unknown[]) => { logs.push(a); });
    try { await import(file); } finally { spy.mockRestore(); }
    expect(typeof logs[0]![0]).toBe('string');
    expect((logs[0]![0] as string).length).toBeGreaterThan(0);
    expect((logs[0]![0] as string).startsWith('Once upon a time')).toBe(true);
    expect(logs[1]).toEqual([4999, 10.5]);
  });
});
