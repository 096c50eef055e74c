// The playground page: settings, buttons, the live status line, the loss chart and the samples.
// Training runs in worker.ts; this file only talks to it (protocol.ts) and draws.
// URL parameters preset the form: ?backend=wasm|webgpu|js&threads=N&preset=nano&lr=0.004&steps=2000
// &batch=16&seq=64&sampleEvery=100&evalEvery=25&valSteps=4&sampleTokens=64&seed=1337.

import { drawChart } from './chart.js';
import type { BackendChoice, FromWorker, ToWorker, TrainSettings } from './protocol.js';

const $ = <T extends HTMLElement>(id: string): T => {
  const e = document.getElementById(id);
  if (!e) throw new Error(`playground: the page lacks #${id}`);
  return e as T;
};
const params = new URLSearchParams(location.search);

const ui = {
  backend: $('backend'), status: $('status'), error: $('error'), chart: $('chart') as unknown as SVGSVGElement,
  tps: $('tps'), stepTime: $('step-time'), lrNow: $('lr-now'), valNow: $('val-now'),
  samples: $('samples'), prompt: $<HTMLInputElement>('prompt'), sample: $<HTMLButtonElement>('sample'),
  train: $<HTMLButtonElement>('train'), stop: $<HTMLButtonElement>('stop'), resume: $<HTMLButtonElement>('resume'),
  download: $<HTMLButtonElement>('download'), load: $<HTMLInputElement>('load'), modelName: $('model-name'),
  preset: $<HTMLSelectElement>('preset'), lr: $<HTMLInputElement>('lr'), steps: $<HTMLInputElement>('steps'),
  batch: $<HTMLInputElement>('batch'), seq: $<HTMLInputElement>('seq'), sampleEvery: $<HTMLInputElement>('sample-every'),
  drop: $('drop'), textFile: $<HTMLInputElement>('text-file'), dataSource: $('data-source'), useEmbedded: $<HTMLButtonElement>('use-embedded'),
};

// ---- errors: always on the page, not only in the console ----
function showError(message: string): void {
  ui.error.hidden = false;
  ui.error.textContent = message;
}
function clearError(): void {
  ui.error.hidden = true;
  ui.error.textContent = '';
}
window.addEventListener('error', (e) => showError(`error: ${e.message}`));
window.addEventListener('unhandledrejection', (e) => showError(`error: ${String((e as PromiseRejectionEvent).reason)}`));

// ---- form defaults from the URL ----
const fields: [HTMLInputElement | HTMLSelectElement, string][] = [
  [ui.preset, 'preset'], [ui.lr, 'lr'], [ui.steps, 'steps'], [ui.batch, 'batch'], [ui.seq, 'seq'], [ui.sampleEvery, 'sampleEvery'],
];
for (const [input, key] of fields) {
  const v = params.get(key);
  if (v !== null) input.value = v;
}

function positiveInt(input: HTMLInputElement, what: string): number {
  const v = Number(input.value);
  if (!Number.isInteger(v) || v < 1) throw new Error(`${what} must be a positive whole number, got "${input.value}"`);
  return v;
}

function settings(): TrainSettings {
  const lr = Number(ui.lr.value);
  if (!(lr > 0 && lr < 1)) throw new Error(`the learning rate must be a number between 0 and 1, got "${ui.lr.value}"`);
  const steps = positiveInt(ui.steps, 'steps');
  const num = (key: string, dflt: number): number => {
    const v = Number(params.get(key) ?? dflt);
    if (!Number.isInteger(v) || v < 1) throw new Error(`?${key}= must be a positive whole number, got "${params.get(key)}"`);
    return v;
  };
  return {
    preset: ui.preset.value === 'small' || ui.preset.value === 'tiny' ? ui.preset.value : 'nano',
    lr, steps, batch: positiveInt(ui.batch, 'the batch'), seqLen: positiveInt(ui.seq, 'the sequence length'),
    evalEvery: num('evalEvery', Math.max(1, Math.round(steps / 8))), valSteps: num('valSteps', 4),
    sampleEvery: positiveInt(ui.sampleEvery, '"sample every"'),
    sampleTokens: num('sampleTokens', 64), seed: num('seed', 1337),
  };
}

