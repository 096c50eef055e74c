// Moving tensors between backends and dtypes: t.to('wasm'), t.to('float16'), await
// t.toAsync('js') (the only way off a device whose memory the host cannot read directly).

import { getBackendByName, type Backend } from './backend.js';
import { DTYPES, type DType } from './dtype.js';
import { Tensor } from './tensor.js';
import { cast } from './ops.js';

/** Move to another backend (by name or instance), or convert to a dtype (a differentiable cast). */
export function to(x: Tensor, target: DType | string | Backend): Tensor {
  if (typeof target === 'string' && (DTYPES as readonly string[]).includes(target)) return cast(x, target as DType);
  const backend = typeof target === 'string' ? getBackendByName(target) : target;
  if (backend === x.backend) return x;
  if (!x.backend.hostMemory) {
    throw new Error(`to(${backend.name}): reading from the ${x.backend.name} backend is async; use \`await t.toAsync('${backend.name}')\``);
  }
  const data = x.backend.readSync(x.storage).slice();
  return new Tensor(backend.fromHost(data, x.dtype), x.shape, backend);
}

/** Move to another backend, reading the values asynchronously (works from every backend). */
export async function toAsync(x: Tensor, target: string | Backend): Promise<Tensor> {
  const backend = typeof target === 'string' ? getBackendByName(target) : target;
  const data = (await x.backend.read(x.storage)).slice();
  return new Tensor(backend.fromHost(data, x.dtype), x.shape, backend);
}

declare module './tensor.js' {
  interface Tensor {
    to(target: DType | string | Backend): Tensor;
    toAsync(target: string | Backend): Promise<Tensor>;
    float(): Tensor;
    double(): Tensor;
    half(): Tensor;
    int(): Tensor;
  }
}
Object.assign(Tensor.prototype, {
  to(this: Tensor, target: DType | string | Backend) { return to(this, target); },
  toAsync(this: Tensor, target: string | Backend) { return toAsync(this, target); },
  float(this: Tensor) { return cast(this, 'float32'); },
  double(this: Tensor) { return cast(this, 'float64'); },
  half(this: Tensor) { return cast(this, 'float16'); },
  int(this: Tensor) { return cast(this, 'int32'); },
});
