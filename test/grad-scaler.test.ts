// GradScaler as torch.amp.GradScaler (init 2^16, growth 2, backoff 0.5, interval 2000): the scale
// sequence for injected finite / overflowing steps, skipped steps that leave weights and AdamW
// state bit-identical, and `npm run train -- --dtype` (float16 with its scaler in the log, the
// checkpoint and --resume; bfloat16; the errors).
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { AdamW, GradScaler, clipGradNorm, setBackend, tensor, type Tensor } from '../src/index.js';
import { writeTinyShards } from './helpers/tiny-data.js';

function params(): Tensor[] {
  return [tensor([[0.5, -1.25], [2, 0.125]]).requiresGrad_(), tensor([0.75, -0.5]).requiresGrad_()];
}
const bits = (t: Tensor): number[] => Array.from(new Uint32Array(Float32Array.from(t.dataSync() as Float32Array).buffer));

describe('GradScaler', () => {
  it('backs off by 0.5 on overflow and grows by 2 after growthInterval clean steps (the documented rule)', async () => {
    setBackend('js');
    const ps = params();
    const opt = new AdamW(ps, { lr: 1e-3 });
    const scaler = new GradScaler({ initScale: 8, growthInterval: 3 });
    // ok ok inf | ok ok ok (grows) | inf inf | ok ok ok (grows); NaN counts as overflow too
    const pattern = [1, 1, Infinity, 1, 1, 1, Infinity, NaN, 1, 1, 1];
    const scales: number[] = [];
    for (const g of pattern) {
      for (const p of ps) p.grad = tensor(new Float32Array(p.size).fill(g * scaler.getScale()), { shape: p.shape });
      await scaler.step(opt);
      scaler.update();
      scales.push(scaler.getScale());
    }
    expect(scales).toEqual([8, 8, 4, 4, 4, 8, 4, 2, 2, 2, 4]);
    expect(scaler.skippedSteps).toBe(3);
    const d = new GradScaler();
    expect([d.getScale(), d.growthFactor, d.backoffFactor, d.growthInterval]).toEqual([65536, 2, 0.5, 2000]);
  });

  it('a skipped step leaves every weight and the AdamW state bit-identical; a clean one unscales exactly', async () => {
    setBackend('js');
    const ps = params();
    const opt = new AdamW(ps, { lr: 1e-2, weightDecay: 0.1 });
    const scaler = new GradScaler({ initScale: 1024 });
    const setGrads = (vals: number[][]): void => ps.forEach((p, i) => { p.grad = tensor(Float32Array.from(vals[i]!), { shape: p.shape }); });
    setGrads([[1024, 2048, -512, 256], [128, -64]]);
    scaler.unscaleGrads(opt);
    expect(Array.from(ps[0]!.grad!.dataSync())).toEqual([1, 2, -0.5, 0.25]); // divided by the scale, exactly
    expect(await scaler.step(opt)).toBe(true);
    scaler.update();
    const before = ps.map(bits), state = ps.map((p) => { const s = opt.getState(p)!; return [s.step, bits(s.expAvg), bits(s.expAvgSq)]; });
    setGrads([[1, Infinity, 1, 1], [1, 1]]); // one overflowing element
    expect(await scaler.step(opt)).toBe(false);
    scaler.update();
    expect(ps.map(bits)).toEqual(before);
    expect(ps.map((p) => { const s = opt.getState(p)!; return [s.step, bits(s.expAvg), bits(s.expAvgSq)]; })).toEqual(state);
    expect(scaler.getScale()).toBe(512);
  });

  it("unscales backward()'s own gradients in place (the tensor taken before sees it, as torch's unscale_), a caller's by a copy", async () => {
    const { createWasmBackend } = await import('../src/tensor/backends/wasm/index.js');
    const be = createWasmBackend({ threads: 1 });
    try {
      setBackend(be);
      const [w, b] = params();
      const opt = new AdamW([w!, b!], { lr: 1e-3 });
      const scaler = new GradScaler({ initScale: 4 });
      scaler.scale(w!.mul(tensor([[1, 2], [3, 4]])).sum().add(b!.sum())).backward();
      const held = w!.grad!;
      const mine = tensor(Float32Array.of(8, -8), { shape: [2] });
      b!.grad = mine; // a caller's gradient: replaced by a scaled copy, never written
      scaler.unscaleGrads(opt);
      expect(w!.grad).toBe(held);
      expect(Array.from(await held.data())).toEqual([1, 2, 3, 4]);
      expect(Array.from(await b!.grad!.data())).toEqual([2, -2]);
      expect(Array.from(await mine.data())).toEqual([8, -8]);
    } finally {
      setBackend('js');
      be.terminate();
    }
  });

  it('clipping after unscaleGrads sees the true gradients; state round-trips; misuse is named', async () => {
    setBackend('js');
    const ps = params();
    const opt = new AdamW(ps);
    const scaler = new GradScaler({ initScale: 4096 });
    ps.forEach((p) => { p.grad = tensor(new Float32Array(p.size).fill(3 * 4096), { shape: p.shape }); });
    scaler.unscaleGrads(opt);
    expect(clipGradNorm(ps, 1e9).item()).toBeCloseTo(3 * Math.sqrt(6), 5); // the unscaled norm
    expect(() => scaler.unscaleGrads(opt)).toThrow(/already called since the last update/);
    expect(() => new GradScaler().update()).toThrow(/call step\(optimizer\) first/);
    await scaler.step(opt);
    scaler.update();
    const s = scaler.stateDict();
    expect(s).toEqual({ scale: 4096, growth_factor: 2, backoff_factor: 0.5, growth_interval: 2000, _growth_tracker: 1 });
    const t = new GradScaler();
    t.loadStateDict(s);
    expect(t.getScale()).toBe(4096);
    expect(() => t.loadStateDict({ ...s, scale: -1 })).toThrow(/positive finite scale/);
    expect(() => new GradScaler({ backoffFactor: 2 })).toThrow(/0 < backoffFactor < 1/);
    const off = new GradScaler({ enabled: false });
    expect(off.getScale()).toBe(1);
    expect(off.scale(ps[0]!)).toBe(ps[0]);
  });
});

