// The slice of gpu.js (2.24, CommonJS) the gpu backend uses, typed here, and its lazy
// loader: gpu.js is imported only when the gpu backend is asked for, so CPU users pay nothing.

/** gpu.js's WebGPU kernel class, used only to translate kernel functions to WGSL. */
export interface WebGPUKernelInternals {
  setupConstants(): void;
  setupArguments(args: unknown[]): void;
  validateSettings(args: unknown[]): void;
  translateSource(): void;
  computeParamsLayout(): ParamsLayout;
  assembleWGSL(): string;
  threadDim: number[] | null;
  paramsLayout: ParamsLayout | null;
  compiledSource: string | null;
  translatedBody: string | null;
  output: number[];
}

export interface ParamsLayout {
  arrayArgs: { name: string; index: number; dimsOffset: number }[];
  scalarArgs: { name: string; index: number; type: string; offset: number }[];
  bufferConstants: unknown[];
  randomSeedOffset: number | null;
  byteLength: number;
}

export interface GpuJsModule {
  GPU: new (settings: { mode: string }) => unknown;
  Input: new (value: Float32Array, size: number[]) => unknown;
  WebGPUKernel: new (source: string, settings: object) => WebGPUKernelInternals;
}

let loaded: Promise<GpuJsModule> | null = null;

export function loadGpuJs(): Promise<GpuJsModule> {
  if (!loaded) {
    loaded = import('gpu.js').then((m: unknown) => {
      const mod = ((m as { default?: unknown }).default ?? m) as GpuJsModule;
      if (typeof mod.GPU !== 'function' || typeof mod.WebGPUKernel !== 'function') {
        throw new Error('gpu backend: the installed gpu.js lacks GPU/WebGPUKernel; gpu.js >= 2.24 (with its webgpu backend) is required');
      }
      return mod;
    });
  }
  return loaded;
}
