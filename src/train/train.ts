// The training loop of build-nanogpt's train_gpt2.py as a library function: gradient
// accumulation to a token budget, global-norm clipping, warmup + cosine, periodic validation,
// samples and checkpoints; one JSON line per step in log.jsonl and a loss-curve SVG.

import { statSync } from 'node:fs';
import { totalmem } from 'node:os';
import { basename, join } from 'node:path';
import { acquireLock, makeDirs, removeStaleTemps } from '../data/fsutil.js';
import { manualSeed } from '../tensor/random.js';
import { GPT, type GPTConfig } from '../nn/gpt.js';
import { AdamW, GradScaler, configureOptimizers, type GradScalerState } from '../optim/index.js';
import { DataLoaderLite, listShards } from '../data/loader.js';
import { ensureEmbeddedShards, type EmbeddedTokenizer } from '../data/embedded.js';
import { readDataTokenizer } from '../data/shards.js';
import { scanShards } from '../data/scan.js';
import { describeTokenizer, tokenizerFromSpec, type Tokenizer, type TokenizerSpec } from '../data/tokenizer-spec.js';
import { bitsPerByte, measureBaselines } from './baselines.js';
import { loadTokenizerSpec, modelState, pruneCheckpoints, saveCheckpoint } from './checkpoint.js';
import { rankGpu, useBackend } from './choose-backend.js';
import type { Backend } from '../tensor/backend.js';
import { RunLog } from './run-log.js';
import { resolveStart, type RunIdentity, type Start } from './start.js';
import { singleJob, type Job } from './distributed/init.js';
import { broadcastOptimizerState, broadcastTensors, GradientReducer, reduceNumbers, type GradWireDtype } from './distributed/ddp.js';
import { Tensor, tensor } from '../tensor/index.js';
import { parseDtype, type TrainDtype } from './precision.js';
import { optimizationStep, validationLoss, type StepContext } from './step.js';
import { sample } from './generate-text.js';

export interface TrainOptions {
  /** A GPT_PRESETS name; nLayer, nHead, nEmbd, blockSize, vocabSize override it. */
  model: string;
  nLayer?: number; nHead?: number; nEmbd?: number; blockSize?: number; vocabSize?: number;
  /** An HF GPT-2 directory or one of our checkpoints to start from. */
  initFrom?: string;
  /** Directory of *_train_*.npy / *_val_*.npy shards; default: the embedded corpus. */
  dataDir?: string;
  /**
   * The embedded corpus's tokenizer: 'bpe' (default: 1,024 tokens learned from the corpus) or
   * 'gpt2'. With dataDir the data's own tokenizer is used, and this, if given, must name it.
   */
  tokenizer?: EmbeddedTokenizer;
  batchSize: number;
  seqLen: number;
  /** Tokens per optimizer step; a multiple of batchSize * seqLen (the rest is accumulation). */
  totalBatchSize: number;
  maxSteps: number;
  warmupSteps: number;
  maxLr: number;
  minLr: number;
  weightDecay: number;
  gradClip: number;
  evalInterval: number;
  valSteps: number;
  sampleInterval: number;
  /** Checkpoint every N steps (and at the last step); 0: only at the last step. */
  checkpointInterval: number;
  /** Complete checkpoints kept: the newest N and the best validation one (0: all). Default 5. */
  keepCheckpoints?: number;
  outDir: string;
  seed: number;
  backend: string;
  threads?: number;
  /**
   * Mixed precision (nanoGPT's --dtype): 'bfloat16' or 'float16' run forward passes (training,
   * validation, HellaSwag, samples) under autocast, as train_gpt2.py under torch.autocast;
   * float16 adds a GradScaler. Weights, gradients and AdamW state stay float32. Default float32.
   */
  dtype?: TrainDtype;
  resume: boolean;
  /** Start over in an out-dir that holds another run's checkpoints (they are deleted). */
  overwrite?: boolean;
  /**
   * Stop cleanly when aborted (the CLI aborts on SIGINT / SIGTERM): the current step finishes,
   * a checkpoint is written, and the result says so (`stopped`).
   */
  signal?: AbortSignal;
  /** What the gradient all-reduce sends: float32 (default), or bfloat16 as DDP's bf16_compress_hook (half the bytes). */
  ddpGradDtype?: GradWireDtype;
  /** The gpu backends: this machine's GPUs the ranks use, rank LOCAL_RANK the one at that position (default: all, in order). */
  gpus?: number[];
  /** Evaluate HellaSwag at each eval interval (path to hellaswag_val.jsonl). */
  hellaswag?: string;
  hellaswagLimit?: number;
  /** Where human lines go (default console.log); in a distributed job only rank 0's go there. */
  print?: (line: string) => void;
  /** A distributed job (joinJob): data parallel over its ranks, as train_gpt2.py under torchrun. */
  job?: Job;
}

