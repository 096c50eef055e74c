// One model-level benchmark in its own process (so peak RSS is this config's alone): the MLP
// step or GPT training steps on a chosen backend; prints one JSON line. Spawned by run.ts:
//   node dist-bench/bench/step.js '{"model":"gpt","nLayer":4,"nHead":4,"nEmbd":128,"T":128,"B":8,"vocab":50304,"backend":"wasm","threads":2,"steps":3}'

import type { TrainDtype } from '../src/train/precision.js';

export interface StepConfig {
  model: 'mlp' | 'gpt';
  backend: 'js' | 'wasm';
  threads?: number;
  steps: number;
  /** Warm-up steps before timing (default 2). */
  warmup?: number;
  /** gpt: the forward under autocast in this dtype (float16 with a GradScaler), as --dtype trains. */
  dtype?: TrainDtype;
  // gpt
  nLayer?: number; nHead?: number; nEmbd?: number; T?: number; B?: number; vocab?: number;
}
export interface StepResult {
  ok: boolean;
  note?: string;
  msPerStep?: number;
  tokensPerSec?: number;
  peakRssMB?: number;
  loss?: number;
  /** gpt, when run with --expose-gc: bytes the tape holds after a forward (its saved activations), MiB. */
  activationsMiB?: number;
}

/** BENCH_DEBUG: time every backend method (to see where a step goes). */
const spent = new Map<string, number>();
const stack: string[] = [];
const add = (key: string, dt: number): void => { spent.set(key, (spent.get(key) ?? 0) + dt); };
function instrument(...objs: Record<string, unknown>[]): void {
  for (const o of objs) {
    const names = new Set<string>();
    for (let p: object | null = o; p && p !== Object.prototype; p = Object.getPrototypeOf(p) as object | null) {
      for (const n of Object.getOwnPropertyNames(p)) names.add(n);
    }
    for (const n of names) {
      const f = o[n];
      if (typeof f !== 'function' || n === 'constructor' || n.startsWith('host') || n === 'wrap' || n === 'alloc' || n === 'raw') continue;
      o[n] = function (this: unknown, ...args: unknown[]) {
        const t = performance.now();
        stack.push(n);
        try { return (f as (...a: unknown[]) => unknown).apply(this, args); } finally {
          stack.pop();
          const dt = performance.now() - t;
          add(n, dt);
          // and under the outermost timed method that called it
          if (stack.length && stack[0] !== n) add(`  ${n} in ${stack[0]}`, dt);
        }
      };
    }
  }
}

