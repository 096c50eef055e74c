// How a tensor prints (String(t), console.log(t)), after torch's _tensor_str: the values in nested
// brackets aligned to one width, four decimals (or scientific notation when the magnitudes span
// too much), large tensors summarised to their first and last three entries per dim, then what
// differs from the defaults (dtype, backend, requiresGrad).

import type { HostArray } from './dtype.js';

/** torch's print options: summarise past 1000 elements, showing 3 items at each edge of a dim. */
const THRESHOLD = 1000;
const EDGE_ITEMS = 3;
const PRECISION = 4;
const LINE_WIDTH = 80;

/** Each shown value as text, all of one style: integers, fixed 4 decimals, or scientific. */
function formatter(values: number[], integerDtype: boolean): (v: number) => string {
  const finite = values.filter((v) => Number.isFinite(v));
  if (integerDtype) return (v) => String(v);
  const abs = finite.map(Math.abs).filter((v) => v > 0);
  const max = abs.length ? Math.max(...abs) : 0, min = abs.length ? Math.min(...abs) : 0;
  const fmtSpecial = (v: number): string | null => (Number.isNaN(v) ? 'nan' : v === Infinity ? 'inf' : v === -Infinity ? '-inf' : null);
  if (finite.every((v) => Number.isInteger(v))) {
    // torch: integral floats print as "1." unless they are too large for that
    if (max > 1e8) return (v) => fmtSpecial(v) ?? v.toExponential(PRECISION).replace(/e([+-])(\d)$/, 'e$10$2');
    return (v) => fmtSpecial(v) ?? `${v.toFixed(0)}.`;
  }
  if (max / min > 1000 || max > 1e8 || min < 1e-4) return (v) => fmtSpecial(v) ?? v.toExponential(PRECISION).replace(/e([+-])(\d)$/, 'e$10$2');
  return (v) => fmtSpecial(v) ?? v.toFixed(PRECISION);
}

/** The indices shown along a dim of size n (all, or the edges when summarising). */
function shown(n: number, summarise: boolean): (number | null)[] {
  if (!summarise || n <= 2 * EDGE_ITEMS) return Array.from({ length: n }, (_, i) => i);
  return [...Array.from({ length: EDGE_ITEMS }, (_, i) => i), null, ...Array.from({ length: EDGE_ITEMS }, (_, i) => n - EDGE_ITEMS + i)];
}

/**
 * The body of torch's repr, `[[...], [...]]`, for `values` (plain numbers, row-major) of `shape`.
 * `indent` is the column the outermost bracket sits at.
 */
export function formatValues(values: ArrayLike<number>, shape: readonly number[], integerDtype: boolean, indent: number): string {
  const summarise = values.length > THRESHOLD;
  const strides = shape.map((_, i) => shape.slice(i + 1).reduce((a, b) => a * b, 1));
  // the values that are shown decide the style and the width
  const picked: number[] = [];
  const collect = (dim: number, base: number): void => {
    if (dim === shape.length) { picked.push(values[base]!); return; }
    for (const i of shown(shape[dim]!, summarise)) if (i !== null) collect(dim + 1, base + i * strides[dim]!);
  };
  collect(0, 0);
  const fmt = formatter(picked, integerDtype);
  const width = Math.max(1, ...picked.map((v) => fmt(v).length));
  const cell = (v: number): string => fmt(v).padStart(width);
  const perLine = Math.max(1, Math.floor((LINE_WIDTH - indent) / (width + 2)));
  const render = (dim: number, base: number, col: number): string => {
    if (shape.length === 0) return cell(values[0]!);
    const idx = shown(shape[dim]!, summarise);
    if (dim === shape.length - 1) {
      const items = idx.map((i) => (i === null ? ' ...' : cell(values[base + i]!))); // torch's " ..."
      const lines: string[] = [];
      for (let k = 0; k < items.length; k += perLine) lines.push(items.slice(k, k + perLine).join(', '));
      return `[${lines.join(`,\n${' '.repeat(col + 1)}`)}]`;
    }
    const blank = '\n'.repeat(shape.length - dim - 1);
    const parts = idx.map((i) => (i === null ? '...' : render(dim + 1, base + i * strides[dim]!, col + 1)));
    return `[${parts.join(`,${blank}${' '.repeat(col + 1)}`)}]`;
  };
  return render(0, 0, indent);
}

/** `tensor([...], dtype=..., ...)` as torch prints it; `values` null where they cannot be read synchronously (a GPU). */
export function formatTensor(values: ArrayLike<number> | HostArray | null, shape: readonly number[], extras: string[], integerDtype: boolean): string {
  const tail = extras.length ? `, ${extras.join(', ')}` : '';
  if (values === null) return `tensor(<on the device: await t.data() reads it>, shape=[${shape.join(', ')}]${tail})`;
  const body = values.length === 0 && shape.length > 0 ? `[]` : formatValues(values, shape, integerDtype, 'tensor('.length);
  const sizeNote = values.length === 0 && shape.length > 1 ? `, size=[${shape.join(', ')}]` : '';
  return `tensor(${body}${sizeNote}${tail})`;
}
