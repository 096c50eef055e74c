// A small WebAssembly binary emitter: just the sections, instructions and SIMD opcodes our
// kernels use (after the spec's binary format, https://webassembly.github.io/spec/core/binary/).
// Kernels are written as TypeScript that pushes opcodes, so the bytes are generated in this repo.

export type ValType = 'i32' | 'f32' | 'f64' | 'v128';
const VALTYPE: Record<ValType, number> = { i32: 0x7f, f32: 0x7d, f64: 0x7c, v128: 0x7b };

/** Unsigned LEB128 (sizes, indices, SIMD sub-opcodes). */
export function uleb(n: number, out: number[]): void {
  if (!Number.isInteger(n) || n < 0) throw new Error(`uleb: ${n} is not a non-negative integer`);
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n !== 0) byte |= 0x80;
    out.push(byte);
  } while (n !== 0);
}

/** Signed LEB128 (i32.const immediates). */
export function sleb(n: number, out: number[]): void {
  n |= 0;
  for (;;) {
    const byte = n & 0x7f;
    n >>= 7;
    const done = (n === 0 && (byte & 0x40) === 0) || (n === -1 && (byte & 0x40) !== 0);
    out.push(done ? byte : byte | 0x80);
    if (done) return;
  }
}

function name(s: string, out: number[]): void {
  const b = new TextEncoder().encode(s);
  uleb(b.length, out);
  for (const x of b) out.push(x);
}

const f32buf = new Float32Array(1);
const f32bytes = new Uint8Array(f32buf.buffer);

/** A local variable handle (index into the function's params + locals). */
export type Local = number & { readonly __local: unique symbol };

/**
 * Builds one function body. Each method appends one instruction; the names follow the
 * text format (`f32x4Add` is `f32x4.add`), so a kernel reads like a .wat listing.
 */
export class Func {
  readonly code: number[] = [];
  private readonly locals: ValType[] = [];
  private depth = 0;
  constructor(readonly params: readonly ValType[], readonly results: readonly ValType[]) {}

  param(i: number): Local {
    if (i >= this.params.length) throw new Error(`Func.param: index ${i} out of ${this.params.length} params`);
    return i as Local;
  }
  local(t: ValType): Local {
    this.locals.push(t);
    return (this.params.length + this.locals.length - 1) as Local;
  }

  /** Encoded body: locals declaration (run-length) + code + end. */
  body(): number[] {
    if (this.depth !== 0) throw new Error(`Func.body: ${this.depth} unclosed block(s)/loop(s)`);
    const out: number[] = [];
    const runs: [number, ValType][] = [];
    for (const t of this.locals) {
      const last = runs[runs.length - 1];
      if (last && last[1] === t) last[0]++;
      else runs.push([1, t]);
    }
    uleb(runs.length, out);
    for (const [n, t] of runs) { uleb(n, out); out.push(VALTYPE[t]); }
    out.push(...this.code, 0x0b);
    return out;
  }

  private op(...bytes: number[]): this { this.code.push(...bytes); return this; }
  private simd(sub: number): this { this.code.push(0xfd); uleb(sub, this.code); return this; }
  private memarg(align: number, offset: number): this {
    uleb(align, this.code); uleb(offset, this.code); return this;
  }

  // ---- control ----
  /** `block ... end`; `br 0` inside jumps past the end. */
  block(body: () => void): this { this.op(0x02, 0x40); this.depth++; body(); this.depth--; return this.op(0x0b); }
  /** `loop ... end`; `br 0` inside jumps back to the top. */
  loop(body: () => void): this { this.op(0x03, 0x40); this.depth++; body(); this.depth--; return this.op(0x0b); }
  /** `if ... (else ...) end` consuming an i32 condition. */
  if(then: () => void, otherwise?: () => void): this {
    this.op(0x04, 0x40); this.depth++; then();
    if (otherwise) { this.op(0x05); otherwise(); }
    this.depth--; return this.op(0x0b);
  }
  br(label: number): this { this.op(0x0c); uleb(label, this.code); return this; }
  brIf(label: number): this { this.op(0x0d); uleb(label, this.code); return this; }
  return(): this { return this.op(0x0f); }
  /** Direct call of function `index` (its position in ModuleSpec.funcs). */
  call(index: number): this { this.op(0x10); uleb(index, this.code); return this; }
  drop(): this { return this.op(0x1a); }
  select(): this { return this.op(0x1b); }

