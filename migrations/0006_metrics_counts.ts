import type { Kysely, Migration } from 'kysely';
import { sql } from 'kysely';

/**
 * Counts for the Prometheus metrics (`metrics`, `run --metrics-file`; src/metrics/): ledger events
 * per type and projection rows per status, kept by triggers in the transaction of every write, so
 * that reading them costs a dozen rows whatever the ledger's size (a `GROUP BY` over a million events
 * took hundreds of milliseconds). Filled once here from the rows already there.
 *
 * Triggers, not the write path, keep them: every writer of the two tables counts, also the ones that
 * bypass src/ledger.ts on purpose (the adoption of a Python-tool file, `replay --rebuild`, which deletes
 * and rewrites the whole projection) and the Python tool itself, which can still write the file. An
 * upsert of a projection row that changes its status fires the UPDATE trigger, a new row the INSERT
 * one, `clean` the DELETE one. A count that would reach zero stays as a row with 0.
 *
 * Self-contained on purpose, as every migration: it must behave the same forever.
 */
export const metricsCounts: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    await sql`CREATE TABLE metrics_event_counts (
      type text PRIMARY KEY NOT NULL,
      events integer NOT NULL
    ) WITHOUT ROWID`.execute(db);
    await sql`INSERT INTO metrics_event_counts (type, events)
      SELECT type, count(*) FROM reservation_events GROUP BY type`.execute(db);
    await sql`CREATE TRIGGER metrics_count_event AFTER INSERT ON reservation_events BEGIN
      INSERT INTO metrics_event_counts (type, events) VALUES (NEW.type, 1)
        ON CONFLICT (type) DO UPDATE SET events = events + 1;
    END`.execute(db);

    await sql`CREATE TABLE metrics_status_counts (
      status text PRIMARY KEY NOT NULL,
      reservations integer NOT NULL
    ) WITHOUT ROWID`.execute(db);
    await sql`INSERT INTO metrics_status_counts (status, reservations)
      SELECT reservation_status, count(*) FROM reservations GROUP BY reservation_status`.execute(db);
    await sql`CREATE TRIGGER metrics_count_reservation_insert AFTER INSERT ON reservations BEGIN
      INSERT INTO metrics_status_counts (status, reservations) VALUES (NEW.reservation_status, 1)
        ON CONFLICT (status) DO UPDATE SET reservations = reservations + 1;
    END`.execute(db);
    await sql`CREATE TRIGGER metrics_count_reservation_delete AFTER DELETE ON reservations BEGIN
      UPDATE metrics_status_counts SET reservations = reservations - 1 WHERE status = OLD.reservation_status;
    END`.execute(db);
    await sql`CREATE TRIGGER metrics_count_reservation_status AFTER UPDATE OF reservation_status ON reservations
      WHEN OLD.reservation_status IS NOT NEW.reservation_status BEGIN
      UPDATE metrics_status_counts SET reservations = reservations - 1 WHERE status = OLD.reservation_status;
      INSERT INTO metrics_status_counts (status, reservations) VALUES (NEW.reservation_status, 1)
        ON CONFLICT (status) DO UPDATE SET reservations = reservations + 1;
    END`.execute(db);
  },
};