/**
 * CPU defaults: the 'nano' preset on the embedded corpus's learned BPE, 5,000 steps of 16 x 64
 * tokens, about five minutes on two cores with the wasm backend; a small model takes a larger
 * learning rate than GPT-2's 6e-4. Chosen from ~5-minute runs (validation loss; the bigram's
 * 4.13): at this budget tokens seen matter more than depth, so 1 layer at ~18k tok/s (3.60)
 * beat 2 layers (3.62 at 96 wide, 3.88 at 128) and 4 layers (4.36); GPT-2's own tokenizer never
 * got past the unigram (7.37 against a bigram of 6.03). README "What a newcomer sees" has the
 * default's own figures over three seeds (npm run bench -- --only=first).
 */
export const TRAIN_DEFAULTS: TrainOptions = {
  model: 'nano', batchSize: 16, seqLen: 64, totalBatchSize: 16 * 64, maxSteps: 5000, warmupSteps: 50,
  maxLr: 4e-3, minLr: 4e-4, weightDecay: 0.1, gradClip: 1.0, evalInterval: 500, valSteps: 16,
  sampleInterval: 1000, checkpointInterval: 0, outDir: 'out', seed: 1337, backend: 'auto', resume: false,
};

/** float16: a run whose every step overflows this many times in a row stops (the scale is down by 2^this). */
const MAX_CONSECUTIVE_SKIPS = 25;

export interface TrainResult {
  steps: number;
  finalLoss: number;
  finalValLoss: number | null;
  tokensPerSec: number;
  seconds: number;
  /** Set when the run was stopped early by its abort signal: the reason, and the checkpoint written. */
  stopped?: { reason: string; checkpoint: string | null };
}

export async function train(o: TrainOptions): Promise<TrainResult> {
  const job = o.job ?? singleJob();
  // only rank 0 (master_process) reports, logs and writes; every rank samples
  const print = job.isMaster ? o.print ?? ((s: string) => console.log(s)) : (): void => {};
  const t0 = performance.now();
  checkOptions(o);
  const gpu = o.backend.startsWith('gpu') ? rankGpu(o.gpus, job.env.localRank, job.env.localWorldSize) : undefined;
  let backend = await useBackend(o.backend, o.threads, gpu);
  print(`backend: ${backend.name}${job.worldSize > 1 ? `, ${job.worldSize} ranks (data parallel), each to the next over ${job.group.transport === 'unix' ? 'a Unix socket' : 'TCP'}` : ''}`);
  const adapter = (backend as { runner?: { adapter?: string } }).runner?.adapter;
  if (adapter) console.log(job.worldSize > 1 ? `rank ${job.rank}: ${adapter}` : `device: ${adapter}`); // every rank says which GPU it opened
  let release = (): void => {};
  if (job.isMaster) {
    makeDirs(o.outDir, '--out-dir');
    // one run per out-dir: two would interleave their log and overwrite each other's checkpoints
    release = await acquireLock(join(o.outDir, '.train.lock'), {
      waitMs: 0, busy: (pid) => `--out-dir ${o.outDir} is in use by another training run (process ${pid}); wait for it or choose another --out-dir`,
    });
  }
  try {
    for (let recoveries = 0; ; recoveries++) {
      const atEnd: (() => void)[] = []; // what the run started and must stop however it ends
      try {
        return await trainLocked(o, job, backend, print, t0, atEnd);
      } catch (e) {
        // a GPU device can be lost (a driver reset, another process): everything on it is gone,
        // so make a new one and continue from the last checkpoint, which the loss cannot touch
        if (!backend.lost) throw e;
        const lost = `the GPU device was lost (${backend.lost.reason}: ${backend.lost.message || 'no detail'})`;
        if (job.worldSize > 1) throw new Error(`rank ${job.rank}: ${lost}; the job stops, its checkpoints kept. Continue with --resume`);
        if (recoveries >= MAX_DEVICE_RECOVERIES) {
          throw new Error(`${lost}, ${recoveries + 1} times in this run; stopping (the checkpoints are kept; --resume continues from the newest)`);
        }
        print(`${lost}; making a new device and continuing from this run's last checkpoint (if it has one, else from the start)`);
        backend = await useBackend(o.backend, o.threads, gpu);
        o = { ...o, resume: true, overwrite: false };
      } finally {
        for (const f of atEnd) f();
      }
    }
  } finally {
    release();
  }
}

