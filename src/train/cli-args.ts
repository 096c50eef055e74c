// The command-line layer of the five CLIs (train, prepare-data, sample, eval:hellaswag, export):
// a typed table of options (name, kind, range, default, help line) parsed by Node's
// util.parseArgs, validated with the flag's name and the accepted form, a --help generated from
// the same table, and one `main` wrapper (exit codes, error printing).

import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';

interface Base {
  /** One line for --help. */
  help: string;
  /** The heading --help lists the option under. */
  group?: string;
  /** The value's name in --help (default: the kind). */
  metavar?: string;
  required?: boolean;
  /** Older names still accepted (the five CLIs once spelled some flags differently). */
  aliases?: readonly string[];
}
export interface IntOption extends Base { kind: 'int'; default?: number; min?: number; max?: number }
export interface NumberOption extends Base {
  kind: 'number'; default?: number; min?: number; max?: number;
  /** Values must be strictly above this (e.g. a learning rate > 0). */
  above?: number;
}
export interface StringOption extends Base {
  kind: 'string'; default?: string;
  /** The value of the flag given alone (`--hellaswag` followed by another flag or nothing). */
  alone?: string;
}
export interface ChoiceOption extends Base { kind: 'choice'; choices: readonly string[]; default?: string }
export interface FlagOption extends Base { kind: 'flag'; short?: string }
export type OptionSpec = IntOption | NumberOption | StringOption | ChoiceOption | FlagOption;
export type OptionTable = Record<string, OptionSpec>;

/** What a parsed option holds: numbers, strings, booleans; `undefined` where there is no default. */
type ValueOf<S extends OptionSpec> =
  S extends FlagOption ? boolean :
  S extends ChoiceOption ? (S extends { choices: readonly (infer C)[] } ? C : string) :
  S extends IntOption | NumberOption ? number :
  string;
type Required<S extends OptionSpec> = S extends FlagOption ? true : S extends { default: unknown } ? true : S extends { required: true } ? true : false;
export type Values<T extends OptionTable> = { [K in keyof T]: Required<T[K]> extends true ? ValueOf<T[K]> : ValueOf<T[K]> | undefined };

export interface Command<T extends OptionTable> {
  /** How it is run, e.g. 'npm run train -- [flags]'. */
  usage: string;
  /** A paragraph on what it does. */
  summary: string;
  options: T;
  /** One command line that works, shown under --help. */
  example: string;
  /** Lines after the options (e.g. environment variables). */
  epilog?: string;
}

/** Typed options for a command: `const cmd = command({...})` keeps the literal types of the table. */
export function command<const T extends OptionTable>(c: Command<T>): Command<T> { return c; }

function rangeText(s: IntOption | NumberOption): string {
  const parts: string[] = [];
  if ('above' in s && s.above !== undefined) parts.push(`> ${s.above}`);
  if (s.min !== undefined) parts.push(`>= ${s.min}`);
  if (s.max !== undefined) parts.push(`<= ${s.max}`);
  return parts.join(' and ');
}

/** What a valid value looks like, for messages and --help. */
function accepted(s: OptionSpec): string {
  switch (s.kind) {
    case 'int': { const r = rangeText(s); return `an integer${r ? ` ${r}` : ''}`; }
    case 'number': { const r = rangeText(s); return `a number${r ? ` ${r}` : ''}`; }
    case 'choice': return `one of ${s.choices.join(', ')}`;
    case 'string': return 'a value';
    case 'flag': return 'no value';
  }
}

/** --help, generated from the table. */
export function helpText<T extends OptionTable>(c: Command<T>): string {
  const lines = [`usage: ${c.usage}`, '', c.summary.trim(), ''];
  const entries = Object.entries(c.options);
  const groups = [...new Set(entries.map(([, s]) => s.group ?? ''))];
  const flagText = (name: string, s: OptionSpec): string => {
    if (s.kind === 'flag') return `--${name}${s.short ? `, -${s.short}` : ''}`;
    const meta = s.metavar ?? (s.kind === 'choice' ? s.choices.join('|') : s.kind === 'string' ? 'VALUE' : s.kind === 'int' ? 'N' : 'X');
    return s.kind === 'string' && s.alone !== undefined ? `--${name} [${meta}]` : `--${name} ${meta}`;
  };
  // one column for the help texts; a flag too long for it puts its text on the next line (as argparse)
  const width = 32;
  const row = (head: string, text: string): void => {
    if (head.length + 1 > width) lines.push(head, `${' '.repeat(width)}${text}`);
    else lines.push(`${head.padEnd(width)}${text}`);
  };
  for (const g of groups) {
    if (g) lines.push(`${g}:`);
    for (const [name, s] of entries.filter(([, o]) => (o.group ?? '') === g)) {
      const notes: string[] = [];
      if (s.required) notes.push('required');
      if (s.kind !== 'flag' && s.default !== undefined) notes.push(`default ${s.default}`);
      if ((s.kind === 'int' || s.kind === 'number') && rangeText(s)) notes.push(rangeText(s));
      if (s.aliases?.length) notes.push(`also ${s.aliases.map((a) => `--${a}`).join(', ')}`);
      row(`  ${flagText(name, s)}`, `${s.help}${notes.length ? ` (${notes.join('; ')})` : ''}`);
    }
  }
  row('  --help, -h', 'this text');
  lines.push('', 'example:', `  ${c.example}`);
  if (c.epilog) lines.push('', c.epilog.trim());
  return lines.join('\n') + '\n';
}

