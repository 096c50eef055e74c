// The playground's training worker: the engine itself (the same modules `npm run train` uses) in a
// Web Worker, so the page never freezes. It picks the backend, trains build-nanogpt's loop one step
// at a time (yielding between steps so Stop is heard), validates, streams samples token by token,
// and turns the model into the CLI's files and back.

import {
  GPT, GPT_PRESETS, clipGradNorm, configureOptimizers, createWasmBackend, getLr, initGpuBackend,
  manualSeed, noGrad, setBackend, tensor, type AdamW, type Backend, type DeviceLossInfo, type GPTConfig,
} from '../src/index.js';
import { BatchLoader } from '../src/data/batches.js';
import { BpeTokenizer, trainBpe } from '../src/data/bpe.js';
import { paddedVocabSize, specOf, tokenizerFromSpec, type Tokenizer, type TokenizerSpec } from '../src/data/tokenizer-spec.js';
import { sample as sampleText } from '../src/train/generate-text.js';
import { hostThreads, noThreadsReason } from '../src/tensor/backends/wasm/threads.js';
import { modelFiles, weightsFromFiles } from '../src/train/model-files.js';
import type { WeightMap } from '../src/train/hf-layout.js';
import type { BackendChoice, FromWorker, ToWorker, TrainSettings } from './protocol.js';

const post = (m: FromWorker, transfer: Transferable[] = []): void => (self as unknown as Worker).postMessage(m, transfer);

/** build-nanogpt's settings that the page does not expose (as `npm run train`'s defaults). */
const WEIGHT_DECAY = 0.1, GRAD_CLIP = 1.0;

let backend: Backend | null = null;

interface Run {
  settings: TrainSettings;
  config: GPTConfig;
  model: GPT;
  optimizer: AdamW | null;
  train: BatchLoader | null;
  val: BatchLoader | null;
  step: number;
  name: string;
  tokenizer: Tokenizer;
  /** The run at its last validation, on the host: what a lost GPU device cannot take (GPU runs only). */
  snapshot: Snapshot | null;
}
let run: Run | null = null;
let stopRequested = false;
let busy = false;

/** Let queued messages (Stop) and the wasm pool's worker start-up run between steps. */
const yieldToEvents = (): Promise<void> => new Promise((r) => setTimeout(r, 0));

async function init(choice: BackendChoice, threads: number | null): Promise<void> {
  let note: string | null = null;
  let chosen = choice;
  if (choice === 'webgpu') {
    try {
      backend = setBackend(await initGpuBackend());
      post({ type: 'ready', backend: 'webgpu', detail: backend.name === 'gpu' ? gpuName(backend) : backend.name, threads: 1, note: null });
      return;
    } catch (e) {
      note = `WebGPU is not available here (${(e as Error).message}); using wasm instead`;
      chosen = 'wasm';
    }
  }
  if (chosen === 'wasm') {
    const why = noThreadsReason();
    const n = why ? 1 : Math.max(1, Math.min(threads ?? hostThreads(), hostThreads()));
    if (why) note = (note ? `${note}. ` : '') + `one thread only: ${why}`;
    try {
      backend = setBackend(createWasmBackend({ threads: n }));
      post({ type: 'ready', backend: 'wasm', detail: 'WebAssembly SIMD', threads: n, note });
      return;
    } catch (e) {
      note = (note ? `${note}. ` : '') + `the wasm backend failed (${(e as Error).message}); using the js backend`;
    }
  }
  backend = setBackend('js');
  post({ type: 'ready', backend: 'js', detail: 'plain JavaScript', threads: 1, note });
}

function gpuName(b: Backend): string {
  const adapter = (b as { runner?: { adapter?: string } }).runner?.adapter;
  return adapter ? `WebGPU (${adapter})` : 'WebGPU';
}

/** The page's folder: the corpus assets sit beside index.html (the worker's own URL is under assets/). */
let pageBase = self.location.href;

async function fetchTokens(path: string): Promise<Uint16Array> {
  const url = new URL(path, pageBase).href;
  let res: Response;
  try {
    res = await fetch(url, { signal: AbortSignal.timeout(120_000) });
  } catch (e) {
    throw new Error(`could not load the token file ${url}: ${(e as Error).name === 'TimeoutError' ? 'no answer within 120 s' : (e as Error).message}`);
  }
  const bytes = res.ok ? await res.arrayBuffer() : null;
  // (a server that answers every path with index.html gives 200 and HTML)
  if (!bytes || (res.headers.get('content-type') ?? '').includes('text/html') || bytes.byteLength % 2 !== 0 || bytes.byteLength === 0) {
    throw new Error(`could not load the token file ${url} (HTTP ${res.status}${bytes ? `, ${bytes.byteLength} bytes` : ''}); serve the folder npm run build:playground writes`);
  }
  return new Uint16Array(bytes);
}

