// The command-line layer shared by the CLIs: typed values, checks that name the flag and the
// accepted form, --help generated from the same table as the parser.

import { describe, expect, it } from 'vitest';
import { command, helpText, parseCommand } from '../src/train/cli-args.js';
import { main as trainMain, TRAIN_COMMAND } from '../src/train/cli.js';
import { SAMPLE_COMMAND } from '../src/train/sample.js';
import { HELLASWAG_COMMAND } from '../src/train/hellaswag.js';
import { EXPORT_COMMAND } from '../src/train/export.js';
import { PREPARE_COMMAND } from '../src/train/prepare-data.js';

const cmd = command({
  usage: 'x [flags]', summary: 'a test command', example: 'x --name n',
  options: {
    lr: { kind: 'number', above: 0, default: 1e-3, help: 'learning rate' },
    steps: { kind: 'int', min: 1, max: 10, help: 'steps' },
    mode: { kind: 'choice', choices: ['a', 'b'], default: 'a', help: 'mode' },
    name: { kind: 'string', required: true, help: 'a name' },
    quiet: { kind: 'flag', help: 'say less' },
    'out-dir': { kind: 'string', aliases: ['out'], help: 'where' },
  },
});
const sink = { write: () => true };

describe('command-line options', () => {
  it('parses typed values and fills defaults', () => {
    const v = parseCommand(cmd, ['--name', 'n', '--steps', '3', '--lr', '2e-4', '--quiet'])!;
    expect(v).toEqual({ lr: 2e-4, steps: 3, mode: 'a', name: 'n', quiet: true, 'out-dir': undefined });
    expect(parseCommand(cmd, ['--name', 'n'])).toEqual({ lr: 1e-3, steps: undefined, mode: 'a', name: 'n', quiet: false, 'out-dir': undefined });
    // an old name is an alias of the new one, not a second flag
    expect(parseCommand(cmd, ['--name', 'n', '--out', 'd'])!['out-dir']).toBe('d');
    expect(() => parseCommand(cmd, ['--name', 'n', '--out', 'd', '--out-dir', 'e'])).toThrow(/--out-dir and --out are the same flag/);
  });

  it('refuses bad values naming the flag, the accepted form and the value', () => {
    const bad: [string[], RegExp][] = [
      [['--lr', '-1'], /--lr: expected a number > 0, got '-1'/],
      [['--lr', '0'], /--lr: expected a number > 0, got '0'/],
      [['--lr', ''], /--lr: expected a number > 0, got ''/],
      [['--lr', 'abc'], /--lr: expected a number > 0, got 'abc'/],
      [['--lr', ' 1'], /--lr: expected a number > 0, got ' 1'/],
      [['--lr', 'Infinity'], /--lr: expected a number > 0/],
      [['--steps', '2.5'], /--steps: expected an integer >= 1 and <= 10, got '2.5'/],
      [['--steps', '11'], /--steps: expected an integer >= 1 and <= 10, got '11'/],
      [['--mode', 'c'], /--mode: expected one of a, b, got 'c'/],
      [['--lr'], /--lr: expected a number > 0 after it/],
      [['--steps', '1'], /--name is required: a name/],
      [['--nam', 'n'], /unknown flag --nam; did you mean --name\?/],
      [['--name', 'n', 'extra'], /unexpected argument 'extra'/],
    ];
    for (const [argv, want] of bad) {
      const args = argv.includes('--name') || argv.includes('--nam') ? argv : ['--name', 'n', ...argv];
      expect(() => parseCommand(cmd, argv[0] === '--steps' && argv[1] === '1' ? argv : args, sink), argv.join(' ')).toThrow(want);
    }
  });

  it('--help lists every option of every CLI, with defaults and ranges, from the same table', () => {
    for (const c of [TRAIN_COMMAND, SAMPLE_COMMAND, HELLASWAG_COMMAND, EXPORT_COMMAND, PREPARE_COMMAND]) {
      const text = helpText(c as never);
      for (const name of Object.keys(c.options)) expect(text, `${c.usage}: --${name}`).toContain(`--${name}`);
    }
    let out = '';
    expect(parseCommand(TRAIN_COMMAND, ['--help'], { write: (s: string) => { out += s; } })).toBeNull();
    expect(out).toMatch(/--max-lr LR +peak learning rate \(default 0\.004; > 0\)/);
    expect(out).toMatch(/--backend auto\|js\|wasm\|gpu\|gpu-swiftshader/);
    for (const c of [TRAIN_COMMAND, SAMPLE_COMMAND, HELLASWAG_COMMAND, EXPORT_COMMAND, PREPARE_COMMAND]) {
      const lines = helpText(c as never).split('\n');
      // one example that is a real command line of this CLI
      const ex = lines[lines.indexOf('example:') + 1]!;
      expect(ex, c.usage).toMatch(new RegExp(`^  ${c.usage.split(' -- ')[0]!.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} -- --`));
      // the help texts in one column: an option line is its flag padded to column 32, or the flag
      // alone with its text on the next line starting at column 32
      for (let i = 0; i < lines.length; i++) {
        const l = lines[i]!;
        if (!/^  --/.test(l)) continue;
        if (l.length > 32 && l[31] === ' ' && l[32] !== ' ') continue;
        expect(lines[i + 1]!.slice(0, 32).trim(), `${c.usage}: ${l}`).toBe('');
        expect(lines[i + 1]![32], `${c.usage}: ${l}`).not.toBe(' ');
      }
    }
    // the renamed export flags, and their old names as aliases
    expect(helpText(EXPORT_COMMAND as never)).toMatch(/--init-from NAME\|PATH .*also --checkpoint/);
    expect(helpText(EXPORT_COMMAND as never)).toMatch(/--out-dir DIR .*also --out\)/);
  });

  it('--hellaswag alone means hellaswag.py\'s file (downloaded when missing); with a value, that file', () => {
    const hs = (argv: string[]): unknown => (parseCommand(TRAIN_COMMAND, argv) as { hellaswag?: string }).hellaswag;
    expect(hs(['--hellaswag'])).toBe('hellaswag/hellaswag_val.jsonl');
    expect(hs(['--hellaswag', '--max-steps', '3'])).toBe('hellaswag/hellaswag_val.jsonl');
    expect(hs(['--hellaswag', 'my.jsonl', '--max-steps', '3'])).toBe('my.jsonl');
    expect(hs(['--hellaswag=x.jsonl'])).toBe('x.jsonl');
    expect(hs([])).toBeUndefined();
    expect(helpText(TRAIN_COMMAND as never)).toMatch(/--hellaswag \[FILE\]/);
  });

  it('npm run train checks its values before doing anything', async () => {
    await expect(trainMain(['--max-lr', '-1'])).rejects.toThrow(/--max-lr: expected a number > 0, got '-1'/);
    await expect(trainMain(['--grad-clip', ''])).rejects.toThrow(/--grad-clip: expected a number > 0, got ''/);
    await expect(trainMain(['--weight-decay', '-0.1'])).rejects.toThrow(/--weight-decay: expected a number >= 0/);
    await expect(trainMain(['--total-batch-size', '0'])).rejects.toThrow(/--total-batch-size: expected an integer >= 1, got '0'/);
    await expect(trainMain(['--val-steps', '0'])).rejects.toThrow(/--val-steps: expected an integer >= 1, got '0'/);
    await expect(trainMain(['--min-lr', '0.1', '--max-lr', '0.01'])).rejects.toThrow(/--min-lr 0.1 is above --max-lr 0.01/);
    await expect(trainMain(['--backend', 'cuda'])).rejects.toThrow(/--backend: expected one of auto, js, wasm, gpu, gpu-swiftshader, got 'cuda'/);
  });
});
