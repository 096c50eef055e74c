// nn: modules and the GPT model.
export { Module, type HostTensor, type LoadResult } from './module.js';
export { Linear, Embedding, LayerNorm, ReLU, GELU, Dropout, Sequential, type Layer, type LayerOptions } from './layers.js';
export { GPT, GPT_PRESETS, Block, MLP, CausalSelfAttention, sampleTopK, type GPTConfig, type GPTOutput, type GenerateOptions, type KVCache } from './gpt.js';