// ---- npm run train -- --dtype --------------------------------------------------------------------

const root = join(import.meta.dirname, '..');
const cli = join(root, 'dist/train/cli.js');
const tiny = ['--n-layer', '1', '--n-head', '2', '--n-embd', '16', '--block-size', '16', '--vocab-size', '64',
  '--batch-size', '2', '--seq-len', '8', '--warmup-steps', '2', '--max-lr', '3e-3',
  '--eval-interval', '3', '--val-steps', '2', '--sample-interval', '0', '--backend', 'js'];
function run(args: string[]): { code: number; out: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd: root, encoding: 'utf8', timeout: 120_000 });
  return { code: r.status ?? -1, out: `${r.stdout}${r.stderr}` };
}
const logOf = (dir: string): Record<string, number | string>[] =>
  readFileSync(join(dir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number | string>);

let work = '', data = '';
beforeAll(() => {
  work = mkdtempSync(join(tmpdir(), 'tapegrad-amp-'));
  data = join(work, 'data');
  mkdirSync(data);
  writeTinyShards(data, { seed: 9, noise: 0.1, stride: 5, val: 200, train: [600] });
});

describe('npm run train -- --dtype', () => {
  it('float16: loss scale and skipped steps in the log, the scaler in the checkpoint, restored by --resume', () => {
    const dir = join(work, 'f16');
    const r = run([...tiny, '--data-dir', data, '--out-dir', dir, '--max-steps', '4', '--checkpoint-interval', '2', '--dtype', 'float16']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('precision: float16 autocast, GradScaler (scale 65536)');
    expect(r.out).toMatch(/step {5}0 \| .* \| loss scale: 65536/);
    const steps = logOf(dir).filter((e) => e.loss !== undefined);
    for (const e of steps) expect([e.dtype, e.loss_scale, e.skipped_steps]).toEqual(['float16', 65536, 0]);
    const side = JSON.parse(readFileSync(join(dir, 'model_00002.json'), 'utf8')) as { dtype: string; grad_scaler: Record<string, number> };
    expect(side.dtype).toBe('float16');
    expect(side.grad_scaler).toEqual({ scale: 65536, growth_factor: 2, backoff_factor: 0.5, growth_interval: 2000, _growth_tracker: 2, skipped_steps: 0 });
    // a resumed run continues from the saved scaler: edit it to a scale and tracker of our own
    writeFileSync(join(dir, 'model_00002.json'), JSON.stringify({ ...side, grad_scaler: { ...side.grad_scaler, scale: 1024, _growth_tracker: 5, skipped_steps: 3 } }));
    for (const f of readdirSync(dir).filter((f) => /_0000[34]\./.test(f))) writeFileSync(join(dir, f), ''); // only step 2 is usable
    const r2 = run([...tiny, '--data-dir', data, '--out-dir', dir, '--max-steps', '4', '--dtype', 'float16', '--resume']);
    expect(r2.code, r2.out).toBe(0);
    expect(r2.out).toContain('GradScaler (scale 1024)');
    expect(r2.out).toMatch(/step {5}2 \| .* \| loss scale: 1024/);
    const resumed = logOf(dir).filter((e) => e.step === 3 && e.loss !== undefined);
    expect(resumed[0]!.skipped_steps).toBe(3);
    // a sidecar whose scaler state is nonsense is refused, naming the file and the way out
    for (const f of readdirSync(dir).filter((f) => /^model_\d+\.json$/.test(f))) {
      const j = JSON.parse(readFileSync(join(dir, f), 'utf8')) as Record<string, unknown>;
      writeFileSync(join(dir, f), JSON.stringify({ ...j, grad_scaler: { ...(j.grad_scaler as object), scale: -1 } }));
    }
    const r3 = run([...tiny, '--data-dir', data, '--out-dir', dir, '--max-steps', '6', '--dtype', 'float16', '--resume']);
    expect(r3.code, r3.out).toBe(1);
    expect(r3.out).toMatch(/model_\d+\.json: its grad_scaler cannot be restored .*positive finite scale.*resume from another checkpoint/);
  });

  it('bfloat16 trains and logs its dtype; an unknown --dtype and a float16 overflow are named', () => {
    const dir = join(work, 'bf16');
    const r = run([...tiny, '--data-dir', data, '--out-dir', dir, '--max-steps', '12', '--dtype', 'bfloat16', '--max-lr', '1e-2']);
    expect(r.code, r.out).toBe(0);
    expect(r.out).toContain('precision: bfloat16 autocast; weights, gradients and AdamW state in float32');
    const steps = logOf(dir).filter((e) => e.loss !== undefined);
    expect(steps.every((e) => e.dtype === 'bfloat16' && e.loss_scale === undefined)).toBe(true);
    expect(Number(steps[11]!.loss)).toBeLessThan(Number(steps[0]!.loss) - 0.2); // it learns the pattern
    const bad = run([...tiny, '--data-dir', data, '--out-dir', join(work, 'x'), '--dtype', 'half']);
    expect(bad.code).not.toBe(0);
    expect(bad.out).toContain("--dtype: expected one of float32, bfloat16, float16, got 'half'");
    // a learning rate that blows the activations past float16's 65504
    const blow = run([...tiny, '--data-dir', data, '--out-dir', join(work, 'blow'), '--max-steps', '30', '--max-lr', '300', '--dtype', 'float16', '--eval-interval', '0']);
    expect(blow.code, blow.out).not.toBe(0);
    expect(blow.out).toMatch(/(loss \(under float16 autocast\) is (NaN|Infinity|-Infinity) at step \d+.*GradScaler.*--dtype bfloat16)|(overflowed float16 at each of the last 25 steps.*--dtype bfloat16)/s);
  });
});