/** A run whose GPU device is lost more often than this stops (a device that keeps failing will not get better). */
const MAX_DEVICE_RECOVERIES = 3;

async function trainLocked(o: TrainOptions, job: Job, backend: Backend, print: (s: string) => void, t0: number, atEnd: (() => void)[]): Promise<TrainResult> {
  const { rank, worldSize: W, isMaster: master } = job;
  if (master) for (const f of removeStaleTemps(o.outDir)) print(`removed ${f}, left in ${o.outDir} by a writer that was killed`);
  // the embedded corpus comes in the BPE learned from it, or in the tokenizer of --init-from's weights
  // (OpenAI's GPT-2 fine-tunes on GPT-2 tokens without being told); only asked when it decides
  const embeddedTokenizer = async (): Promise<EmbeddedTokenizer> => {
    if (o.tokenizer) return o.tokenizer;
    if (!o.initFrom) return 'bpe';
    const spec = await loadTokenizerSpec(o.initFrom).catch((e: Error) => { throw new Error(`--init-from ${e.message}`); });
    return spec.type === 'gpt2' ? 'gpt2' : 'bpe';
  };
  const dataDir = o.dataDir ?? await ensureEmbeddedShards(undefined, { tokenizer: await embeddedTokenizer() });
  const tokenizerSpec = readDataTokenizer(dataDir);
  if (o.dataDir && o.tokenizer && o.tokenizer !== tokenizerSpec.type) {
    throw new Error(`--tokenizer ${o.tokenizer}: the shards in ${o.dataDir} were made with ${describeTokenizer(tokenizerSpec)}; the data decides the tokenizer, so drop --tokenizer (or make the data with the other one)`);
  }
  const tok = tokenizerFromSpec(tokenizerSpec);
  const B = o.batchSize, T = o.seqLen;
  await agreeOnSettings(job, o, dataDir);
  // a HellaSwag file is read at the first evaluation, which a resumed run skips: check it now,
  // not at the next evaluation (hours in, before that step's checkpoint)
  if (o.hellaswag) {
    const { hellaswagFile, readHellaswag } = await import('./hellaswag.js');
    o = { ...o, hellaswag: await hellaswagFile(o.hellaswag) }; // the default one downloaded first, as hellaswag.py
    await readHellaswag(o.hellaswag!, o.hellaswagLimit);
  }
  // rank 0 decides where the run starts (it alone reads the out-dir) and tells the others
  const start = await shareStart(job, master ? await resolveStart({ ...o, dataDir, tokenizer: tokenizerSpec, worldSize: W }, print) : null);
  const { config } = start;

  if (T > config.blockSize) {
    throw new Error(`--seq-len ${T} is longer than the model's block size ${config.blockSize}; use --seq-len <= ${config.blockSize} or --block-size >= ${T}`);
  }
  if (o.totalBatchSize % (B * T * W) !== 0) {
    throw new Error(`--total-batch-size ${o.totalBatchSize} must be divisible by --batch-size * --seq-len${W > 1 ? ' * world size' : ''} = ${B * T * W}`);
  }
  if (backend.hostMemory) checkHostMemory(config, B, T, job.env.localWorldSize); // the ranks sharing this machine
  const gradAccumSteps = o.totalBatchSize / (B * T * W);
  print(`total desired batch size: ${o.totalBatchSize} => calculated gradient accumulation steps: ${gradAccumSteps}`);

  // ---- data: rank r reads every W-th window, from B*T*r on ----
  const trainLoader = new DataLoaderLite({ dataDir, B, T, processRank: rank, numProcesses: W, split: 'train', vocabSize: config.vocabSize });
  const valLoader = new DataLoaderLite({ dataDir, B, T, processRank: rank, numProcesses: W, split: 'val', vocabSize: config.vocabSize });
  // every shard's tokens checked in the background from now (the loaders open shards only when they reach them)
  const scan = master ? scanShards([...valLoader.shards, ...trainLoader.shards], config.vocabSize) : null;
  if (scan) atEnd.push(() => scan.stop());

  // ---- model and optimizer ----
  manualSeed(o.seed);
  const model = new GPT(config, { init: master && !start.weights }); // loaded weights replace the random init; the others get rank 0's
  if (start.weights) model.loadStateDict(start.weights); // a missing lm_head.weight is filled by its tie to wte
  print(`model: ${config.nLayer} layer${config.nLayer === 1 ? '' : 's'}, ${config.nHead} head${config.nHead === 1 ? '' : 's'}, ${config.nEmbd} embd, block ${config.blockSize}, vocab ${config.vocabSize} — ${(model.numParameters() / 1e6).toFixed(2)}M parameters`);
  const params = model.parameters();
  await broadcastTensors(job, params, 'the parameter broadcast'); // as DDP does at construction
  const optimizer = configureOptimizers(model, o.weightDecay, o.maxLr);
  // on a device, bucket readbacks start during the last micro-step's backward (DDP's overlap)
  const reducer = W > 1 && !backend.hostMemory ? new GradientReducer(job, params, o.ddpGradDtype) : null;
  if (reducer) atEnd.push(() => reducer.close());
  if (start.resumed) {
    if (master) restoreTrainingState(start.resumed, model, optimizer, trainLoader, start.step);
    await broadcastOptimizerState(job, optimizer, params, Number(start.resumed.meta.optimizer_step ?? start.step));
    const ls = start.resumed.meta.train_loader as { shard: number; position: number } | undefined;
    if (ls && !master) trainLoader.restore({ shard: ls.shard, position: ls.position + B * T * rank });
  }
  // (the log is touched only now, when the resume is sure: a failed one leaves it as it was)
  const log = !master ? RunLog.disabled() : start.resumed ? RunLog.resume(o.outDir, start.step, print) : RunLog.fresh(o.outDir);
  // ---- precision: float16 gradients need loss scaling (torch.amp.GradScaler); bfloat16 does not ----
  const dtype = o.dtype ?? 'float32';
  const scaler = dtype === 'float16' ? restoredScaler(start.resumed) : null;
  let consecutiveSkips = 0;
  if (dtype !== 'float32') print(`precision: ${dtype} autocast${scaler ? `, GradScaler (scale ${scaler.getScale()})` : ''}; weights, gradients and AdamW state in float32`);
  // what learned means on this data: count models of its tokens (rank 0 reports; no rank waits on it)
  const baselines = master ? measureBaselines(dataDir, tok, o.valSteps * B * T * W + 1) : null;
  const bpb = (nats: number): string => bitsPerByte(nats, baselines!.bytesPerToken).toFixed(2);
  if (baselines) {
    print(`tokenizer: ${describeTokenizer(tokenizerSpec)}, ${baselines.bytesPerToken.toFixed(2)} bytes per token. Baselines on the ${baselines.valTokens.toLocaleString('en-US')} validation tokens: ` +
      `unigram ${bpb(baselines.unigram)} bpb (loss ${baselines.unigram.toFixed(2)}), bigram ${bpb(baselines.bigram)} bpb (loss ${baselines.bigram.toFixed(2)}); ` +
      'below the bigram, the model knows more than which token follows which');
    log.references = [{ label: 'unigram', value: baselines.unigram }, { label: 'bigram', value: baselines.bigram }];
    log.record({ step: start.step, baselines: { unigram_loss: baselines.unigram, bigram_loss: baselines.bigram, bytes_per_token: baselines.bytesPerToken, val_tokens: baselines.valTokens } });
  }

  const stepContext: StepContext = { model, optimizer, params, nextBatch: () => trainLoader.nextBatch(), B, T, gradAccumSteps, dtype, scaler,
    gradClip: o.gradClip, schedule: { maxLr: o.maxLr, minLr: o.minLr, warmupSteps: o.warmupSteps, maxSteps: o.maxSteps }, job, reducer, ddpGradDtype: o.ddpGradDtype ?? 'float32' };
  let lastVal: number | null = null;
  let lastLoss = NaN, lastTokPerSec = 0;
  let lastGoodCheckpoint: string | null = start.resumed?.sidecar ?? null;
  const diverged = (what: string, value: number, step: number): Error => new Error(`${what} is ${value} at step ${step}; stopping. ` +
    (lastGoodCheckpoint ? `The last good checkpoint is ${lastGoodCheckpoint} (resume with --resume). ` : 'No checkpoint was written. ') +
    'Try a lower --max-lr or --grad-clip.');
  const save = async (step: number, valLoss: number | null): Promise<string | null> => {
    if (!master) return null; // rank 0 alone writes (the weights are the same everywhere)
    lastGoodCheckpoint = await checkpoint(model, optimizer, o.outDir, step, config, { val_loss: valLoss, loss: lastLoss, run: start.identity!, dtype, tokenizer: tokenizerSpec,
      ...(scaler ? { grad_scaler: { ...scaler.stateDict(), skipped_steps: scaler.skippedSteps } } : {}) }, trainLoader.state());
    const keep = o.keepCheckpoints ?? 5;
    if (keep > 0) await pruneCheckpoints(o.outDir, keep); // a checkpoint every few steps filled disks (669 MB in 3 minutes)
    print(`saved checkpoint ${lastGoodCheckpoint}`);
    return lastGoodCheckpoint;
  };
  // what building the model left to the collector (its init's temporaries, the device's
  // self-test operands) goes back to the pool now, not at whichever collection finds it: the
  // device memory a run takes, and the peak it reports, are then the same from run to run
  await backend.collect?.();
  for (let step = start.step; step < o.maxSteps; step++) {
    const lastStep = step === o.maxSteps - 1;
    if (scan?.failure) throw new Error(`${scan.failure.message}. Stopped at step ${step}` + (lastGoodCheckpoint ? `; the last checkpoint is ${lastGoodCheckpoint}` : ''));

    // ---- validation ----
    let valNow: number | null = null;
    if (((o.evalInterval > 0 && step % o.evalInterval === 0) || lastStep) && !(start.resumed && step === start.step)) {
      valNow = lastVal = (await reduceNumbers(job, [await validationLoss(model, valLoader, o.valSteps, B, T, master, dtype)], 'avg', 'the validation loss all-reduce'))[0]!;
      print(`validation loss: ${lastVal.toFixed(4)}` + (baselines ? ` | ${bpb(lastVal)} bpb (bigram ${bpb(baselines.bigram)}, unigram ${bpb(baselines.unigram)})` : ''));
      log.validation(step, lastVal, baselines ? bitsPerByte(lastVal, baselines.bytesPerToken) : undefined);
      if (!Number.isFinite(lastVal)) throw diverged('validation loss', lastVal, step); // and no checkpoint of these weights
      if (o.hellaswag) {
        const { evaluateHellaswag } = await import('./hellaswag.js');
        // example i on rank i % W, the counts summed (train_gpt2.py's HellaSwag under DDP)
        const r = await evaluateHellaswag(model, o.hellaswag, { limit: o.hellaswagLimit, print, rank, worldSize: W, progress: master, dtype, tokenizer: tok });
        const [n, correctNorm] = await reduceNumbers(job, [r.n, r.numCorrectNorm], 'sum', 'the HellaSwag counts all-reduce');
        print(`HellaSwag accuracy: ${(correctNorm! / n!).toFixed(4)} (${correctNorm}/${n})`);
        log.record({ step, hella: correctNorm! / n! });
      }
    }
    // ---- checkpoint (its own interval; and at the last step) ----
    if (step > start.step && ((o.checkpointInterval > 0 && step % o.checkpointInterval === 0) || lastStep)) await save(step, valNow);
    // ---- samples ----
    if (o.sampleInterval > 0 && ((step > 0 && step % o.sampleInterval === 0) || lastStep)) {
      await printSamples(model, tok, rank, W, master ? print : (line) => console.log(line), dtype);
    }

    // ---- one optimisation step (step.ts), then the only readbacks: the loss, averaged over the
    // ranks with a stop flag (a Ctrl-C anywhere stops every rank at the same step), and the norm ----
    const s0 = performance.now();
    const scale = scaler?.getScale();
    const { loss, norm, lr, stepped, waitMs, commMs } = await optimizationStep(stepContext, step);
    const [lossV, stopVote] = await reduceNumbers(job, [(await loss.data())[0]!, o.signal?.aborted ? 1 : 0], 'avg', 'the loss all-reduce') as [number, number];
    const normV = (await norm.data())[0]!;
    for (const t of [loss, norm]) t.backend.dispose(t.storage); // read: their buffers go back now
    consecutiveSkips = stepped ? 0 : consecutiveSkips + 1;
    if (scaler && consecutiveSkips >= MAX_CONSECUTIVE_SKIPS) {
      throw new Error(`the gradients overflowed float16 at each of the last ${consecutiveSkips} steps (step ${step}; the loss scale is down to ` +
        `${scaler.getScale()}): the GradScaler cannot find a scale that fits; train with --dtype bfloat16 (float32's range) or a lower --max-lr`);
    }
    const dt = performance.now() - s0;
    const tokPerSec = (B * T * gradAccumSteps * W) / (dt / 1000); // every rank's tokens, as train_gpt2.py counts

    if (!Number.isFinite(lossV)) {
      if (dtype !== 'float16') throw diverged('loss', lossV, step);
      const e = diverged('loss (under float16 autocast)', lossV, step);
      // the scaler guards gradients only: a forward pass can still overflow float16's range
      throw new Error(`${e.message} Under float16 an activation above 65504 overflows in the forward pass, which the GradScaler ` +
        '(it scales only the gradients) cannot prevent; --dtype bfloat16 has float32\'s range.');
    }
    // a GPU backend frees buffers of collected tensors here, once per step, and yielding to the
    // event loop lets the finalizers that hand them back run
    await backend.collect?.();
    await new Promise((r) => setImmediate(r));
    lastLoss = lossV; lastTokPerSec = tokPerSec;
    const skipped = stepped ? '' : ' (step skipped: gradients overflowed float16)';
    const device = backend.deviceBytes?.() ?? null;
    print(`step ${String(step).padStart(5)} | loss: ${lossV.toFixed(6)} | lr ${lr.toExponential(4)} | norm: ${normV.toFixed(4)} | dt: ${dt.toFixed(2)}ms | tok/sec: ${tokPerSec.toFixed(2)}` +
      (scaler ? ` | loss scale: ${scale}${skipped}` : '') +
      (W > 1 ? ` | all-reduce: ${commMs.toFixed(0)}ms (after ${waitMs.toFixed(0)}ms waiting for the slowest rank)` : '') +
      (device !== null ? ` | device memory: ${(device / 1e9).toFixed(2)} GB` : ''));
    log.step({ step, loss: lossV, lr, norm: normV, dt_ms: dt, tok_per_s: tokPerSec, dtype,
      ...(scaler ? { loss_scale: scale!, skipped_steps: scaler.skippedSteps } : {}), ...(device !== null ? { device_bytes: device } : {}) });
    if (stopVote > 0 && step + 1 < o.maxSteps) {
      // stopped from outside (Ctrl-C): keep what this run has done, then say so
      const ck = await save(step + 1, null);
      log.plot();
      await job.group.barrier('the end of training');
      return { steps: step + 1 - start.step, finalLoss: lastLoss, finalValLoss: lastVal, tokensPerSec: lastTokPerSec,
        seconds: (performance.now() - t0) / 1000, stopped: { reason: String(o.signal?.reason ?? 'SIGTERM'), checkpoint: ck } };
    }
  }
  log.plot();
  await job.group.barrier('the end of training'); // rank 0 may serve the store: everyone is done with it first
  return { steps: o.maxSteps - start.step, finalLoss: lastLoss, finalValLoss: lastVal, tokensPerSec: lastTokPerSec, seconds: (performance.now() - t0) / 1000 };
}

