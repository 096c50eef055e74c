// The messages between the page (main.ts) and the training worker (worker.ts), typed once for both.

export type BackendChoice = 'wasm' | 'webgpu' | 'js';

export interface TrainSettings {
  preset: 'nano' | 'tiny' | 'small';
  lr: number;
  steps: number;
  batch: number;
  seqLen: number;
  /** Validate every N steps (and at the last), on this many batches. */
  evalEvery: number;
  valSteps: number;
  /** Sample every N steps (and at the last). */
  sampleEvery: number;
  sampleTokens: number;
  seed: number;
}

export type ToWorker =
  | { type: 'init'; backend: BackendChoice; threads: number | null; pageUrl: string }
  /** Start from a fresh model; `text` is the user's own text (null: the embedded corpus). */
  | { type: 'train'; settings: TrainSettings; text: string | null; textName: string | null }
  | { type: 'stop' }
  /** Continue the stopped run to its last step. */
  | { type: 'resume' }
  | { type: 'download' }
  | { type: 'load'; files: { name: string; bytes: Uint8Array }[] }
  | { type: 'sample'; prompt: string; tokens: number };

export type FromWorker =
  | { type: 'ready'; backend: BackendChoice; detail: string; threads: number; note: string | null }
  | { type: 'data'; trainTokens: number; valTokens: number; source: string }
  | { type: 'step'; step: number; steps: number; loss: number; lr: number; norm: number; dtMs: number; tokPerSec: number }
  | { type: 'val'; step: number; loss: number }
  | { type: 'sample-start'; step: number | null; prompt: string }
  | { type: 'token'; text: string }
  | { type: 'sample-end' }
  | { type: 'state'; state: 'idle' | 'training' | 'stopped' | 'done'; model: string | null }
  | { type: 'files'; files: { name: string; bytes: Uint8Array }[] }
  /** Training continues from `step` (after a lost GPU device): later points and an unfinished sample are void. */
  | { type: 'rewind'; step: number }
  | { type: 'error'; message: string };
