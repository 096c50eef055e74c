// `npm run train -- [flags]`: train a GPT as build-nanogpt's train_gpt2.py does.
// With no flags: a small GPT on the embedded corpus, about five minutes on a 2-core CPU.

import { GPT_PRESETS } from '../nn/gpt.js';
import { BACKENDS } from './choose-backend.js';
import { TRAIN_DTYPES } from './precision.js';
import { command, parseCommand, runMain } from './cli-args.js';
import { train, TRAIN_DEFAULTS as d, type TrainOptions } from './train.js';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { joinJob, readDistEnv } from './distributed/init.js';
import { launch } from './distributed/launch.js';
import { dryRun } from './dry-run.js';
import { EMBEDDED_TOKENIZERS, type EmbeddedTokenizer } from '../data/embedded.js';
import { readDataTokenizer } from '../data/shards.js';
import { paddedVocabSize, tokenizerFromSpec } from '../data/tokenizer-spec.js';
import { HELLASWAG_DEFAULT_FILE } from './hellaswag.js';
import type { GradWireDtype } from './distributed/ddp.js';

export const TRAIN_COMMAND = command({
  usage: 'npm run train -- [flags]',
  example: 'npm run train -- --max-steps 300 --out-dir out-longer   # the default model, longer, into a new directory',
  summary: `Trains a GPT-2 style model (build-nanogpt's train_gpt2.py). Defaults train the '${d.model}' preset
on the embedded corpus in about five minutes: the first run learns a 1,024-token BPE from it and
tokenizes it into data/embedded-bpe (--tokenizer gpt2: GPT-2's tokens, in data/embedded).`,
  options: {
    model: { kind: 'choice', choices: Object.keys(GPT_PRESETS), default: d.model, group: 'model', help: 'a preset' },
    'n-layer': { kind: 'int', min: 1, group: 'model', help: 'override the preset' },
    'n-head': { kind: 'int', min: 1, group: 'model', help: 'override the preset' },
    'n-embd': { kind: 'int', min: 1, group: 'model', help: 'override the preset' },
    'block-size': { kind: 'int', min: 1, group: 'model', help: 'override the preset' },
    'vocab-size': { kind: 'int', min: 1, group: 'model', help: 'override the preset (GPT-2: 50304, padded from 50257)' },
    'init-from': { kind: 'string', metavar: 'NAME|PATH', group: 'model', help: 'start from pretrained weights: gpt2, gpt2-medium, gpt2-large, gpt2-xl or OWNER/NAME[@REV] (from the Hugging Face Hub, into its cache), an HF GPT-2 directory or a checkpoint' },
    'data-dir': { kind: 'string', metavar: 'DIR', group: 'data', help: '*_train_*.npy / *_val_*.npy shards (npm run prepare-data); default: the embedded corpus' },
    tokenizer: { kind: 'choice', choices: EMBEDDED_TOKENIZERS, group: 'data', help: "the embedded corpus's: bpe (1,024 tokens learned from it; default) or gpt2 (GPT-2's 50,257; the default with --init-from GPT-2 weights); a --data-dir has its own" },
    'batch-size': { kind: 'int', min: 1, default: d.batchSize, metavar: 'B', group: 'batch', help: 'micro-batch rows' },
    'seq-len': { kind: 'int', min: 1, default: d.seqLen, metavar: 'T', group: 'batch', help: 'tokens per row' },
    'total-batch-size': { kind: 'int', min: 1, metavar: 'TOKENS', group: 'batch', help: 'tokens per optimizer step, accumulated over micro-batches (default B*T times the ranks)' },
    'max-steps': { kind: 'int', min: 1, default: d.maxSteps, group: 'schedule', help: 'optimizer steps' },
    'warmup-steps': { kind: 'int', min: 0, default: d.warmupSteps, group: 'schedule', help: 'linear warmup steps' },
    'max-lr': { kind: 'number', above: 0, default: d.maxLr, metavar: 'LR', group: 'schedule', help: 'peak learning rate' },
    'min-lr': { kind: 'number', min: 0, metavar: 'LR', group: 'schedule', help: 'final learning rate of the cosine (default max-lr / 10)' },
    'weight-decay': { kind: 'number', min: 0, default: d.weightDecay, metavar: 'WD', group: 'schedule', help: 'AdamW decoupled weight decay of 2-D weights' },
    'grad-clip': { kind: 'number', above: 0, default: d.gradClip, metavar: 'C', group: 'schedule', help: 'global gradient-norm clip' },
    'eval-interval': { kind: 'int', min: 0, default: d.evalInterval, group: 'eval', help: 'validate every N steps (0: only at the end)' },
    'val-steps': { kind: 'int', min: 1, default: d.valSteps, group: 'eval', help: 'validation batches' },
    'sample-interval': { kind: 'int', min: 0, default: d.sampleInterval, group: 'eval', help: 'print samples every N steps (0: never)' },
    hellaswag: { kind: 'string', metavar: 'FILE', alone: HELLASWAG_DEFAULT_FILE, group: 'eval', help: `evaluate HellaSwag (hellaswag_val.jsonl) at each validation; alone: ${HELLASWAG_DEFAULT_FILE}, downloaded when missing as hellaswag.py does` },
    'hellaswag-limit': { kind: 'int', min: 1, group: 'eval', help: 'first N HellaSwag examples only' },
    'out-dir': { kind: 'string', metavar: 'DIR', default: d.outDir, group: 'output', help: 'log.jsonl, loss.svg, checkpoints' },
    'checkpoint-interval': { kind: 'int', min: 0, default: d.checkpointInterval, group: 'output', help: 'checkpoint every N steps (0: only at the end)' },
    'keep-checkpoints': { kind: 'int', min: 0, default: 5, group: 'output', help: 'complete checkpoints kept: the newest N and the best validation one (0: all)' },
    resume: { kind: 'flag', group: 'output', help: 'continue from the newest usable checkpoint in --out-dir' },
    overwrite: { kind: 'flag', group: 'output', help: "start over in an --out-dir that holds a run's checkpoints (deletes them)" },
    seed: { kind: 'int', default: d.seed, min: 0, max: 2 ** 32 - 1, group: 'run', help: 'random seed (the generator takes 32 bits: larger seeds are refused, not wrapped)' },
    backend: { kind: 'choice', choices: BACKENDS, default: d.backend, group: 'run', help: 'compute backend' },
    gpus: { kind: 'string', metavar: 'LIST', group: 'run', help: 'the gpu backends: GPU indices of this machine for its ranks, e.g. 0,2,3 (rank LOCAL_RANK takes the one at that position; default all, in PCI order; 0,0 shares one; also $TAPEGRAD_VISIBLE_GPUS)' },
    dtype: { kind: 'choice', choices: TRAIN_DTYPES, default: 'float32', group: 'run', help: 'mixed precision as nanoGPT\'s --dtype: forward passes under bfloat16 or float16 autocast (float16 adds a GradScaler); weights, gradients and AdamW state stay float32' },
    'dry-run': { kind: 'flag', group: 'run', help: 'no training: count what one optimizer step needs from a GPU (peak device memory, launches) on a recording device, and exit' },
    threads: { kind: 'int', min: 1, max: 256, group: 'run', help: 'worker threads of the wasm backend, per rank (default: cores / ranks on this machine)' },
    'nproc-per-node': { kind: 'int', min: 1, group: 'distributed (torchrun\'s flags)', help: 'start this many ranks on this machine (our torchrun --standalone)' },
    nnodes: { kind: 'int', min: 1, default: 1, group: 'distributed (torchrun\'s flags)', help: 'machines in the job' },
    'node-rank': { kind: 'int', min: 0, default: 0, group: 'distributed (torchrun\'s flags)', help: 'this machine\'s index (0 serves the rendezvous)' },
    'master-addr': { kind: 'string', metavar: 'HOST', default: '127.0.0.1', group: 'distributed (torchrun\'s flags)', help: 'address of node 0' },
    'master-port': { kind: 'int', min: 0, max: 65535, default: 0, group: 'distributed (torchrun\'s flags)', help: 'rendezvous port on node 0 (0: any free port, one machine only)' },
    'ddp-grad-dtype': { kind: 'choice', choices: ['float32', 'bfloat16'], default: 'float32', group: 'distributed (torchrun\'s flags)', help: 'what the gradient all-reduce sends: bfloat16 halves the bytes, as DDP\'s bf16_compress_hook' },
    'dist-timeout': { kind: 'int', min: 1, default: 300, metavar: 'SECONDS', group: 'distributed (torchrun\'s flags)', help: 'how long to wait for the other ranks (rendezvous, and each collective)' },
  },
  epilog: `Workers started by torchrun, Slurm (srun) or a Kubernetes PyTorchJob read RANK, WORLD_SIZE, LOCAL_RANK,
MASTER_ADDR and MASTER_PORT (or SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID) from the environment.`,
});