/**
 * Every rank must run the same job: the settings that shape it (model, data, seed, batch,
 * schedule, world size) are compared with rank 0's at the start, naming what differs.
 */
async function agreeOnSettings(job: Job, o: TrainOptions, dataDir: string): Promise<void> {
  if (job.worldSize === 1) return;
  const mine = {
    model: o.model, nLayer: o.nLayer ?? null, nHead: o.nHead ?? null, nEmbd: o.nEmbd ?? null, blockSize: o.blockSize ?? null, vocabSize: o.vocabSize ?? null,
    initFrom: o.initFrom ?? null, data: dataFingerprint(dataDir), seed: o.seed, batchSize: o.batchSize, seqLen: o.seqLen, totalBatchSize: o.totalBatchSize,
    maxSteps: o.maxSteps, maxLr: o.maxLr, resume: o.resume, worldSize: job.worldSize, dtype: o.dtype ?? 'float32', ddpGradDtype: o.ddpGradDtype ?? 'float32',
  };
  const all = (await job.exchange('settings', JSON.stringify(mine))).map((v) => JSON.parse(v) as Record<string, unknown>);
  const diffs: string[] = [];
  all.forEach((theirs, r) => {
    for (const k of Object.keys(mine)) {
      if (JSON.stringify(theirs[k]) !== JSON.stringify(all[0]![k])) diffs.push(`rank ${r} has ${k} ${JSON.stringify(theirs[k])}, rank 0 ${JSON.stringify(all[0]![k])}`);
    }
  });
  if (diffs.length) throw new Error(`the ranks were started with different settings: ${diffs.join('; ')}; start every rank with the same flags and data`);
}

