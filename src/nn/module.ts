// Module: the base of every layer, as torch.nn.Module. Parameters are the tensor-valued
// fields that require grad; submodules are Module-valued fields, arrays of modules
// (ModuleList) or plain objects of modules (ModuleDict). Names follow field names, so
// they come out as PyTorch state_dict keys ("transformer.h.0.attn.c_attn.weight").

import { shapeStr } from '../tensor/shape.js';
import type { HostArray } from '../tensor/dtype.js';
import { Tensor, noGrad, tensor } from '../tensor/index.js';

/** A host-side tensor value, as loaded from a file. */
export interface HostTensor {
  shape: readonly number[];
  data: HostArray;
}

export abstract class Module {
  training = true;

  /** Every (name, tensor) pair reachable from this module, in field order, ties included. */
  private *walk(prefix: string): Generator<[string, Tensor | Module]> {
    for (const [key, value] of Object.entries(this)) {
      yield* walkValue(prefix + key, value);
    }
  }

  /** Parameters with their names; a tied tensor appears once, under its first name (torch). */
  namedParameters(): [string, Tensor][] {
    const seen = new Set<Tensor>();
    const out: [string, Tensor][] = [];
    for (const [name, v] of this.walk('')) {
      if (v instanceof Tensor && v.requiresGrad && !seen.has(v)) { seen.add(v); out.push([name, v]); }
    }
    return out;
  }

  parameters(): Tensor[] { return this.namedParameters().map(([, p]) => p); }

  modules(): Module[] {
    const out: Module[] = [this];
    for (const [, v] of this.walk('')) if (v instanceof Module) out.push(v);
    return out;
  }

  /** Every parameter under every name it has (tied weights appear under both, like torch's state_dict). */
  stateDict(): Map<string, Tensor> {
    const out = new Map<string, Tensor>();
    for (const [name, v] of this.walk('')) if (v instanceof Tensor) out.set(name, v);
    return out;
  }

  /**
   * Copy values into the parameters by name. With `strict`, missing and unexpected keys are
   * errors (tied names may be omitted when the tie partner is present).
   */
  loadStateDict(sd: Map<string, Tensor | HostTensor> | Record<string, Tensor | HostTensor>, strict = true): void {
    const entries = sd instanceof Map ? sd : new Map(Object.entries(sd));
    const own = this.stateDict();
    const loaded = new Set<Tensor>();
    for (const [name, value] of entries) {
      const p = own.get(name);
      if (!p) {
        if (strict) throw new Error(`loadStateDict: unexpected key '${name}' (the model has ${own.size} keys, e.g. '${[...own.keys()][0]}')`);
        continue;
      }
      if (value.shape.length !== p.shape.length || value.shape.some((d, i) => d !== p.shape[i])) {
        throw new Error(`loadStateDict: '${name}' has shape ${shapeStr(value.shape)} in the source but ${shapeStr(p.shape)} in the model`);
      }
      const src = value instanceof Tensor ? value.to(p.backend) : tensor(value.data as Float32Array, { shape: value.shape, backend: p.backend });
      noGrad(() => { p.storage = (src.dtype === p.dtype ? src : src.to(p.dtype)).storage; });
      loaded.add(p);
    }
    if (strict) {
      const missing = [...own].filter(([, p]) => !loaded.has(p)).map(([n]) => n);
      if (missing.length) throw new Error(`loadStateDict: missing keys: ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ` and ${missing.length - 5} more` : ''}`);
    }
  }

  train(mode = true): this {
    for (const m of this.modules()) m.training = mode;
    return this;
  }
  eval(): this { return this.train(false); }

  zeroGrad(): void {
    for (const p of this.parameters()) p.zeroGrad();
  }

  numParameters(): number {
    return this.parameters().reduce((n, p) => n + p.size, 0);
  }
}

function* walkValue(name: string, value: unknown): Generator<[string, Tensor | Module]> {
  if (value instanceof Tensor) {
    yield [name, value];
  } else if (value instanceof Module) {
    yield [name, value];
    for (const [key, v] of Object.entries(value)) yield* walkValue(`${name}.${key}`, v);
  } else if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) yield* walkValue(`${name}.${i}`, value[i]);
  } else if (value !== null && typeof value === 'object' && Object.getPrototypeOf(value) === Object.prototype) {
    for (const [key, v] of Object.entries(value)) {
      if (v instanceof Module || v instanceof Tensor || Array.isArray(v)) yield* walkValue(`${name}.${key}`, v);
    }
  }
}
