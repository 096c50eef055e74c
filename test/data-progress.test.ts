// Progress bars: redrawn in place on a terminal, plain periodic lines otherwise (expected strings
// written out by hand from the format: label, percent, done/total, rate, ETA).
import { Writable } from 'node:stream';
import { describe, expect, test } from 'vitest';
import { ProgressBar, formatAmount, formatDuration } from '../src/data/progress.js';

function sink(isTTY: boolean): { stream: Writable & { isTTY: boolean; columns: number }; text: () => string } {
  let out = '';
  const stream = Object.assign(new Writable({ write: (c, _e, cb) => ((out += String(c)), cb()) }), { isTTY, columns: 120 });
  return { stream, text: () => out };
}

describe('progress', () => {
  test('amounts and durations', () => {
    expect(formatAmount(1536, 'bytes')).toBe('1.5 KB');
    expect(formatAmount(100_000_000, 'tokens')).toBe('100.0M tok');
    expect(formatAmount(2_500, 'items')).toBe('2.50k');
    expect(formatDuration(3723)).toBe('1:02:03');
    expect(formatDuration(63)).toBe('1:03');
  });

  test('plain mode prints a line per interval and a final one; no carriage returns', () => {
    let t = 0;
    const s = sink(false);
    const bar = new ProgressBar({ label: 'shard 0', total: 1000, unit: 'tokens', stream: s.stream, intervalMs: 1000, now: () => t });
    t = 500;
    bar.update(100); // before the interval: silent
    t = 1000;
    bar.update(200);
    t = 2000;
    bar.done();
    expect(s.text()).toBe('shard 0  20% 200 tok/1.00k tok 200 tok/s ETA 0:04\nshard 0 100% 1.00k tok/1.00k tok 500 tok/s in 0:02\n');
  });

  test('tty mode redraws one line with a bar and ends it with a newline', () => {
    let t = 0;
    const s = sink(true);
    const bar = new ProgressBar({ label: 'download', total: 2048, unit: 'bytes', stream: s.stream, now: () => t });
    t = 1000;
    bar.update(1024);
    bar.done();
    expect(s.text()).toBe('\rdownload [############------------]  50% 1.0 KB/2.0 KB 1.0 KB/s ETA 0:01\x1b[K\rdownload [########################] 100% 2.0 KB/2.0 KB 2.0 KB/s in 0:01\x1b[K\n');
  });
});
