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

/** What loadStateDict did not match: model parameters not in the source, source keys not in the model. */
export interface LoadResult {
  missingKeys: string[];
  unexpectedKeys: string[];
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
   * Copy values into the parameters by name, as torch's load_state_dict. With `strict` (the
   * default), a missing or unexpected key is an error naming them all; without, they are returned.
   * Tied names may be omitted when the tie partner is present. A source none of whose keys match
   * is an error either way (it is never what was meant). Subclasses map other naming schemes in
   * `adaptStateDict` (GPT reads Hugging Face's).
   */
  loadStateDict(sd: Map<string, Tensor | HostTensor> | Record<string, Tensor | HostTensor>, strict = true): LoadResult {
    const entries = this.adaptStateDict(sd instanceof Map ? sd : new Map(Object.entries(sd)));
    const own = this.stateDict();
    const loaded = new Set<Tensor>();
    const unexpectedKeys: string[] = [];
    const assign: [Tensor, Tensor | HostTensor, string][] = [];
    for (const [name, value] of entries) {
      const p = own.get(name);
      if (!p) { unexpectedKeys.push(name); continue; }
      if (value.shape.length !== p.shape.length || value.shape.some((d, i) => d !== p.shape[i])) {
        throw new Error(`loadStateDict: '${name}' has shape ${shapeStr(value.shape)} in the source but ${shapeStr(p.shape)} in the model`);
      }
      assign.push([p, value, name]);
      loaded.add(p);
    }
    const missingKeys = [...own].filter(([, p]) => !loaded.has(p)).map(([n]) => n);
    const list = (keys: string[]): string => `${keys.slice(0, 5).map((k) => `'${k}'`).join(', ')}${keys.length > 5 ? ` and ${keys.length - 5} more` : ''}`;
    if (entries.size > 0 && assign.length === 0) {
      throw new Error(`loadStateDict: none of the source's ${entries.size} keys (${list([...entries.keys()])}) is a parameter of the model ` +
        `(${list([...own.keys()])}); is it another model's state dict?`);
    }
    if (strict && (missingKeys.length || unexpectedKeys.length)) {
      throw new Error(`loadStateDict: ${[missingKeys.length ? `missing keys ${list(missingKeys)}` : '', unexpectedKeys.length ? `unexpected keys ${list(unexpectedKeys)}` : '']
        .filter(Boolean).join('; ')}; pass strict = false to load the rest and get these back`);
    }
    // only now, so a refused source leaves the model as it was
    for (const [p, value] of assign) {
      const src = value instanceof Tensor ? value.to(p.backend) : tensor(value.data as Float32Array, { shape: value.shape, backend: p.backend });
      noGrad(() => { p.storage = (src.dtype === p.dtype ? src : src.to(p.dtype)).storage; });
    }
    return { missingKeys, unexpectedKeys };
  }

  /** Map another naming scheme or layout onto this module's (see GPT); the default takes names as they are. */
  protected adaptStateDict(entries: Map<string, Tensor | HostTensor>): Map<string, Tensor | HostTensor> {
    return entries;
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
