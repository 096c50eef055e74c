// Reverse-mode differentiation: `loss.backward()` walks the tape (tensor.ts) in reverse
// topological order, applies each op's backward rule, undoes broadcasting once for every op,
// and accumulates (+=) into the .grad of the leaves, as micrograd and torch.autograd do.

import { sameShape, shapeStr } from './shape.js';
import { Tensor, noGrad, type TapeNode } from './tensor.js';
import { ones } from './creation.js';
import * as ops from './ops.js';

/** Nodes whose graph an earlier backward() freed. */
const freedNodes = new WeakSet<TapeNode>();

/**
 * Backpropagate from `root`: walk the tape in reverse topological order, applying each op's
 * backward rule and accumulating (+=) into the .grad of leaves that require it, so two
 * backward calls add up, as gradient accumulation needs.
 */
export function backward(root: Tensor, gradient?: Tensor): void {
  if (!root.requiresGrad) {
    throw new Error('backward: this tensor does not require grad (no input had requiresGrad, or it was computed under noGrad)');
  }
  if (!gradient) {
    if (root.size !== 1) {
      throw new Error(`backward: grad can be implicitly created only for scalar outputs, got shape ${shapeStr(root.shape)}; ` +
        'reduce first (e.g. .sum()) or pass a gradient of the same shape: t.backward(g)');
    }
    gradient = ones(root.shape, { dtype: root.dtype, backend: root.backend });
  } else if (!sameShape(gradient.shape, root.shape)) {
    throw new Error(`backward: gradient shape ${shapeStr(gradient.shape)} does not match the tensor's shape ${shapeStr(root.shape)}`);
  }

  // Topological order by iterative DFS (no recursion: deep residual stacks are fine).
  const tape: Tensor[] = [];
  const seen = new Set<Tensor>([root]);
  const stack: [Tensor, number][] = [[root, 0]];
  while (stack.length) {
    const top = stack[stack.length - 1]!;
    const [t, i] = top;
    if (t.node && freedNodes.has(t.node)) {
      throw new Error(`backward: the graph through '${t.node.op}' was freed by an earlier backward(); ` +
        'recompute the forward pass for each backward (a tensor computed before a backward() cannot be reused after it)');
    }
    const inputs = t.node?.inputs ?? [];
    if (i < inputs.length) {
      top[1]++;
      const child = inputs[i]!;
      if (child.requiresGrad && !seen.has(child)) { seen.add(child); stack.push([child, 0]); }
    } else {
      stack.pop();
      tape.push(t);
    }
  }

  const grads = new Map<Tensor, Tensor>([[root, gradient]]);
  noGrad(() => {
    for (let k = tape.length - 1; k >= 0; k--) {
      const t = tape[k]!;
      const g = grads.get(t);
      if (!g) continue;
      grads.delete(t);
      const node = t.node;
      if (!node) { t.grad = t.grad ? ops.add(t.grad, g) : g; continue; } // a leaf: accumulate
      const gin = node.backward(g);
      node.inputs.forEach((inp, j) => {
        let gi = gin[j];
        if (!gi || !inp.requiresGrad) return;
        gi = ops.sumToShape(gi, inp.shape, node.op); // broadcasting is undone here, once, for every op
        if (gi.dtype !== inp.dtype) gi = ops.cast(gi, inp.dtype);
        const prev = grads.get(inp);
        grads.set(inp, prev ? ops.add(prev, gi) : gi);
      });
    }
  });
  // Free the graph, as PyTorch does without retain_graph: saved tensors can be collected. The
  // tensors stay non-leaves, so backward through them again is an error, not a silent leaf.
  for (const t of tape) {
    if (t.node && !freedNodes.has(t.node)) {
      const freed: TapeNode = { op: t.node.op, inputs: [], backward: () => [] };
      freedNodes.add(freed);
      t.node = freed;
    }
  }
}

declare module './tensor.js' {
  interface Tensor {
    /** Backpropagate from this tensor (a scalar, or with a gradient of its shape); see backward(). */
    backward(gradient?: Tensor): void;
  }
}
Tensor.prototype.backward = function (this: Tensor, gradient?: Tensor): void { backward(this, gradient); };