  /**
   * for (i = start; i < end; i += step) body — emitted as block/loop with the test at the
   * top, so a zero-trip loop runs nothing. `start` / `end` push an i32.
   */
  for(i: Local, start: () => void, end: () => void, step: number, body: () => void): this {
    start(); this.set(i);
    return this.block(() => this.loop(() => {
      this.get(i); end(); this.op(0x4e); /* i32.ge_s */ this.brIf(1);
      body();
      this.get(i).i32Const(step).i32Add().set(i).br(0);
    }));
  }

  // ---- variables ----
  get(l: Local): this { this.op(0x20); uleb(l, this.code); return this; }
  set(l: Local): this { this.op(0x21); uleb(l, this.code); return this; }
  tee(l: Local): this { this.op(0x22); uleb(l, this.code); return this; }

  // ---- memory (offset in bytes; alignment hints are log2) ----
  i32Load(offset = 0): this { return this.op(0x28).memarg(2, offset); }
  f32Load(offset = 0): this { return this.op(0x2a).memarg(2, offset); }
  f64Load(offset = 0): this { return this.op(0x2b).memarg(3, offset); }
  i32Store(offset = 0): this { return this.op(0x36).memarg(2, offset); }
  f32Store(offset = 0): this { return this.op(0x38).memarg(2, offset); }
  f64Store(offset = 0): this { return this.op(0x39).memarg(3, offset); }
  v128Load(offset = 0): this { return this.simd(0x00).memarg(4, offset); }
  v128Load32Splat(offset = 0): this { return this.simd(0x09).memarg(2, offset); }
  v128Store(offset = 0): this { return this.simd(0x0b).memarg(4, offset); }
  /** Four u16 zero-extended to an i32x4 (8 bytes). */
  v128Load16x4U(offset = 0): this { return this.simd(0x04).memarg(3, offset); }
  i32Load16U(offset = 0): this { return this.op(0x2f).memarg(1, offset); }
  i32Store16(offset = 0): this { return this.op(0x3b).memarg(1, offset); }

  // ---- constants ----
  i32Const(n: number): this { this.op(0x41); sleb(n, this.code); return this; }
  f32Const(x: number): this { f32buf[0] = x; return this.op(0x43, ...f32bytes); }
  f64Const(x: number): this {
    const b = new Uint8Array(new Float64Array([x]).buffer);
    return this.op(0x44, ...b);
  }

  // ---- i32 ----
  i32Eqz(): this { return this.op(0x45); }
  i32Eq(): this { return this.op(0x46); }
  i32Ne(): this { return this.op(0x47); }
  i32LtS(): this { return this.op(0x48); }
  i32GtS(): this { return this.op(0x4a); }
  i32LeS(): this { return this.op(0x4c); }
  i32GeS(): this { return this.op(0x4e); }
  /** Unsigned: for comparing addresses, which may pass 2^31. */
  i32GeU(): this { return this.op(0x4f); }
  i32Add(): this { return this.op(0x6a); }
  i32Sub(): this { return this.op(0x6b); }
  i32Mul(): this { return this.op(0x6c); }
  i32DivS(): this { return this.op(0x6d); }
  i32RemS(): this { return this.op(0x6f); }
  i32And(): this { return this.op(0x71); }
  i32Shl(): this { return this.op(0x74); }
  i32ShrS(): this { return this.op(0x75); }
  i32ShrU(): this { return this.op(0x76); }
  i32Or(): this { return this.op(0x72); }
  i32GtU(): this { return this.op(0x4b); }

  // ---- f32 / f64 scalar ----
  f32Eq(): this { return this.op(0x5b); }
  f32Lt(): this { return this.op(0x5d); }
  f32Gt(): this { return this.op(0x5e); }
  f32Ge(): this { return this.op(0x60); }
  f32ReinterpretI32(): this { return this.op(0xbe); }
  i32ReinterpretF32(): this { return this.op(0xbc); }
  f32Abs(): this { return this.op(0x8b); }
  f32Neg(): this { return this.op(0x8c); }
  f32Sqrt(): this { return this.op(0x91); }
  f32Add(): this { return this.op(0x92); }
  f32Sub(): this { return this.op(0x93); }
  f32Mul(): this { return this.op(0x94); }
  f32Div(): this { return this.op(0x95); }
  f32Min(): this { return this.op(0x96); }
  f32Max(): this { return this.op(0x97); }
  f64Add(): this { return this.op(0xa0); }
  f64Sub(): this { return this.op(0xa1); }
  f64Mul(): this { return this.op(0xa2); }
  f64Div(): this { return this.op(0xa3); }
  f64Sqrt(): this { return this.op(0x9f); }
  f32DemoteF64(): this { return this.op(0xb6); }
  f64PromoteF32(): this { return this.op(0xbb); }
  f32ConvertI32S(): this { return this.op(0xb2); }

