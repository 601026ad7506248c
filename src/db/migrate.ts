import { Migrator } from 'kysely';
import { MIGRATIONS, SCHEMA_VERSION } from '../../migrations/index.js';
import { ReserverError } from '../errors.js';
import type { Ledger } from './open.js';
import { BUSY_TIMEOUT_MS, messageOf } from './open.js';

/**
 * WAL mode, set once per file (it persists). Changing the journal mode needs the file to itself and
 * SQLite does not wait on its busy handler for that: when another process opens a new file at the
 * same moment, the change fails with SQLITE_BUSY at once. Retried here for as long as the busy
 * timeout would have waited.
 */
async function switchToWal({ raw, path }: Ledger): Promise<void> {
  const deadline = Date.now() + BUSY_TIMEOUT_MS;
  for (let delay = 5; ; delay = Math.min(delay * 2, 100)) {
    try {
      raw.pragma('journal_mode = WAL');
      return;
    } catch (error) {
      const busy = (error as { code?: string }).code?.startsWith('SQLITE_BUSY') === true;
      if (!busy || Date.now() >= deadline) {
        throw new ReserverError('GENERAL', `cannot switch ${path} to WAL mode: ${messageOf(error)}`);
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }
}

/**
 * Run pending migrations, all of them in one `BEGIN IMMEDIATE` transaction.
 *
 * Kysely neither wraps SQLite migrations in a transaction nor locks against other processes (its SQLite
 * lock is a no-op), and twenty `reserve` calls may open a new file at the same moment. The immediate
 * transaction does both: one process migrates, the others wait on the busy timeout, then see the
 * current `user_version` and do nothing. A failed migration rolls everything back.
 */
export async function migrate(ledger: Ledger): Promise<void> {
  const { raw, path } = ledger;
  if (Object.keys(MIGRATIONS).length !== SCHEMA_VERSION) {
    throw new Error(`migrations/version.ts says ${SCHEMA_VERSION} migrations, migrations/index.ts has ${Object.keys(MIGRATIONS).length}`);
  }
  await switchToWal(ledger);
  // A migration may write a whole adopted database in one transaction: with SQLite's default 2 MB
  // page cache its index pages would spill to the WAL again and again.
  const cacheSize = raw.pragma('cache_size', { simple: true }) as number;
  raw.pragma('cache_size = -131072'); // 128 MiB, for this transaction only
  raw.exec('BEGIN IMMEDIATE');
  try {
    if ((raw.pragma('user_version', { simple: true }) as number) === SCHEMA_VERSION) {
      raw.exec('COMMIT');
      return;
    }
    const migrator = new Migrator({
      db: ledger.db,
      provider: { getMigrations: async () => MIGRATIONS },
    });
    const { error, results } = await migrator.migrateToLatest();
    if (error !== undefined) {
      const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
      throw new ReserverError('GENERAL', `migration ${failed} of ${path} failed: ${messageOf(error)}`);
    }
    raw.pragma(`user_version = ${SCHEMA_VERSION}`);
    raw.exec('COMMIT');
  } catch (error) {
    if (raw.inTransaction) raw.exec('ROLLBACK');
    throw error;
  } finally {
    raw.pragma(`cache_size = ${cacheSize}`);
  }
}