/** The data's shards (names and sizes), so ranks on different machines compare their copies. */
function dataFingerprint(dataDir: string): string {
  return [...listShards(dataDir, 'val'), ...listShards(dataDir, 'train')].map((s) => `${basename(s)}:${statSync(s).size}`).join(',');
}

/** Rank 0's start (config, step, what a resumed checkpoint recorded) for every rank; weights follow by broadcast. */
async function shareStart(job: Job, start: Start | null): Promise<Start> {
  if (job.worldSize === 1) return start!;
  const payload = start ? JSON.stringify({ config: start.config, step: start.step, resumed: start.resumed ? { meta: start.resumed.meta } : null }) : '';
  const got = JSON.parse((await job.exchange('start', payload))[0]!) as { config: GPTConfig; step: number; resumed: { meta: Record<string, unknown> } | null };
  if (start) return start;
  return { config: got.config, step: got.step, weights: null, identity: null,
    resumed: got.resumed ? { sidecar: '(rank 0)', optimizer: new Map(), meta: got.resumed.meta } : null };
}

/** The options a library caller passes, checked as the CLI checks its flags. */
function checkOptions(o: TrainOptions): void {
  const ints: [string, number, number][] = [['batchSize', o.batchSize, 1], ['seqLen', o.seqLen, 1], ['totalBatchSize', o.totalBatchSize, 1],
    ['maxSteps', o.maxSteps, 1], ['warmupSteps', o.warmupSteps, 0], ['evalInterval', o.evalInterval, 0], ['valSteps', o.valSteps, 1],
    ['sampleInterval', o.sampleInterval, 0], ['checkpointInterval', o.checkpointInterval, 0], ['keepCheckpoints', o.keepCheckpoints ?? 5, 0]];
  for (const [k, v, min] of ints) if (!Number.isInteger(v) || v < min) throw new Error(`train: ${k} must be an integer >= ${min}, got ${v}`);
  const nums: [string, number, boolean][] = [['maxLr', o.maxLr, true], ['minLr', o.minLr, false], ['weightDecay', o.weightDecay, false], ['gradClip', o.gradClip, true]];
  for (const [k, v, positive] of nums) {
    if (!Number.isFinite(v) || v < 0 || (positive && v === 0)) throw new Error(`train: ${k} must be a finite number ${positive ? '> 0' : '>= 0'}, got ${v}`);
  }
  if (o.minLr > o.maxLr) throw new Error(`train: minLr ${o.minLr} is above maxLr ${o.maxLr}`);
  if (o.outDir.trim() === '') throw new Error("train: outDir (--out-dir) is empty; name a directory, e.g. --out-dir out (an empty one would write into the current directory)");
  if (o.dtype !== undefined) parseDtype(o.dtype, 'train: dtype');
}

