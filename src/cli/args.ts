import { invalidArgument } from '../errors.js';
import type { FlagsDef, FlagValues } from './argv.js';

/**
 * The argument groups several commands share, declared once and spread into each command's `args`
 * (nuxi's `_shared.ts`). Their values are read typed, as `FlagValues<typeof commonArgs>`.
 */

/** Flags every subcommand accepts (the Python tool's common group). */
export const commonArgs = {
  db: {
    type: 'string',
    valueHint: 'PATH',
    description:
      'SQLite database path. Default: $ORCHESJOB_RESERVER_HOME/reserver.sqlite3, else $ORCHESJOB_HOME/reserver.sqlite3, else /var/lib/orchesjob/reserver.sqlite3',
  },
  'orchesjob-bin': {
    type: 'string',
    valueHint: 'PATH',
    description: 'orchesjob executable. Default: $ORCHESJOB_BIN, else orchesjob',
  },
  'orchesjob-start-option': {
    type: 'string',
    repeatable: true,
    valueHint: 'OPTION',
    description:
      'Option passed to `orchesjob start` before `--`. Repeatable; a value starting with `--` works as `--orchesjob-start-option=--strict` or `--orchesjob-start-option --strict`',
  },
  verbose: { type: 'boolean', description: 'On an unexpected error, also print its stack trace (stderr)' },
} as const satisfies FlagsDef;

export type CommonFlags = FlagValues<typeof commonArgs>;

/** `--format json|table`: JSON (the interface, the default) or a table for a person. */
export const formatArg = {
  format: {
    type: 'string',
    valueHint: 'json|table',
    description: 'json (default: the documented JSON) or table (for a person at a terminal: local times, ages)',
  },
} as const satisfies FlagsDef;

export function outputFormat(flags: FlagValues<typeof formatArg>): 'json' | 'table' {
  const value = flags.format ?? 'json';
  if (value !== 'json' && value !== 'table') throw invalidArgument(`Invalid --format: ${JSON.stringify(value)} (json or table).`);
  return value;
}