/** The environment variable through which our launcher tells its workers the command the user typed. */
const LAUNCHER_ARGV = 'TAPEGRAD_LAUNCHER_ARGV';

/** The launcher's own flags, which the workers it starts do not get. */
const LAUNCHER_FLAGS = ['nproc-per-node', 'nnodes', 'node-rank', 'master-addr', 'master-port'];
function workerArgs(argv: string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i]!.startsWith('--') ? argv[i]!.slice(2).split('=')[0]! : '';
    if (LAUNCHER_FLAGS.includes(name)) { if (!argv[i]!.includes('=')) i++; continue; }
    out.push(argv[i]!);
  }
  return out;
}

export async function main(argv: string[]): Promise<number> {
  const v = parseCommand(TRAIN_COMMAND, argv);
  if (!v) return 0;
  parseGpus(v.gpus); // (a bad list is refused here, not once per rank)
  if (v['nproc-per-node'] !== undefined || v.nnodes > 1) {
    // our torchrun: start the ranks of this machine, each this same CLI as a worker
    const n = v['nproc-per-node'] ?? 1;
    // each rank's GPU-select layer, built once here rather than by every rank at once
    if (v.backend.startsWith('gpu') && n > 1) (await import('../tensor/backends/gpu/gpu-select.js')).buildGpuSelectLayer();
    const threads = v.threads ?? Math.max(1, Math.floor(availableParallelism() / n));
    return launch({
      nprocPerNode: n, nnodes: v.nnodes, nodeRank: v['node-rank'], masterAddr: v['master-addr'], masterPort: v['master-port'],
      command: [process.execPath, fileURLToPath(import.meta.url), ...workerArgs(argv), ...(v.threads === undefined ? ['--threads', String(threads)] : [])],
      // what the user typed, for the "to continue" line rank 0 prints (the workers' flags differ)
      env: { [LAUNCHER_ARGV]: JSON.stringify(argv) },
    });
  }
  const env = readDistEnv();
  const job = env ? await joinJob(env, v['dist-timeout'] * 1000) : undefined;
  const opts: TrainOptions = {
    model: v.model, nLayer: v['n-layer'], nHead: v['n-head'], nEmbd: v['n-embd'], blockSize: v['block-size'], vocabSize: v['vocab-size'],
    initFrom: v['init-from'], dataDir: v['data-dir'], tokenizer: v.tokenizer as EmbeddedTokenizer | undefined,
    batchSize: v['batch-size'], seqLen: v['seq-len'],
    // default: one micro-batch per rank per step; a larger total accumulates gradients up to it
    totalBatchSize: v['total-batch-size'] ?? v['batch-size'] * v['seq-len'] * (env?.worldSize ?? 1),
    maxSteps: v['max-steps'], warmupSteps: v['warmup-steps'],
    maxLr: v['max-lr'],
    minLr: v['min-lr'] ?? v['max-lr'] * 0.1, // build-nanogpt: min_lr = max_lr * 0.1
    weightDecay: v['weight-decay'], gradClip: v['grad-clip'],
    evalInterval: v['eval-interval'], valSteps: v['val-steps'], sampleInterval: v['sample-interval'],
    checkpointInterval: v['checkpoint-interval'], keepCheckpoints: v['keep-checkpoints'], outDir: v['out-dir'],
    seed: v.seed, backend: v.backend, resume: v.resume, overwrite: v.overwrite, job,
    // a rank's share of the cores when several run on this machine
    threads: v.threads ?? (env && env.localWorldSize > 1 ? Math.max(1, Math.floor(availableParallelism() / env.localWorldSize)) : undefined),
    hellaswag: v.hellaswag, hellaswagLimit: v['hellaswag-limit'], dtype: v.dtype, gpus: parseGpus(v.gpus),
    ddpGradDtype: v['ddp-grad-dtype'] as GradWireDtype,
  };
  if (v['dry-run']) {
    // the vocabulary: --vocab-size, else a --data-dir's learned BPE (padded to 64), else the preset's
    // (GPT-2's 50304: a dry run sizes a GPU for real data, not for the embedded corpus)
    const spec = opts.dataDir ? readDataTokenizer(opts.dataDir) : null;
    const dataVocab = spec && spec.type !== 'gpt2' ? paddedVocabSize(tokenizerFromSpec(spec)) : undefined;
    await dryRun({ ...opts, vocabSize: opts.vocabSize ?? dataVocab });
    return 0;
  }
  if (opts.minLr > opts.maxLr) throw new Error(`--min-lr ${opts.minLr} is above --max-lr ${opts.maxLr}; the cosine decays from max to min`);
  // Ctrl-C / SIGTERM: the current step finishes, a checkpoint is written; a second one exits at once
  const stop = new AbortController();
  const exitCodes = { SIGINT: 130, SIGTERM: 143 } as const;
  const onSignal = (sig: keyof typeof exitCodes): void => {
    if (stop.signal.aborted) { console.error(`\n${sig} again: exiting now (the last checkpoint written is intact)`); process.exit(exitCodes[sig]); }
    console.error(`\n${sig}: finishing this step and writing a checkpoint (${sig === 'SIGINT' ? 'Ctrl-C' : 'signal'} again to exit at once)`);
    stop.abort(sig);
  };
  for (const sig of Object.keys(exitCodes) as (keyof typeof exitCodes)[]) process.on(sig, onSignal);
  let r;
  try {
    r = await train({ ...opts, signal: stop.signal });
  } finally {
    job?.close();
  }
  const master = !env || env.rank === 0;
  if (r.stopped) {
    const sig = r.stopped.reason as keyof typeof exitCodes;
    const typed = process.env[LAUNCHER_ARGV] ? JSON.parse(process.env[LAUNCHER_ARGV]) as string[] : argv;
    if (master) console.log(`stopped by ${sig} after ${r.steps} steps; to continue: npm run train -- ${typed.filter((a) => a !== '--resume' && a !== '--overwrite').join(' ')} --resume`.replace(/ +--resume$/, ' --resume'));
    return exitCodes[sig] ?? 1;
  }
  if (master) console.log(`done: ${r.steps} steps in ${r.seconds.toFixed(1)} s, final train loss ${r.finalLoss.toFixed(4)}` +
      (r.finalValLoss !== null ? `, val loss ${r.finalValLoss.toFixed(4)}` : '') + `, ${r.tokensPerSec.toFixed(0)} tok/s (last step)`);
  return 0;
}

/** --gpus 0,2,3: GPU indices (one may repeat: --gpus 0,0 puts two ranks on GPU 0). */
function parseGpus(list: string | undefined): number[] | undefined {
  if (list === undefined) return undefined;
  const gpus = list.split(',').map((x) => x.trim());
  if (gpus.some((g) => !/^\d+$/.test(g))) throw new Error(`--gpus ${list}: expected GPU indices separated by commas, e.g. --gpus 0,2,3`);
  return gpus.map(Number);
}

runMain(import.meta.url, main);
