// Shapes collapsed to at most 3 dims on the host, so kernels index their inputs through
// gpu.js's i32 accessor (exact past 2^24 elements; see kernels.ts): a broadcast drops size-1
// dims and merges neighbours that broadcast alike, a strided view merges dims that nest.

/** Collapse a broadcast: drop size-1 output dims, merge neighbours with equal broadcast flags. */
export function collapseBroadcast(outShape: readonly number[], inShapes: readonly (readonly number[])[]):
  { dims: number[]; flags: number[][] } {
  const n = outShape.length;
  const dims: number[] = [];
  const flags: number[][] = inShapes.map(() => []);
  for (let d = 0; d < n; d++) {
    const size = outShape[d]!;
    if (size === 1) continue;
    const f = inShapes.map((s) => ((s[s.length - n + d] ?? 1) === 1 ? 0 : 1));
    const last = dims.length - 1;
    if (last >= 0 && f.every((v, i) => flags[i]![last] === v)) {
      dims[last]! *= size;
    } else {
      dims.push(size);
      f.forEach((v, i) => flags[i]!.push(v));
    }
  }
  if (dims.length === 0) { dims.push(1); flags.forEach((f) => f.push(1)); }
  return { dims, flags };
}

/** Collapse a strided view: drop size-1 dims, merge (d, d+1) when stride[d] = stride[d+1]*shape[d+1]. */
export function collapseStrided(shape: readonly number[], strides: readonly number[]): { dims: number[]; strides: number[] } {
  const dims: number[] = [], st: number[] = [];
  for (let d = 0; d < shape.length; d++) {
    if (shape[d] === 1) continue;
    const last = dims.length - 1;
    if (last >= 0 && st[last] === strides[d]! * shape[d]!) {
      dims[last]! *= shape[d]!;
      st[last] = strides[d]!;
    } else {
      dims.push(shape[d]!);
      st.push(strides[d]!);
    }
  }
  if (dims.length === 0) { dims.push(1); st.push(0); }
  return { dims, strides: st };
}

/** Dims (innermost first) padded to x, y, z. */
export function pad3(dims: readonly number[]): [number, number, number] {
  const r = [...dims].reverse();
  return [r[0] ?? 1, r[1] ?? 1, r[2] ?? 1];
}
/** Broadcast flags (innermost first) padded to x, y, z. */
export function pad3f(flags: readonly number[]): [number, number, number] {
  const r = [...flags].reverse();
  return [r[0] ?? 0, r[1] ?? 0, r[2] ?? 0];
}
