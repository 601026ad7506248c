import { Migrator } from 'kysely';
import { MIGRATIONS, SCHEMA_VERSION } from '../../migrations/index.js';
import { ReserverError } from '../errors.js';
import type { Ledger } from './open.js';
import { messageOf } from './open.js';

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
  try {
    raw.pragma('journal_mode = WAL');
  } catch (error) {
    throw new ReserverError('GENERAL', `cannot switch ${path} to WAL mode: ${messageOf(error)}`);
  }
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
  }
}