// ---- the worker ----
const worker = new Worker(new URL('./worker.ts', import.meta.url), { type: 'module' });
const send = (m: ToWorker, transfer: Transferable[] = []): void => worker.postMessage(m, transfer);
worker.addEventListener('error', (e) => showError(`the training worker failed: ${e.message || 'it could not start (see the console)'}`));

const requested = params.get('backend') ?? 'wasm';
if (!['wasm', 'webgpu', 'js'].includes(requested)) showError(`?backend=${requested} is not one of wasm, webgpu, js; using wasm`);
const threadsParam = params.get('threads');
send({ type: 'init', backend: (['wasm', 'webgpu', 'js'].includes(requested) ? requested : 'wasm') as BackendChoice, threads: threadsParam ? Number(threadsParam) : null, pageUrl: location.href });

// ---- state shown on the page (and every step's numbers for scripts: bench/playground.ts) ----
type StepRecord = Extract<FromWorker, { type: 'step' }>;
declare global { interface Window { playgroundSteps: StepRecord[] } }
window.playgroundSteps = [];
let trainPts: [number, number][] = [];
let valPts: [number, number][] = [];
let maxSteps = 1;
let ready = false;
let state: 'idle' | 'training' | 'stopped' | 'done' = 'idle';
let hasModel = false;
let current: HTMLElement | null = null; // the sample being streamed
let customText: { text: string; name: string } | null = null;

function buttons(): void {
  const training = state === 'training';
  ui.train.disabled = !ready || training;
  ui.stop.disabled = !training;
  ui.resume.disabled = state !== 'stopped';
  ui.download.disabled = training || !hasModel;
  ui.sample.disabled = training || !hasModel;
  ui.load.disabled = training;
  for (const [input] of fields) input.disabled = training;
}

function redraw(): void {
  drawChart(ui.chart, trainPts, valPts, maxSteps);
}
redraw();

function download(name: string, bytes: Uint8Array): void {
  const url = URL.createObjectURL(new Blob([bytes as BlobPart], { type: name.endsWith('.json') ? 'application/json' : 'application/octet-stream' }));
  const a = document.createElement('a');
  a.href = url;
  a.download = name;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
}

worker.onmessage = (e: MessageEvent<FromWorker>) => {
  const m = e.data;
  switch (m.type) {
    case 'ready': {
      ready = true;
      ui.backend.textContent = `Backend: ${m.backend} (${m.detail})${m.backend === 'wasm' ? `, ${m.threads} thread${m.threads === 1 ? '' : 's'}` : ''}`;
      ui.backend.dataset.backend = m.backend;
      ui.backend.dataset.threads = String(m.threads);
      if (m.note) {
        const n = document.createElement('span');
        n.className = 'note';
        n.textContent = m.note;
        ui.backend.append(n);
      }
      break;
    }
    case 'data':
      ui.dataSource.textContent = `${m.source}: ${m.trainTokens.toLocaleString('en')} training and ${m.valTokens.toLocaleString('en')} validation tokens`;
      break;
    case 'step':
      window.playgroundSteps.push(m);
      trainPts.push([m.step, m.loss]);
      maxSteps = m.steps;
      ui.status.textContent = `step ${m.step + 1} / ${m.steps} · loss ${m.loss.toFixed(4)}`;
      // full precision for scripts (the tests compare backends' first losses)
      ui.status.dataset.loss = String(m.loss);
      if (m.step === 0) ui.status.dataset.firstLoss = String(m.loss);
      ui.tps.textContent = m.tokPerSec.toFixed(0);
      ui.stepTime.textContent = `${m.dtMs.toFixed(0)} ms`;
      ui.lrNow.textContent = m.lr.toExponential(2);
      redraw();
      break;
    case 'val':
      valPts.push([m.step, m.loss]);
      ui.valNow.textContent = m.loss.toFixed(4);
      redraw();
      break;
    case 'sample-start': {
      current = document.createElement('div');
      current.className = 'sample';
      const at = document.createElement('span');
      at.className = 'at';
      at.textContent = m.step === null ? 'sample: ' : `step ${m.step}: `;
      current.append(at);
      if (m.prompt) {
        const p = document.createElement('span');
        p.className = 'prompt';
        p.textContent = m.prompt;
        current.append(p);
      }
      ui.samples.prepend(current);
      break;
    }
    case 'token':
      current?.append(m.text);
      break;
    case 'sample-end':
      current?.classList.add('done');
      current = null;
      break;
    case 'state':
      state = m.state;
      if (m.model) { hasModel = true; ui.modelName.textContent = `Model: ${m.model}`; }
      if (m.state === 'stopped') ui.status.textContent += ' · stopped';
      if (m.state === 'done') ui.status.textContent += ' · done';
      break;
    case 'rewind':
      trainPts = trainPts.filter(([st]) => st < m.step);
      valPts = valPts.filter(([st]) => st < m.step);
      ui.samples.querySelectorAll('.sample:not(.done)').forEach((el) => el.remove());
      current = null;
      redraw();
      break;
    case 'files':
      for (const f of m.files) download(f.name, f.bytes);
      break;
    case 'error':
      showError(m.message);
      break;
  }
  buttons();
};

