// docs/READING.md names files and the symbols to read in them: each must still exist there.

import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const root = join(import.meta.dirname, '..');
const guide = readFileSync(join(root, 'docs', 'READING.md'), 'utf8');

describe('docs/READING.md', () => {
  // "[src/x.ts](../src/x.ts): `A`, `B`" — a file and the symbols named right after it
  const stops = [...guide.matchAll(/\[(src\/[^\]]+\.ts)\]\([^)]*\):((?:\s*`[^`]+`,?)+)/g)]
    .map((m) => ({ file: m[1]!, symbols: [...m[2]!.matchAll(/`([^`]+)`/g)].map((s) => s[1]!) }));

  it('names at least a dozen stops', () => {
    expect(stops.length).toBeGreaterThanOrEqual(12);
  });

  for (const { file, symbols } of stops) {
    it(`${file}: ${symbols.join(', ')}`, () => {
      const path = join(root, file);
      expect(existsSync(path), `${file} exists`).toBe(true);
      const text = readFileSync(path, 'utf8');
      for (const s of symbols) {
        const declared = new RegExp(`(?:^|\\n)\\s*(?:export\\s+)?(?:abstract\\s+|async\\s+)?(?:class|function\\*?|const|let|interface|type)\\s+${s}\\b`);
        expect(declared.test(text), `${s} is declared in ${file}`).toBe(true);
      }
    });
  }
});
