// The wasm runtime around the kernels (runtime.ts): a trap in any thread surfaces as an error (and
// the worker pool keeps working), operands past the 4 GiB wasm32 memory are refused by name, and
// one thread without shared memory computes what the threaded runtime does, bit for bit.
import { describe, expect, it } from 'vitest';
import { createWasmBackend, wasmSimdAvailable } from '../src/tensor/backends/wasm/index.js';
import { buildModule } from '../src/tensor/backends/wasm/module.js';
import { WasmMemoryError, WasmRuntime } from '../src/tensor/backends/wasm/runtime.js';
import { setBackend, getBackend } from '../src/tensor/backend.js';
import { tensor } from '../src/tensor/index.js';
import { manualSeed } from '../src/tensor/random.js';
import { GPT, GPT_PRESETS } from '../src/nn/gpt.js';

const available = wasmSimdAvailable();

describe.skipIf(!available)('wasm runtime', () => {
  it('a kernel that traps (out-of-bounds) throws on the main thread, with 1 and 2 threads, and the pool still works', () => {
    const km = buildModule();
    for (const threads of [1, 2]) {
      const rt = new WasmRuntime(km.module, km.names, threads);
      try {
        const n = 8 * 16384;
        const bad = rt.args([n, 16384, 0x7ff00000, 0x7ff00000]); // far past the memory's end
        expect(() => rt.run('u_neg', 8, bad)).toThrow(/u_neg.*trapped/);
        const x = rt.alloc(n * 4), y = rt.alloc(n * 4);
        rt.f32(x, n).fill(2);
        rt.run('u_neg', 8, rt.args([n, 16384, x, y]));
        expect(Array.from(new Set(rt.f32(y, n)))).toEqual([-2]);
      } finally { rt.terminate(); }
    }
  });

  it('refuses operands past the 4 GiB wasm32 memory with a WasmMemoryError (the backend names the op and shapes)', () => {
    const km = buildModule();
    const rt = new WasmRuntime(km.module, km.names, 1);
    try {
      const mark = rt.mark();
      expect(() => rt.alloc(5 * 2 ** 30)).toThrow(WasmMemoryError);
      expect(rt.mark()).toBe(mark); // nothing was reserved
    } finally { rt.terminate(); }
  });

  it('without shared memory (a page that is not cross-origin isolated) one thread computes a GPT step bit for bit as the threaded one, memory growth included', async () => {
    expect(() => createWasmBackend({ threads: 2, sharedMemory: false })).toThrow(/2 threads need a shared memory.*threads: 1/);
    const run = async (b: ReturnType<typeof createWasmBackend>): Promise<Float32Array[]> => {
      const prev = getBackend();
      setBackend(b);
      try {
        manualSeed(5);
        const model = new GPT(GPT_PRESETS.tiny!); // its lm_head (50304 x 128) outgrows the initial 16 MiB of wasm memory
        const B = 2, T = 32;
        const ids = Int32Array.from({ length: B * T }, (_, i) => (i * 7919) % 50257);
        const loss = model.forward(tensor(ids, { shape: [B, T] }), tensor(ids.map((v) => (v + 1) % 50257), { shape: [B, T] })).loss!;
        loss.backward();
        return [await loss.data() as Float32Array, ...await Promise.all(model.parameters().map(async (p) => await p.grad!.data() as Float32Array))];
      } finally { setBackend(prev); }
    };
    const shared = createWasmBackend({ threads: 2 }), unshared = createWasmBackend({ threads: 1, sharedMemory: false });
    try {
      const a = await run(shared), b = await run(unshared);
      expect(unshared.runtime.memory.buffer).toBeInstanceOf(ArrayBuffer);
      expect(unshared.memoryStats().wasmBytes).toBeGreaterThan(16 << 20); // it grew
      expect(a.length).toBe(b.length);
      a.forEach((x, i) => expect(Buffer.from(x.buffer, x.byteOffset, x.byteLength).equals(Buffer.from(b[i]!.buffer, b[i]!.byteOffset, b[i]!.byteLength)), `tensor ${i}`).toBe(true));
    } finally { shared.terminate(); unshared.terminate(); }
  });
});
