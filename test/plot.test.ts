// The loss curve (loss.svg) of a long run: drawn from at most two points per pixel column, so a
// run of any length draws quickly and without overflowing the stack, spikes kept.

import { describe, expect, it } from 'vitest';
import { lossCurveSvg, thinCurve, type CurvePoint } from '../src/train/plot.js';

describe('loss.svg', () => {
  it('draws 300k steps (once a stack overflow past ~125k) in bounded size, keeping a spike', () => {
    const train: CurvePoint[] = Array.from({ length: 300_000 }, (_, i) => ({ step: i, value: 5 - i / 100_000 }));
    train[123_456]!.value = 9.75; // a spike
    const val: CurvePoint[] = Array.from({ length: 3000 }, (_, i) => ({ step: i * 100, value: 4 }));
    const t0 = performance.now();
    const svg = lossCurveSvg(train, val);
    expect(performance.now() - t0).toBeLessThan(1000);
    expect(svg.length).toBeLessThan(200_000);
    expect(svg).toContain('>9.75<'); // the top tick is the spike
    const thin = thinCurve(train, 640, 299_999);
    expect(thin.length).toBeLessThanOrEqual(1280);
    expect(thin.some((p) => p.value === 9.75)).toBe(true);
    expect(thin.every((p, i) => i === 0 || p.step > thin[i - 1]!.step)).toBe(true);
  });
  it('a short curve is drawn point for point', () => {
    const pts = [{ step: 0, value: 3 }, { step: 1, value: 2 }];
    expect(thinCurve(pts, 640, 1)).toEqual(pts);
  });
});
