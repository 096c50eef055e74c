// bench/gpu-check.ts --quick, the rehearsal of the one call a lent GPU gets: the whole table on
// a real WebGPU adapter (SwiftShader here) at small sizes, in under 3 minutes. What it must show
// is what a GPU session needs: parity rows passing, and a profile whose every kernel has its
// launches, its GPU time from timestamp queries and the H100 model's prediction beside it, the
// three dtypes' tokens/s, and the matmul at each of GPT-2's layouts.

import { describe, expect, it } from 'vitest';
import { realWebGpu } from './helpers/webgpu.js';
import { runGpuCheck } from '../bench/gpu-check.js';

const gpu = await realWebGpu();

describe.skipIf(!gpu)('bench/gpu-check.ts --quick on a real WebGPU adapter', () => {
  it('prints the whole table and the profile, measured beside predicted, in under 3 minutes', async () => {
    const r = await runGpuCheck({ quick: true });
    const failed = r.rows.filter((x) => x.ok === false);
    expect(failed, failed.map((x) => `${x.check}: ${x.result} ${x.note}`).join('\n')).toEqual([]);
    for (const check of ['parity: GPT fwd+bwd vs js', 'parity: clip norm + AdamW step', 'parity: GPT fwd+bwd under bfloat16', 'wall time of this check']) {
      expect(r.rows.find((x) => x.check.startsWith(check))?.ok, check).toBe(true);
    }
    const p = r.profile!;
    expect(p, 'the profile ran').toBeTruthy();
    expect(p.note).toBe(''); // SwiftShader has timestamp-query: every launch timed
    // every kernel that ran: launches, GPU time, and the model's price for the same work
    const launched = p.rows.filter((k) => k.launches > 0);
    expect(launched.map((k) => k.kernel)).toEqual(expect.arrayContaining(['matmul128 (WGSL)', 'flashFwd (WGSL)', 'layerNorm (WGSL)', 'crossEntropy (WGSL)', 'adamw (WGSL)']));
    for (const k of launched) {
      expect(k.ms, k.kernel).toBeGreaterThan(0);
      expect(k.predictedMs, k.kernel).toBeGreaterThan(0);
    }
    expect(p.runs.map((d) => d.dtype)).toEqual(['float32', 'bfloat16', 'float16']);
    for (const d of p.runs) expect(d.tokS > 0 && d.predictedTokS > 0, d.dtype).toBe(true);
    expect(p.matmuls.map((m) => m.layout)).toEqual(expect.arrayContaining(['c_attn x W^T', 'c_fc dX = G W', 'mlp.c_proj dW = G^T X', 'lm_head chunk x W^T']));
    for (const m of p.matmuls) expect(m.tflops, m.layout).toBeGreaterThan(0);
    // and the text a GPU session reads
    const text = r.text.join('\n');
    expect(text).toMatch(/\| kernel \| launches \| GPU ms \| achieved \| share \| predicted H100 ms \|/);
    expect(text).toMatch(/\| float16 \| \d+ \|/);
  }, 300_000);
});
