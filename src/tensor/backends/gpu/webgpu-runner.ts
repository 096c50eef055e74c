// Runs the gpu backend's kernels on WebGPU. gpu.js translates each kernel function to WGSL
// (kernels.ts); the dispatch is ours rather than gpu.js's `kernel()` call, because training
// needs what that call does not give: results that stay on the device as they are produced
// (a synchronous op API), a buffer pool instead of a new buffer per call, and batching of
// many dispatches per queue submission. The device is gpu.js's own (WebGPUContext), so
// gpu.js kernels and ours share buffers.

import type { KernelSpec } from './kernels.js';
import type { BufferView, DeviceBuffer, KernelArg, MatmulDims, OperandView, Runner } from './runner.js';
import type { GpuJsModule, ParamsLayout } from './gpujs.js';
import { MATMUL_PARAMS_BYTES, MATMUL_TILE, MATMUL_WGSL } from './wgsl.js';
import {
  BufferUsage, MAP_READ, SHADER_STAGE_COMPUTE,
  type GpuBindGroupLayoutLike, type GpuBufferLike, type GpuDeviceLike, type GpuEncoderLike, type GpuPipelineLike, type GpuShaderModuleLike,
} from './webgpu-types.js';

const WORKGROUP = 64;
/** Dispatches recorded before a submit: amortises submit cost, bounds held uniform buffers. */
const BATCH = 64;

type Binding = { buffer: GpuBufferLike; offset?: number; size?: number };

class GpuBuf implements DeviceBuffer {
  constructor(readonly buffer: GpuBufferLike, readonly length: number) {}
}

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

export class WebGpuRunner implements Runner {
  readonly mode = 'webgpu' as const;
  readonly maxBindingElements: number;
  /** Validation and out-of-memory errors reported by the device (checked by callers that care). */
  readonly errors: string[] = [];
  private readonly compiled = new Map<string, Compiled>();
  private readonly pool = new Map<number, GpuBufferLike[]>();
  private readonly uniformPool: GpuBufferLike[] = [];
  private pendingUniforms: GpuBufferLike[] = [];
  private encoder: GpuEncoderLike | null = null;
  private pending = 0;
  private matmulKernel: { layout: GpuBindGroupLayoutLike; pipeline: GpuPipelineLike; module: GpuShaderModuleLike } | null = null;
  /** Counters for the benchmark: dispatches and buffers created. */
  readonly stats = { dispatches: 0, buffersCreated: 0, submits: 0 };

