// Per-launch GPU time from timestamp queries (WebGPU's timestamp-query feature): while profiling,
// the runner gives every launch its own compute pass with its start and end stamped, resolves
// each batch's stamps into a buffer before the batch is submitted, and reads them back when the
// device has done the work. Times are summed per kernel name, beside the runner's workByKernel
// (launches, flops, bytes), which is what bench/gpu-check.ts prints and prices.

import { BufferUsage, MAP_READ, type GpuBufferLike, type GpuDeviceLike, type GpuEncoderLike, type GpuPassTimestamps, type GpuQuerySetLike } from './webgpu-types.js';

export interface KernelTime {
  launches: number;
  /** GPU seconds between each launch's pass start and end, summed. */
  seconds: number;
}

export class LaunchProfiler {
  private readonly querySet: GpuQuerySetLike;
  private names: string[] = [];
  private readonly reads: Promise<void>[] = [];
  private resolved: { names: string[]; read: GpuBufferLike; resolve: GpuBufferLike }[] = [];
  readonly byKernel = new Map<string, KernelTime>();

  /** `capacity`: launches per submitted batch at most (two stamps each). */
  constructor(private readonly device: GpuDeviceLike, private readonly capacity: number) {
    if (!device.createQuerySet) throw new Error('gpu backend: this device cannot create query sets (no timestamp-query)');
    this.querySet = device.createQuerySet({ type: 'timestamp', count: 2 * capacity });
  }

  /** The stamps of the next launch's pass, for kernel `name`. */
  next(name: string): GpuPassTimestamps {
    const i = this.names.length;
    if (i >= this.capacity) throw new Error(`gpu backend: more than ${this.capacity} profiled launches in one batch`);
    this.names.push(name);
    return { querySet: this.querySet, beginningOfPassWriteIndex: 2 * i, endOfPassWriteIndex: 2 * i + 1 };
  }

  /** Before the batch's encoder finishes: its stamps into a buffer the host can map. */
  resolve(enc: GpuEncoderLike): void {
    if (!this.names.length) return;
    const bytes = Math.ceil((16 * this.names.length) / 256) * 256;
    const resolve = this.device.createBuffer({ size: bytes, usage: BufferUsage.QUERY_RESOLVE | BufferUsage.COPY_SRC });
    const read = this.device.createBuffer({ size: bytes, usage: BufferUsage.MAP_READ | BufferUsage.COPY_DST });
    enc.resolveQuerySet!(this.querySet, 0, 2 * this.names.length, resolve, 0);
    enc.copyBufferToBuffer(resolve, 0, read, 0, bytes);
    this.resolved.push({ names: this.names, read, resolve });
    this.names = [];
  }

  /** After the batch is submitted: read its stamps when the device gets there. */
  submitted(): void {
    for (const { names, read, resolve } of this.resolved) {
      this.reads.push(read.mapAsync(MAP_READ).then(() => {
        const t = new BigUint64Array(read.getMappedRange(0, 16 * names.length).slice(0));
        names.forEach((name, i) => {
          const k = this.byKernel.get(name) ?? { launches: 0, seconds: 0 };
          // (a device may stamp an end before its start when it reorders nothing to measure: 0)
          const ns = t[2 * i + 1]! > t[2 * i]! ? Number(t[2 * i + 1]! - t[2 * i]!) : 0;
          this.byKernel.set(name, { launches: k.launches + 1, seconds: k.seconds + ns * 1e-9 });
        });
        read.unmap();
        read.destroy();
        resolve.destroy();
      }));
    }
    this.resolved = [];
  }

  /** Every stamp read so far (after the runner has flushed), per kernel. */
  async results(): Promise<Map<string, KernelTime>> {
    await Promise.all(this.reads.splice(0));
    return this.byKernel;
  }

  destroy(): void { this.querySet.destroy(); }
}