async function fetchTokenizer(path: string): Promise<Tokenizer> {
  const url = new URL(path, pageBase).href;
  const res = await fetch(url, { signal: AbortSignal.timeout(120_000) }).catch((e: Error) => { throw new Error(`could not load ${url}: ${e.message}`); });
  if (!res.ok) throw new Error(`could not load ${url} (HTTP ${res.status}); serve the folder npm run build:playground writes`);
  return tokenizerFromSpec(await res.json() as TokenizerSpec);
}

let embedded: { train: Uint16Array; val: Uint16Array; tokenizer: Tokenizer } | null = null;

/** Vocabulary of the BPE learned from a user's text (as the embedded corpus's). */
const TEXT_BPE_VOCAB = 1024;

/**
 * The token streams to train on and their tokenizer: the embedded corpus slice (the BPE
 * `npm run train` learned from it), or the user's text split 90/10 with a BPE learned from its
 * first 90%, so validation is text the tokenizer never saw.
 */
async function corpus(text: string | null, textName: string | null): Promise<{ train: Uint16Array; val: Uint16Array; source: string; tokenizer: Tokenizer }> {
  if (text === null) {
    embedded ??= { train: await fetchTokens('corpus/train.bin'), val: await fetchTokens('corpus/val.bin'), tokenizer: await fetchTokenizer('corpus/tokenizer.json') };
    return { ...embedded, source: 'the embedded corpus (nlp-corpus)' };
  }
  const cutChar = Math.floor(text.length * 0.9);
  const tokenizer = new BpeTokenizer(trainBpe([text.slice(0, cutChar)], TEXT_BPE_VOCAB));
  const all = tokenizer.encodeDocument(text); // fineweb.py's way: <|endoftext|>, then the text
  const cut = Math.floor(all.length * 0.9);
  return { train: all.subarray(0, cut), val: all.subarray(cut), source: textName ?? 'your text', tokenizer };
}

function loaders(settings: TrainSettings, data: { train: Uint16Array; val: Uint16Array }, config: GPTConfig): { train: BatchLoader; val: BatchLoader } {
  const { batch: B, seqLen: T } = settings;
  const need = B * T + 1;
  for (const [split, t] of [['training', data.train], ['validation', data.val]] as const) {
    if (t.length < need) {
      throw new Error(`the ${split} text has ${t.length} tokens, too few for one batch of ${B} x ${T} (+1); use more text, or a smaller batch or sequence length`);
    }
  }
  const mk = (t: Uint16Array, name: string): BatchLoader => new BatchLoader({ shards: [{ name, tokens: () => t }], B, T, vocabSize: config.vocabSize });
  return { train: mk(data.train, 'train'), val: mk(data.val, 'val') };
}

async function startTraining(settings: TrainSettings, text: string | null, textName: string | null): Promise<void> {
  const preset = GPT_PRESETS[settings.preset];
  if (!preset) throw new Error(`unknown preset ${settings.preset}`);
  if (settings.seqLen > preset.blockSize) throw new Error(`sequence length ${settings.seqLen} is longer than the ${settings.preset} preset's block size ${preset.blockSize}`);
  const data = await corpus(text, textName);
  // the model's vocabulary is the tokenizer's, padded to a multiple of 64 (as npm run train does)
  const config: GPTConfig = { ...preset, vocabSize: paddedVocabSize(data.tokenizer) };
  const { train, val } = loaders(settings, data, config);
  post({ type: 'data', trainTokens: data.train.length, valTokens: data.val.length, source: data.source });
  manualSeed(settings.seed);
  const model = new GPT(config);
  const optimizer = configureOptimizers(model, WEIGHT_DECAY, settings.lr);
  run = { settings, config, model, optimizer, train, val, step: 0, name: `${settings.preset}, trained here`, tokenizer: data.tokenizer, snapshot: null };
  await trainLoop();
}

async function evaluate(r: Run): Promise<number> {
  const { batch: B, seqLen: T } = r.settings;
  r.val!.reset();
  let sum = 0;
  for (let i = 0; i < r.settings.valSteps; i++) {
    const { x, y } = r.val!.nextBatch();
    const loss = noGrad(() => r.model.forward(tensor(x, { shape: [B, T] }), tensor(y, { shape: [B, T] })).loss!);
    sum += (await loss.data())[0]!;
  }
  return sum / r.settings.valSteps;
}

