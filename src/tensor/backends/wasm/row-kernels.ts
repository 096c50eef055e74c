// Row-wise and elementwise kernels (softmax, cross-entropy, layerNorm, GELU, AdamW, sums) as wasm SIMD.
import type { Func } from './emit.js';
export function rowKernels(): Record<string, Func> { return {}; }
