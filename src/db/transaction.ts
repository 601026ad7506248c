import type { Kysely } from 'kysely';
import { sql } from 'kysely';
import type { Database } from './schema.js';

/** A handle bound to one connection inside a transaction. Never use the outer handle inside one. */
export type Tx = Kysely<Database>;

/**
 * Run `fn` in a `BEGIN IMMEDIATE` transaction: the write lock is taken up front, so the state `fn`
 * reads cannot change before it writes. Other writers wait on the busy timeout. Kysely's own
 * `transaction()` issues a plain (deferred) BEGIN, which lets two writers read the same state.
 */
export async function immediate<T>(db: Kysely<Database>, fn: (tx: Tx) => Promise<T>): Promise<T> {
  return db.connection().execute(async (tx) => {
    await sql`BEGIN IMMEDIATE`.execute(tx);
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