  // ---- v128 / f32x4 / i32x4 ----
  /** Lanes of two v128 by 32-bit index (0-3 the first, 4-7 the second), as i8x16.shuffle's 16 byte indices. */
  i32x4Shuffle(lanes: readonly [number, number, number, number]): this {
    this.simd(0x0d);
    for (const l of lanes) for (let b = 0; b < 4; b++) this.code.push(4 * l + b);
    return this;
  }
  f32x4Splat(): this { return this.simd(0x13); }
  i32x4Splat(): this { return this.simd(0x11); }
  f32x4ExtractLane(lane: number): this { this.simd(0x1f); this.code.push(lane); return this; }
  i32x4ExtractLane(lane: number): this { this.simd(0x1b); this.code.push(lane); return this; }
  f32x4Eq(): this { return this.simd(0x41); }
  f32x4Lt(): this { return this.simd(0x43); }
  f32x4Gt(): this { return this.simd(0x44); }
  f32x4Ge(): this { return this.simd(0x46); }
  v128And(): this { return this.simd(0x4e); }
  v128Or(): this { return this.simd(0x50); }
  v128Bitselect(): this { return this.simd(0x52); }
  i32x4Shl(): this { return this.simd(0xab); }
  i32x4ShrU(): this { return this.simd(0xad); }
  i32x4GtS(): this { return this.simd(0x3b); }
  /** Two i32x4 to one i16x8, saturating to [0, 65535]. */
  i16x8NarrowI32x4U(): this { return this.simd(0x86); }
  i32x4Add(): this { return this.simd(0xae); }
  f32x4Abs(): this { return this.simd(0xe0); }
  f32x4Neg(): this { return this.simd(0xe1); }
  f32x4Sqrt(): this { return this.simd(0xe3); }
  f32x4Add(): this { return this.simd(0xe4); }
  f32x4Sub(): this { return this.simd(0xe5); }
  f32x4Mul(): this { return this.simd(0xe6); }
  f32x4Div(): this { return this.simd(0xe7); }
  f32x4Min(): this { return this.simd(0xe8); }
  f32x4Max(): this { return this.simd(0xe9); }
  /** b < a ? b : a (x86's minps: one instruction, where f32x4.min's NaN rules take several). */
  f32x4PMin(): this { return this.simd(0xea); }
  /** a < b ? b : a (maxps). */
  f32x4PMax(): this { return this.simd(0xeb); }
  /** relaxed-simd fused multiply-add: a*b + c (only when the engine validates it). */
  f32x4RelaxedMadd(): this { return this.simd(0x105); }
}

export interface ModuleSpec {
  /** Imported as env.memory: shared, with these page limits. */
  memory: { initial: number; maximum: number; shared: boolean };
  funcs: { name: string; func: Func }[];
}

/** Serialise a module: types (one per function), memory import, functions, exports, code. */
export function emitModule(spec: ModuleSpec): Uint8Array {
  const out: number[] = [0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00];
  const section = (id: number, content: number[]): void => {
    out.push(id); uleb(content.length, out); for (const b of content) out.push(b);
  };
  const types: number[] = [];
  uleb(spec.funcs.length, types);
  for (const { func } of spec.funcs) {
    types.push(0x60);
    uleb(func.params.length, types); for (const p of func.params) types.push(VALTYPE[p]);
    uleb(func.results.length, types); for (const r of func.results) types.push(VALTYPE[r]);
  }
  section(1, types);

  const imports: number[] = [];
  uleb(1, imports); name('env', imports); name('memory', imports);
  imports.push(0x02, spec.memory.shared ? 0x03 : 0x01);
  uleb(spec.memory.initial, imports); uleb(spec.memory.maximum, imports);
  section(2, imports);

  const fns: number[] = [];
  uleb(spec.funcs.length, fns);
  spec.funcs.forEach((_, i) => uleb(i, fns));
  section(3, fns);

  const exps: number[] = [];
  uleb(spec.funcs.length, exps);
  spec.funcs.forEach(({ name: n }, i) => { name(n, exps); exps.push(0x00); uleb(i, exps); });
  section(7, exps);

  const code: number[] = [];
  uleb(spec.funcs.length, code);
  for (const { func } of spec.funcs) {
    const body = func.body();
    uleb(body.length, code);
    for (const b of body) code.push(b);
  }
  section(10, code);
  return new Uint8Array(out);
}
