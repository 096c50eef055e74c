// HellaSwag evaluation as build-nanogpt's hellaswag.py (being written; see issue 7).
import type { GPT } from '../nn/gpt.js';

export interface HellaswagResult {
  n: number; acc: number; accNorm: number; numCorrect: number; numCorrectNorm: number;
  predictions: { index: number; label: number; pred: number; pred_norm: number }[];
}

export async function evaluateHellaswag(model: GPT, path: string, opts: { limit?: number; print?: (s: string) => void } = {}): Promise<HellaswagResult> {
  void model; void opts;
  throw new Error(`evaluateHellaswag(${path}): not implemented yet`);
}
