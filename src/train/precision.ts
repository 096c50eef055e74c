// The run's precision (nanoGPT's --dtype): float32, or forward passes under bfloat16 / float16
// autocast as train_gpt2.py runs them under torch.autocast. Shared by training, HellaSwag and sampling.

import { autocast } from '../tensor/index.js';

export const TRAIN_DTYPES = ['float32', 'bfloat16', 'float16'] as const;
export type TrainDtype = typeof TRAIN_DTYPES[number];

/** Run `fn` under the run's autocast (float32: as it is). */
export function withDtype<T>(dtype: TrainDtype, fn: () => T): T {
  return dtype === 'float32' ? fn() : autocast(dtype, fn);
}

/** `value` as a TrainDtype, or an error naming the choices. */
export function parseDtype(value: string, what = '--dtype'): TrainDtype {
  if ((TRAIN_DTYPES as readonly string[]).includes(value)) return value as TrainDtype;
  throw new Error(`${what} must be one of ${TRAIN_DTYPES.join(', ')}, got ${JSON.stringify(value)}`);
}