  constructor(private readonly gpujs: GpuJsModule, readonly device: GpuDeviceLike) {
    this.maxBindingElements = Math.floor(Math.min(device.limits.maxStorageBufferBindingSize, device.limits.maxBufferSize) / 4);
    device.addEventListener?.('uncapturederror', (e) => { this.errors.push(e.error.message); });
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
   * Compile every kernel up front and wait for the compiler's verdict, so a WGSL error
   * surfaces at initGpuBackend with the kernel's name instead of as zeros later.
   */
  async precompile(specs: readonly KernelSpec[]): Promise<void> {
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
    this.device.pushErrorScope('validation');
    this.matmulPipeline();
    const err = await this.device.popErrorScope();
    const info = await this.matmulPipeline().module.getCompilationInfo();
    const msgs = info.messages.filter((m) => m.type === 'error').map((m) => `${m.lineNum}:${m.linePos} ${m.message}`);
    if (msgs.length) problems.push(`matmul (WGSL): ${msgs.join('; ')}`);
    if (err) problems.push(`matmul (WGSL): ${err.message}`);
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
    const buffer = this.device.createBuffer({ size: bytes, usage: BufferUsage.STORAGE | BufferUsage.COPY_SRC | BufferUsage.COPY_DST });
    return new GpuBuf(buffer, bytes / 4);
  }

  release(buf: DeviceBuffer): void {
    const b = (buf as GpuBuf).buffer;
    // queue order makes reuse safe: work already recorded reads the old values first
    let list = this.pool.get(b.size);
    if (!list) { list = []; this.pool.set(b.size, list); }
    list.push(b);
  }

  /** Destroy every pooled (free) buffer, e.g. between benchmark configurations. */
  trim(): void {
    this.flush();
    for (const list of this.pool.values()) for (const b of list) b.destroy();
    this.pool.clear();
  }

  upload(data: Float32Array): DeviceBuffer {
    // a pooled buffer may still be read by recorded-but-unsubmitted work; writeBuffer
    // would overtake that work, so submit it first
    this.flush();
    const buf = this.alloc(data.length);
    if (data.length > 0) this.device.queue.writeBuffer(buf.buffer, 0, data);
    return buf;
  }

  async read(buf: DeviceBuffer, size: number): Promise<Float32Array> {
    this.flush();
    if (size === 0) return new Float32Array(0);
    const bytes = Math.ceil((size * 4) / 4) * 4;
    const staging = this.device.createBuffer({ size: bytes, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    const enc = this.device.createCommandEncoder();
    enc.copyBufferToBuffer((buf as GpuBuf).buffer, 0, staging, 0, bytes);
    this.device.queue.submit([enc.finish()]);
    await staging.mapAsync(MAP_READ, 0, bytes);
    const out = new Float32Array(staging.getMappedRange(0, bytes).slice(0));
    staging.unmap();
    staging.destroy();
    return out;
  }

  flush(): void {
    if (!this.encoder) return;
    this.device.queue.submit([this.encoder.finish()]);
    this.stats.submits++;
    this.encoder = null;
    this.pending = 0;
    this.uniformPool.push(...this.pendingUniforms);
    this.pendingUniforms = [];
  }

  /** Wait until the device has finished everything submitted (for timing). */
  async sync(): Promise<void> {
    this.flush();
    await this.device.queue.onSubmittedWorkDone();
  }

  private uniform(data: ArrayBuffer): GpuBufferLike {
    // uniforms are written now (queue timeline) but read when the batch is submitted, so
    // each dispatch in a batch has its own; they return to the pool at flush
    let u = this.uniformPool.pop();
    if (!u || u.size < data.byteLength) {
      if (u) u.destroy();
      u = this.device.createBuffer({ size: Math.max(256, Math.ceil(data.byteLength / 256) * 256), usage: BufferUsage.UNIFORM | BufferUsage.COPY_DST });
    }
    this.device.queue.writeBuffer(u, 0, data);
    this.pendingUniforms.push(u);
    return u;
  }

  /** A binding of `buf` from element `offset` on (at most the binding limit), or all of it. */
  private binding(what: string, buf: DeviceBuffer, offset?: number): Binding {
    const b = (buf as GpuBuf).buffer;
    if (offset === undefined) {
      this.checkBinding(what, buf.length);
      return { buffer: b };
    }
    if ((offset * 4) % 256 !== 0) throw new Error(`gpu backend: ${what} bound at element offset ${offset}, not a multiple of 64 (256 bytes)`);
    const size = Math.min(b.size - offset * 4, this.maxBindingElements * 4);
    return { buffer: b, offset: offset * 4, size: Math.floor(size / 4) * 4 };
  }

  private dispatch(pipeline: GpuPipelineLike, layout: GpuBindGroupLayoutLike, bindings: Binding[], groups: [number, number, number]): void {
    const group = this.device.createBindGroup({ layout, entries: bindings.map((resource, i) => ({ binding: i, resource })) });
    const enc = this.encoder ??= this.device.createCommandEncoder();
    const pass = enc.beginComputePass();
    pass.setPipeline(pipeline);
    pass.setBindGroup(0, group);
    pass.dispatchWorkgroups(groups[0], groups[1], groups[2]);
    pass.end();
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
    for (const a of c.params.arrayArgs) {
      const v = args[a.index];
      if (typeof v !== 'object') throw new Error(`gpu backend: ${spec.name} argument ${a.index} must be a buffer`);
      const d = [v.dims[0] ?? 1, v.dims[1] ?? 1, v.dims[2] ?? 1];
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
    this.dispatch(c.pipeline, c.layout, [{ buffer: this.uniform(params) }, ...bindings, res], [gx, gy, 1]);
    return result;
  }

  /** The output binding of exactly `length` f32 from into.offset. */
  private outBinding(what: string, into: BufferView, length: number): Binding {
    if ((into.offset * 4) % 256 !== 0) throw new Error(`gpu backend: ${what} written at element offset ${into.offset}, not a multiple of 64 (256 bytes)`);
    return { buffer: (into.buf as GpuBuf).buffer, offset: into.offset * 4, size: Math.max(4, length * 4) };
  }

  private matmulPipeline(): { layout: GpuBindGroupLayoutLike; pipeline: GpuPipelineLike; module: GpuShaderModuleLike } {
    if (this.matmulKernel) return this.matmulKernel;
    const d = this.device;
    const module = d.createShaderModule({ code: MATMUL_WGSL });
    const layout = d.createBindGroupLayout({
      entries: [
        { binding: 0, visibility: SHADER_STAGE_COMPUTE, buffer: { type: 'uniform' } },
        { binding: 1, visibility: SHADER_STAGE_COMPUTE, buffer: { type: 'read-only-storage' } },
        { binding: 2, visibility: SHADER_STAGE_COMPUTE, buffer: { type: 'read-only-storage' } },
        { binding: 3, visibility: SHADER_STAGE_COMPUTE, buffer: { type: 'storage' } },
      ],
    });
    const pipeline = d.createComputePipeline({ layout: d.createPipelineLayout({ bindGroupLayouts: [layout] }), compute: { module, entryPoint: 'main' } });
    return this.matmulKernel = { layout, pipeline, module };
  }

  /**
   * The tiled WGSL matmul (see wgsl.ts); batch strides are 0 or the matrix size. Operands
   * are views, so the backend can run it over row chunks of tensors above the binding limit.
   */
  matmul(a: OperandView, b: OperandView, p: MatmulDims, into?: BufferView): DeviceBuffer {
    const { batch, m, n, k } = p;
    const mm = this.matmulPipeline();
    const total = batch * m * n;
    const out = into ? into.buf : this.alloc(total);
    this.checkBinding(`matmul output [${batch}, ${m}, ${n}]`, total);
    const maxG = this.device.limits.maxComputeWorkgroupsPerDimension;
    const gx = Math.ceil(n / MATMUL_TILE), gy = Math.ceil(m / MATMUL_TILE);
    if (gx > maxG || gy > maxG || batch > maxG) throw new Error(`gpu backend: matmul [${batch}, ${m}, ${n}] needs more than ${maxG} workgroups along one axis`);
    const params = new Uint32Array(MATMUL_PARAMS_BYTES / 4);
    params.set([m, n, k, p.transA ? 1 : 0, p.transB ? 1 : 0, p.aBatchStride, p.bBatchStride, 0]);
    const res = into ? this.outBinding('matmul output', into, total) : { buffer: (out as GpuBuf).buffer };
    this.dispatch(mm.pipeline, mm.layout, [{ buffer: this.uniform(params.buffer) }, this.binding('matmul A', a.buf, a.offset),
      this.binding('matmul B', b.buf, b.offset), res], [gx, gy, batch]);
    return out;
  }
}
