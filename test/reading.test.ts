// docs/READING.md names files and the symbols to read in them: each must still exist there, and
// the line count it gives for the path must still be true. README's map of the engine must name
// every file of src/tensor.

import { existsSync, readdirSync, readFileSync, statSync } from 'node:fs';
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

  it('the path\'s line count is within 10% of its files\' lines', () => {
    const path = guide.slice(guide.indexOf('## The path'), guide.indexOf('## Skip on a first read'));
    const files = new Set([...path.matchAll(/\]\(\.\.\/(src\/[^)]+\.ts)\)/g)].map((m) => m[1]!));
    const lines = [...files].reduce((n, f) => n + readFileSync(join(root, f), 'utf8').split('\n').length - 1, 0);
    const claimed = Number(/about ([\d,]+) lines/.exec(guide)![1]!.replace(/,/g, ''));
    expect(Math.abs(lines - claimed) / lines, `the guide says about ${claimed} lines; its ${files.size} files hold ${lines}`).toBeLessThan(0.1);
  });
});

describe('README.md', () => {
  it('its map of the engine names every file of src/tensor', () => {
    const readme = readFileSync(join(root, 'README.md'), 'utf8');
    const walk = (dir: string): string[] => readdirSync(dir).flatMap((f) => {
      const p = join(dir, f);
      return statSync(p).isDirectory() ? walk(p) : f.endsWith('.ts') && f !== 'index.ts' ? [f] : [];
    });
    const missing = walk(join(root, 'src', 'tensor')).filter((f) => !readme.includes(`\`${f}\``));
    expect(missing, 'files of src/tensor the README table does not name').toEqual([]);
  });
});
