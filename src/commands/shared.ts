import { join } from 'node:path';
import type { ArgsDef, CommandDef } from 'citty';
import { renderUsage } from 'citty';
import type { ArgvOptions, Flags, ParsedArgv } from '../argv.js';
import { parseArgv } from '../argv.js';
import type { Ledger } from '../db/open.js';
import { openLedger } from '../db/open.js';
import { invalidArgument, ReserverError } from '../errors.js';
import { writeStdout } from '../output.js';
import type { Reservation } from '../events/index.js';
import { findById, findByRunKey } from '../projections/reservations.js';

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
    valueHint: 'OPTION',
    description:
      'Option passed to `orchesjob start` before `--`. Repeatable; a value starting with `--` works as `--orchesjob-start-option=--strict` or `--orchesjob-start-option --strict`',
  },
  verbose: { type: 'boolean', description: 'On an unexpected error, also print its stack trace (stderr)' },
} as const satisfies ArgsDef;

/** `--format json|table`: JSON (the interface, the default) or a table for a person. */
export const formatArg = {
  format: {
    type: 'string',
    valueHint: 'json|table',
    description: 'json (default: the documented JSON) or table (for a person at a terminal: local times, ages)',
  },
} as const satisfies ArgsDef;

export function outputFormat(flags: Flags): 'json' | 'table' {
  const value = str(flags, 'format') ?? 'json';
  if (value !== 'json' && value !== 'table') throw invalidArgument(`Invalid --format: ${JSON.stringify(value)} (json or table).`);
  return value;
}

/** `--run-key` / `--reservation-id`, exactly one of them. */
export const identityArgs = {
  'run-key': { type: 'string', valueHint: 'KEY', description: 'Look up by run key' },
  'reservation-id': { type: 'string', valueHint: 'ID', description: 'Look up by reservation ID' },
} as const satisfies ArgsDef;

export const COMMON_REPEATABLE = ['orchesjob-start-option'] as const;

/**
 * Parse a subcommand's arguments; on `--help`, print its usage and return null.
 */
export async function parseOrHelp(
  ctx: { readonly rawArgs: string[]; readonly cmd: CommandDef<any> },
  options: ArgvOptions = {},
): Promise<ParsedArgv | null> {
  const def = (typeof ctx.cmd.args === 'function' ? await ctx.cmd.args() : await ctx.cmd.args) ?? {};
  const parsed = parseArgv(ctx.rawArgs, def, {
    ...options,
    repeatable: [...COMMON_REPEATABLE, ...(options.repeatable ?? [])],
  });
  if (parsed.flags['help'] === true) {
    const text = await renderUsage(ctx.cmd, rootMeta);
    // citty colours its usage; a pipe or a file gets plain text.
    writeStdout(`${process.stdout.isTTY ? text : stripAnsi(text)}\n`);
    return null;
  }
  return parsed;
}

const rootMeta = { meta: { name: 'orchesjob-reserver' } };

function stripAnsi(text: string): string {
  return text.replace(/\u001b\[[0-9;]*m/g, '');
}

/** A string flag's value, or undefined. */
export function str(flags: Flags, name: string): string | undefined {
  const value = flags[name];
  return typeof value === 'string' ? value : undefined;
}

/** A repeatable flag's values. */
export function list(flags: Flags, name: string): string[] {
  const value = flags[name];
  return Array.isArray(value) ? value : [];
}

/** The database path: `--db`, else the homes of the spec, in its priority. */
export function dbPath(flags: Flags, env: NodeJS.ProcessEnv = process.env): string {
  const explicit = str(flags, 'db');
  if (explicit !== undefined) {
    if (explicit === '') throw invalidArgument('Invalid --db: empty path.');
    return explicit;
  }
  const home = nonEmpty(env['ORCHESJOB_RESERVER_HOME']) ?? nonEmpty(env['ORCHESJOB_HOME']) ?? '/var/lib/orchesjob';
  return join(home, 'reserver.sqlite3');
}

/** The orchesjob executable: `--orchesjob-bin`, else `$ORCHESJOB_BIN`, else `orchesjob`. */
export function orchesjobBin(flags: Flags, env: NodeJS.ProcessEnv = process.env): string {
  const explicit = str(flags, 'orchesjob-bin');
  if (explicit !== undefined) {
    if (explicit === '') throw invalidArgument('Invalid --orchesjob-bin: empty path.');
    return explicit;
  }
  return nonEmpty(env['ORCHESJOB_BIN']) ?? 'orchesjob';
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** Open the database, run `fn`, and close it whatever happens. */
export async function withLedger<T>(flags: Flags, fn: (ledger: Ledger) => Promise<T>): Promise<T> {
  const ledger = await openLedger(dbPath(flags));
  try {
    return await fn(ledger);
  } finally {
    await ledger.close();
  }
}

/** Which reservation `--run-key` / `--reservation-id` names. Exactly one must be given. */
export type Identity = { runKey: string } | { reservationId: string };

export function identity(flags: Flags): Identity {
  const runKey = str(flags, 'run-key');
  const reservationId = str(flags, 'reservation-id');
  if ((runKey === undefined) === (reservationId === undefined)) {
    throw invalidArgument('Specify exactly one of --run-key or --reservation-id.');
  }
  if (runKey !== undefined) return { runKey: validRunKey(runKey) };
  if (reservationId === '') throw invalidArgument('Invalid --reservation-id: empty value.');
  return { reservationId: reservationId as string };
}

/** Look a reservation up, or fail with exit 4. */
export async function resolveReservation(ledger: Ledger, id: Identity): Promise<Reservation> {
  const found = 'runKey' in id ? await findByRunKey(ledger.db, id.runKey) : await findById(ledger.db, id.reservationId);
  if (found === null) throw new ReserverError('NOT_FOUND', 'Reservation not found.');
  return found;
}

export const MAX_RUN_KEY_LENGTH = 512;

/** A run key is printable text of 1..512 characters. */
export function validRunKey(runKey: string): string {
  if (runKey === '') throw invalidArgument('Invalid --run-key: empty value.');
  if ([...runKey].length > MAX_RUN_KEY_LENGTH) {
    throw invalidArgument(`Invalid --run-key: longer than ${MAX_RUN_KEY_LENGTH} characters.`);
  }
  if (/[\u0000-\u001f\u007f-\u009f]/.test(runKey)) {
    throw invalidArgument('Invalid --run-key: contains a control character.');
  }
  return runKey;
}

/**
 * SIGTERM/SIGINT for the long-running commands (`run`, `events --follow`): the first asks `stop` to
 * finish cleanly, a second exits at once (128 + signal number, as a shell reports it). Returns the
 * function that removes the handlers.
 */
export function onStopSignals(stop: () => void, label: string): () => void {
  let signals = 0;
  const handler = (signal: NodeJS.Signals) => {
    signals++;
    if (signals > 1) {
      process.stderr.write(`${label}: second ${signal}, exiting now\n`);
      process.exit(signal === 'SIGINT' ? 130 : 143);
    }
    stop();
  };
  process.on('SIGTERM', handler);
  process.on('SIGINT', handler);
  return () => {
    process.off('SIGTERM', handler);
    process.off('SIGINT', handler);
  };
}