async function main(): Promise<StepResult> {
  const cfg = JSON.parse(process.argv[2] ?? '{}') as StepConfig;
  const core = await import('../src/index.js');
  let memory: (() => unknown) | null = null;
  if (cfg.backend === 'wasm') {
    const { createWasmBackend } = await import('../src/tensor/backends/wasm/index.js');
    const b = createWasmBackend({ threads: cfg.threads });
    memory = () => b.memoryStats();
    if (process.env.BENCH_DEBUG) {
      instrument(b as unknown as Record<string, unknown>, b.fused as Record<string, unknown>);
      // and every wasm kernel launch by name (pack, gemm, row kernels), nested inside the above
      const rt = b.runtime, run = rt.run.bind(rt);
      rt.run = (name, ntasks, args) => {
        const t = performance.now();
        try { run(name, ntasks, args); } finally { add(`  wasm ${name}`, performance.now() - t); }
      };
    }
    core.setBackend(b);
  } else {
    core.setBackend('js');
  }
  core.manualSeed(0);
  let step: () => number | Promise<number>;
  let forwardOnly: (() => unknown) | null = null;
  if (cfg.model === 'mlp') {
    // 784-1024-1024-10, ReLU, cross-entropy, AdamW; B = 256
    const B = 256;
    const l1 = new core.Linear(784, 1024), l2 = new core.Linear(1024, 1024), l3 = new core.Linear(1024, 10);
    const params = [l1, l2, l3].flatMap((l) => l.parameters());
    const opt = new core.AdamW(params, { lr: 1e-3 });
    const x = core.randn([B, 784]);
    const y = core.tensor(Int32Array.from({ length: B }, (_, i) => i % 10));
    step = () => {
      opt.zeroGrad();
      const h = core.F.relu(l2.forward(core.F.relu(l1.forward(x))));
      const loss = core.F.crossEntropy(l3.forward(h), y);
      loss.backward();
      opt.step();
      return loss.item();
    };
  } else {
    const nn = await import('../src/nn/index.js').catch(() => null);
    if (!nn || !('GPT' in nn)) return { ok: false, note: 'src/nn does not export GPT yet' };
    const { nLayer = 4, nHead = 4, nEmbd = 128, T = 128, B = 8, vocab = 50304 } = cfg;
    const model = new nn.GPT({ blockSize: T, vocabSize: vocab, nLayer, nHead, nEmbd });
    const opt = core.configureOptimizers(model, 0.1, 6e-4);
    const idx = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % vocab);
    const tgt = Int32Array.from({ length: B * T }, (_, i) => (i * 104729 + 1) % vocab);
    const x = core.tensor(idx, { shape: [B, T] }), y = core.tensor(tgt, { shape: [B, T] });
    const dtype = cfg.dtype ?? 'float32';
    const { withDtype } = await import('../src/train/precision.js');
    const forward = (): InstanceType<typeof core.Tensor> => withDtype(dtype, () => model.forward(x, y).loss!);
    // float16 as the trainer runs it: a scaled loss, unscaled gradients before clipping
    const scaler = dtype === 'float16' ? new core.GradScaler() : null;
    step = async () => {
      opt.zeroGrad();
      const loss = forward();
      (scaler ? scaler.scale(loss) : loss).backward();
      scaler?.unscaleGrads(opt);
      core.clipGradNorm(model.parameters(), 1.0);
      if (scaler) { await scaler.step(opt); scaler.update(); } else opt.step();
      return loss.item();
    };
    forwardOnly = forward;
  }
  // between steps, yield to the event loop as a training loop does (awaiting the loss)
  const tick = (): Promise<void> => new Promise((r) => setImmediate(r));
  // two warm-up steps: compile, grow the wasm arena, create optimizer state
  let loss = NaN;
  for (let i = 0; i < (cfg.warmup ?? 2); i++) { loss = await step(); await tick(); }
  spent.clear();
  const t0 = performance.now();
  for (let i = 0; i < cfg.steps; i++) {
    loss = await step(); await tick();
    if (process.env.BENCH_DEBUG) {
      const mu = process.memoryUsage();
      console.error('step', i, (performance.now() - t0).toFixed(0), 'ms', memory?.(),
        `rss ${(mu.rss / 2 ** 20).toFixed(0)} MB, arrayBuffers ${(mu.arrayBuffers / 2 ** 20).toFixed(0)} MB, heap ${(mu.heapUsed / 2 ** 20).toFixed(0)} MB,`,
        `peak ${(process.resourceUsage().maxRSS / 1024).toFixed(0)} MB`);
    }
  }
  const ms = (performance.now() - t0) / cfg.steps;
  if (process.env.BENCH_DEBUG) {
    for (const [n, t] of [...spent].sort((a, b) => b[1] - a[1]).slice(0, 45)) console.error(`${n.padEnd(36)} ${(t / cfg.steps).toFixed(1)} ms/step`);
  }
  const tokens = cfg.model === 'gpt' ? (cfg.B ?? 8) * (cfg.T ?? 128) : 0;
  const peakRssMB = process.resourceUsage().maxRSS / 1024;
  return {
    ok: true, msPerStep: ms, loss, peakRssMB,
    tokensPerSec: tokens ? (tokens * 1000) / ms : undefined,
    activationsMiB: forwardOnly ? await activations(forwardOnly) : undefined,
  };
}

/**
 * What one forward leaves on the tape for backward: host memory in use after it minus before,
 * garbage collected both times, on the second forward after the last step (the first repacks
 * the changed weights for the matmul).
 * Needs --expose-gc; after the timing and the peak RSS, so neither is disturbed.
 */
async function activations(forward: () => unknown): Promise<number | undefined> {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (!gc) return undefined;
  const settle = async (): Promise<void> => { for (let i = 0; i < 3; i++) { gc(); await new Promise((r) => setImmediate(r)); } };
  const live = (): number => process.memoryUsage().arrayBuffers;
  forward(); // once unmeasured: weights the last step changed are repacked for the matmul here, not counted
  await settle();
  const base = live();
  const loss = forward();
  await settle();
  const bytes = live() - base;
  void loss; // held until measured
  return bytes / 2 ** 20;
}

main().then((r) => { console.log(JSON.stringify(r)); process.exit(0); },
  (e: unknown) => { console.log(JSON.stringify({ ok: false, note: String((e as Error).message ?? e).slice(0, 300) })); process.exit(0); });
