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