/**
 * Refuse, before allocating anything, a model whose training cannot fit this machine's memory: the
 * kernel would kill the process minutes in, with no message. Counted: weights, gradients and AdamW's
 * two moments (16 bytes a parameter) and about 80 bytes a channel per token and layer of float32
 * activations kept for backward, for each rank on this machine.
 */
function checkHostMemory(c: GPTConfig, B: number, T: number, ranks: number): void {
  const C = c.nEmbd;
  const params = c.vocabSize * C + c.blockSize * C + c.nLayer * (12 * C * C + 13 * C) + 2 * C;
  const state = 16 * params, activations = 80 * B * T * C * c.nLayer;
  const need = ranks * (state + activations), have = totalmem();
  if (need > 0.9 * have) {
    const gb = (n: number): string => `${(n / 1e9).toFixed(1)} GB`;
    throw new Error(`the model needs about ${gb(need)} of memory to train (${(params / 1e6).toFixed(0)}M parameters: ${gb(state)} for weights, ` +
      `gradients and AdamW state; ${gb(activations)} of activations at B=${B}, T=${T}${ranks > 1 ? `; times ${ranks} ranks` : ''}), ` +
      `but this machine has ${gb(have)}; choose a smaller --model / --n-embd / --n-layer or a smaller --batch-size`);
  }
}

