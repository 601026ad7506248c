import type { ArgsDef } from 'citty';
import { invalidArgument } from './errors.js';

/** Parsed flags of one subcommand: strings, repeated strings, booleans; absent flags are missing. */
export type Flags = Record<string, string | string[] | boolean | undefined>;

export interface ParsedArgv {
  readonly flags: Flags;
  /** The target command (after `--`, or from the first positional on); null when none was given. */
  readonly command: string[] | null;
}

export interface ArgvOptions {
  /** Flags that may be given more than once; their value is always an array. */
  readonly repeatable?: readonly string[];
  /** Whether the subcommand takes a target command (`reserve`). */
  readonly takesCommand?: boolean;
}

/**
 * Parse a subcommand's arguments against its citty definition, with the rules citty's parser cannot
 * express (DESIGN.md, "Know the parser"):
 * - unknown flags are errors, and so is a flag given twice unless it is repeatable;
 * - everything after `--` is the target command, even `--run-key` or `--db` look-alikes; without `--`,
 *   the first positional argument starts the command (the Python tool's `argparse.REMAINDER`);
 * - a repeatable flag takes the next argument as its value even when it starts with `--`
 *   (`--orchesjob-start-option --strict`, as the Airflow provider sends it) or after `=`.
 * Values for other flags may not look like flags (`--run-key --db` is an error), except negative numbers.
 * `--help`/`-h` among the subcommand's own arguments sets `flags.help`.
 */
export function parseArgv(rawArgs: readonly string[], def: ArgsDef, options: ArgvOptions = {}): ParsedArgv {
  const repeatable = new Set(options.repeatable ?? []);
  const flags: Flags = Object.create(null) as Flags;
  for (const name of repeatable) flags[name] = [];
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
    if (arg === '--help' || arg === '-h') {
      flags['help'] = true;
      continue;
    }
    if (!arg.startsWith('--')) throw invalidArgument(`unknown option: ${arg}`);
    const eq = arg.indexOf('=');
    const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
    const spec = Object.hasOwn(def, name) ? def[name] : undefined;
    if (spec === undefined || spec.type === 'positional') throw invalidArgument(`unknown option: --${name}`);
    if (spec.type === 'boolean') {
      if (eq !== -1) throw invalidArgument(`option --${name} takes no value`);
      if (Object.hasOwn(flags, name)) throw invalidArgument(`option --${name} given more than once`);
      flags[name] = true;
      continue;
    }
    let value: string;
    if (eq !== -1) {
      value = arg.slice(eq + 1);
    } else {
      const next = rawArgs[i + 1];
      if (next === undefined || next === '--' || (!repeatable.has(name) && looksLikeFlag(next))) {
        throw invalidArgument(`option --${name} requires a value`);
      }
      value = next;
      i++;
    }
    if (repeatable.has(name)) {
      (flags[name] as string[]).push(value);
    } else {
      if (Object.hasOwn(flags, name)) throw invalidArgument(`option --${name} given more than once`);
      flags[name] = value;
    }
  }
  return { flags, command };
}

function looksLikeFlag(value: string): boolean {
  return value.startsWith('-') && value !== '-' && !/^-\d/.test(value);
}
