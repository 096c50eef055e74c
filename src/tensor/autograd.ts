// Reverse-mode differentiation: `loss.backward()` walks the tape (tensor.ts) in reverse
// topological order, applies each op's backward rule, undoes broadcasting once for every op,
// and accumulates (+=) into the .grad of the leaves, as micrograd and torch.autograd do.

import type { Storage } from './backend.js';
import { sameShape, shapeStr } from './shape.js';
import { Tensor, noGrad, type TapeNode } from './tensor.js';
import { fusedFloat32 } from './define-op.js';
import { ones } from './creation.js';
import { withoutAutocast } from './autocast.js';
import * as ops from './ops.js';
import { freeCreatedSince, freeIfOwned, inScope, mark, ownedHere, release as unscope } from './scope.js';

/** Nodes whose graph an earlier backward() freed. */
const freedNodes = new WeakSet<TapeNode>();

/** The leaf whose .grad each gradient storage is, where backward() knows no other tensor holds it. */
const gradOwners = new WeakMap<Storage, Tensor>();

/**
 * Whether t.grad is t's alone (backward() made it and handed it to no other tensor), so it can
 * be updated in place as torch's clip_grad_norm_ does. Gradients that alias another's, the
 * caller's backward(gradient), or one the user assigned are not.
 */
export function ownsGrad(t: Tensor): boolean {
  return t.grad !== null && gradOwners.get(t.grad.storage) === t;
}

/** Hooks run when a backward() has finished accumulating into a leaf's .grad (see registerPostAccumulateGradHook). */
const gradHooks = new WeakMap<Tensor, ((t: Tensor) => void)[]>();

/**
 * torch's register_post_accumulate_grad_hook: `hook(t)` runs each time a backward() has finished
 * accumulating into t.grad (t a leaf that requires grad), while the backward of the ops before t
 * may still be to come. Returns a handle whose remove() unregisters it.
 */
export function registerPostAccumulateGradHook(t: Tensor, hook: (t: Tensor) => void): { remove(): void } {
  if (!t.requiresGrad || t.node) throw new Error('registerPostAccumulateGradHook: only a leaf tensor that requires grad (a parameter) accumulates a gradient');
  gradHooks.set(t, [...(gradHooks.get(t) ?? []), hook]);
  return {
    remove: () => {
      const left = (gradHooks.get(t) ?? []).filter((h) => h !== hook);
      if (left.length) gradHooks.set(t, left); else gradHooks.delete(t);
    },
  };
}

/**
 * Make g t's gradient, t's alone (one computed elsewhere, as DDP's all-reduced average), so it is
 * updated in place and freed at once like one backward() made; the old one, if t's alone, goes
 * back to its backend now.
 */
export function replaceGrad(t: Tensor, g: Tensor): void {
  if (t.grad && ownsGrad(t) && t.grad.storage !== g.storage) t.backend.dispose(t.grad.storage, 'replaced by another gradient (the DDP all-reduce)');
  t.grad = g;
  gradOwners.set(g.storage, t);
}

/**
 * Drop t.grad, as torch's zero_grad(set_to_none=True); a gradient backward() made for t alone
 * goes back to its backend at once (a GPU's pool) rather than when the collector finds it.
 */
export function dropGrad(t: Tensor): void {
  if (t.grad && ownsGrad(t)) t.backend.dispose(t.grad.storage, 'zeroGrad() dropped it (copy a gradient before zeroGrad() to keep it)');
  t.grad = null;
}

/** into += x in place, where the backend has the kernel for these operands. */
function addInPlace(into: Tensor, x: Tensor): boolean {
  const k = fusedFloat32('addInPlace', [into, x]);
  if (!k || into.backend !== x.backend || !sameShape(into.shape, x.shape)) return false;
  k(into.storage, x.storage);
  return true;
}

/**
 * Backpropagate from `root`: walk the tape in reverse topological order, applying each op's
 * backward rule and accumulating (+=) into the .grad of leaves that require it, so two
 * backward calls add up, as gradient accumulation needs.
 */
