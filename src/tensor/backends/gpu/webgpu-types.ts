// The few WebGPU API types the gpu backend touches, declared locally: TypeScript's DOM
// lib does not ship WebGPU, and this keeps the build free of @webgpu/types.

export interface GpuBufferLike {
  readonly size: number;
  destroy(): void;
  mapAsync(mode: number, offset?: number, size?: number): Promise<void>;
  getMappedRange(offset?: number, size?: number): ArrayBuffer;
  unmap(): void;
}
export interface GpuBindGroupLayoutLike { readonly __brand?: 'layout' }
export interface GpuBindGroupLike { readonly __brand?: 'group' }
export interface GpuPipelineLike { readonly __brand?: 'pipeline' }
export interface GpuShaderModuleLike {
  getCompilationInfo(): Promise<{ messages: readonly { type: string; message: string; lineNum: number; linePos: number }[] }>;
}
export interface GpuComputePassLike {
  setPipeline(p: GpuPipelineLike): void;
  setBindGroup(i: number, g: GpuBindGroupLike): void;
  dispatchWorkgroups(x: number, y?: number, z?: number): void;
  end(): void;
}
export interface GpuQuerySetLike { destroy(): void }
/** Timestamps written at a compute pass's start and end (the timestamp-query feature). */
export interface GpuPassTimestamps { querySet: GpuQuerySetLike; beginningOfPassWriteIndex: number; endOfPassWriteIndex: number }
export interface GpuEncoderLike {
  beginComputePass(d?: { timestampWrites?: GpuPassTimestamps }): GpuComputePassLike;
  resolveQuerySet?(q: GpuQuerySetLike, first: number, count: number, dst: GpuBufferLike, dstOffset: number): void;
  copyBufferToBuffer(src: GpuBufferLike, srcOffset: number, dst: GpuBufferLike, dstOffset: number, size: number): void;
  clearBuffer(buffer: GpuBufferLike, offset?: number, size?: number): void;
  finish(): unknown;
}
export interface GpuBindingEntry {
  binding: number;
  resource: { buffer: GpuBufferLike; offset?: number; size?: number };
}
export interface GpuDeviceLike {
  readonly limits: {
    readonly maxStorageBufferBindingSize: number;
    readonly maxBufferSize: number;
    readonly maxComputeWorkgroupsPerDimension: number;
  };
  readonly queue: {
    writeBuffer(buf: GpuBufferLike, offset: number, data: ArrayBufferView | ArrayBuffer, dataOffset?: number, size?: number): void;
    submit(cmds: unknown[]): void;
    onSubmittedWorkDone(): Promise<void>;
  };
  createBuffer(d: { size: number; usage: number; mappedAtCreation?: boolean }): GpuBufferLike;
  createShaderModule(d: { code: string }): GpuShaderModuleLike;
  createBindGroupLayout(d: { entries: { binding: number; visibility: number; buffer: { type: string } }[] }): GpuBindGroupLayoutLike;
  createPipelineLayout(d: { bindGroupLayouts: GpuBindGroupLayoutLike[] }): unknown;
  createComputePipeline(d: { layout: unknown; compute: { module: GpuShaderModuleLike; entryPoint: string } }): GpuPipelineLike;
  createBindGroup(d: { layout: GpuBindGroupLayoutLike; entries: GpuBindingEntry[] }): GpuBindGroupLike;
  createCommandEncoder(): GpuEncoderLike;
  createQuerySet?(d: { type: 'timestamp'; count: number }): GpuQuerySetLike;
  pushErrorScope(filter: 'validation' | 'out-of-memory' | 'internal'): void;
  popErrorScope(): Promise<{ message: string } | null>;
  addEventListener?(type: 'uncapturederror', fn: (e: { error: { message: string } }) => void): void;
  /** Resolves when the device is lost (GPUDeviceLostInfo); never, while it lives. */
  readonly lost?: Promise<{ reason: string; message: string }>;
  destroy?(): void;
}

// usage and map-mode flags, fixed by the WebGPU spec (the globals exist only where WebGPU does)
export const BufferUsage = { MAP_READ: 0x1, COPY_SRC: 0x4, COPY_DST: 0x8, UNIFORM: 0x40, STORAGE: 0x80, QUERY_RESOLVE: 0x200 } as const;
export const MAP_READ = 0x1;
export const SHADER_STAGE_COMPUTE = 0x4;
