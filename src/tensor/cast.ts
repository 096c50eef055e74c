// The dtype cast as an op: its gradient is the output's gradient cast back to the input's dtype.
// Its own file because both the ops (ops.ts) and autocast (autocast.ts, below them) cast.

import type { DType } from './dtype.js';
import { fromOp, type Tensor } from './tensor.js';

export function cast(x: Tensor, dtype: DType): Tensor {
  if (x.dtype === dtype) return x;
  const from = x.dtype;
  return fromOp('cast', x.backend.cast(x.storage, dtype), x.shape, [x],
    (g) => [cast(g, from)]);
}
