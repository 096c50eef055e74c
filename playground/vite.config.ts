// Vite's settings for the playground page: the page lives in playground/, the static site goes to
// dist-playground/, the server sends the cross-origin-isolation headers SharedArrayBuffer needs, and
// a slice of the embedded corpus is tokenized at build time into two uint16 assets, with its tokenizer.

import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { defineConfig, type Plugin } from 'vite';

const ROOT = resolve(import.meta.dirname, '..');

/** COOP + COEP: a cross-origin-isolated page gets SharedArrayBuffer, so the wasm backend gets threads. */
export const ISOLATION_HEADERS = {
  'Cross-Origin-Opener-Policy': 'same-origin',
  'Cross-Origin-Embedder-Policy': 'require-corp',
};

/** Tokens of the embedded corpus the page trains on (2 bytes each): enough for a few epochs of minutes. */
const TRAIN_TOKENS = 600_000;
const VAL_TOKENS = 60_000;

interface Built {
  ensureEmbeddedShards(dir?: string, opts?: { tokenizer?: 'bpe' | 'gpt2' }): Promise<string>;
  readDataTokenizer(dir: string): unknown;
  listShards(dir: string, split: 'train' | 'val'): string[];
  readTokens(path: string): Uint16Array | Int32Array;
}

/**
 * corpus/train.bin and corpus/val.bin: the embedded corpus's shards (as `npm run train` makes them,
 * with the BPE learned from the corpus), cut to size; corpus/tokenizer.json: that BPE.
 */
function corpusAssets(): Plugin {
  return {
    name: 'tapegrad-corpus',
    async generateBundle() {
      const dist = (f: string): string => pathToFileURL(resolve(ROOT, 'dist', f)).href;
      if (!existsSync(resolve(ROOT, 'dist/data/embedded.js'))) throw new Error('build the engine first: npm run build (npm run build:playground does)');
      const embedded = (await import(dist('data/embedded.js'))) as Pick<Built, 'ensureEmbeddedShards'>;
      const loader = (await import(dist('data/loader.js'))) as Pick<Built, 'listShards'>;
      const npy = (await import(dist('data/npy.js'))) as Pick<Built, 'readTokens'>;
      const shards = (await import(dist('data/shards.js'))) as Pick<Built, 'readDataTokenizer'>;
      const dir = await embedded.ensureEmbeddedShards(resolve(ROOT, 'data/embedded-bpe'), { tokenizer: 'bpe' });
      const take = (split: 'train' | 'val', n: number): Uint8Array => {
        const out = new Uint16Array(n);
        let filled = 0;
        for (const shard of loader.listShards(dir, split)) {
          const t = npy.readTokens(shard);
          const k = Math.min(t.length, n - filled);
          out.set(t.subarray(0, k), filled);
          filled += k;
          if (filled === n) break;
        }
        if (filled < n) throw new Error(`the embedded corpus has only ${filled} ${split} tokens, fewer than the ${n} the page wants`);
        return new Uint8Array(out.buffer);
      };
      this.emitFile({ type: 'asset', fileName: 'corpus/train.bin', source: take('train', TRAIN_TOKENS) });
      this.emitFile({ type: 'asset', fileName: 'corpus/val.bin', source: take('val', VAL_TOKENS) });
      this.emitFile({ type: 'asset', fileName: 'corpus/tokenizer.json', source: JSON.stringify(shards.readDataTokenizer(dir)) });
    },
  };
}

export default defineConfig({
  root: resolve(ROOT, 'playground'),
  base: './', // relative URLs: the folder works on any static host, under any path
  plugins: [corpusAssets()],
  // (the engine runs in the worker: its Node-only paths are external there, see build below)
  worker: { format: 'es', rollupOptions: { external: ['webgpu', /^node:/] } },
  build: {
    outDir: resolve(ROOT, 'dist-playground'),
    emptyOutDir: true,
    target: 'es2022',
    // not minified: gpu.js translates the gpu backend's kernel functions from their JavaScript
    // source (Function.toString) to WGSL, and a minifier's comma operators and reused names break that
    minify: false,
    chunkSizeWarningLimit: 4096, // the GPT-2 BPE ranks alone are ~1 MB
    rollupOptions: {
      // Node-only paths of the engine (Dawn for Node, node: builtins) are dynamic imports a
      // browser never takes; leaving them external keeps them out of the bundle
      external: ['webgpu', /^node:/],
    },
  },
  server: { headers: ISOLATION_HEADERS, host: '127.0.0.1' },
  preview: { headers: ISOLATION_HEADERS, host: '127.0.0.1', port: 5173 }, // npm run playground -- --port P
});
