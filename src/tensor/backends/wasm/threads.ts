// Where the wasm backend's threads come from: Node's worker_threads or a browser's Web Workers.
// pool.ts is the same on both; only starting a worker, handing it its data and counting cores
// differ, and they live here. Node's module is reached through process.getBuiltinModule, so no
// file of the engine imports a `node:` module a browser bundle would have to stub.

/** What every kernel worker is given: the compiled module, the shared memory, the control block. */
export interface KernelWorkerData {
  module: WebAssembly.Module;
  memory: WebAssembly.Memory;
  ctrl: SharedArrayBuffer;
  names: readonly string[];
}

export interface KernelWorker {
  terminate(): void;
}

interface NodeWorkerThreads {
  Worker: new (src: string, opts: { eval: true; workerData: unknown }) => { unref(): void; terminate(): Promise<number> };
}
interface NodeOs { availableParallelism(): number }

/** Node's built-in module `id`, or null outside Node (a browser, a Web Worker). */
export function nodeBuiltin<T>(id: string): T | null {
  const p = (globalThis as { process?: { versions?: { node?: string }; getBuiltinModule?: (id: string) => unknown } }).process;
  if (!p?.versions?.node) return null;
  if (typeof p.getBuiltinModule !== 'function') {
    throw new Error(`tapegrad needs Node >= 20.16 (process.getBuiltinModule); this is Node ${p.versions.node}`);
  }
  return p.getBuiltinModule(id) as T;
}

/** Cores this process may use: os.availableParallelism() on Node, navigator.hardwareConcurrency in a browser. */
export function hostThreads(): number {
  const os = nodeBuiltin<NodeOs>('node:os');
  if (os) return Math.max(1, os.availableParallelism());
  const nav = (globalThis as { navigator?: { hardwareConcurrency?: number } }).navigator;
  return Math.max(1, nav?.hardwareConcurrency ?? 1);
}

/**
 * Can threads share memory here? Needs SharedArrayBuffer and Atomics; a browser page has them
 * only when cross-origin isolated (COOP same-origin + COEP require-corp).
 */
export function sharedMemoryAvailable(): boolean {
  if (typeof SharedArrayBuffer === 'undefined' || typeof Atomics === 'undefined') return false;
  const g = globalThis as { crossOriginIsolated?: boolean };
  if (g.crossOriginIsolated === false) return false;
  try {
    new WebAssembly.Memory({ initial: 1, maximum: 1, shared: true });
    return true;
  } catch {
    return false;
  }
}

/** Why threads are unavailable, in words a page can show (null when they are available). */
export function noThreadsReason(): string | null {
  if (sharedMemoryAvailable()) return null;
  const g = globalThis as { crossOriginIsolated?: boolean };
  if (g.crossOriginIsolated === false) {
    return 'the page is not cross-origin isolated (it needs the headers COOP: same-origin and COEP: require-corp), so SharedArrayBuffer is off';
  }
  return 'this runtime has no SharedArrayBuffer or shared WebAssembly memory';
}

/**
 * Start a worker running `body`, a script that finds its KernelWorkerData in a variable named
 * `workerData`. Node: a worker_threads Worker (unref'd: an idle pool never keeps a process alive).
 * Browser: a Web Worker from a blob URL, given its data by one message.
 */
const blobUrls = new Map<string, string>();

export function spawnKernelWorker(body: string, data: KernelWorkerData): KernelWorker {
  const wt = nodeBuiltin<NodeWorkerThreads>('node:worker_threads');
  if (wt) {
    const w = new wt.Worker(`const { workerData } = require('node:worker_threads');\n${body}`, { eval: true, workerData: data });
    w.unref();
    return { terminate: () => void w.terminate() };
  }
  const W = (globalThis as { Worker?: new (url: string) => { postMessage(m: unknown): void; terminate(): void } }).Worker;
  if (!W) throw new Error('wasm backend: this runtime has neither worker_threads nor Web Workers; pass threads: 1');
  let url = blobUrls.get(body);
  if (!url) {
    const src = `self.onmessage = (e) => { self.onmessage = null; const workerData = e.data;\n${body}\n};`;
    url = URL.createObjectURL(new Blob([src], { type: 'text/javascript' }));
    blobUrls.set(body, url); // kept: every pool of this page starts its workers from it
  }
  const w = new W(url);
  w.postMessage(data);
  return { terminate: () => w.terminate() };
}