/** One sample as `npm run sample` makes it (seed 42, top-k 50), streamed to the page piece by piece. */
async function sample(model: GPT, tokenizer: Tokenizer, prompt: string, tokens: number, step: number | null): Promise<void> {
  post({ type: 'sample-start', step, prompt });
  await sampleText(model, {
    prompt, numSamples: 1, maxTokens: Math.min(tokens, model.config.blockSize * 4), topK: 50, temperature: 1, seed: 42, kvCache: true,
    // a document boundary reads better on a page as a line break
    onText: (_, text) => post({ type: 'token', text: text.replaceAll('<|endoftext|>', '\n') }),
  }, tokenizer);
  post({ type: 'sample-end' });
}

/** build-nanogpt's optimisation step, one micro-batch per step; then validation and samples on their intervals. */
async function trainLoop(): Promise<void> {
  const r = run!;
  stopRequested = false;
  post({ type: 'state', state: 'training', model: r.name });
  for (let recoveries = 0; ; recoveries++) {
    try {
      return await trainSteps(r);
    } catch (e) {
      // a GPU device can be lost (a backgrounded tab, a driver reset): continue on a new one
      // from the last validation's snapshot, a few times at most
      if (!backend?.lost || !r.snapshot || recoveries >= MAX_DEVICE_RECOVERIES) throw e;
      await recoverFromDeviceLoss(r, r.snapshot, backend.lost);
    }
  }
}

/** A run whose GPU device is lost more often than this stops (a device that keeps failing will not get better). */
const MAX_DEVICE_RECOVERIES = 3;

async function trainSteps(r: Run): Promise<void> {
  const s = r.settings;
  const params = r.model.parameters();
  // npm run train's warmup (50 steps), shortened for short runs
  const schedule = { maxLr: s.lr, minLr: s.lr / 10, warmupSteps: Math.min(50, Math.floor(s.steps / 10)), maxSteps: s.steps };
  while (r.step < s.steps) {
    const step = r.step;
    const last = step === s.steps - 1;
    if (step % s.evalEvery === 0 || last) {
      post({ type: 'val', step, loss: await evaluate(r) });
      if (backend && !backend.hostMemory) r.snapshot = await snapshot(r);
    }
    if ((step > 0 && step % s.sampleEvery === 0) || last) await sample(r.model, r.tokenizer, '', s.sampleTokens, step);
    const t0 = performance.now();
    r.model.train();
    r.optimizer!.zeroGrad();
    const { x, y } = r.train!.nextBatch();
    const loss = r.model.forward(tensor(x, { shape: [s.batch, s.seqLen] }), tensor(y, { shape: [s.batch, s.seqLen] })).loss!;
    loss.backward();
    const norm = clipGradNorm(params, GRAD_CLIP);
    const lr = getLr(step, schedule);
    r.optimizer!.setLr(lr);
    r.optimizer!.step();
    const lossV = (await loss.data())[0]!;
    const normV = (await norm.data())[0]!;
    const dtMs = performance.now() - t0;
    if (!Number.isFinite(lossV)) throw new Error(`the loss is ${lossV} at step ${step}: training diverged; try a lower learning rate`);
    await backend?.collect?.();
    r.step = step + 1;
    post({ type: 'step', step, steps: s.steps, loss: lossV, lr, norm: normV, dtMs, tokPerSec: (s.batch * s.seqLen) / (dtMs / 1000) });
    await yieldToEvents();
    if (stopRequested && r.step < s.steps) { post({ type: 'state', state: 'stopped', model: r.name }); return; }
  }
  post({ type: 'state', state: 'done', model: r.name });
}

interface Snapshot {
  step: number;
  weights: WeightMap;
  /** AdamW's state of each parameter, in parameters() order (none before the first step). */
  moments: ({ step: number; expAvg: Float32Array; expAvgSq: Float32Array } | null)[];
  loader: { shard: number; position: number };
}

async function snapshot(r: Run): Promise<Snapshot> {
  const moments = [];
  for (const p of r.model.parameters()) {
    const st = r.optimizer!.getState(p);
    moments.push(st ? { step: st.step, expAvg: Float32Array.from(await st.expAvg.data()), expAvgSq: Float32Array.from(await st.expAvgSq.data()) } : null);
  }
  return { step: r.step, weights: await weightsOf(r.model), moments, loader: r.train!.state() };
}

