// A run's log.jsonl and loss curve: one JSON line per step ({"step","loss","lr","norm","dt_ms",
// "tok_per_s"}) and per evaluation ({"step","val_loss","val_bpb"}), appended as they happen; loss.svg
// redrawn from them. Resuming keeps what was logged up to the checkpoint and drops the steps
// after it (they are redone), rewriting the file atomically, and only once the resume is sure.

import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeFileAtomic } from '../data/fsutil.js';
import { writeLossCurve, type CurvePoint, type ReferenceLine } from './plot.js';

export interface StepRecord {
  step: number; loss: number; lr: number; norm: number; dt_ms: number; tok_per_s: number;
  /** The forward passes' precision; with float16, the loss scale used and the steps skipped so far. */
  dtype: string; loss_scale?: number; skipped_steps?: number;
  /** On a GPU: the most device memory taken so far (buffers, pooled ones included). */
  device_bytes?: number;
}
type LogLine = { step: number; loss?: number; val_loss?: number };

export class RunLog {
  readonly path: string;
  private readonly svg: string;
  private readonly train: CurvePoint[] = [];
  private readonly val: CurvePoint[] = [];
  /** Levels drawn across the curve (the data's count baselines). */
  references: ReferenceLine[] = [];

  private constructor(outDir: string, private readonly enabled = true) {
    this.path = join(outDir, 'log.jsonl');
    this.svg = join(outDir, 'loss.svg');
  }

  /** A log that writes nothing (the ranks other than 0 of a distributed run). */
  static disabled(): RunLog { return new RunLog('', false); }

  /** A fresh run: an empty log. */
  static fresh(outDir: string): RunLog {
    const log = new RunLog(outDir);
    writeFileAtomic(log.path, '');
    return log;
  }

  /**
   * Continue a run from the checkpoint at `step`: lines of steps before it (and evaluations at
   * it) are kept, later ones dropped. A partial last line (a run killed mid-write) is dropped
   * with a notice; any other malformed line is an error naming the file and the line.
   */
  static resume(outDir: string, step: number, print: (s: string) => void = () => {}): RunLog {
    const log = new RunLog(outDir);
    if (!existsSync(log.path)) return log;
    const kept: string[] = [];
    const lines = readFileSync(log.path, 'utf8').split('\n');
    const last = lines.findLastIndex((l) => l.trim() !== '');
    lines.forEach((line, i) => {
      if (!line.trim()) return;
      let r: LogLine;
      try { r = JSON.parse(line) as LogLine; } catch {
        if (i === last) { print(`${log.path}: dropping its partial last line ${i + 1} (a run killed mid-write)`); return; }
        throw new Error(`${log.path}: line ${i + 1} is not JSON (${JSON.stringify(line.slice(0, 60))}); fix or delete that line to resume`);
      }
      if (typeof r !== 'object' || r === null || !Number.isSafeInteger(r.step)) {
        throw new Error(`${log.path}: line ${i + 1} has no integer "step" (${JSON.stringify(line.slice(0, 60))}); fix or delete that line to resume`);
      }
      if (r.loss !== undefined ? r.step >= step : r.step > step) return;
      kept.push(line);
      if (r.loss !== undefined) log.train.push({ step: r.step, value: r.loss });
      if (r.val_loss !== undefined) log.val.push({ step: r.step, value: r.val_loss });
    });
    writeFileAtomic(log.path, kept.map((l) => l + '\n').join(''));
    return log;
  }

  step(rec: StepRecord): void {
    this.append(rec);
    this.train.push({ step: rec.step, value: rec.loss });
  }

  /** A validation loss (and the curve redrawn, so it can be watched while training runs). */
  validation(step: number, valLoss: number, valBpb?: number): void {
    this.append({ step, val_loss: valLoss, ...(valBpb !== undefined ? { val_bpb: valBpb } : {}) });
    this.val.push({ step, value: valLoss });
    this.plot();
  }

  /** Any other record of a step (e.g. HellaSwag accuracy). */
  record(obj: { step: number } & Record<string, unknown>): void { this.append(obj); }

  plot(): void { if (this.enabled) writeLossCurve(this.svg, this.train, this.val, this.references); }

  private append(obj: object): void { if (this.enabled) appendFileSync(this.path, JSON.stringify(obj) + '\n'); }
}