/** A resumed run's optimizer moments and data position, as its checkpoint recorded them. */
function restoreTrainingState(resumed: NonNullable<Start['resumed']>, model: GPT, optimizer: AdamW, trainLoader: DataLoaderLite, step: number): void {
  if (resumed.optimizer.size) {
    const optStep = Number(resumed.meta.optimizer_step ?? step);
    const named = model.namedParameters();
    // exactly this model's moments: extra tensors mean the file is another (bigger) model's
    const want = new Set(named.flatMap(([n]) => [`${n}.exp_avg`, `${n}.exp_avg_sq`]));
    const extra = [...resumed.optimizer.keys()].filter((k) => !want.has(k));
    if (extra.length) {
      throw new Error(`resume: the optimizer state of ${resumed.sidecar} has ${extra.length} tensor(s) this model has no parameter for ` +
        `(${extra.slice(0, 3).join(', ')}${extra.length > 3 ? ', ...' : ''}); it belongs to another model`);
    }
    for (const [n, p] of named) {
      optimizer.setState(p, { step: optStep, expAvg: stateTensor(resumed, `${n}.exp_avg`, p), expAvgSq: stateTensor(resumed, `${n}.exp_avg_sq`, p) });
    }
  }
  const loaderState = resumed.meta.train_loader as { shard: number; position: number } | undefined;
  if (loaderState) trainLoader.restore(loaderState);
}

