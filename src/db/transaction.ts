import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import type { Database } from './schema.js';

/** A handle bound to one connection inside a transaction. Never use the outer handle inside one. */
export type Tx = Kysely<Database>;

/**
 * The one way this program begins a transaction. `fn` runs on the transaction's connection (`tx`);
 * the outer handle waits meanwhile, so nothing else this process runs on it can read uncommitted
 * rows or write into the transaction. Committed when `fn` resolves, rolled back when it throws.
 *
 * `immediate` takes the write lock up front, so the state `fn` reads cannot change before it writes;
 * other writers wait on the busy timeout. (Kysely's own `transaction()` issues a plain, deferred BEGIN,
 * which lets two writers read the same state.) `snapshot` is a read transaction: every read in it
 * sees the database as one moment left it, while writers go on.
 */
export function immediate<T>(db: Kysely<Database>, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return transaction(db, 'IMMEDIATE', fn);
}

export function snapshot<T>(db: Kysely<Database>, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return transaction(db, 'DEFERRED', fn);
}

function transaction<T>(db: Kysely<Database>, mode: 'IMMEDIATE' | 'DEFERRED', fn: (tx: Tx) => Promise<T>): Promise<T> {
  return db.connection().execute(async (tx) => {
    await sql`BEGIN ${sql.raw(mode)}`.execute(tx);
    try {
      const result = await fn(tx);
      await sql`COMMIT`.execute(tx);
      return result;
    } catch (error) {
      await sql`ROLLBACK`.execute(tx).catch(() => undefined);
      throw error;
    }
  });
}
