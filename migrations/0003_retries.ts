import type { Kysely, Migration } from 'kysely';
import { sql } from 'kysely';

/**
 * Retries that the user asks for (`reserve --max-attempts N --retry-delay SECONDS`): how many starts
 * a reservation may try, the delay between them, how many failed, and when the next is due.
 * Existing rows get the spec's behaviour: one attempt; a reservation that failed already used it
 * (`attempts` counts its `DispatchFailed` events, as the fold does).
 */
export const retries: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema.alterTable('reservations').addColumn('attempts', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    await db.schema
      .alterTable('reservations')
      .addColumn('max_attempts', 'integer', (c) => c.notNull().defaultTo(1))
      .execute();
    await db.schema.alterTable('reservations').addColumn('retry_delay', 'integer', (c) => c.notNull().defaultTo(0)).execute();
    await db.schema.alterTable('reservations').addColumn('retry_at', 'integer').execute();
    await sql`UPDATE reservations SET attempts = (
                SELECT count(*) FROM reservation_events e
                 WHERE e.reservation_id = reservations.reservation_id AND e.type = 'DispatchFailed')
              WHERE EXISTS (SELECT 1 FROM reservation_events e
                             WHERE e.reservation_id = reservations.reservation_id AND e.type = 'DispatchFailed')`.execute(db);
  },
};
