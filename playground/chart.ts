// The loss chart: train and validation loss against step, drawn as SVG (axes with round ticks).

const NS = 'http://www.w3.org/2000/svg';
const W = 640, H = 300, L = 46, R = 12, T = 22, B = 30;

function el(name: string, attrs: Record<string, string | number>, text?: string): SVGElement {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

/** About `n` round tick values covering [lo, hi] (1, 2 or 5 times a power of ten apart). */
function ticks(lo: number, hi: number, n: number): number[] {
  const span = Math.max(hi - lo, 1e-9);
  const raw = span / n, p = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * p).find((s) => s >= raw)!;
  const out: number[] = [];
  for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(Number(v.toPrecision(12)));
  return out;
}

export function drawChart(svg: SVGSVGElement, train: readonly [number, number][], val: readonly [number, number][], maxSteps: number): void {
  svg.replaceChildren();
  const all = [...train, ...val].map(([, y]) => y).filter(Number.isFinite);
  const yHi = all.length ? Math.max(...all) : 11, yLo = all.length ? Math.min(...all) : 0;
  const pad = (yHi - yLo) * 0.05 || 0.5;
  const y0 = Math.max(0, yLo - pad), y1 = yHi + pad;
  const x1 = Math.max(1, maxSteps);
  const sx = (x: number): number => L + (x / x1) * (W - L - R);
  const sy = (y: number): number => T + (1 - (y - y0) / (y1 - y0)) * (H - T - B);
  for (const v of ticks(y0, y1, 5)) {
    svg.append(el('line', { x1: L, x2: W - R, y1: sy(v), y2: sy(v), class: 'axis' }));
    svg.append(el('text', { x: L - 6, y: sy(v) + 4, 'text-anchor': 'end', class: 'tick' }, String(v)));
  }
  for (const v of ticks(0, x1, 6)) {
    svg.append(el('text', { x: sx(v), y: H - B + 16, 'text-anchor': 'middle', class: 'tick' }, String(v)));
  }
  svg.append(el('text', { x: W - R, y: H - 2, 'text-anchor': 'end', class: 'tick' }, 'step'));
  svg.append(el('text', { x: 4, y: 12, class: 'tick' }, 'loss'));
  const path = (pts: readonly [number, number][]): string => pts.map(([x, y], i) => `${i ? 'L' : 'M'}${sx(x).toFixed(1)},${sy(y).toFixed(1)}`).join('');
  if (train.length) svg.append(el('path', { d: path(train), class: 'line-train' }));
  if (val.length) {
    svg.append(el('path', { d: path(val), class: 'line-val' }));
    for (const [x, y] of val) svg.append(el('circle', { cx: sx(x), cy: sy(y), r: 3, class: 'dot-val' }));
  }
}