// ---- controls ----
ui.train.addEventListener('click', () => {
  clearError();
  let s: TrainSettings;
  try { s = settings(); } catch (e) { showError((e as Error).message); return; }
  trainPts = []; valPts = []; maxSteps = s.steps;
  window.playgroundSteps = [];
  ui.samples.replaceChildren();
  ui.status.textContent = 'starting…';
  redraw();
  state = 'training';
  buttons();
  send({ type: 'train', settings: s, text: customText?.text ?? null, textName: customText?.name ?? null });
});
ui.stop.addEventListener('click', () => send({ type: 'stop' }));
ui.resume.addEventListener('click', () => { clearError(); state = 'training'; buttons(); send({ type: 'resume' }); });
ui.download.addEventListener('click', () => send({ type: 'download' }));
$('prompt-form').addEventListener('submit', (e) => {
  e.preventDefault();
  clearError();
  send({ type: 'sample', prompt: ui.prompt.value, tokens: Number(params.get('sampleTokens') ?? 64) });
});
ui.load.addEventListener('change', async () => {
  clearError();
  const files = await Promise.all(Array.from(ui.load.files ?? []).map(async (f) => ({ name: f.name, bytes: new Uint8Array(await f.arrayBuffer()) })));
  if (files.length) send({ type: 'load', files }, files.map((f) => f.bytes.buffer));
  ui.load.value = '';
});

async function useText(file: File | undefined): Promise<void> {
  if (!file) return;
  clearError();
  if (file.size > 50e6) { showError(`${file.name} is ${(file.size / 1e6).toFixed(0)} MB; pick a text under 50 MB`); return; }
  customText = { text: await file.text(), name: file.name };
  ui.dataSource.textContent = `${file.name} (${customText.text.length.toLocaleString('en')} characters; tokenized when you press Train)`;
  ui.useEmbedded.hidden = false;
}
ui.textFile.addEventListener('change', () => void useText(ui.textFile.files?.[0]));
ui.useEmbedded.addEventListener('click', () => {
  customText = null;
  ui.textFile.value = '';
  ui.dataSource.textContent = 'the embedded English corpus';
  ui.useEmbedded.hidden = true;
});
ui.drop.addEventListener('dragover', (e) => { e.preventDefault(); ui.drop.classList.add('over'); });
ui.drop.addEventListener('dragleave', () => ui.drop.classList.remove('over'));
ui.drop.addEventListener('drop', (e) => {
  e.preventDefault();
  ui.drop.classList.remove('over');
  void useText(e.dataTransfer?.files[0]);
});
buttons();
