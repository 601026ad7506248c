import type { BooleanArgDef, PositionalArgDef, StringArgDef } from 'citty';
import { invalidArgument } from '../errors.js';

/**
 * One flag as a command declares it: citty's definition (it renders `--help`), plus whether a string
 * flag may be given more than once. The declaration is the only place a flag exists: the parser
 * below reads it, and {@link FlagValues} derives the type the command reads its value as.
 */
export type FlagDef = (StringArgDef & { readonly repeatable?: boolean }) | BooleanArgDef | PositionalArgDef;

/** A command's flags by name, as the user types them (`'run-key'`). */
export type FlagsDef = { readonly [name: string]: FlagDef };

/** The value of one declared flag: a boolean is false when absent; a repeatable string is every value. */
export type FlagValue<F extends FlagDef> = F extends { readonly type: 'boolean' }
  ? boolean
  : F extends { readonly repeatable: true }
    ? readonly string[]
    : string | undefined;

/**
 * The parsed flags of one command, keyed by the names it declares: `flags['run-key']` is
 * `string | undefined`, and a name the command does not declare (`flags['run-kye']`) does not compile.
 */
export type FlagValues<D extends FlagsDef> = {
  readonly [K in keyof D as D[K] extends { readonly type: 'positional' } ? never : K]: FlagValue<D[K]>;
};

/** The names of the single-valued string flags in parsed flags `F`: what a flag read as a number is declared as. */
export type StringFlagName<F> = { [K in keyof F]: F[K] extends string | undefined ? K : never }[keyof F] & string;

export interface ParsedArgv<D extends FlagsDef> {
  readonly flags: FlagValues<D>;
  /** `--help`/`-h` among the subcommand's own arguments. */
  readonly help: boolean;
  /** The target command (after `--`, or from the first positional on); null when none was given. */
  readonly command: string[] | null;
}

export interface ArgvOptions {
  /** Whether the subcommand takes a target command (`reserve`). */
  readonly takesCommand?: boolean;
}

/**
 * Parse a subcommand's arguments against its definition, with the rules citty's parser cannot
 * express (DESIGN.md, "Know the parser"):
 * - unknown flags are errors, and so is a flag given twice unless it is repeatable;
 * - everything after `--` is the target command, even `--run-key` or `--db` look-alikes; without `--`,
 *   the first positional argument starts the command (the Python tool's `argparse.REMAINDER`);
 * - a repeatable flag takes the next argument as its value even when it starts with `--`
 *   (`--orchesjob-start-option --strict`, as the Airflow provider sends it) or after `=`.
 * Values for other flags may not look like flags (`--run-key --db` is an error), except negative numbers.
 */
export function parseArgv<D extends FlagsDef>(rawArgs: readonly string[], def: D, options: ArgvOptions = {}): ParsedArgv<D> {
  const flags = Object.create(null) as Flags;
  for (const [name, spec] of Object.entries(def)) {
    if (spec.type === 'boolean') flags[name] = false;
    else if (isRepeatable(spec)) flags[name] = [];
  }
  const given = new Set<string>();
  let help = false;
  let command: string[] | null = null;
  for (let i = 0; i < rawArgs.length; i++) {
    const arg = rawArgs[i] as string;
    if (arg === '--') {
      if (!options.takesCommand && i + 1 < rawArgs.length) {
        throw invalidArgument(`unexpected arguments after --: ${JSON.stringify(rawArgs.slice(i + 1))}`);
      }
      command = rawArgs.slice(i + 1);
      break;
    }
    if (!arg.startsWith('-') || arg === '-') {
      if (!options.takesCommand) throw invalidArgument(`unexpected argument: ${JSON.stringify(arg)}`);
      command = rawArgs.slice(i);
      break;
    }
    if (arg === '--help' || arg === '-h') help = true;
    else i = readOption(rawArgs, i, def, { flags, given });
  }
  return { flags: flags as FlagValues<D>, help, command };
}

type Flags = Record<string, string | string[] | boolean>;

/** Read the option at `rawArgs[i]` (and its value) into `flags`; returns the index of the last argument read. */
function readOption(rawArgs: readonly string[], i: number, def: FlagsDef, into: { flags: Flags; given: Set<string> }): number {
  const arg = rawArgs[i] as string;
  if (!arg.startsWith('--')) throw invalidArgument(`unknown option: ${arg}`);
  const eq = arg.indexOf('=');
  const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
  const spec = Object.hasOwn(def, name) ? def[name] : undefined;
  if (spec === undefined || spec.type === 'positional') throw invalidArgument(`unknown option: --${name}`);
  const repeatable = isRepeatable(spec);
  const once = () => {
    if (into.given.has(name)) throw invalidArgument(`option --${name} given more than once`);
    into.given.add(name);
  };
  if (spec.type === 'boolean') {
    if (eq !== -1) throw invalidArgument(`option --${name} takes no value`);
    once();
    into.flags[name] = true;
    return i;
  }
  let value = arg.slice(eq + 1);
  if (eq === -1) {
    const next = rawArgs[i + 1];
    if (next === undefined || next === '--' || (!repeatable && looksLikeFlag(next))) {
      throw invalidArgument(`option --${name} requires a value`);
    }
    value = next;
    i++;
  }
  if (repeatable) {
    (into.flags[name] as string[]).push(value);
  } else {
    once(); // after the value is read, as before: `--run-key` without one says it requires a value
    into.flags[name] = value;
  }
  return i;
}

function isRepeatable(spec: FlagDef): boolean {
  return 'repeatable' in spec && spec.repeatable === true;
}

/** A negative number (`-5`, `-٣`, `-86400` for a time) is a value, as in argparse, where `\d` is any script's digit. */
function looksLikeFlag(value: string): boolean {
  return value.startsWith('-') && value !== '-' && !/^-\p{Nd}/u.test(value);
}