/** The closest option name, for "did you mean": the one it begins, else edit distance at most 3. */
function nearest(name: string, names: string[]): string | null {
  const prefixed = names.filter((n) => n.startsWith(name));
  if (prefixed.length === 1) return prefixed[0]!;
  const dist = (a: string, b: string): number => {
    const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...new Array<number>(b.length).fill(0)]);
    for (let j = 1; j <= b.length; j++) d[0]![j] = j;
    for (let i = 1; i <= a.length; i++) for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1));
    }
    return d[a.length]![b.length]!;
  };
  let best: string | null = null, bestD = 4;
  for (const n of names) { const k = dist(name, n); if (k < bestD) { bestD = k; best = n; } }
  return best;
}

/** Parse and check one value; errors name the flag, the accepted form and what was given. */
function convert(name: string, s: OptionSpec, raw: string): unknown {
  const bad = (): Error => new Error(`--${name}: expected ${accepted(s)}, got '${raw}'`);
  switch (s.kind) {
    case 'string': return raw;
    case 'choice': if (!s.choices.includes(raw)) throw bad(); return raw;
    case 'flag': return true;
    case 'int': case 'number': {
      // Number('') is 0 and Number(' 1 ') is 1: only a plain numeric literal counts (1e8 does, as fineweb.py writes it)
      if (!/^[+-]?(\d+\.?\d*|\.\d+)(e[+-]?\d+)?$/i.test(raw.trim()) || raw.trim() !== raw) throw bad();
      const v = Number(raw);
      if (!Number.isFinite(v) || (s.kind === 'int' && !Number.isInteger(v))) throw bad();
      if (s.min !== undefined && v < s.min) throw bad();
      if (s.max !== undefined && v > s.max) throw bad();
      if (s.kind === 'number' && s.above !== undefined && !(v > s.above)) throw bad();
      return v;
    }
  }
}

/**
 * Parse argv against the command's table: values typed and checked, defaults filled in. Returns
 * null after printing --help to `out`.
 */
export function parseCommand<T extends OptionTable>(c: Command<T>, argv: readonly string[],
  out: { write(s: string): unknown } = process.stdout): Values<T> | null {
  const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
  const canonical = new Map<string, string>(); // alias -> name
  for (const [name, s] of Object.entries(c.options)) {
    options[name] = s.kind === 'flag' ? { type: 'boolean', ...(s.short ? { short: s.short } : {}) } : { type: 'string' };
    for (const a of s.aliases ?? []) { options[a] = { type: s.kind === 'flag' ? 'boolean' : 'string' }; canonical.set(a, name); }
  }
  const specOf = (flag: string): OptionSpec | undefined => c.options[canonical.get(flag) ?? flag];
  // parseArgs reads `--max-lr -1` as a flag followed by another flag: join a negative number to its flag
  const args: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!, next = argv[i + 1];
    const spec = a.startsWith('--') ? specOf(a.slice(2)) : undefined;
    if (spec && spec.kind !== 'flag' && next !== undefined && /^-(\d|\.\d)/.test(next)) { args.push(`${a}=${next}`); i++; }
    else if (spec?.kind === 'string' && spec.alone !== undefined && !a.includes('=') && (next === undefined || next.startsWith('--'))) args.push(`${a}=${spec.alone}`);
    else args.push(a);
  }
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({ args, options, strict: true, allowPositionals: false }));
  } catch (e) {
    const msg = (e as Error).message;
    const unknown = /Unknown option '(-{1,2}[^']+)'/.exec(msg)?.[1];
    if (unknown) {
      const guess = nearest(unknown.replace(/^-+/, ''), Object.keys(c.options));
      throw new Error(`unknown flag ${unknown}${guess ? `; did you mean --${guess}?` : ''} (see --help)`);
    }
    const stray = /Unexpected argument '(.*)'\. This command/s.exec(msg);
    if (stray) throw new Error(`unexpected argument '${stray[1]}': every value follows its flag, e.g. --max-steps 100 (see --help)`);
    const ambiguous = /Option '(--[^ ']+)[^']*' argument is ambiguous/.exec(msg)?.[1];
    if (ambiguous) {
      const value = args[args.indexOf(ambiguous) + 1] ?? '';
      throw new Error(`${ambiguous}: expected ${accepted(specOf(ambiguous.slice(2))!)}, got '${value}' (a value starting with '-': write ${ambiguous}=${value} if that is meant)`);
    }
    const missing = /Option '(--[^ ']+)[^']*' argument missing/.exec(msg)?.[1];
    if (missing) throw new Error(`${missing}: expected ${accepted(specOf(missing.slice(2))!)} after it`);
    throw new Error(`invalid arguments: ${msg} (see --help)`);
  }
  if (values.help) { out.write(helpText(c)); return null; }
  const result: Record<string, unknown> = {};
  for (const [alias, name] of canonical) {
    if (values[alias] === undefined) continue;
    if (values[name] !== undefined) throw new Error(`--${name} and --${alias} are the same flag; give it once`);
    values[name] = values[alias];
  }
  for (const [name, s] of Object.entries(c.options)) {
    const raw = values[name];
    if (s.kind === 'flag') { result[name] = raw === true; continue; }
    if (raw === undefined || raw === true || raw === false) {
      if (s.required) throw new Error(`--${name} is required: ${s.help}`);
      result[name] = s.default;
      continue;
    }
    result[name] = convert(name, s, raw);
  }
  return result as Values<T>;
}

/**
 * Run `main` when this module is the process's entry script (not when a test imports it):
 * exit with its code (0 when it returns nothing), or print `error: <message>` and exit 1.
 */
export function runMain(moduleUrl: string, main: (argv: string[]) => Promise<number | void>): void {
  if (process.argv[1] === undefined || moduleUrl !== pathToFileURL(process.argv[1]).href) return;
  main(process.argv.slice(2)).then((code) => process.exit(code ?? 0), (e: unknown) => {
    console.error(`error: ${e instanceof Error ? e.message : String(e)}`);
    process.exit(1);
  });
}