export function backward(root: Tensor, gradient?: Tensor): void {
  if (!root.requiresGrad) {
    throw new Error('backward: this tensor does not require grad (no input had requiresGrad, or it was computed under noGrad)');
  }
  const callers = gradient !== undefined;
  if (!gradient) {
    if (root.size !== 1) {
      throw new Error(`backward: grad can be implicitly created only for scalar outputs, got shape ${shapeStr(root.shape)}; ` +
        'reduce first (e.g. .sum()) or pass a gradient of the same shape: t.backward(g)');
    }
    gradient = ones(root.shape, { dtype: root.dtype, backend: root.backend });
  } else if (!sameShape(gradient.shape, root.shape)) {
    throw new Error(`backward: gradient shape ${shapeStr(gradient.shape)} does not match the tensor's shape ${shapeStr(root.shape)}`);
  }

  const leafGrads = new Map<Tensor, Tensor>();
  // Inside a scope (scope.ts) backward frees what it has consumed as it goes, so a step's memory
  // is its activations plus what one rule needs, not everything the step ever made.
  const scoped = inScope();
  // Gradients are summed in place where nothing else can see the sum: `handed` counts who holds
  // each storage (a node or leaf it was handed to, a sum's entry, the caller for a gradient
  // passed in). An add rule hands one g to both inputs, so neither may be written.
  const handed = new Map<Storage, number>([[gradient.storage, callers ? 2 : 1]]);
  const exclusive = (g: Tensor): boolean => handed.get(g.storage) === 1;
  // (a count that reaches 0 is dropped: the map must not keep a consumed gradient alive; in a
  // scope its memory goes back at once)
  const release = (g: Tensor): void => {
    const n = handed.get(g.storage) ?? 0;
    if (n > 1) handed.set(g.storage, n - 1);
    else {
      handed.delete(g.storage);
      if (scoped) freeIfOwned(g.storage, 'backward() consumed it (a gradient between two ops)');
    }
  };
  // (each release after the last read: in a scope a release can free; prev and g on one storage,
  // x + x's, is summed into a new one: a GPU kernel may not write a buffer it also reads)
  const sum = (prev: Tensor, g: Tensor): Tensor => {
    if (prev.storage !== g.storage && exclusive(prev) && addInPlace(prev, g)) { release(g); return prev; }
    const s = ops.add(prev, g);
    release(g);
    release(prev);
    handed.set(s.storage, 1);
    return s;
  };
  const addTo = <K>(m: Map<K, Tensor>, k: K, g: Tensor): void => { const prev = m.get(k); m.set(k, prev ? sum(prev, g) : g); };
  // accumulate (+=) into a new tensor, so an earlier .grad someone holds keeps its values
  // (in a scope, into the .grad itself where it is the leaf's alone, as torch's +=: gradient
  // accumulation then makes no new gradient per micro-step); then the leaf's hooks
  const commit = (t: Tensor, g: Tensor): void => {
    if (t.grad && scoped && ownsGrad(t) && addInPlace(t.grad, g)) {
      release(g);
    } else if (t.grad) {
      t.grad = ops.add(t.grad, g);
      gradOwners.set(t.grad.storage, t); // a new sum: t's alone
      release(g);
    } else {
      t.grad = g;
      if (exclusive(g)) gradOwners.set(g.storage, t);
    }
    unscope(t.grad.storage); // the leaf holds it now: no scope frees it
    for (const hook of gradHooks.get(t) ?? []) hook(t);
  };
  const rootNode = root.node;
  if (!rootNode) { noGrad(() => { root.grad = root.grad ? ops.add(root.grad, gradient) : gradient; }); return; } // a leaf

  // Topological order of the ops by iterative DFS (no recursion: deep residual stacks are fine).
  const tape: TapeNode[] = [];
  const seen = new Set<TapeNode>([rootNode]);
  const stack: [TapeNode, number][] = [[rootNode, 0]];
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [node, i] = top;
    if (freedNodes.has(node)) {
      throw new Error(`backward: the graph through '${node.op}' was freed by an earlier backward(); ` +
        'recompute the forward pass for each backward (a tensor computed before a backward() cannot be reused after it)');
    }
    if (i < node.inputs.length) {
      top[1]++;
      const child = node.inputs[i]?.node;
      if (child && !seen.has(child)) { seen.add(child); stack.push([child, 0]); }
    } else {
      stack.pop();
      tape.push(node);
    }
  }

  // an activation is freed once every op on the tape whose output shares its storage (views) has
  // been differentiated; never the root's (the loss the caller holds)
  const sharers = new Map<Storage, number>();
  if (scoped) {
    for (const n of tape) if (n.out && n.out !== root.storage && ownedHere(n.out)) sharers.set(n.out, (sharers.get(n.out) ?? 0) + 1);
  }
  // a leaf with post-accumulate hooks gets its gradient as soon as its last contribution arrives
  // (DDP starts reading a bucket back while the backward of earlier layers is still queued)
  const waiting = new Map<Tensor, number>();
  for (const n of tape) for (const inp of n.inputs) if (inp && !inp.node && inp.leaf && gradHooks.has(inp.leaf)) waiting.set(inp.leaf, (waiting.get(inp.leaf) ?? 0) + 1);
  const grads = new Map<TapeNode, Tensor>([[rootNode, gradient]]);
  // backward rules run in the dtypes their forward saw, never autocast (even when called in a region)
  withoutAutocast(() => noGrad(() => {
    for (let k = tape.length - 1; k >= 0; k--) {
      const node = tape[k]!;
      const g = grads.get(node);
      if (!g) continue;
      grads.delete(node);
      const at = mark();
      const gin = node.backward(g);
      // free what this op saved for its backward now, as PyTorch does: a step's activations are
      // then released while the gradients build up, not all held until the end
      const inputs = node.inputs;
      freeNode(node);
      const out = inputs.map((inp, j) => {
        let gi = gin[j];
        if (!gi || !inp) return null;
        gi = ops.sumToShape(gi, inp.shape, node.op); // broadcasting is undone here, once, for every op
        if (gi.dtype !== inp.dtype) gi = ops.cast(gi, inp.dtype); // a half input's gradient in its dtype, as torch
        handed.set(gi.storage, (handed.get(gi.storage) ?? 0) + 1); // all counted before any is summed into
        return gi;
      });
      release(g); // this node no longer holds g (counted after its outputs: a view of g may be one)
      if (scoped) {
        // the rule's temporaries, then the op's own output once no view of it is left to differentiate
        freeCreatedSince(at, new Set(out.filter((x): x is Tensor => x !== null).map((x) => x.storage)), `backward() consumed it (a temporary of '${node.op}')`);
        const c = node.out ? sharers.get(node.out) : undefined;
        if (c !== undefined) {
          if (c > 1) sharers.set(node.out!, c - 1);
          else {
            sharers.delete(node.out!);
            freeIfOwned(node.out!, `backward() differentiated the op that made it ('${node.op}') inside a scope (keep() it to use it after backward())`);
          }
        }
      }
      inputs.forEach((inp, j) => {
        const gi = out[j];
        const left = inp && !inp.node ? waiting.get(inp.leaf!) : undefined;
        if (left !== undefined) waiting.set(inp!.leaf!, left - 1);
        if (gi && inp) {
          if (inp.node) addTo(grads, inp.node, gi);
          else addTo(leafGrads, inp.leaf!, gi);
        }
        if (left === 1) { // its last contribution: the gradient is whole
          const g2 = leafGrads.get(inp!.leaf!);
          leafGrads.delete(inp!.leaf!);
          if (g2) commit(inp!.leaf!, g2);
        }
      });
    }
    for (const [t, g] of leafGrads) commit(t, g);
  }));
  // Free the graph, as PyTorch does without retain_graph: saved tensors can be collected. The
  // tensors stay non-leaves, so backward through them again is an error, not a silent leaf.
  for (const node of tape) freeNode(node);
}

function freeNode(node: TapeNode): void {
  node.inputs = [];
  node.backward = () => [];
  freedNodes.add(node);
}

declare module './tensor.js' {
  interface Tensor {
    /** Backpropagate from this tensor (a scalar, or with a gradient of its shape); see backward(). */
    backward(gradient?: Tensor): void;
    /** Drop .grad (see dropGrad). */
    zeroGrad(): void;
    /** Run `hook(this)` whenever a backward() has finished accumulating into this.grad (see registerPostAccumulateGradHook). */
    registerPostAccumulateGradHook(hook: (t: Tensor) => void): { remove(): void };
  }
}
Tensor.prototype.backward = function (this: Tensor, gradient?: Tensor): void { backward(this, gradient); };
Tensor.prototype.registerPostAccumulateGradHook = function (this: Tensor, hook: (t: Tensor) => void): { remove(): void } {
  return registerPostAccumulateGradHook(this, hook);
};
Tensor.prototype.zeroGrad = function (this: Tensor): void { dropGrad(this); };
