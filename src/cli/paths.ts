import { join } from 'node:path';
import type { Ledger } from '../db/open.js';
import { openLedger } from '../db/open.js';
import { invalidArgument } from '../errors.js';
import type { CommonFlags } from './args.js';

/** The database path: `--db`, else the homes of the spec, in its priority. */
export function dbPath(flags: Partial<CommonFlags>, env: NodeJS.ProcessEnv = process.env): string {
  const explicit = flags.db;
  if (explicit !== undefined) {
    if (explicit === '') throw invalidArgument('Invalid --db: empty path.');
    return explicit;
  }
  const home = nonEmpty(env['ORCHESJOB_RESERVER_HOME']) ?? nonEmpty(env['ORCHESJOB_HOME']) ?? '/var/lib/orchesjob';
  return join(home, 'reserver.sqlite3');
}

/** The orchesjob executable: `--orchesjob-bin`, else `$ORCHESJOB_BIN`, else `orchesjob`. */
export function orchesjobBin(flags: Partial<CommonFlags>, env: NodeJS.ProcessEnv = process.env): string {
  const explicit = flags['orchesjob-bin'];
  if (explicit !== undefined) {
    if (explicit === '') throw invalidArgument('Invalid --orchesjob-bin: empty path.');
    return explicit;
  }
  return nonEmpty(env['ORCHESJOB_BIN']) ?? 'orchesjob';
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

/** Open the database `--db` names, run `fn`, and close it whatever happens. */
export async function withLedger<T>(flags: Partial<CommonFlags>, fn: (ledger: Ledger) => Promise<T>): Promise<T> {
  const ledger = await openLedger(dbPath(flags));
  try {
    return await fn(ledger);
  } finally {
    await ledger.close();
  }
}