function stateTensor(resumed: NonNullable<Start['resumed']>, name: string, p: Tensor): Tensor {
  const w = resumed.optimizer.get(name);
  if (!w) throw new Error(`resume: optimizer state '${name}' is missing from ${resumed.sidecar}'s optimizer file`);
  if (w.data.length !== p.size) {
    throw new Error(`resume: optimizer state '${name}' in ${resumed.sidecar}'s optimizer file has ${w.data.length} values, the parameter [${p.shape.join(', ')}] ${p.size}; it belongs to another model`);
  }
  return tensor(w.data, { shape: p.shape });
}

/** train_gpt2.py's samples during training: 4 rows of 32 tokens after its prompt, top-k 50, seed 42 + rank. */
async function printSamples(model: GPT, tok: Tokenizer, rank: number, W: number, print: (s: string) => void, dtype: TrainDtype): Promise<void> {
  const { texts } = await sample(model, { prompt: "Hello, I'm a language model,", numSamples: 4, maxTokens: 32, topK: 50, temperature: 1,
    seed: 42 + rank, kvCache: true, dtype }, tok);
  texts.forEach((text, i) => print(`${W > 1 ? `rank ${rank} ` : ''}sample ${i}: ${text}`));
}

/** float16's GradScaler, in the state a resumed checkpoint saved (scale 65536 for a new run). */
function restoredScaler(resumed: Start['resumed']): GradScaler {
  const scaler = new GradScaler();
  const saved = resumed?.meta.grad_scaler as (GradScalerState & { skipped_steps?: number }) | undefined;
  if (saved) {
    try { scaler.loadStateDict(saved); } catch (e) {
      throw new Error(`${resumed!.sidecar}: its grad_scaler cannot be restored (${(e as Error).message}); resume from another checkpoint, or drop "grad_scaler" from it to start from scale 65536`);
    }
    const skipped = saved.skipped_steps;
    scaler.skippedSteps = typeof skipped === 'number' && Number.isInteger(skipped) && skipped >= 0 ? skipped : 0;
  }
  return scaler;
}

/** Save the run's state at `step`: weights, AdamW moments, data position, and what the run is. */
async function checkpoint(model: GPT, optimizer: AdamW, outDir: string, step: number, config: GPTConfig,
  meta: { val_loss: number | null; loss: number; run: RunIdentity; dtype: TrainDtype; tokenizer: TokenizerSpec; grad_scaler?: GradScalerState & { skipped_steps: number } },
  loader: { shard: number; position: number }): Promise<string> {
  const { weights, optimizerState, optimizerStep } = await modelState(model, optimizer, `not saving a checkpoint at step ${step}`);
  const paths = await saveCheckpoint(outDir, step, {
    config, weights, optimizerState,
    meta: { ...meta, optimizer_step: optimizerStep, train_loader: loader },
  });
  return paths.sidecar;
}
