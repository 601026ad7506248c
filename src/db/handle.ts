import type BetterSqlite3 from 'better-sqlite3';
import type { Kysely } from 'kysely';
import type { Database } from './schema.js';

/** An open reservation database: Kysely for every query, the native handle for pragmas and closing. */
export interface Ledger {
  readonly path: string;
  readonly db: Kysely<Database>;
  readonly raw: BetterSqlite3.Database;
  close(): Promise<void>;
}

/** How long a writer waits for another process's lock before failing (DESIGN: at least 30 s). */
export const BUSY_TIMEOUT_MS = 30_000;
