import { Migrator, sql } from 'kysely';
import { migrations, SCHEMA_VERSION } from '../../migrations/index.js';
import { messageOf, ReserverError } from '../errors.js';
import type { Ledger } from './handle.js';
import { BUSY_TIMEOUT_MS } from './handle.js';
import { immediate } from './transaction.js';

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
 *
 * Adopting a Python-tool database writes most of the file anew. Through the WAL every page of it is
 * written twice (to the WAL, then by the checkpoint), so when this process has the file to itself the
 * import runs with a rollback journal, which writes new pages once, and the file returns to WAL
 * after, whatever happened. `user_version` is set only once the file is back in WAL mode, so that a
 * process killed in between leaves a file the next one to open it finishes (a current `user_version`
 * means WAL mode; only a kill in the instant between leaving WAL and the re-check below could break
 * that).
 */
export async function migrate(ledger: Ledger): Promise<void> {
  const { raw } = ledger;
  const all = migrations(raw);
  if (Object.keys(all).length !== SCHEMA_VERSION) {
    throw new Error(`migrations/version.ts says ${SCHEMA_VERSION} migrations, migrations/index.ts has ${Object.keys(all).length}`);
  }
  const bulk = (await pythonRowsToAdopt(ledger)) && leaveWal(ledger);
  if (!bulk) {
    await switchToWal(ledger);
    await migrateInTransaction(ledger, all, true);
    return;
  }
  try {
    // The adoption was decided on a read taken before leaving WAL: another process may have finished
    // it meanwhile (and closed the file, or leaving WAL would have failed). Then there is nothing to do.
    if (userVersion(raw) !== SCHEMA_VERSION) await migrateInTransaction(ledger, all, false);
  } finally {
    await switchToWal(ledger); // also after a failed migration: the file is left in the mode it had
  }
  await immediate(ledger.db, async () => {
    raw.pragma(`user_version = ${SCHEMA_VERSION}`);
  });
}

async function migrateInTransaction(ledger: Ledger, all: ReturnType<typeof migrations>, setVersion: boolean): Promise<void> {
  const { raw, path } = ledger;
  // A migration may write a whole adopted database in one transaction: with SQLite's default 2 MB
  // page cache its index pages would spill to disk again and again.
  const cacheSize = raw.pragma('cache_size', { simple: true }) as number;
  raw.pragma('cache_size = -131072'); // 128 MiB, for this transaction only
  try {
    await immediate(ledger.db, async (tx) => {
      if (userVersion(raw) === SCHEMA_VERSION) return;
      // The migrator runs on the transaction's connection (its own `connection()` on the outer handle
      // would wait for this transaction to end), and never begins one of its own inside this one.
      const migrator = new Migrator({ db: tx, provider: { getMigrations: async () => all }, disableTransactions: true });
      const { error, results } = await migrator.migrateToLatest();
      if (error !== undefined) {
        const failed = results?.find((r) => r.status === 'Error')?.migrationName ?? 'unknown';
        throw new ReserverError('GENERAL', `migration ${failed} of ${path} failed: ${messageOf(error)}`);
      }
      if (setVersion) raw.pragma(`user_version = ${SCHEMA_VERSION}`);
    });
  } finally {
    raw.pragma(`cache_size = ${cacheSize}`);
  }
}

function userVersion(raw: Ledger['raw']): number {
  return raw.pragma('user_version', { simple: true }) as number;
}

/**
 * A database the Python tool wrote and this tool has not migrated yet (its `reservations` table but
 * no ledger), with rows in it.
 */
async function pythonRowsToAdopt({ db }: Ledger): Promise<boolean> {
  const { rows: schema } = await sql<{ python: number }>`
    SELECT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'reservations')
       AND NOT EXISTS (SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'reservation_events') AS python`.execute(db);
  if (schema[0]?.python !== 1) return false;
  const { rows } = await sql<{ found: number }>`SELECT EXISTS (SELECT 1 FROM reservations) AS found`.execute(db);
  return rows[0]?.found === 1;
}

/**
 * Rollback-journal mode for an import, if this connection can have it: leaving WAL needs the file to
 * itself. With another process in the file, the import runs in WAL as usual (slower, same result).
 * A file already in rollback mode (another process's import under way, or one that died) answers
 * `delete` without that test; the `user_version` checks and the one migration transaction keep
 * that harmless: the rows are adopted once.
 */
function leaveWal({ raw }: Ledger): boolean {
  try {
    // Leaving WAL checkpoints and deletes the -wal file. Were that deletion lost to a power cut after
    // the import wrote the file in place, the old -wal would come back and SQLite would replay its
    // pages over the adopted rows. It is not: the import's first sync of its new -journal also syncs
    // the folder (SQLite does so for every journal it creates), before any page is written in place;
    // and `synchronous = EXTRA` syncs the folder again when the commit deletes the journal. The
    // power-cut explorer checks both (test/e2e/powercut.e2e.test.ts).
    return raw.pragma('journal_mode = DELETE', { simple: true }) === 'delete';
  } catch (error) {
    if ((error as { code?: string }).code?.startsWith('SQLITE_BUSY') === true) return false;
    throw error;
  }
}
