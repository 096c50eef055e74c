// Every parser of outside input, fuzzed with fast-check (fixed seed): .npy headers and bodies,
// config.json, HellaSwag jsonl, log.jsonl on resume, and command-line values. Each case ends in
// a result or a clear error (an Error naming the file or the flag, not a TypeError or RangeError
// from inside the parser), and a file's claims never make it allocate beyond the file's size.
// (safetensors headers have their own fuzz suite, test/safetensors.fuzz.test.ts.)

import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { decodeNpy, encodeNpy, parseNpyHeader } from '../src/data/npy.js';
import { parseHfGpt2Config } from '../src/train/hf-gpt2.js';
import { readHellaswag } from '../src/train/hellaswag.js';
import { RunLog } from '../src/train/run-log.js';
import { parseCommand } from '../src/train/cli-args.js';
import { TRAIN_COMMAND } from '../src/train/cli.js';

const SEED = 20261201;
const work = mkdtempSync(join(tmpdir(), 'tapegrad-fuzz-'));
const seen = { ok: 0, refused: 0 };

/** Run `f`; it must return, or throw a plain Error whose message names `name`. */
function resultOrClearError(name: string, f: () => unknown): void {
  try {
    f();
    seen.ok++;
  } catch (e) {
    expect(e, String(e)).toBeInstanceOf(Error);
    expect((e as Error).constructor.name, (e as Error).stack).toBe('Error');
    expect((e as Error).message, (e as Error).message).toContain(name);
    seen.refused++;
  }
}
async function resultOrClearErrorAsync(name: string, f: () => Promise<unknown>): Promise<void> {
  try {
    await f();
    seen.ok++;
  } catch (e) {
    expect((e as Error).constructor.name, (e as Error).stack).toBe('Error');
    expect((e as Error).message).toContain(name);
    seen.refused++;
  }
}

describe('parsers under fuzzing', () => {
  it('.npy: mutated headers and bodies of valid files, and random bytes', () => {
    const valid = fc.oneof(
      fc.array(fc.integer({ min: 0, max: 65535 }), { maxLength: 40 }).map((a) => encodeNpy(Uint16Array.from(a))),
      fc.array(fc.integer(), { maxLength: 20 }).map((a) => encodeNpy(Int32Array.from(a))),
    );
    const mutated = fc.tuple(valid, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 6 }), fc.nat(), fc.boolean())
      .map(([b, edits, cut, truncate]) => {
        const out = Uint8Array.from(b);
        for (const [i, v] of edits) out[i % out.length] = v;
        return truncate ? out.subarray(0, cut % (out.length + 1)) : out;
      });
    // headers that lie about the shape: the body is never allocated from the claim
    const liar = fc.tuple(fc.constantFrom('<u2', '<i4', '<i8', '|u1', '>u2', '<f4'), fc.oneof(fc.nat(), fc.constant(2 ** 40), fc.constant(Number.MAX_SAFE_INTEGER)), fc.nat({ max: 64 }))
      .map(([descr, n, body]) => {
        let h = `{'descr': '${descr}', 'fortran_order': False, 'shape': (${n},), }`;
        h += ' '.repeat((64 - ((10 + h.length + 1) % 64)) % 64) + '\n';
        return Uint8Array.from([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0, h.length & 255, h.length >> 8, ...Buffer.from(h, 'latin1'), ...new Uint8Array(body)]);
      });
    fc.assert(fc.property(fc.oneof(mutated, liar, fc.uint8Array({ maxLength: 200 })), (bytes) => {
      resultOrClearError('f.npy', () => { parseNpyHeader(bytes, 'f.npy'); decodeNpy(bytes, 'f.npy'); });
    }), { seed: SEED, numRuns: 400 });
  });

  it('config.json: random JSON values and mutated GPT-2 configs', () => {
    const base = { model_type: 'gpt2', n_layer: 2, n_head: 2, n_embd: 8, n_positions: 16, vocab_size: 11, activation_function: 'gelu_new' };
    const mutated = fc.tuple(fc.constantFrom(...Object.keys(base)), fc.jsonValue()).map(([k, v]) => ({ ...base, [k]: v }));
    fc.assert(fc.property(fc.oneof(fc.jsonValue(), mutated, fc.constant(base)), (json) => {
      resultOrClearError('cfg.json', () => {
        const c = parseHfGpt2Config(json, 'cfg.json');
        for (const v of Object.values(c)) expect(Number.isSafeInteger(v) && v > 0).toBe(true);
      });
    }), { seed: SEED, numRuns: 400 });
  });

  it('HellaSwag jsonl: random lines and mutated examples', async () => {
    const ex = { ctx: 'A man', endings: ['a', 'b', 'c', 'd'], label: 1 };
    const line = fc.oneof(fc.string(), fc.jsonValue().map((v) => JSON.stringify(v)),
      fc.tuple(fc.constantFrom('ctx', 'endings', 'label'), fc.jsonValue()).map(([k, v]) => JSON.stringify({ ...ex, [k]: v })), fc.constant(JSON.stringify(ex)));
    let i = 0;
    await fc.assert(fc.asyncProperty(fc.array(line, { maxLength: 6 }), async (lines) => {
      const path = join(work, `hs-${i++}.jsonl`);
      writeFileSync(path, lines.join('\n'));
      await resultOrClearErrorAsync(path, () => readHellaswag(path));
    }), { seed: SEED, numRuns: 150 });
  });

  it('log.jsonl on resume: random and truncated lines', () => {
    const rec = fc.oneof(
      fc.record({ step: fc.nat(20), loss: fc.double({ noNaN: true }) }).map((r) => JSON.stringify(r)),
      fc.record({ step: fc.nat(20), val_loss: fc.double({ noNaN: true }) }).map((r) => JSON.stringify(r)),
      fc.jsonValue().map((v) => JSON.stringify(v)), fc.string());
    fc.assert(fc.property(fc.array(rec, { maxLength: 8 }), fc.nat(25), fc.nat(40), (lines, step, cut) => {
      const text = lines.join('\n');
      const d = mkdtempSync(join(work, 'log-'));
      writeFileSync(join(d, 'log.jsonl'), text.slice(0, text.length - (cut % (text.length + 1))));
      resultOrClearError(join(d, 'log.jsonl'), () => RunLog.resume(d, step));
    }), { seed: SEED, numRuns: 200 });
  });

  it('command-line values: random flags and values for npm run train', () => {
    const flags = Object.keys(TRAIN_COMMAND.options).map((f) => `--${f}`);
    const token = fc.oneof(fc.constantFrom(...flags), fc.constantFrom('1', '-1', '0', '', '1e8', '3e-4', 'NaN', 'Infinity', '0x10', '1.5', ' 2', 'abc', '--', '-x', 'js', 'tiny'), fc.string());
    fc.assert(fc.property(fc.array(token, { maxLength: 6 }), (argv) => {
      try {
        parseCommand(TRAIN_COMMAND, argv, { write: () => true });
        seen.ok++;
      } catch (e) {
        expect((e as Error).constructor.name, (e as Error).stack).toBe('Error');
        expect((e as Error).message).toMatch(/^(--[a-z-]+[: ]|unknown flag|unexpected argument|invalid arguments)/);
        seen.refused++;
      }
    }), { seed: SEED, numRuns: 500 });
    expect(seen.ok).toBeGreaterThan(0);
    expect(seen.refused).toBeGreaterThan(0);
  });
});
