// tapegrad's public API: tensors and the tape, ops, functional (F), backends, nn, optim.

// ---- tensors, the tape, ops (src/tensor/index.ts attaches every Tensor method) ----
export { Tensor, tensor, zeros, ones, full, zerosLike, onesLike, randn, rand, randint, arange, eye, noGrad, isGradEnabled, F, autocast, autocastDtype, scope, keep } from './tensor/index.js';
export type { TensorOptions, CreateOptions, NestedArray, TypedData, TapeNode, TapeInput, BackwardFn, AutocastDtype, AutocastOptions } from './tensor/index.js';
export { cat, where, matmul } from './tensor/ops.js';
export { sigmoid, clamp, min, std, stack, clone, argmax, maxWithIndices } from './tensor/composed.js';
export { gradcheck } from './tensor/gradcheck.js';
export type { GradcheckOptions, GradcheckResult } from './tensor/gradcheck.js';
export { manualSeed, Generator } from './tensor/random.js';
export type { DType, HostArray } from './tensor/dtype.js';
export { float32ToFloat16Bits, float16BitsToFloat32, float32ToBfloat16Bits, bfloat16BitsToFloat32 } from './tensor/dtype.js';

// ---- backends: 'js' (reference), 'wasm' (SIMD on worker threads), 'gpu' (gpu.js, loaded on demand) ----
export { getBackend, setBackend, registerBackend, getBackendByName, DeviceLostError, type DeviceLossInfo } from './tensor/backend.js';
export type { Backend, Storage, FusedKernels, MatmulParams, UnaryOp, BinaryOp, ReduceOp, AdamWParams } from './tensor/backend.js';
export { JsBackend, HostStorage } from './tensor/backends/js.js';
export { createWasmBackend, wasmSimdAvailable, WasmBackend, type WasmBackendOptions } from './tensor/backends/wasm/index.js';
export type { InitGpuOptions } from './tensor/backends/gpu/index.js';

/** The GPU backend loads gpu.js (and Dawn on Node) only when asked: `await initGpuBackend(); setBackend('gpu')`. */
export async function initGpuBackend(opts?: import('./tensor/backends/gpu/index.js').InitGpuOptions): Promise<import('./tensor/backend.js').Backend> {
  const gpu = await import('./tensor/backends/gpu/index.js');
  return gpu.initGpuBackend(opts);
}

// ---- models and training ----
export * from './nn/index.js';
export * from './optim/index.js';

// ---- checkpoints and the GPT-2 tokenizer ----
export { Gpt2Tokenizer, StreamDecoder, gpt2Tokenizer, EOT, GPT2_VOCAB_SIZE } from './data/tokenizer.js';
export { BpeTokenizer, trainBpe, type BpeSpec } from './data/bpe.js';
export { tokenizerFromSpec, type Tokenizer, type TokenizerSpec } from './data/tokenizer-spec.js';
export type { LoadedCheckpoint, LoadedWeights, CheckpointPaths } from './train/checkpoint.js';

/**
 * Node: read a checkpoint that `npm run train` or saveCheckpoint wrote (model_<step>.json or its
 * .safetensors): config, weights under the model's parameter names (for model.loadStateDict),
 * the AdamW moments and the sidecar's meta (val_loss, ...). File access loads on the first call.
 */
export async function loadCheckpoint(path: string, opts: { optimizer?: boolean } = {}): Promise<import('./train/checkpoint.js').LoadedCheckpoint> {
  return (await import('./train/checkpoint.js')).loadCheckpoint(path, opts);
}

/**
 * Node: the tokenizer a checkpoint, training output directory or exported directory was trained
 * with: the learned BPE it records, or GPT-2's (OpenAI's weights, older checkpoints). Pair it with
 * GPT.fromPretrained(path) to turn text into ids and samples back into text.
 */
export async function loadTokenizer(path: string): Promise<import('./data/tokenizer-spec.js').Tokenizer> {
  const { loadTokenizerSpec } = await import('./train/checkpoint.js');
  return (await import('./data/tokenizer-spec.js')).tokenizerFromSpec(await loadTokenizerSpec(path));
}

/**
 * Node: write `model` (and `optimizer`'s AdamW moments) to outDir as model_<step>.safetensors (Hugging
 * Face's GPT-2 names and layout) + model_<step>.json, each file through a temp file and a rename, as
 * `npm run train` does; `npm run sample -- --init-from` and GPT.fromPretrained read it. Returns the
 * sidecar's path.
 */
export async function saveCheckpoint(outDir: string, step: number, model: import('./nn/gpt.js').GPT,
  opts: { optimizer?: import('./optim/adamw.js').AdamW; meta?: Record<string, unknown> } = {}): Promise<string> {
  const c = await import('./train/checkpoint.js');
  const { weights, optimizerState } = await c.modelState(model, opts.optimizer);
  return (await c.saveCheckpoint(outDir, step, { config: model.config, weights, optimizerState, meta: opts.meta ?? {} })).sidecar;
}