/** A new WebGPU device, the model and AdamW rebuilt on it from the snapshot, the data where it was. */
async function recoverFromDeviceLoss(r: Run, snap: Snapshot, lost: DeviceLossInfo): Promise<void> {
  const what = `the GPU device was lost at step ${r.step} (${lost.reason}${lost.message ? `: ${lost.message}` : ''})`;
  try {
    backend = setBackend(await initGpuBackend());
  } catch (e) {
    throw new Error(`${what}, and no new one could be made (${(e as Error).message}); reload the page, or choose the wasm backend`);
  }
  const model = new GPT(r.config, { init: false });
  model.loadStateDict(snap.weights);
  const optimizer = configureOptimizers(model, WEIGHT_DECAY, r.settings.lr);
  model.parameters().forEach((p, i) => {
    const m = snap.moments[i];
    if (m) optimizer.setState(p, { step: m.step, expAvg: tensor(m.expAvg, { shape: p.shape }), expAvgSq: tensor(m.expAvgSq, { shape: p.shape }) });
  });
  r.train!.restore(snap.loader);
  Object.assign(r, { model, optimizer, step: snap.step });
  post({ type: 'rewind', step: snap.step });
  post({ type: 'ready', backend: 'webgpu', detail: gpuName(backend), threads: 1, note: `${what}; continuing on a new device from step ${snap.step}` });
}

async function weightsOf(model: GPT): Promise<WeightMap> {
  const weights: WeightMap = new Map();
  for (const [name, p] of model.namedParameters()) {
    weights.set(name, { shape: [...p.shape], data: Float32Array.from(await p.data() as Float32Array) });
  }
  return weights;
}

async function handle(m: ToWorker): Promise<void> {
  switch (m.type) {
    case 'init': pageBase = m.pageUrl; return init(m.backend, m.threads);
    case 'stop': stopRequested = true; return;
    case 'train': return startTraining(m.settings, m.text, m.textName);
    case 'resume':
      if (!run?.optimizer) throw new Error('nothing to resume: train a model first (a loaded model is for sampling)');
      if (run.step >= run.settings.steps) throw new Error(`the run already finished its ${run.settings.steps} steps; press Train to start a new one`);
      return trainLoop();
    case 'download': {
      if (!run) throw new Error('no model yet: train one or load one first');
      const f = await modelFiles(run.config, await weightsOf(run.model), run.step, specOf(run.tokenizer));
      const files = [...f].map(([name, bytes]) => ({ name, bytes }));
      post({ type: 'files', files }, files.map((x) => x.bytes.buffer));
      return;
    }
    case 'load': {
      const loaded = await weightsFromFiles(new Map(m.files.map((f) => [f.name, f.bytes])));
      const model = new GPT(loaded.config, { init: false });
      model.loadStateDict(loaded.weights);
      model.eval();
      const settings: TrainSettings = { preset: 'tiny', lr: 0, steps: loaded.step ?? 0, batch: 1, seqLen: 1, evalEvery: 1, valSteps: 1, sampleEvery: 1, sampleTokens: 64, seed: 0 };
      const c = loaded.config;
      run = { settings, config: c, model, optimizer: null, train: null, val: null, step: loaded.step ?? 0, tokenizer: tokenizerFromSpec(loaded.tokenizer), snapshot: null,
        name: `${loaded.source} (${plural(c.nLayer, "layer")}, ${plural(c.nHead, "head")}, ${c.nEmbd} embd${loaded.step !== null ? `, step ${loaded.step}` : ''})` };
      post({ type: 'state', state: 'idle', model: run.name });
      return;
    }
    case 'sample':
      if (!run) throw new Error('no model yet: train one or load one first');
      return sample(run.model, run.tokenizer, m.prompt, m.tokens, null);
  }
}

// Messages are handled one at a time (Stop is the exception: it only raises a flag the loop reads).
const queue: ToWorker[] = [];
self.onmessage = (e: MessageEvent<ToWorker>) => {
  if (e.data.type === 'stop') { stopRequested = true; return; }
  queue.push(e.data);
  if (!busy) void drain();
};

async function drain(): Promise<void> {
  busy = true;
  while (queue.length) {
    const m = queue.shift()!;
    try {
      await handle(m);
    } catch (e) {
      const err = e as Error;
      post({ type: 'error', message: err.message ?? String(e) });
      console.warn(err); // (the page shows the message; the stack is for the console)
      if (m.type === 'train' || m.type === 'resume') post({ type: 'state', state: run ? 'stopped' : 'idle', model: run?.name ?? null });
    }
  }
  busy = false;
}

self.addEventListener('unhandledrejection', (e) => post({ type: 'error', message: String((e as PromiseRejectionEvent).reason) }));

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}
