// Runs the gpu backend's kernels on WebGPU. gpu.js translates each kernel function to WGSL
// (kernels.ts); the dispatch is ours rather than gpu.js's `kernel()` call, because training
// needs what that call does not give: results that stay on the device as they are produced
// (a synchronous op API), a buffer pool instead of a new buffer per call, and batching of
// many dispatches per queue submission. The device is requested by device.ts (every storage
// limit the adapter allows, and its optional features).
// (Over 500 lines on purpose: one class, the dispatch; its hand-written kernels' launchers are a
// few lines each and share its private binding and uniform helpers.)

import { DeviceLostError, type AdamWParams, type DeviceLossInfo } from '../../backend.js';
import { CAST_CODES, packs, type KernelSpec } from './kernels.js';
import type { AttnView, BufferView, DeviceBuffer, FlashArgs, FlashKernel, HalfRounding, KernelArg, MatmulDims, MatmulEpilogue, OperandView, Runner } from './runner.js';
import type { GpuJsModule, ParamsLayout } from './gpujs.js';
import type { OptionalFeature } from './device.js';
import { LaunchProfiler, type KernelTime } from './profiler.js';
import { LAYERNORM_FWD_WGSL, LAYERNORM_MAX_COLS, LAYERNORM_PARAMS_BYTES, LAYERNORM_SUMS_WGSL, layerNormBwdWgsl } from './layernorm-wgsl.js';
import { CROSS_ENTROPY_PARAMS_BYTES, CROSS_ENTROPY_WGSL } from './cross-entropy-wgsl.js';
import { FLASH_BINDINGS, FLASH_PARAMS_BYTES, flashWgsl } from './flash-wgsl.js';
import { GELU_HALF_PARAMS_BYTES, GELU_HALF_WGSL, HALF_ROUNDING, MATMUL_BIAS, MATMUL_GELU, MATMUL_ROW_SUMS, matmulWideHalfWgsl } from './wgsl.js';
import { TENSOR_TILE, tensorMatmulWgsl, type MatrixConfig } from './tensor-core-wgsl.js';
import { ADAMW_PARAMS_BYTES, ADAMW_WGSL, CAST_PARAMS_BYTES, CAST_WGSL, GATHER_PARAMS_BYTES, GATHER_WGSL, INPLACE_PARAMS_BYTES, INPLACE_WGSL, MATMUL_PARAMS_BYTES, MATMUL_TILE, MATMUL_WGSL, MATMUL_WIDE_TILE, MATMUL_WIDE_WGSL, SEGMENT_SUM_PARAMS_BYTES, SEGMENT_SUM_WGSL } from './wgsl.js';
import {
  BufferUsage, MAP_READ, SHADER_STAGE_COMPUTE,
  type GpuBindGroupLayoutLike, type GpuBufferLike, type GpuComputePassLike, type GpuDeviceLike, type GpuEncoderLike, type GpuPipelineLike, type GpuShaderModuleLike,
} from './webgpu-types.js';

const WORKGROUP = 64;
/** Launches recorded before a submit: amortises submit cost, bounds the uniform buffer. */
const BATCH = 128;
/** Each launch's parameters take one slot of the uniform buffer (WebGPU's uniform offset alignment). */
const UNIFORM_SLOT = 256;
/** Readback buffers up to this size are kept for reuse. */
const STAGING_POOL_MAX_BYTES = 1 << 20;
/** How long a failed read waits for device.lost to explain it (a loss may be reported just after). */
const LOST_GRACE_MS = 1000;

type Binding = { buffer: GpuBufferLike; offset?: number; size?: number };

class GpuBuf implements DeviceBuffer {
  constructor(readonly buffer: GpuBufferLike, readonly length: number) {}
}

/**
 * One buffer holding many tensors side by side (pack()): the layout multi-tensor kernels (AdamW,
 * clipping) run over, a launch per span of slots. It goes back to the pool with its last slot.
 */
class Packed {
  readonly slots: GpuSlot[] = [];
  live = 0;
  constructor(readonly buffer: GpuBufferLike, readonly length: number) {}
}
/**
 * One tensor's place in a Packed buffer, its `index`-th slot: `length` words from element
 * `offset` (a multiple of 64). A span of slots (index -1) is a view for a multi-tensor launch.
 */
class GpuSlot implements DeviceBuffer {
  released = false;
  constructor(readonly packed: Packed, readonly offset: number, readonly length: number, readonly index: number) {}
}
/** A device buffer and the element its DeviceBuffer starts at. */
function where(buf: DeviceBuffer): { buffer: GpuBufferLike; base: number } {
  if (buf instanceof GpuSlot) return { buffer: buf.packed.buffer, base: buf.offset };
  return { buffer: (buf as GpuBuf).buffer, base: 0 };
}
/** workByKernel's entry for pack()'s copy commands. */
export const PACK_WORK = 'pack (copy commands)';
/** Words a slot of n values takes: rounded up to 64 (256 bytes, WebGPU's binding-offset alignment). */
const slotWords = (n: number): number => Math.max(64, Math.ceil(n / 64) * 64);

/** The hand-written WGSL kernels (wgsl.ts) and their storage bindings after the uniform: read-only or read-write. */
const HAND_KERNELS = {
  matmul: { code: MATMUL_WGSL, bindings: ['read', 'read', 'write'] },
  matmulWide: { code: MATMUL_WIDE_WGSL, bindings: ['read', 'read', 'write', 'read', 'write'] },
  cast: { code: CAST_WGSL, bindings: ['read', 'write'] },
  adamw: { code: ADAMW_WGSL, bindings: ['read', 'write', 'write', 'write'] },
  inPlace: { code: INPLACE_WGSL, bindings: ['read', 'write'] },
  gather: { code: GATHER_WGSL, bindings: ['read', 'write'] },
  segmentSum: { code: SEGMENT_SUM_WGSL, bindings: ['read', 'read', 'read', 'write'] },
  layerNorm: { code: LAYERNORM_FWD_WGSL, bindings: ['read', 'read', 'read', 'write', 'write', 'write'] },
  layerNormSums: { code: LAYERNORM_SUMS_WGSL, bindings: ['read', 'read', 'write', 'write'] },
  crossEntropy: { code: CROSS_ENTROPY_WGSL, bindings: ['read', 'write', 'write', 'write'] },
  geluHalf: { code: GELU_HALF_WGSL, bindings: ['read', 'read', 'write'] },
} as const;

/**
 * A hand-written kernel's pipeline source, under the key it is built and launched by: its WGSL
 * (made only where the pipeline is built, not at each launch) and its storage bindings after the uniform.
 */
interface KernelSource { key: string; code: () => string; bindings: readonly ('read' | 'write')[] }
const handSource = (name: HandKernelName): KernelSource => ({ key: name, code: () => HAND_KERNELS[name].code, bindings: HAND_KERNELS[name].bindings });
/** The 128x128 matmul on packed half operands, and with `halfOut` a half result. */
const halfWideSource = (half: 'bf16' | 'f16', halfOut: boolean): KernelSource =>
  ({ key: `matmulWide ${half}${halfOut ? ' out' : ''}`, code: () => matmulWideHalfWgsl(half, halfOut), bindings: HAND_KERNELS.matmulWide.bindings });
/** A flash-attention kernel for one head size. */
const flashSource = (kernel: FlashKernel, hs: number): KernelSource => ({ key: `${kernel} hs=${hs}`, code: () => flashWgsl(kernel, hs), bindings: FLASH_BINDINGS[kernel] });
/** The tensor-core matmul for one layout: A, B, C, and where it writes halves the half bias and the GELU epilogue's pre-activation. */
const tensorSource = (t: { config: MatrixConfig; subgroupMaxSize: number }, transA: boolean, transB: boolean, halfOut: boolean): KernelSource => ({
  key: `tensor matmul ${transA}${transB}${halfOut ? ' out' : ''}`, code: () => tensorMatmulWgsl(t.config, t.subgroupMaxSize, transA, transB, halfOut),
  bindings: halfOut ? ['read', 'read', 'write', 'read', 'write'] : ['read', 'read', 'write'],
});
/** The LayerNorm backward, one pipeline per J (layernorm-wgsl.ts): x, w, mean, rstd, gy, then gx and the two partial sums. */
const LAYERNORM_BWD_BINDINGS = ['read', 'read', 'read', 'read', 'read', 'write', 'write', 'write'] as const;
type HandKernelName = keyof typeof HAND_KERNELS;
interface HandKernel { layout: GpuBindGroupLayoutLike; pipeline: GpuPipelineLike; module: GpuShaderModuleLike }

