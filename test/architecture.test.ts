// The engine's shape, checked: no import cycles in src/ (each module can be read, and loaded,
// after the ones it builds on), the op layer never branches on the device, and what the web page
// loads never imports a Node-only module (those live behind small adapters).

import { readdirSync, readFileSync, statSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, expect, it } from 'vitest';

const src = join(import.meta.dirname, '..', 'src');
function files(dir: string): string[] {
  return readdirSync(dir).flatMap((f) => {
    const p = join(dir, f);
    return statSync(p).isDirectory() ? files(p) : p.endsWith('.ts') ? [p] : [];
  });
}
/**
 * The modules a module imports: `import ... from`, `export ... from`, side-effect imports, and
 * `import type` too (a type-only circle still ties two files together for a reader, as madge counts it).
 */
function imports(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const out: string[] = [];
  for (const m of text.matchAll(/^(?:import|export)\s+(?:[^'";]*?\sfrom\s+)?['"](\.[^'"]+)['"]/gm)) {
    out.push(resolve(dirname(file), m[1]!.replace(/\.js$/, '.ts')));
  }
  return out;
}

/** Every static import specifier of a module, relative or bare (`node:fs`, `gpt-tokenizer`). */
function specifiers(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  return [...text.matchAll(/^(?:import|export)\s+(?!type\s)(?:[^'";]*?\sfrom\s+)?['"]([^'"]+)['"]/gm)].map((m) => m[1]!);
}

describe('architecture', () => {
  it('src/ has no import cycles, type imports included', () => {
    const graph = new Map(files(src).map((f) => [f, imports(f)]));
    const state = new Map<string, 'active' | 'done'>();
    const cycles: string[] = [];
    const visit = (f: string, path: string[]): void => {
      if (state.get(f) === 'done') return;
      if (state.get(f) === 'active') { cycles.push([...path.slice(path.indexOf(f)), f].map((p) => relative(src, p)).join(' -> ')); return; }
      state.set(f, 'active');
      for (const g of graph.get(f) ?? []) if (graph.has(g)) visit(g, [...path, f]);
      state.set(f, 'done');
    };
    for (const f of graph.keys()) visit(f, []);
    expect(cycles).toEqual([]);
  });

  it('the op layer never asks which device it runs on', () => {
    for (const f of ['tensor/ops.ts', 'tensor/functional.ts', 'tensor/define-op.ts', 'tensor/autograd.ts']) {
      const text = readFileSync(join(src, f), 'utf8');
      expect(text, f).not.toMatch(/hostMemory|backend\.name\s*===|instanceof\s+(Js|Wasm|Gpu)Backend/);
    }
  });

  it('the modules the playground page loads (statically) import nothing Node-only', () => {
    const root = join(import.meta.dirname, '..', 'playground');
    const seen = new Set<string>();
    const bad: string[] = [];
    const walk = (f: string): void => {
      if (seen.has(f)) return;
      seen.add(f);
      for (const s of specifiers(f)) {
        if (s.startsWith('.')) walk(resolve(dirname(f), s.replace(/\.js$/, '.ts')));
        else if (s.startsWith('node:') || ['webgpu', 'nlp-corpus', 'hyparquet', 'hyparquet-compressors'].includes(s)) bad.push(`${relative(join(src, '..'), f)} imports ${s}`);
      }
    };
    walk(join(root, 'main.ts'));
    walk(join(root, 'worker.ts'));
    expect(seen.size).toBeGreaterThan(30); // the engine itself, not only the page's own files
    expect(bad).toEqual([]);
  });
});
