// The loss curve as a small standalone SVG (train loss per step, val loss per evaluation, and
// dashed reference levels such as the bigram baseline), rewritten atomically at each evaluation
// so it can be opened while training runs.

import { writeFileAtomic } from '../data/fsutil.js';

export interface CurvePoint { step: number; value: number }
/** A level to compare the curve with, drawn dashed across the chart (e.g. "bigram" at 4.13). */
export interface ReferenceLine { label: string; value: number }

/**
 * At most the lowest and the highest point of each of `cols` step columns: a curve of any length
 * draws in bounded time and size, spikes included.
 */
export function thinCurve(pts: readonly CurvePoint[], cols: number, maxStep: number): CurvePoint[] {
  if (pts.length <= 2 * cols) return [...pts];
  const out: CurvePoint[] = [];
  let col = -1, lo: CurvePoint | null = null, hi: CurvePoint | null = null;
  const flush = (): void => {
    if (!lo || !hi) return;
    if (lo === hi) out.push(lo); else out.push(...(lo.step <= hi.step ? [lo, hi] : [hi, lo]));
  };
  for (const p of pts) {
    const c = Math.min(cols - 1, Math.floor((p.step / maxStep) * cols));
    if (c !== col) { flush(); col = c; lo = hi = p; continue; }
    if (p.value < lo!.value) lo = p;
    if (p.value > hi!.value) hi = p;
  }
  flush();
  return out;
}

export function lossCurveSvg(trainAll: CurvePoint[], valAll: CurvePoint[], title = 'loss', refs: readonly ReferenceLine[] = []): string {
  const W = 720, H = 420, L = 60, R = 20, T = 30, B = 45;
  // loops, not Math.min(...points): spreading 125k+ values overflows the stack
  let maxStep = 1, lo = Infinity, hi = -Infinity;
  for (const p of [trainAll, valAll].flat()) {
    if (!Number.isFinite(p.value)) continue;
    if (p.step > maxStep) maxStep = p.step;
    if (p.value < lo) lo = p.value;
    if (p.value > hi) hi = p.value;
  }
  const levels = refs.filter((r) => Number.isFinite(r.value));
  for (const r of levels) { lo = Math.min(lo, r.value); hi = Math.max(hi, r.value); }
  const finite = (pts: CurvePoint[]): CurvePoint[] => pts.filter((p) => Number.isFinite(p.value));
  const train = thinCurve(finite(trainAll), W - L - R, maxStep), val = thinCurve(finite(valAll), W - L - R, maxStep);
  if (lo > hi) { lo = 0; hi = 1; }
  if (hi - lo < 1e-9) { hi += 0.5; lo -= 0.5; }
  const x = (s: number): number => L + (s / maxStep) * (W - L - R);
  const y = (v: number): number => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
  const line = (pts: CurvePoint[]): string => pts.filter((p) => Number.isFinite(p.value))
    .map((p) => `${x(p.step).toFixed(1)},${y(p.value).toFixed(1)}`).join(' ');
  const ticks = Array.from({ length: 6 }, (_, i) => lo + ((hi - lo) * i) / 5);
  const xticks = Array.from({ length: 6 }, (_, i) => Math.round((maxStep * i) / 5));
  return `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">
<rect width="${W}" height="${H}" fill="white"/>
<text x="${W / 2}" y="18" text-anchor="middle" font-size="14">${title}</text>
${ticks.map((v) => `<line x1="${L}" x2="${W - R}" y1="${y(v).toFixed(1)}" y2="${y(v).toFixed(1)}" stroke="#eee"/><text x="${L - 6}" y="${(y(v) + 4).toFixed(1)}" text-anchor="end">${v.toFixed(2)}</text>`).join('\n')}
${xticks.map((s) => `<text x="${x(s).toFixed(1)}" y="${H - B + 16}" text-anchor="middle">${s}</text>`).join('\n')}
<text x="${W / 2}" y="${H - 8}" text-anchor="middle">step</text>
<line x1="${L}" y1="${H - B}" x2="${W - R}" y2="${H - B}" stroke="black"/><line x1="${L}" y1="${T}" x2="${L}" y2="${H - B}" stroke="black"/>
${levels.map((r) => `<line x1="${L}" x2="${W - R}" y1="${y(r.value).toFixed(1)}" y2="${y(r.value).toFixed(1)}" stroke="#777" stroke-dasharray="6 4"/><text x="${L + 6}" y="${(y(r.value) - 4).toFixed(1)}" fill="#555">${escapeXml(r.label)} ${r.value.toFixed(2)}</text>`).join('\n')}
<polyline fill="none" stroke="#1f77b4" stroke-width="1.5" points="${line(train)}"/>
<polyline fill="none" stroke="#d62728" stroke-width="2" points="${line(val)}"/>
${val.map((p) => `<circle cx="${x(p.step).toFixed(1)}" cy="${y(p.value).toFixed(1)}" r="3" fill="#d62728"/>`).join('')}
<text x="${W - R - 110}" y="${T + 14}" fill="#1f77b4">train loss</text><text x="${W - R - 110}" y="${T + 30}" fill="#d62728">val loss</text>
</svg>
`;
}

function escapeXml(s: string): string {
  return s.replace(/[<>&"]/g, (c) => ({ '<': '&lt;', '>': '&gt;', '&': '&amp;', '"': '&quot;' })[c]!);
}

export function writeLossCurve(path: string, train: CurvePoint[], val: CurvePoint[], refs: readonly ReferenceLine[] = []): void {
  writeFileAtomic(path, lossCurveSvg(train, val, 'loss', refs));
}
