// `npm run train -- [flags]`: train a GPT as build-nanogpt's train_gpt2.py does.
// With no flags: a small GPT on the embedded corpus, about five minutes on a 2-core CPU.

import { parseArgs } from 'node:util';
import { train, TRAIN_DEFAULTS, type TrainOptions } from './train.js';

const HELP = `usage: npm run train -- [flags]

Trains a GPT-2 style model (build-nanogpt's train_gpt2.py). Defaults train the 'tiny' preset
on the embedded corpus (tokenized into data/embedded on first run) in about five minutes.

model:     --model PRESET (tiny, small, gpt2, gpt2-medium, gpt2-large, gpt2-xl)
           --n-layer N --n-head N --n-embd N --block-size N --vocab-size N
           --init-from DIR|CHECKPOINT   start from Hugging Face GPT-2 weights or a checkpoint
data:      --data-dir DIR               *_train_*.npy / *_val_*.npy shards (npm run prepare-data)
batch:     --batch-size B --seq-len T --total-batch-size TOKENS (accumulates to it)
schedule:  --max-steps N --warmup-steps N --max-lr LR --min-lr LR --weight-decay WD --grad-clip C
eval:      --eval-interval N --val-steps N --sample-interval N --hellaswag FILE [--hellaswag-limit N]
output:    --out-dir DIR (log.jsonl, loss.svg, checkpoints) --checkpoint-interval N --resume
run:       --seed N --backend auto|js|wasm|gpu|gpu-swiftshader --threads N
`;

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      help: { type: 'boolean', short: 'h' },
      model: { type: 'string' },
      'n-layer': { type: 'string' }, 'n-head': { type: 'string' }, 'n-embd': { type: 'string' },
      'block-size': { type: 'string' }, 'vocab-size': { type: 'string' },
      'init-from': { type: 'string' }, 'data-dir': { type: 'string' },
      'batch-size': { type: 'string' }, 'seq-len': { type: 'string' }, 'total-batch-size': { type: 'string' },
      'max-steps': { type: 'string' }, 'warmup-steps': { type: 'string' },
      'max-lr': { type: 'string' }, 'min-lr': { type: 'string' }, 'weight-decay': { type: 'string' }, 'grad-clip': { type: 'string' },
      'eval-interval': { type: 'string' }, 'val-steps': { type: 'string' }, 'sample-interval': { type: 'string' },
      'checkpoint-interval': { type: 'string' }, 'out-dir': { type: 'string' },
      seed: { type: 'string' }, backend: { type: 'string' }, threads: { type: 'string' }, resume: { type: 'boolean' },
      hellaswag: { type: 'string' }, 'hellaswag-limit': { type: 'string' },
    },
    strict: true,
  });
  if (values.help) { process.stdout.write(HELP); return; }
  const num = (flag: string, v: string | undefined, integer = true): number | undefined => {
    if (v === undefined) return undefined;
    const n = Number(v);
    if (!Number.isFinite(n) || (integer && !Number.isInteger(n))) throw new Error(`--${flag}: expected ${integer ? 'an integer' : 'a number'}, got '${v}'`);
    return n;
  };
  const d = TRAIN_DEFAULTS;
  const maxLr = num('max-lr', values['max-lr'], false) ?? d.maxLr;
  const opts: TrainOptions = {
    model: values.model ?? d.model,
    nLayer: num('n-layer', values['n-layer']), nHead: num('n-head', values['n-head']), nEmbd: num('n-embd', values['n-embd']),
    blockSize: num('block-size', values['block-size']), vocabSize: num('vocab-size', values['vocab-size']),
    initFrom: values['init-from'], dataDir: values['data-dir'],
    batchSize: num('batch-size', values['batch-size']) ?? d.batchSize,
    seqLen: num('seq-len', values['seq-len']) ?? d.seqLen,
    totalBatchSize: 0,
    maxSteps: num('max-steps', values['max-steps']) ?? d.maxSteps,
    warmupSteps: num('warmup-steps', values['warmup-steps']) ?? d.warmupSteps,
    maxLr,
    // build-nanogpt: min_lr = max_lr * 0.1
    minLr: num('min-lr', values['min-lr'], false) ?? maxLr * 0.1,
    weightDecay: num('weight-decay', values['weight-decay'], false) ?? d.weightDecay,
    gradClip: num('grad-clip', values['grad-clip'], false) ?? d.gradClip,
    evalInterval: num('eval-interval', values['eval-interval']) ?? d.evalInterval,
    valSteps: num('val-steps', values['val-steps']) ?? d.valSteps,
    sampleInterval: num('sample-interval', values['sample-interval']) ?? d.sampleInterval,
    checkpointInterval: num('checkpoint-interval', values['checkpoint-interval']) ?? d.checkpointInterval,
    outDir: values['out-dir'] ?? d.outDir,
    seed: num('seed', values.seed) ?? d.seed,
    backend: values.backend ?? d.backend,
    threads: num('threads', values.threads),
    resume: values.resume ?? false,
    hellaswag: values.hellaswag,
    hellaswagLimit: num('hellaswag-limit', values['hellaswag-limit']),
  };
  // default: one micro-batch per step; a larger total accumulates gradients up to it
  opts.totalBatchSize = num('total-batch-size', values['total-batch-size']) ?? opts.batchSize * opts.seqLen;
  for (const [k, v] of Object.entries({ batchSize: opts.batchSize, seqLen: opts.seqLen, maxSteps: opts.maxSteps })) {
    if (v <= 0) throw new Error(`--${k.replace(/[A-Z]/g, (c) => '-' + c.toLowerCase())} must be positive, got ${v}`);
  }
  const r = await train(opts);
  console.log(`done: ${r.steps} steps in ${r.seconds.toFixed(1)} s, final train loss ${r.finalLoss.toFixed(4)}` +
      (r.finalValLoss !== null ? `, val loss ${r.finalValLoss.toFixed(4)}` : '') + `, ${r.tokensPerSec.toFixed(0)} tok/s (last step)`);
}

main().then(() => process.exit(0), (e: unknown) => {
  console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
  process.exit(1);
});
