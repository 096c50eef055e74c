// Pretrained GPT-2 by name, as build-nanogpt's GPT.from_pretrained('gpt2'): gpt2, gpt2-medium,
// gpt2-large and gpt2-xl (OpenAI's, on the Hub as openai-community/...), or any OWNER/NAME[@REVISION]
// whose config.json is GPT-2's. config.json and model.safetensors are fetched into the Hugging Face
// cache (shared with Python, see data/hf-cache.ts) and read from its snapshot folder.

import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import { hubFile, hubOffline } from '../data/hf-cache.js';
import { HubError, fileMetadata } from '../data/hub.js';
import { ProgressBar } from '../data/progress.js';

/** from_pretrained's four names, and where the Hub keeps them now. */
export const GPT2_MODELS: Readonly<Record<string, string>> = {
  gpt2: 'openai-community/gpt2',
  'gpt2-medium': 'openai-community/gpt2-medium',
  'gpt2-large': 'openai-community/gpt2-large',
  'gpt2-xl': 'openai-community/gpt2-xl',
};

/** The Hub model `spec` names (gpt2, OWNER/NAME, either @REVISION), or null: a local path, or no name. */
export function parseHubModel(spec: string): { repo: string; revision: string } | null {
  if (existsSync(spec)) return null; // a folder or file here wins, as from_pretrained's does
  const at = spec.indexOf('@');
  const name = at < 0 ? spec : spec.slice(0, at);
  const revision = at < 0 ? 'main' : spec.slice(at + 1);
  if (!revision || /\s|\.\.|^\/|\/$/.test(revision)) return null;
  const known = GPT2_MODELS[name];
  if (known) return { repo: known, revision };
  return /^[A-Za-z0-9][\w.-]*\/[A-Za-z0-9][\w.-]*$/.test(name) && !name.includes('..') ? { repo: name, revision } : null;
}

/**
 * The local path to read `spec` from: itself, or for a Hub name the snapshot folder holding its
 * config.json and model.safetensors (downloaded once, with a progress bar on stderr).
 */
export async function resolveModelSource(spec: string): Promise<string> {
  const hub = parseHubModel(spec);
  if (!hub) return spec;
  const o = { type: 'model' as const, repo: hub.repo, revision: hub.revision, log: (m: string) => process.stderr.write(`${m}\n`) };
  const named = `${hub.repo}@${hub.revision}`;
  let config: string;
  try {
    config = await hubFile('config.json', o);
  } catch (e) {
    const status = (e as HubError).status;
    if (status === 404 || status === 401) {
      throw new Error(`${spec}: no such file or folder here, and the Hugging Face Hub has no model ${named} with a config.json ` +
        `(${(e as Error).message}); give a local path, one of ${Object.keys(GPT2_MODELS).join(', ')}, or OWNER/NAME[@REVISION] of a GPT-2 model`);
    }
    throw e;
  }
  let bar: ProgressBar | null = null;
  try {
    await hubFile('model.safetensors', {
      ...o,
      onProgress: (bytes, total) => {
        bar ??= new ProgressBar({ label: `download ${hub.repo} model.safetensors`, total, unit: 'bytes', stream: process.stderr });
        bar.update(bytes);
      },
    });
    (bar as ProgressBar | null)?.done();
  } catch (e) {
    if ((e as HubError).status !== 404) throw e;
    const pickle = !hubOffline() && await fileMetadata('model', hub.repo, hub.revision, 'pytorch_model.bin', o).then(() => true, () => false);
    throw new Error(`${named} has no model.safetensors` + (pickle
      ? ', only pytorch_model.bin (a PyTorch pickle, which tapegrad does not read: unpickling runs code). Convert it once in Python: ' +
        `GPT2LMHeadModel.from_pretrained("${hub.repo}").save_pretrained("DIR", safe_serialization=True), then --init-from DIR`
      : '; tapegrad reads GPT-2 weights from model.safetensors'));
  }
  return dirname(config);
}
