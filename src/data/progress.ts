// Progress reporting like tqdm (which fineweb.py uses): a redrawn bar on a terminal, and plain
// periodic lines when output goes to a file or CI log, where carriage returns would make a mess.

export type ProgressUnit = 'bytes' | 'tokens' | 'items' | 'steps';

export interface ProgressOptions {
  label: string;
  /** Expected final value; undefined shows a counter without percentage or ETA. */
  total?: number;
  unit?: ProgressUnit;
  /** Where to draw; default process.stderr (stdout stays free for results). */
  stream?: NodeJS.WritableStream & { isTTY?: boolean; columns?: number };
  /** Force the TTY (bar) or the plain-line style; default: the stream's isTTY. */
  tty?: boolean;
  /** Plain mode: at most one line per this many ms (default 10 s). */
  intervalMs?: number;
  /** Clock, injectable for tests. */
  now?: () => number;
}

/** 1536 -> "1.5 KB" (bytes, powers of 1024) or "1.5k" (tokens and items, powers of 1000). */
export function formatAmount(v: number, unit: ProgressUnit = 'items'): string {
  if (unit === 'bytes') {
    const units = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (Math.abs(v) >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return `${i === 0 ? v.toFixed(0) : v.toFixed(1)} ${units[i]}`;
  }
  const units = ['', 'k', 'M', 'G', 'T'];
  let i = 0;
  while (Math.abs(v) >= 1000 && i < units.length - 1) {
    v /= 1000;
    i++;
  }
  const num = i === 0 ? String(Math.round(v)) : v.toFixed(v < 10 ? 2 : 1);
  return unit === 'tokens' ? `${num}${units[i]} tok` : `${num}${units[i]}`;
}

/** Seconds -> "1:02:03" or "2:03". */
export function formatDuration(sec: number): string {
  if (!Number.isFinite(sec) || sec < 0) return '?';
  const s = Math.round(sec);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}

export class ProgressBar {
  private value = 0;
  private readonly start: number;
  private lastDraw = -Infinity;
  private finished = false;
  private readonly stream: NonNullable<ProgressOptions['stream']>;
  private readonly tty: boolean;
  private readonly now: () => number;

  constructor(private readonly opts: ProgressOptions) {
    this.stream = opts.stream ?? process.stderr;
    this.tty = opts.tty ?? this.stream.isTTY === true;
    this.now = opts.now ?? (() => performance.now());
    this.start = this.now();
    // Plain mode: the first line comes after intervalMs, not a useless "0%" at once.
    if (!this.tty) this.lastDraw = this.start;
  }

  /** Sets the current value (absolute, not an increment). */
  update(value: number): void {
    this.value = value;
    const t = this.now();
    // Redraw at most 10 times a second on a terminal; plain lines every intervalMs.
    const every = this.tty ? 100 : (this.opts.intervalMs ?? 10_000);
    if (t - this.lastDraw >= every) {
      this.lastDraw = t;
      this.draw(false);
    }
  }

  add(delta: number): void {
    this.update(this.value + delta);
  }

  /** Final draw (value = total if given) and newline. */
  done(value = this.opts.total ?? this.value): void {
    if (this.finished) return;
    this.finished = true;
    this.value = value;
    this.draw(true);
  }

  /** The status text without bar: "label 45% 12.3 MB/45.6 MB 3.2 MB/s ETA 0:12". */
  text(): string {
    const unit = this.opts.unit ?? 'items';
    const elapsed = (this.now() - this.start) / 1000;
    const rate = elapsed > 0 ? this.value / elapsed : 0;
    const { total } = this.opts;
    const parts = [this.opts.label];
    if (total !== undefined && total > 0) parts.push(`${((100 * this.value) / total).toFixed(0).padStart(3)}%`);
    parts.push(total !== undefined ? `${formatAmount(this.value, unit)}/${formatAmount(total, unit)}` : formatAmount(this.value, unit));
    parts.push(`${formatAmount(rate, unit)}/s`);
    if (total !== undefined && rate > 0 && !this.finished) parts.push(`ETA ${formatDuration((total - this.value) / rate)}`);
    if (this.finished) parts.push(`in ${formatDuration(elapsed)}`);
    return parts.join(' ');
  }

  private draw(final: boolean): void {
    const text = this.text();
    if (!this.tty) {
      this.stream.write(text + '\n');
      return;
    }
    const { total } = this.opts;
    let line = text;
    if (total !== undefined && total > 0) {
      const width = 24;
      const filled = Math.max(0, Math.min(width, Math.round((width * this.value) / total)));
      line = `${this.opts.label} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}]${text.slice(this.opts.label.length)}`;
    }
    const cols = this.stream.columns ?? 100;
    if (line.length > cols - 1) line = line.slice(0, cols - 1);
    this.stream.write(`\r${line}\x1b[K${final ? '\n' : ''}`);
  }
}
