import type { Kysely, Migration } from 'kysely';
import { sql } from 'kysely';

/**
 * The ledger and its projection.
 *
 * `reservations` is created with the Python tool's exact schema only when it does not exist yet, so a
 * database the Python tool wrote keeps its table and rows; the columns this tool adds come after, by
 * ALTER TABLE, the same way on both. The Python tool reads with `SELECT *` and keeps working.
 */
export const ledger: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await db.schema
      .createTable('reservation_events')
      .addColumn('position', 'integer', (c) => c.primaryKey().autoIncrement())
      .addColumn('event_id', 'text', (c) => c.notNull().unique())
      .addColumn('reservation_id', 'text', (c) => c.notNull())
      .addColumn('version', 'integer', (c) => c.notNull().check(sql`version >= 1`))
      .addColumn('run_key', 'text', (c) => c.notNull())
      // No CHECK on `type`: a new event type must not need a table rebuild (SQLite cannot alter a CHECK).
      .addColumn('type', 'text', (c) => c.notNull())
      .addColumn('data', 'text', (c) => c.notNull().check(sql`json_valid(data)`))
      .addColumn('recorded_at', 'integer', (c) => c.notNull())
      .addColumn('recorded_at_ms', 'integer', (c) => c.notNull())
      .addColumn('actor', 'text', (c) => c.notNull())
      .addUniqueConstraint('reservation_events_stream_version', ['reservation_id', 'version'])
      .execute();
    await sql`CREATE TRIGGER reservation_events_no_update BEFORE UPDATE ON reservation_events
      BEGIN SELECT RAISE(ABORT, 'reservation_events is append-only: events are never updated'); END`.execute(db);
    await sql`CREATE TRIGGER reservation_events_no_delete BEFORE DELETE ON reservation_events
      BEGIN SELECT RAISE(ABORT, 'reservation_events is append-only: events are never deleted'); END`.execute(db);
    await db.schema
      .createIndex('idx_reservation_events_run_key')
      .on('reservation_events')
      .columns(['run_key', 'position'])
      .execute();
    await db.schema
      .createIndex('idx_reservation_events_recorded_at')
      .on('reservation_events')
      .column('recorded_at')
      .execute();

    await db.schema
      .createTable('reservations')
      .ifNotExists()
      .addColumn('reservation_id', 'text', (c) => c.primaryKey())
      .addColumn('run_key', 'text', (c) => c.notNull().unique())
      .addColumn('command_json', 'text', (c) => c.notNull())
      .addColumn('reservation_status', 'text', (c) => c.notNull())
      .addColumn('job_id', 'text')
      .addColumn('not_before', 'integer')
      .addColumn('expires_at', 'integer')
      .addColumn('metadata_json', 'text')
      .addColumn('orchesjob_start_options_json', 'text', (c) => c.notNull().defaultTo('[]'))
      .addColumn('created_at', 'integer', (c) => c.notNull())
      .addColumn('updated_at', 'integer', (c) => c.notNull())
      .addColumn('dispatched_at', 'integer')
      .addColumn('last_error', 'text')
      .execute();
    const added: [string, 'integer' | 'text'][] = [
      ['created_at_ms', 'integer'],
      ['claim_dispatcher_id', 'text'],
      ['claim_host', 'text'],
      ['claim_pid', 'integer'],
      ['claimed_at_ms', 'integer'],
    ];
    await db.schema
      .alterTable('reservations')
      .addColumn('version', 'integer', (c) => c.notNull().defaultTo(0))
      .execute();
    for (const [name, type] of added) {
      await db.schema.alterTable('reservations').addColumn(name, type).execute();
    }
    // The Python tool's indexes, under its names, so that its own start-up finds them in place.
    await db.schema
      .createIndex('idx_reservations_status_not_before')
      .ifNotExists()
      .on('reservations')
      .columns(['reservation_status', 'not_before'])
      .execute();
    await db.schema.createIndex('idx_reservations_job_id').ifNotExists().on('reservations').column('job_id').execute();
    await db.schema
      .createIndex('idx_reservations_updated_at')
      .ifNotExists()
      .on('reservations')
      .column('updated_at')
      .execute();
    // The dispatcher's ready queue, in its ORDER BY; and list's newest-first, with and without --status.
    await sql`CREATE INDEX idx_reservations_ready
      ON reservations (reservation_status, COALESCE(not_before, created_at), created_at)`.execute(db);
    await db.schema
      .createIndex('idx_reservations_status_expires_at')
      .on('reservations')
      .columns(['reservation_status', 'expires_at'])
      .execute();
    await db.schema
      .createIndex('idx_reservations_created_at')
      .on('reservations')
      .columns(['created_at', 'reservation_id'])
      .execute();
    await db.schema
      .createIndex('idx_reservations_status_created_at')
      .on('reservations')
      .columns(['reservation_status', 'created_at', 'reservation_id'])
      .execute();
  },
};
