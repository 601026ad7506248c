import type { Kysely, Migration } from 'kysely';

/**
 * The dispatch control stream's projection (`pause`, `resume`): at most one row, keyed by the
 * stream's id (`@dispatch`). No row means never paused. Its events are in `reservation_events`.
 */
export const dispatchControl: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('dispatch_control')
      .addColumn('stream_id', 'text', (c) => c.primaryKey())
      .addColumn('paused', 'integer', (c) => c.notNull())
      .addColumn('reason', 'text')
      .addColumn('until', 'integer')
      .addColumn('since', 'integer')
      .addColumn('actor', 'text')
      .addColumn('version', 'integer', (c) => c.notNull())
      .execute();
  },
};