interface Compiled {
  name: string;
  module: GpuShaderModuleLike;
  layout: GpuBindGroupLayoutLike;
  pipeline: GpuPipelineLike;
  params: ParamsLayout;
  wgsl: string;
}

/**
 * Our entry point in place of gpu.js's: every kernel dispatches a flat range of threads
 * (64 per workgroup, folded over y past the 65,535-workgroup limit) and recovers (x, y, z)
 * with u32 division, so outputs of any shape keep all threads busy.
 */
function entryPoint(body: string): string {
  return `@compute @workgroup_size(${WORKGROUP}, 1, 1)
fn main(@builtin(global_invocation_id) gid : vec3<u32>) {
  let flat_index : u32 = gid.x + gid.y * params.dispatchWidth;
  if (flat_index >= params.outputX * params.outputY * params.outputZ) { return; }
  let rest : u32 = flat_index / params.outputX;
  threadGid = vec3<u32>(flat_index % params.outputX, rest % params.outputY, rest / params.outputY);
  let data_index : i32 = i32(flat_index);
${body}
}
`;
}

/** Running totals; a benchmark takes differences around a training step. */
export interface RunnerStats {
  /** Kernel launches (compute passes). */
  dispatches: number;
  /** Queue submissions. */
  submits: number;
  /** Storage buffers created (the pool missed) and their bytes. */
  buffersCreated: number;
  bytesCreated: number;
  /** Uniform buffers created (one, for every batch's kernel parameters) ... */
  uniformsCreated: number;
  /** ... and the writes of those parameters (one per submit) and their bytes. */
  uniformWrites: number;
  uniformBytes: number;
  /** Host -> device writes and their bytes. */
  uploads: number;
  uploadBytes: number;
  /** Device -> host readbacks and their bytes. */
  reads: number;
  readBytes: number;
  /** Device-side copy commands (pack()) and their bytes: commands outside the compute pass, not kernel launches. */
  copies: number;
  copyBytes: number;
}

/**
 * What the launches of one kernel did, estimated where they are recorded (for the roofline model
 * of bench/roofline.ts): floating-point operations, and bytes of device memory moved counting
 * each operand read once and the output written once (caches may do better, a kernel that
 * re-reads an operand worse).
 */
export interface KernelWork {
  launches: number;
  flops: number;
  bytes: number;
  /** Copy commands (pack()'s), which are not launches. */
  copies?: number;
}

export interface WebGpuRunnerOptions {
  /** Emulate a smaller storage-binding limit (f32 elements) than the device's, so tests chunk on a real device. */
  maxBindingElements?: number | undefined;
  /** What the adapter says it is (for messages and benchmark tables). */
  adapter?: string | undefined;
  /** The optional features the device was created with (device.ts). */
  features?: readonly OptionalFeature[] | undefined;
  /** Tensor cores for float16 products (device.ts, tensor-core-wgsl.ts), where the device has them. */
  tensorCores?: { config: MatrixConfig; subgroupMaxSize: number } | null | undefined;
}

export class WebGpuRunner implements Runner {
  readonly mode = 'webgpu' as const;
  readonly maxBindingElements: number;
  readonly adapter: string;
  /** The device's optional features (device.ts): timestamp-query makes profile() exact. */
  readonly features: readonly OptionalFeature[];
  /** Tensor cores for float16 products, where the device has them (null after a failed self-test). */
  tensorCores: { config: MatrixConfig; subgroupMaxSize: number } | null;
  /** Validation and out-of-memory errors reported by the device (checked by callers that care). */
  readonly errors: string[] = [];
  /** Why the device was lost, once it is: work sent to a lost device does nothing, so reads throw. */
  lost: DeviceLossInfo | null = null;
  private readonly compiled = new Map<string, Compiled>();
  private readonly pool = new Map<number, GpuBufferLike[]>();
  private readonly stagingPool = new Map<number, GpuBufferLike[]>();
  /** The batch being recorded: its encoder, its one compute pass, its launches and their parameters. */
  private encoder: GpuEncoderLike | null = null;
  private pass: GpuComputePassLike | null = null;
  private pending = 0;
  private readonly uniformData = new Uint8Array(BATCH * UNIFORM_SLOT);
  private uniforms: GpuBufferLike | null = null;
  private readonly handKernels = new Map<string, HandKernel>();
  private readonly modules = new Map<string, GpuShaderModuleLike>();
  /** A hand-written kernel's pipeline that failed to build at its first launch: the next read throws this. */
  private pipelineFailure: string | null = null;
  /** Launches and work per kernel name (running totals, for the benchmarks' breakdown; see KernelWork). */
  readonly workByKernel = new Map<string, KernelWork>();
  /** Device bytes in buffers now (pooled ones included), and the most there have been: a run's peak device memory. */
  liveBytes = 0;
  peakBytes = 0;
  /** What decides speed on a GPU, counted for the benchmarks. */
  readonly stats: RunnerStats = { dispatches: 0, submits: 0, buffersCreated: 0, bytesCreated: 0, uniformsCreated: 0, uniformWrites: 0, uniformBytes: 0, uploads: 0, uploadBytes: 0, reads: 0, readBytes: 0, copies: 0, copyBytes: 0 };

  constructor(private readonly gpujs: GpuJsModule, readonly device: GpuDeviceLike, opts: WebGpuRunnerOptions = {}) {
    const deviceMax = Math.floor(Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize) / 4);
    this.maxBindingElements = Math.min(deviceMax, opts.maxBindingElements ?? Infinity);
    this.adapter = opts.adapter ?? 'unknown adapter';
    this.features = opts.features ?? [];
    this.tensorCores = opts.tensorCores ?? null;
    device.addEventListener?.('uncapturederror', (e) => { this.errors.push(e.error.message); });
    void device.lost?.then((info) => { this.lost = { reason: info.reason, message: info.message }; });
  }

  /** Translate a kernel function with gpu.js and build its pipeline (synchronous in WebGPU). */
  compile(spec: KernelSpec): Compiled {
    const hit = this.compiled.get(spec.name);
    if (hit) return hit;
    const k = new this.gpujs.WebGPUKernel(spec.fn.toString(), {
      output: spec.rank === 1 ? [1] : [1, 1, 1],
      argumentTypes: [...spec.argTypes],
      dynamicOutput: true,
      dynamicArguments: true,
      loopMaxIterations: 2 ** 31 - 1,
    });
    const dummy = spec.argTypes.map((t, i) => (t === 'Input'
      ? new this.gpujs.Input(new Float32Array(1), new Array<number>(spec.argRanks[i]!).fill(1)) : t === 'Integer' ? 1 : 0.5));
    // the synchronous half of gpu.js's WebGPUKernel.build(): validation and translation
    k.setupConstants();
    k.setupArguments(dummy);
    k.validateSettings(dummy);
    const td = [...k.output];
    while (td.length < 3) td.push(1);
    k.threadDim = td;
    k.translateSource();
    const params = k.paramsLayout = k.computeParamsLayout();
    const full = k.assembleWGSL();
    const at = full.indexOf('@compute');
    if (at < 0 || !k.translatedBody || params.bufferConstants.length > 0 || params.randomSeedOffset !== null) {
      throw new Error(`gpu backend: unexpected gpu.js WGSL for kernel ${spec.name} (is gpu.js 2.24?)`);
    }
    const wgsl = full.slice(0, at) + entryPoint(k.translatedBody);
    const d = this.device;
    const module = d.createShaderModule({ code: wgsl });
    const entries = [{ binding: 0, visibility: SHADER_STAGE_COMPUTE, buffer: { type: 'uniform' } }];
    params.arrayArgs.forEach((_, i) => entries.push({ binding: 1 + i, visibility: SHADER_STAGE_COMPUTE, buffer: { type: 'read-only-storage' } }));
    entries.push({ binding: 1 + params.arrayArgs.length, visibility: SHADER_STAGE_COMPUTE, buffer: { type: 'storage' } });
    const layout = d.createBindGroupLayout({ entries });
    const pipeline = d.createComputePipeline({ layout: d.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module, entryPoint: 'main' } });
    const c: Compiled = { name: spec.name, module, layout, pipeline, params, wgsl };
    this.compiled.set(spec.name, c);
    return c;
  }

  /**
   * Compile every kernel's WGSL up front and wait for the compiler's verdict, so a WGSL error
   * surfaces at initGpuBackend with the kernel's name instead of as zeros later. The gpu.js
   * kernels' pipelines are built here too; the hand-written kernels' (wgsl.ts, flash-wgsl.ts, the
   * matmul variants) are built when first launched, unless `pipelines`: on a software adapter such
   * a pipeline takes 0.3-2 s to build (SwiftShader: 14 s for all of them, most of which a run never
   * launches). A pipeline that then fails to build makes the next read throw, naming it.
   */
  async precompile(specs: readonly KernelSpec[], opts: { pipelines?: boolean } = {}): Promise<void> {
    const problems: string[] = [];
    for (const spec of specs) {
      this.device.pushErrorScope('validation');
      let c: Compiled | null = null;
      try { c = this.compile(spec); } catch (e) { problems.push(`${spec.name}: ${(e as Error).message}`); }
      const err = await this.device.popErrorScope();
      if (c) {
        const info = await c.module.getCompilationInfo();
        const msgs = info.messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
        if (msgs.length) problems.push(`${spec.name}: ${msgs.join('; ')}\n${c.wgsl}`);
      }
      if (err) problems.push(`${spec.name}: ${err.message}`);
    }
    const t = this.tensorCores;
    const sources = [
      ...(Object.keys(HAND_KERNELS) as HandKernelName[]).map(handSource),
      ...(['bf16', 'f16'] as const).flatMap((h) => [false, true].map((o) => halfWideSource(h, o))),
      // flash attention's kernels are per head size (more are built at first use): GPT-2's 64 and a scalar one (3) here
      ...(['flashFwd', 'flashBwdQ', 'flashBwdKV'] as const).flatMap((f) => [64, 3].map((hs) => flashSource(f, hs))),
      ...(t ? [[false, false], [false, true], [true, false], [true, true]].flatMap(([ta, tb]) => [false, true].map((o) => tensorSource(t, ta!, tb!, o))) : []),
    ];
    for (const src of sources) {
      this.device.pushErrorScope('validation');
      const module = this.moduleOf(src);
      if (opts.pipelines) this.pipelineOf(src, false);
      const err = await this.device.popErrorScope();
      const info = await module.getCompilationInfo();
      const msgs = info.messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
      if (msgs.length) problems.push(`${src.key} (WGSL): ${msgs.join('; ')}`);
      if (err) problems.push(`${src.key} (WGSL): ${err.message}`);
    }
    if (problems.length) throw new Error(`gpu backend: kernels failed to compile on this device:\n${problems.join('\n')}`);
  }

  // ---- memory ----
  alloc(length: number): GpuBuf {
    const bytes = Math.max(256, Math.ceil((length * 4) / 256) * 256);
    const list = this.pool.get(bytes);
    const reused = list?.pop();
    if (reused) return new GpuBuf(reused, bytes / 4);
    if (bytes > this.device.limits.maxBufferSize) {
      throw new Error(`gpu backend: a buffer of ${length} floats (${bytes} bytes) is over this device's maxBufferSize (${this.device.limits.maxBufferSize}); use a smaller batch`);
    }
    this.stats.buffersCreated++;
    this.stats.bytesCreated += bytes;
    this.liveBytes += bytes;
    this.peakBytes = Math.max(this.peakBytes, this.liveBytes);
    const buffer = this.device.createBuffer({ size: bytes, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
    return new GpuBuf(buffer, bytes / 4);
  }

  release(buf: DeviceBuffer): void {
    if (buf instanceof GpuSlot) {
      if (buf.released || buf.index < 0) return; // (a span is a view; its slots are released one by one)
      buf.released = true;
      if (--buf.packed.live === 0) this.release(new GpuBuf(buf.packed.buffer, buf.packed.buffer.size / 4));
      return;
    }
    const b = (buf as GpuBuf).buffer;
    // queue order makes reuse safe: work already recorded reads the old values first
    let list = this.pool.get(b.size);
    if (!list) { list = []; this.pool.set(b.size, list); }
    list.push(b);
  }

  /** Destroy every pooled (free) buffer, e.g. between benchmark configurations. */
  trim(): void {
    this.flush();
    for (const list of this.pool.values()) for (const b of list) { b.destroy(); this.liveBytes -= b.size; }
    this.pool.clear();
  }

  /**
   * Buffers that will not be wanted again (tensors moved into packed buffers for good, as
   * parameters and moments are): destroyed once the work recorded with them is submitted,
   * rather than pooled for sizes nothing else asks for. A slot is released as usual.
   */
  discard(bufs: readonly DeviceBuffer[]): void {
    this.flush(); // (a buffer an unsubmitted command uses may not be destroyed)
    for (const buf of bufs) {
      if (buf instanceof GpuSlot) { this.release(buf); continue; }
      const b = (buf as GpuBuf).buffer;
      b.destroy();
      this.liveBytes -= b.size;
    }
  }

  /**
   * The buffers (the first sizes[i] words of each) as consecutive slots of packed buffers, each
   * at most one storage binding, gaps zero: what a multi-tensor kernel runs over, a launch per
   * span. Buffers already laid out so (by an earlier pack of the same sizes) stay; otherwise new
   * packed buffers are filled by copy commands (no kernel launches) and the old buffers released.
   * Null when one buffer alone exceeds a binding.
   */
  pack(bufs: readonly DeviceBuffer[], sizes: readonly number[]): { slots: DeviceBuffer[]; spans: DeviceBuffer[] } | null {
    // the layout: slots in order, a new span wherever the next slot would pass the binding limit
    const plan: { span: number; index: number; offset: number }[] = [];
    const spanWords: number[] = [], spanSlots: number[] = [];
    for (const n of sizes) {
      const w = slotWords(n);
      if (w > this.maxBindingElements) return null;
      if (!spanWords.length || spanWords[spanWords.length - 1]! + w > this.maxBindingElements) { spanWords.push(0); spanSlots.push(0); }
      const j = spanWords.length - 1;
      plan.push({ span: j, index: spanSlots[j]!++, offset: spanWords[j]! });
      spanWords[j]! += w;
    }
    // already laid out: each span's buffers are consecutive slots of one packed buffer, at the
    // plan's offsets (a run of slots, so a param group's gradients inside all of them count)
    const laidOut = (): DeviceBuffer[] | null => {
      const spans: DeviceBuffer[] = [];
      let first: GpuSlot | null = null;
      for (let i = 0; i < bufs.length; i++) {
        const b = bufs[i]!, at = plan[i]!;
        if (!(b instanceof GpuSlot) || b.released) return null;
        if (at.index === 0) first = b;
        if (b.packed !== first!.packed || b.index !== first!.index + at.index || b.offset !== first!.offset + at.offset) return null;
        if (at.index === spanSlots[at.span]! - 1) spans.push(new GpuSlot(first!.packed, first!.offset, spanWords[at.span]!, -1));
      }
      return spans;
    };
    const already = laidOut();
    if (already) return { slots: [...bufs], spans: already };
    const spans = spanWords.map((words) => {
      const fresh = this.alloc(words) as GpuBuf;
      return new Packed(fresh.buffer, words);
    });
    for (const p of spans) this.command((enc) => enc.clearBuffer(p.buffer, 0, p.length * 4));
    const slots = bufs.map((b, i) => {
      const at = plan[i]!, p = spans[at.span]!;
      const slot = new GpuSlot(p, at.offset, sizes[i]!, at.index);
      p.slots.push(slot);
      p.live++;
      if (sizes[i]! > 0) {
        const src = where(b);
        this.command((enc) => enc.copyBufferToBuffer(src.buffer, src.base * 4, p.buffer, at.offset * 4, sizes[i]! * 4));
        this.stats.copies++;
        this.stats.copyBytes += sizes[i]! * 4;
        const w = this.workByKernel.get(PACK_WORK) ?? { launches: 0, flops: 0, bytes: 0, copies: 0 };
        this.workByKernel.set(PACK_WORK, { ...w, bytes: w.bytes + 8 * sizes[i]!, copies: (w.copies ?? 0) + 1 });
      }
      return slot;
    });
    return { slots, spans };
  }

  /** Two buffers that share device memory (a kernel may not write one while it reads the other). */
  aliases(a: DeviceBuffer, b: DeviceBuffer): boolean {
    return where(a).buffer === where(b).buffer;
  }

  /** Record a command outside the compute pass (a copy, a clear), in order with the launches around it. */
  private command(fn: (enc: GpuEncoderLike) => void): void {
    if (this.pass) { this.pass.end(); this.pass = null; }
    fn(this.encoder ??= this.device.createCommandEncoder());
  }

  upload(data: Float32Array): DeviceBuffer {
    // a pooled buffer may still be read by recorded-but-unsubmitted work; writeBuffer
    // would overtake that work, so submit it first
    this.flush();
    const buf = this.alloc(data.length);
    if (data.length > 0) {
      this.device.queue.writeBuffer(buf.buffer, 0, data);
      this.stats.uploads++;
      this.stats.uploadBytes += data.byteLength;
    }
    return buf;
  }

  async read(buf: DeviceBuffer, size: number): Promise<Float32Array> {
    this.flush();
    if (size === 0) return new Float32Array(0);
    const bytes = size * 4;
    this.stats.reads++;
    this.stats.readBytes += bytes;
    // small staging buffers (a step's loss and norm) are pooled, so a step creates none;
    // large ones (checkpoints) are destroyed rather than held
    const stagingBytes = Math.ceil(bytes / 256) * 256;
    const pooled = stagingBytes <= STAGING_POOL_MAX_BYTES;
    let staging = pooled ? this.stagingPool.get(stagingBytes)?.pop() : undefined;
    if (!staging) {
      this.stats.buffersCreated++;
      this.stats.bytesCreated += stagingBytes;
      staging = this.device.createBuffer({ size: stagingBytes, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    }
    if (this.lost) throw new DeviceLostError('gpu', this.lost);
    const enc = this.device.createCommandEncoder();
    const src = where(buf);
    enc.copyBufferToBuffer(src.buffer, src.base * 4, staging, 0, bytes);
    this.device.queue.submit([enc.finish()]);
    this.stats.submits++;
    try {
      await staging.mapAsync(MAP_READ, 0, bytes);
    } catch (e) {
      // a lost device fails the map, and may say so (device.lost) a moment after
      if (!this.lost && this.device.lost) await Promise.race([this.device.lost, new Promise((r) => setTimeout(r, LOST_GRACE_MS))]);
      if (this.lost) throw new DeviceLostError('gpu', this.lost);
      throw new Error(`gpu backend: reading ${bytes} bytes back from the device failed: ${(e as Error).message || String(e)}`);
    }
    const out = new Float32Array(staging.getMappedRange(0, bytes).slice(0));
    staging.unmap();
    if (this.pipelineFailure) throw new Error(`gpu backend: ${this.pipelineFailure}`);
    if (pooled) {
      let list = this.stagingPool.get(stagingBytes);
      if (!list) { list = []; this.stagingPool.set(stagingBytes, list); }
      list.push(staging);
    } else staging.destroy();
    return out;
  }

  flush(): void {
    if (!this.encoder) return;
    this.pass?.end();
    // the batch's kernel parameters in one write; queue order puts it after the previous
    // submission (which read the same buffer) and before this one
    const bytes = this.pending * UNIFORM_SLOT;
    this.device.queue.writeBuffer(this.uniformBuffer(), 0, this.uniformData, 0, bytes);
    this.stats.uniformWrites++;
    this.stats.uniformBytes += bytes;
    this.profiler?.resolve(this.encoder);
    this.device.queue.submit([this.encoder.finish()]);
    this.profiler?.submitted();
    this.stats.submits++;
    this.encoder = null;
    this.pass = null;
    this.pending = 0;
  }

  private profiler: LaunchProfiler | null = null;
  /**
   * Time every launch on the device from now (timestamp-query: each launch gets a compute pass of
   * its own, so the batching's one pass is given up while profiling); stop() returns each kernel's
   * launches and GPU seconds since start. Throws where the device has no timestamp-query.
   */
  profile(): { stop(): Promise<Map<string, KernelTime>> } {
    if (!this.features.includes('timestamp-query')) throw new Error(`gpu backend: ${this.adapter} has no timestamp-query, so launches cannot be timed on the device`);
    this.flush();
    const p = this.profiler = new LaunchProfiler(this.device, BATCH);
    return {
      stop: async () => {
        this.flush();
        if (this.profiler === p) this.profiler = null;
        const r = await p.results();
        p.destroy();
        return r;
      },
    };
  }

  /** Wait until the device has finished everything submitted (for timing). */
  async sync(): Promise<void> {
    if (this.lost) throw new DeviceLostError('gpu', this.lost);
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
  }

  /** The one uniform buffer: a 256-byte slot per dispatch of a batch. */
  private uniformBuffer(): GpuBufferLike {
    if (!this.uniforms) {
      this.stats.uniformsCreated++;
      this.uniforms = this.device.createBuffer({ size: BATCH * UNIFORM_SLOT, usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
    }
    return this.uniforms;
  }

  /** A binding of `buf` from element `offset` on (at most the binding limit), or all of it. */
  private binding(what: string, buf: DeviceBuffer, offset?: number): Binding {
    const { buffer, base } = where(buf);
    if (offset === undefined && buf instanceof GpuBuf) {
      this.checkBinding(what, buf.length);
      return { buffer };
    }
    if (offset === undefined) this.checkBinding(what, buf.length);
    const at = offset ?? 0;
    if ((at * 4) % 256 !== 0) throw new Error(`gpu backend: ${what} bound at element offset ${at}, not a multiple of 64 (256 bytes)`);
    const size = Math.min(buf.length - at, this.maxBindingElements) * 4;
    return { buffer, offset: (base + at) * 4, size };
  }

  /**
   * Record one kernel launch: its parameters go to the batch's uniform slot, its dispatch into
   * the batch's one compute pass (WebGPU orders the storage accesses of consecutive dispatches).
   */
  private dispatch(name: string, pipeline: GpuPipelineLike, layout: GpuBindGroupLayoutLike, params: ArrayBuffer, storage: Binding[],
    groups: [number, number, number], work: { flops: number; bytes: number }): void {
    if (params.byteLength > UNIFORM_SLOT) throw new Error(`gpu backend: kernel ${name} has ${params.byteLength} bytes of parameters, over the ${UNIFORM_SLOT}-byte slot`);
    const w = this.workByKernel.get(name) ?? { launches: 0, flops: 0, bytes: 0 };
    this.workByKernel.set(name, { launches: w.launches + 1, flops: w.flops + work.flops, bytes: w.bytes + work.bytes });
    const slot = this.pending * UNIFORM_SLOT;
    this.uniformData.set(new Uint8Array(params), slot);
    const entries = [{ binding: 0, resource: { buffer: this.uniformBuffer(), offset: slot, size: UNIFORM_SLOT } },
      ...storage.map((resource, i) => ({ binding: i + 1, resource }))];
    const group = this.device.createBindGroup({ layout, entries });
    const enc = this.encoder ??= this.device.createCommandEncoder();
    if (this.profiler) {
      // profiling: a pass of its own, its start and end stamped
      if (this.pass) { this.pass.end(); this.pass = null; }
      const pass = enc.beginComputePass({ timestampWrites: this.profiler.next(name) });
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
      pass.end();
    } else {
      const pass = this.pass ??= enc.beginComputePass();
      pass.setPipeline(pipeline);
      pass.setBindGroup(0, group);
      pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
    }
    this.stats.dispatches++;
    if (++this.pending >= BATCH) this.flush();
  }

  private checkBinding(what: string, length: number): void {
    if (length > this.maxBindingElements) {
      throw new Error(`gpu backend: ${what} binds ${length} floats (${length * 4} bytes), over this device's storage binding limit of ` +
        `${this.maxBindingElements * 4} bytes; use a smaller batch (or the fused cross-entropy, which never forms softmax(logits))`);
    }
  }

  run(spec: KernelSpec, out: readonly number[], args: readonly KernelArg[], into?: BufferView): DeviceBuffer {
    const c = this.compile(spec);
    const [X, Y, Z] = [out[0] ?? 1, out[1] ?? 1, out[2] ?? 1];
    const total = X * Y * Z;
    const result = into ? into.buf : this.alloc(total);
    if (total === 0) return result;
    this.checkBinding(`${spec.name} output [${out.join(', ')}]`, total);
    const threadsGroups = Math.ceil(total / WORKGROUP);
    const maxG = this.device.limits.maxComputeWorkgroupsPerDimension;
    const gy = Math.ceil(threadsGroups / maxG);
    const gx = Math.ceil(threadsGroups / gy);
    const params = new ArrayBuffer(c.params.byteLength);
    const u32 = new Uint32Array(params), i32 = new Int32Array(params), f32 = new Float32Array(params);
    u32[0] = X; u32[1] = Y; u32[2] = Z; u32[3] = gx * WORKGROUP;
    const bindings: Binding[] = [];
    let read = 0;
    for (const a of c.params.arrayArgs) {
      const v = args[a.index];
      if (typeof v !== 'object') throw new Error(`gpu backend: ${spec.name} argument ${a.index} must be a buffer`);
      const d = [v.dims[0] ?? 1, v.dims[1] ?? 1, v.dims[2] ?? 1];
      read += d[0]! * d[1]! * d[2]!;
      const o = a.dimsOffset / 4;
      u32[o] = d[0]!; u32[o + 1] = d[1]!; u32[o + 2] = d[2]!; u32[o + 3] = d[0]! * d[1]! * d[2]!;
      bindings.push(this.binding(`${spec.name} argument ${a.index}`, v.buf, v.offset));
    }
    for (const s of c.params.scalarArgs) {
      const v = args[s.index];
      if (typeof v !== 'number') throw new Error(`gpu backend: ${spec.name} argument ${s.index} must be a number`);
      if (s.type === 'Integer') i32[s.offset / 4] = v;
      else f32[s.offset / 4] = v;
    }
    const res = into ? this.outBinding(`${spec.name} output`, into, total) : { buffer: (result as GpuBuf).buffer };
    // the portable matmuls (matmulNN...) take k as their third argument; the others are memory-bound
    const flops = spec.name.startsWith('matmul') ? 2 * total * (args[2] as number) : 0;
    this.dispatch(spec.name, c.pipeline, c.layout, params, [...bindings, res], [gx, gy, 1], { flops, bytes: 4 * (read + total) });
    return result;
  }

  /** The output binding of exactly `length` f32 from into.offset. */
  private outBinding(what: string, into: BufferView, length: number): Binding {
    if ((into.offset * 4) % 256 !== 0) throw new Error(`gpu backend: ${what} written at element offset ${into.offset}, not a multiple of 64 (256 bytes)`);
    const { buffer, base } = where(into.buf);
    return { buffer, offset: (base + into.offset) * 4, size: Math.max(4, length * 4) };
  }

  /** A hand-written WGSL kernel's pipeline (wgsl.ts), built once: bindings are a uniform, inputs, one output. */
  private wgslPipeline(name: HandKernelName): HandKernel {
    return this.pipelineOf(handSource(name));
  }

  /** A source's shader module, made once per key (precompile checks it). */
  private moduleOf(src: KernelSource): GpuShaderModuleLike {
    let m = this.modules.get(src.key);
    if (!m) this.modules.set(src.key, m = this.device.createShaderModule({ code: src.code() }));
    return m;
  }

  /**
   * A source's pipeline (entry point main; a uniform, then its storage bindings), built once per
   * key. Built at a kernel's first launch (`watch`), a validation error is kept for the next read to throw.
   */
  private pipelineOf(src: KernelSource, watch = true): HandKernel {
    const hit = this.handKernels.get(src.key);
    if (hit) return hit;
    const d = this.device;
    if (watch) d.pushErrorScope('validation');
    const module = this.moduleOf(src);
    const entries = [{ binding: 0, visibility: SHADER_STAGE_COMPUTE, buffer: { type: 'uniform' } },
      ...src.bindings.map((b, i) => ({ binding: 1 + i, visibility: SHADER_STAGE_COMPUTE, buffer: { type: b === 'read' ? 'read-only-storage' : 'storage' } }))];
    const layout = d.createBindGroupLayout({ entries });
    const pipeline = d.createComputePipeline({ layout: d.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module, entryPoint: 'main' } });
    if (watch) {
      void d.popErrorScope().then((e) => {
        if (!e) return;
        this.errors.push(e.message);
        this.pipelineFailure ??= `the ${src.key} kernel failed to build on this device (${e.message}); what it computed is not valid`;
      });
    }
    const k = { layout, pipeline, module };
    this.handKernels.set(src.key, k);
    return k;
  }

  /** `count` workgroups folded over y past the per-dimension limit: [x, y, 1], the kernel's row is x + y * width. */
  private foldedGroups(count: number): [number, number, number] {
    const maxG = this.device.limits.maxComputeWorkgroupsPerDimension;
    const gy = Math.ceil(count / maxG);
    return [Math.ceil(count / gy), gy, 1];
  }

  /** LayerNorm forward, a workgroup per row (layernorm-wgsl.ts). */
  layerNorm(x: DeviceBuffer, w: DeviceBuffer, b: DeviceBuffer, rows: number, cols: number, eps: number): { y: DeviceBuffer; mean: DeviceBuffer; rstd: DeviceBuffer } {
    const y = this.alloc(rows * cols), mean = this.alloc(rows), rstd = this.alloc(rows);
    if (rows * cols === 0) return { y, mean, rstd };
    this.checkBinding(`layerNorm of [${rows}, ${cols}]`, rows * cols);
    const k = this.wgslPipeline('layerNorm');
    const groups = this.foldedGroups(rows);
    const params = new ArrayBuffer(LAYERNORM_PARAMS_BYTES);
    new Uint32Array(params, 0, 4).set([rows, cols, groups[0], 1]);
    new Float32Array(params, 16, 4).set([eps, 0, 0, 0]);
    this.dispatch('layerNorm (WGSL)', k.pipeline, k.layout, params, [this.binding('layerNorm x', x), this.binding('layerNorm weight', w),
      this.binding('layerNorm bias', b), { buffer: (y as GpuBuf).buffer }, { buffer: (mean as GpuBuf).buffer }, { buffer: (rstd as GpuBuf).buffer }],
    groups, { flops: 0, bytes: 4 * (2 * rows * cols + 2 * cols + 2 * rows) });
    return { y, mean, rstd };
  }

  /**
   * Cross-entropy of `rows` rows of logits z [rows, cols] (cross-entropy-wgsl.ts), a workgroup per
   * row: lse and loss per row into their views; with `gradScale`, z is overwritten by its gradient
   * (softmax - onehot) * gradScale. Targets are exact integers in f32.
   */
  crossEntropyRows(z: BufferView, targets: BufferView, rows: number, cols: number, lse: BufferView, loss: BufferView, gradScale: number | null,
    round: HalfRounding = 'none'): void {
    if (rows * cols === 0) return;
    const k = this.wgslPipeline('crossEntropy');
    const groups = this.foldedGroups(rows);
    const params = new ArrayBuffer(CROSS_ENTROPY_PARAMS_BYTES);
    new Uint32Array(params, 0, 4).set([rows, cols, groups[0], gradScale === null ? 0 : 1]);
    new Float32Array(params, 16, 1).set([gradScale ?? 0]);
    new Uint32Array(params, 20, 1).set([HALF_ROUNDING[round]]);
    this.dispatch('crossEntropy (WGSL)', k.pipeline, k.layout, params, [this.binding('crossEntropy targets', targets.buf, targets.offset),
      this.outBinding('crossEntropy logits', z, rows * cols), this.outBinding('crossEntropy lse', lse, rows), this.outBinding('crossEntropy loss', loss, rows)],
    groups, { flops: 0, bytes: 4 * (rows * cols * (gradScale === null ? 1 : 3) + 3 * rows) });
  }

  /**
   * LayerNorm's gradients (layernorm-wgsl.ts) in two launches: gx, with each block of rows'
   * partial sums for gw and gb; then those summed over the blocks.
   */
  layerNormBackward(x: DeviceBuffer, w: DeviceBuffer, mean: DeviceBuffer, rstd: DeviceBuffer, gy: DeviceBuffer, rows: number, cols: number):
    { gx: DeviceBuffer; gw: DeviceBuffer; gb: DeviceBuffer } {
    if (cols > LAYERNORM_MAX_COLS) throw new Error(`gpu backend: layerNormBackward takes rows up to ${LAYERNORM_MAX_COLS} wide, got ${cols}`);
    // blocks of rows: about 512 workgroups (a few per multiprocessor), each summing its rows' gw and gb terms
    const perBlock = Math.max(1, Math.ceil(rows / 512)), blocks = Math.ceil(rows / perBlock);
    const gx = this.alloc(rows * cols), gw = this.alloc(cols), gb = this.alloc(cols);
    if (rows * cols === 0) {
      for (const b of [gw, gb]) this.command((enc) => enc.clearBuffer((b as GpuBuf).buffer));
      return { gx, gw, gb };
    }
    this.checkBinding(`layerNormBackward of [${rows}, ${cols}]`, rows * cols);
    const pw = this.alloc(blocks * cols), pb = this.alloc(blocks * cols);
    const J = Math.max(1, Math.ceil(cols / 256));
    const k = this.pipelineOf({ key: `layerNormBackward J=${J}`, code: () => layerNormBwdWgsl(J), bindings: LAYERNORM_BWD_BINDINGS });
    const groups = this.foldedGroups(blocks);
    const params = new ArrayBuffer(LAYERNORM_PARAMS_BYTES);
    new Uint32Array(params, 0, 4).set([rows, cols, groups[0], perBlock]);
    this.dispatch('layerNormBackward (WGSL)', k.pipeline, k.layout, params, [this.binding('layerNormBackward x', x),
      this.binding('layerNormBackward weight', w), this.binding('layerNormBackward mean', mean), this.binding('layerNormBackward rstd', rstd),
      this.binding('layerNormBackward gy', gy), { buffer: (gx as GpuBuf).buffer }, { buffer: (pw as GpuBuf).buffer }, { buffer: (pb as GpuBuf).buffer }],
    groups, { flops: 0, bytes: 4 * (3 * rows * cols + cols + 2 * rows + 2 * blocks * cols) });
    const sums = this.wgslPipeline('layerNormSums');
    const sp = new ArrayBuffer(LAYERNORM_PARAMS_BYTES);
    new Uint32Array(sp, 0, 4).set([blocks, cols, 0, 0]);
    this.dispatch('layerNormSums (WGSL)', sums.pipeline, sums.layout, sp, [{ buffer: (pw as GpuBuf).buffer }, { buffer: (pb as GpuBuf).buffer },
      { buffer: (gw as GpuBuf).buffer }, { buffer: (gb as GpuBuf).buffer }], [Math.ceil(cols / 64), 2, 1], { flops: 0, bytes: 4 * 2 * (blocks * cols + cols) });
    this.release(pw);
    this.release(pb);
    return { gx, gw, gb };
  }

  /** Flat workgroups for n threads of 64, folded over y past the per-dimension limit. */
  private flatGroups(n: number): [number, number, number] {
    return this.foldedGroups(Math.ceil(n / WORKGROUP));
  }

  /**
   * n values through the bit-exact WGSL cast (CAST_CODES mode) into a new buffer; halves packed two
   * per word. Past the binding limit it runs over chunks (of an even number of values, so a chunk
   * starts on a word of packed halves).
   */
  geluHalf(x: DeviceBuffer, g: DeviceBuffer | null, n: number, half: 'float16' | 'bfloat16'): DeviceBuffer {
    const words = Math.ceil(n / 2);
    const out = this.alloc(words);
    if (n === 0) return out;
    this.checkBinding('gelu (half) operand', words);
    const k = this.wgslPipeline('geluHalf');
    const groups = this.flatGroups(words);
    const params = new Uint32Array(GELU_HALF_PARAMS_BYTES / 4);
    params.set([n, g ? 1 : 0, half === 'float16' ? 1 : 2, groups[0] * WORKGROUP]);
    this.dispatch(`gelu${g ? ' backward' : ''} half (WGSL)`, k.pipeline, k.layout, params.buffer,
      [this.binding('gelu input', x), g ? this.binding('gelu gradient', g) : { buffer: this.placeholder(0) }, { buffer: (out as GpuBuf).buffer }], groups,
      { flops: 0, bytes: 2 * n * (g ? 3 : 2) });
    return out;
  }

  cast(x: DeviceBuffer, n: number, mode: number): DeviceBuffer {
    const packing = packs(mode), unpacking = mode === CAST_CODES.f16ToF32 || mode === CAST_CODES.bf16ToF32 || mode === CAST_CODES.unpack;
    const out = this.alloc(packing ? Math.ceil(n / 2) : n);
    if (n === 0) return out;
    const k = this.wgslPipeline('cast');
    const chunk = Math.floor(this.maxBindingElements / 128) * 128;
    for (let base = 0; base < n; base += chunk) {
      const m = Math.min(chunk, n - base);
      const groups = this.flatGroups(packing ? Math.ceil(m / 2) : m);
      const params = new Uint32Array(CAST_PARAMS_BYTES / 4);
      params.set([m, mode, groups[0] * WORKGROUP, 0]);
      const [inAt, outAt] = [unpacking ? base / 2 : base, packing ? base / 2 : base];
      this.dispatch('cast (WGSL)', k.pipeline, k.layout, params.buffer, [n <= chunk ? this.binding('cast input', x) : this.binding('cast input', x, inAt),
        n <= chunk ? { buffer: (out as GpuBuf).buffer } : this.outBinding('cast output', { buf: out, offset: outAt }, packing ? Math.ceil(m / 2) : m)], groups,
        { flops: 0, bytes: m * ((unpacking ? 2 : 4) + (packing ? 2 : 4)) });
    }
    return out;
  }

  /** Output elements per launch of the chunked kernels: the binding limit, 64-aligned (256-byte offsets). */
  private get outputChunk(): number { return Math.floor(this.maxBindingElements / 64) * 64; }

  /** The u32 strided gather (wgsl.ts), over output chunks of at most the binding limit. */
  gather(x: DeviceBuffer, shape: readonly number[], strides: readonly number[], offset: number): DeviceBuffer {
    if (shape.length > 8) throw new Error(`gpu backend: a strided view of ${shape.length} dims that do not merge; the gather takes up to 8`);
    const n = shape.reduce((a, b) => a * b, 1);
    const out = this.alloc(n);
    if (n === 0) return out;
    const k = this.wgslPipeline('gather');
    const pad = 8 - shape.length;
    const dims = [...Array(pad).fill(1), ...shape], st = [...Array(pad).fill(0), ...strides];
    for (let base = 0; base < n; base += this.outputChunk) {
      const m = Math.min(this.outputChunk, n - base);
      const groups = this.flatGroups(m);
      const params = new Uint32Array(GATHER_PARAMS_BYTES / 4);
      params.set([m, base, offset, groups[0] * WORKGROUP, ...dims, ...st]);
      this.dispatch('gather (WGSL)', k.pipeline, k.layout, params.buffer, [this.binding('gather input', x),
        this.outBinding('gather output', { buf: out, offset: base }, m)], groups, { flops: 0, bytes: 8 * m });
    }
    return out;
  }

  /** The u32 segment sum (wgsl.ts), over chunks of output rows of at most the binding limit. */
  segmentSum(src: DeviceBuffer, cols: number, perm: DeviceBuffer, offs: DeviceBuffer, rows: number): DeviceBuffer {
    const out = this.alloc(rows * cols);
    if (rows * cols === 0) return out;
    const k = this.wgslPipeline('segmentSum');
    // all rows at once when they fit, else chunks of 64k rows (each starts 64-aligned)
    const per = rows * cols <= this.maxBindingElements ? rows : Math.floor(this.maxBindingElements / cols / 64) * 64;
    if (per === 0) throw new Error(`gpu backend: segment sum rows of ${cols} values exceed the storage binding limit 64 rows at a time`);
    for (let r0 = 0; r0 < rows; r0 += per) {
      const m = Math.min(per, rows - r0) * cols;
      const groups = this.flatGroups(m);
      const params = new Uint32Array(SEGMENT_SUM_PARAMS_BYTES / 4);
      params.set([m, cols, r0, groups[0] * WORKGROUP]);
      this.dispatch('segment sum (WGSL)', k.pipeline, k.layout, params.buffer, [this.binding('segment sum rows', src),
        this.binding('segment sum order', perm), this.binding('segment sum offsets', offs),
        this.outBinding('segment sum output', { buf: out, offset: r0 * cols }, m)], groups, { flops: 0, bytes: 8 * m });
    }
    return out;
  }

  /** AdamW in place on n values of p, m, v with gradient g: one launch (wgsl.ts). */
  adamw(p: DeviceBuffer, g: DeviceBuffer, m: DeviceBuffer, v: DeviceBuffer, n: number, h: AdamWParams): void {
    if (n === 0) return;
    this.checkBinding(`adamw of ${n} values`, n);
    const k = this.wgslPipeline('adamw');
    const groups = this.flatGroups(n);
    const params = new ArrayBuffer(ADAMW_PARAMS_BYTES);
    new Uint32Array(params, 0, 4).set([n, groups[0] * WORKGROUP, 0, 0]);
    new Float32Array(params, 16, 8).set([h.lr, h.beta1, h.beta2, h.eps, h.weightDecay, 1 - h.beta1 ** h.step, 1 - h.beta2 ** h.step, 0]);
    this.dispatch('adamw (WGSL)', k.pipeline, k.layout, params, [this.binding('adamw grad', g),
      this.binding('adamw param', p), this.binding('adamw exp_avg', m), this.binding('adamw exp_avg_sq', v)], groups,
      { flops: 0, bytes: 4 * 7 * n }); // reads p, g, m, v; writes p, m, v
  }

  /** x += y (mode 'add') or x *= y[0] (mode 'scale') over n values, in place: one launch (wgsl.ts). */
  inPlace(mode: 'add' | 'scale', x: DeviceBuffer, y: DeviceBuffer, n: number): void {
    if (n === 0) return;
    this.checkBinding(`${mode} in place of ${n} values`, n);
    const k = this.wgslPipeline('inPlace');
    const groups = this.flatGroups(n);
    const params = new Uint32Array(INPLACE_PARAMS_BYTES / 4);
    params.set([n, mode === 'scale' ? 1 : 0, groups[0] * WORKGROUP, 0]);
    this.dispatch(`${mode} in place (WGSL)`, k.pipeline, k.layout, params.buffer, [this.binding(`${mode} in place operand`, y), this.binding(`${mode} in place target`, x)], groups,
      { flops: 0, bytes: 4 * (mode === 'add' ? 3 : 2) * n });
  }

  /**
   * One flash-attention launch (flash-wgsl.ts, a pipeline per head size): a workgroup per 64 rows
   * (queries; keys for bwdKV) of each head of the chunk (batch entries b0 .. b0 + bn - 1).
   */
  flash(kernel: FlashKernel, a: FlashArgs, buffers: readonly DeviceBuffer[]): void {
    const b0 = a.b0 ?? 0, bn = a.bn ?? a.B - b0, qa = a.qa ?? 0, qb = a.qb ?? a.T;
    const rows = kernel === 'flashBwdKV' ? a.S : kernel === 'flashBwdQ' ? qb - qa : a.T;
    if (rows === 0 || bn * a.nh === 0) return;
    const k = this.flashPipeline(kernel, a.hs);
    const maxG = this.device.limits.maxComputeWorkgroupsPerDimension;
    const groups: [number, number, number] = [Math.ceil(rows / 64), a.nh, bn];
    if (groups.some((g) => g > maxG)) throw new Error(`gpu backend: attention [${a.B}, ${a.nh}, ${a.T}, ${a.S}] needs more than ${maxG} workgroups along one axis`);
    const params = new ArrayBuffer(FLASH_PARAMS_BYTES);
    const u = new Uint32Array(params);
    u.set([a.T, a.S, a.hs, a.nh, 0, a.causal ? 1 : 0, a.mode ?? 0, b0, qa, qb, 0, 0]);
    new Float32Array(params)[4] = a.scale;
    const none: AttnView = { off: 0, sB: 0, sH: 0, sT: 0 };
    [a.q, a.k, a.v, a.o, a.dO, a.g, a.g2].forEach((v, i) => { const w = v ?? none; u.set([w.off, w.sB, w.sH, w.sT], 12 + 4 * i); });
    // the (query, key) pairs a head computes: q k^T and P v forward (2 products); the key pass's
    // recomputed q k^T and dO v^T, then P^T dO and dS^T q (4; 3 with one of dK, dV); the query pass's dS k (1)
    const heads = bn * a.nh, [i0, i1] = kernel === 'flashFwd' ? [0, a.T] : [qa, qb];
    let pairs = 0;
    for (let i = i0; i < i1; i++) pairs += a.causal ? Math.min(a.S, Math.max(0, i + a.S - a.T + 1)) : a.S;
    const mode = a.mode ?? 3, products = kernel === 'flashFwd' ? 2 : kernel === 'flashBwdQ' ? 1 : mode % 4 === 3 ? 4 : 3;
    // floats moved: q, k, v, o (+ lse) forward; q, k, v, o, dO, dK and dV (+ dS) for the keys; k, dS and dQ for the queries
    const R = i1 - i0, rowFloats = kernel === 'flashFwd' ? (2 * a.T + 2 * a.S) * a.hs + a.T
      : kernel === 'flashBwdQ' ? (a.S + R) * a.hs : (3 * R + 2 * a.S) * a.hs + R + (mode % 4 === 3 ? 2 : 1) * a.S * a.hs;
    const dsFloats = kernel === 'flashFwd' ? 0 : kernel === 'flashBwdQ' || (mode & 1) ? pairs : 0;
    this.dispatch(`${kernel} (WGSL)`, k.pipeline, k.layout, params, buffers.map((b, i) => this.binding(`${kernel} operand ${i}`, b)), groups,
      { flops: 2 * products * heads * pairs * a.hs, bytes: 4 * heads * (rowFloats + dsFloats) });
  }

  private flashPipeline(kernel: FlashKernel, hs: number): HandKernel {
    return this.pipelineOf(flashSource(kernel, hs));
  }

  /**
   * The tiled WGSL matmul (see wgsl.ts); batch strides are 0 or the matrix size. Operands
   * are views, so the backend can run it over row chunks of tensors above the binding limit.
   * Where every operand's contiguous dimension (and N) is a multiple of 4, as all of GPT-2's
   * are, the 128x128 vec4 kernel; else the 64x64 scalar one.
   */
  matmul(a: OperandView, b: OperandView, p: MatmulDims, into?: BufferView, epilogue?: MatmulEpilogue, halves?: 'bf16' | 'f16'): DeviceBuffer {
    const { batch, m, n, k } = p;
    const wide = this.wideMatmul(p);
    if ((epilogue || halves) && !wide) throw new Error(`gpu backend: a matmul epilogue (bias, row sums) or half operands need the 128x128 kernel's layout (contiguous dims and N multiples of 4), got [${batch}, ${m}, ${n}, ${k}]`);
    if (epilogue?.rowSums && (!p.transA || batch !== 1)) throw new Error('gpu backend: matmul row sums are of op(A) = A^T (a weight gradient G^T X), one matrix');
    const halfOut = epilogue?.halfOut === true;
    if (halfOut && !halves) throw new Error('gpu backend: a half matmul output needs half operands (of its type)');
    if (epilogue?.preGelu && (epilogue.rowSums || (halves && !halfOut))) throw new Error('gpu backend: the GELU epilogue takes float32 operands, or half ones with a half result, and no row sums');
    const mm = halves ? this.pipelineOf(halfWideSource(halves, halfOut)) : this.wgslPipeline(wide ? 'matmulWide' : 'matmul');
    const tile = wide ? MATMUL_WIDE_TILE : MATMUL_TILE;
    const total = batch * m * n, outWords = halfOut ? Math.ceil(total / 2) : total;
    const out = into ? into.buf : this.alloc(outWords);
    this.checkBinding(`matmul output [${batch}, ${m}, ${n}]`, outWords);
    const maxG = this.device.limits.maxComputeWorkgroupsPerDimension;
    const gx = Math.ceil(n / tile), gy = Math.ceil(m / tile);
    if (gx > maxG || gy > maxG || batch > maxG) throw new Error(`gpu backend: matmul [${batch}, ${m}, ${n}] needs more than ${maxG} workgroups along one axis`);
    const flags = (epilogue?.bias ? MATMUL_BIAS : 0) | (epilogue?.rowSums ? MATMUL_ROW_SUMS : 0) | (epilogue?.preGelu ? MATMUL_GELU : 0);
    const params = new Uint32Array(MATMUL_PARAMS_BYTES / 4);
    params.set([m, n, k, p.transA ? 1 : 0, p.transB ? 1 : 0, p.aBatchStride, p.bBatchStride, flags]);
    const res = into ? this.outBinding('matmul output', into, outWords) : { buffer: (out as GpuBuf).buffer };
    const aLen = (p.aBatchStride ? batch : 1) * m * k, bLen = (p.bBatchStride ? batch : 1) * k * n;
    const bindings = [this.binding('matmul A', a.buf, a.offset), this.binding('matmul B', b.buf, b.offset), res];
    // the wide kernel's epilogue operands, or placeholders (a read and a write one: a buffer may not be both in a launch)
    if (wide) {
      bindings.push(epilogue?.bias ? this.binding('matmul bias', epilogue.bias) : { buffer: this.placeholder(0) },
        epilogue?.rowSums ? this.outBinding('matmul row sums', { buf: epilogue.rowSums, offset: 0 }, m)
          : epilogue?.preGelu ? this.outBinding('matmul pre-activation', { buf: epilogue.preGelu, offset: 0 }, outWords) : { buffer: this.placeholder(1) });
    }
    const inBytes = halves ? 2 : 4;
    this.dispatch(halves ? `matmul128 ${halves}${halfOut ? ' out' : ''} (WGSL)` : wide ? 'matmul128 (WGSL)' : 'matmul (WGSL)', mm.pipeline, mm.layout, params.buffer, bindings, [gx, gy, batch],
      { flops: 2 * total * k, bytes: inBytes * (aLen + bLen) + (halfOut ? 2 : 4) * (total + (epilogue?.bias ? n : 0)) + 4 * (epilogue?.rowSums ? m : 0) + 4 * (epilogue?.preGelu ? outWords : 0) });
    return out;
  }

  /**
   * op(A) @ op(B) on tensor cores (tensor-core-wgsl.ts): A and B packed float16 (views: offsets in
   * 32-bit words), C float32, new or written into a view. Where tensorMatmul(p) says the product's
   * shape fits the kernel.
   */
  matmulTensor(a: OperandView, b: OperandView, p: MatmulDims, into?: BufferView, epilogue?: Pick<MatmulEpilogue, 'bias' | 'halfOut' | 'preGelu'>): DeviceBuffer {
    if (!this.tensorMatmul(p)) throw new Error(`gpu backend: a tensor-core matmul needs tensor cores and M, N multiples of ${TENSOR_TILE}, K of the device's K; got [${p.batch}, ${p.m}, ${p.n}, ${p.k}]`);
    const halfOut = epilogue?.halfOut === true;
    if ((epilogue?.bias || epilogue?.preGelu) && !halfOut) throw new Error('gpu backend: the tensor-core matmul adds a bias or GELU only with a float16 result');
    const { batch, m, n, k } = p;
    const total = batch * m * n, outWords = halfOut ? total / 2 : total;
    const out = into ? into.buf : this.alloc(outWords);
    this.checkBinding(`matmul output [${batch}, ${m}, ${n}]`, outWords);
    const groups: [number, number, number] = [n / TENSOR_TILE, m / TENSOR_TILE, batch];
    const maxG = this.device.limits.maxComputeWorkgroupsPerDimension;
    if (groups.some((g) => g > maxG)) throw new Error(`gpu backend: matmul [${batch}, ${m}, ${n}] needs more than ${maxG} workgroups along one axis`);
    const params = new Uint32Array(MATMUL_PARAMS_BYTES / 4);
    params.set([m, n, k, p.transA ? 1 : 0, p.transB ? 1 : 0, p.aBatchStride, p.bBatchStride, (epilogue?.bias ? MATMUL_BIAS : 0) | (epilogue?.preGelu ? MATMUL_GELU : 0)]);
    const k2 = this.tensorPipeline(p.transA, p.transB, halfOut);
    const aLen = (p.aBatchStride ? batch : 1) * m * k, bLen = (p.bBatchStride ? batch : 1) * k * n;
    const res = into ? this.outBinding('matmul output', into, outWords) : { buffer: (out as GpuBuf).buffer };
    const bindings = [this.binding('matmul A', a.buf, a.offset), this.binding('matmul B', b.buf, b.offset), res];
    if (halfOut) {
      bindings.push(epilogue?.bias ? this.binding('matmul bias', epilogue.bias) : { buffer: this.placeholder(0) },
        epilogue?.preGelu ? this.outBinding('matmul pre-activation', { buf: epilogue.preGelu, offset: 0 }, outWords) : { buffer: this.placeholder(1) });
    }
    this.dispatch(`matmul f16 tensor cores${halfOut ? ' f16 out' : ''} (WGSL)`, k2.pipeline, k2.layout, params.buffer, bindings, groups,
      { flops: 2 * total * k, bytes: 2 * (aLen + bLen) + (halfOut ? 2 * (total + (epilogue?.bias ? n : 0) + (epilogue?.preGelu ? total : 0)) : 4 * total) });
    return out;
  }

  /** Whether the tensor-core kernel takes this product (the device has it; M, N tile 32x32; K whole steps). */
  tensorMatmul(p: MatmulDims): boolean {
    const t = this.tensorCores;
    return !!t && p.m % TENSOR_TILE === 0 && p.n % TENSOR_TILE === 0 && p.k % t.config.K === 0 && p.k > 0;
  }

  tensorCoresOff(): void { this.tensorCores = null; }

  private tensorPipeline(transA: boolean, transB: boolean, halfOut = false): HandKernel {
    return this.pipelineOf(tensorSource(this.tensorCores!, transA, transB, halfOut));
  }

  /** Whether the 128x128 vec4 kernel takes this matmul (every operand's contiguous dim and N multiples of 4). */
  wideMatmul(p: MatmulDims): boolean {
    return (p.transA ? p.m : p.k) % 4 === 0 && (p.transB ? p.k : p.n) % 4 === 0 && p.n % 4 === 0;
  }

  private readonly placeholders: GpuBufferLike[] = [];
  /** A small buffer bound where a kernel's optional operand is unused. */
  private placeholder(i: number): GpuBufferLike {
    return this.placeholders[i] ??= this.device.createBuffer({ size: 256, usage: BufferUsage.STORAGE });
  }
}
