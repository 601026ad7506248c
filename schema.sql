CREATE TABLE "dispatch_control" ("stream_id" text primary key, "paused" integer not null, "reason" text, "until" integer, "since" integer, "actor" text, "version" integer not null);

CREATE TABLE "kysely_migration" ("name" varchar(255) not null primary key, "timestamp" varchar(255) not null);

CREATE TABLE "kysely_migration_lock" ("id" varchar(255) not null primary key, "is_locked" integer default 0 not null);

CREATE TABLE metrics_event_counts (
      type text PRIMARY KEY NOT NULL,
      events integer NOT NULL
    ) WITHOUT ROWID;

CREATE TABLE metrics_status_counts (
      status text PRIMARY KEY NOT NULL,
      reservations integer NOT NULL
    ) WITHOUT ROWID;

CREATE TABLE "reservation_events" ("position" integer primary key autoincrement, "event_id" text not null unique, "reservation_id" text not null, "version" integer not null check (version >= 1), "run_key" text not null, "type" text not null, "data" text not null check (json_valid(data)), "recorded_at" integer not null, "recorded_at_ms" integer not null, "actor" text not null, constraint "reservation_events_stream_version" unique ("reservation_id", "version"));

CREATE TABLE "reservations" ("reservation_id" text primary key, "run_key" text not null unique, "command_json" text not null, "reservation_status" text not null, "job_id" text, "not_before" integer, "expires_at" integer, "metadata_json" text, "orchesjob_start_options_json" text default '[]' not null, "created_at" integer not null, "updated_at" integer not null, "dispatched_at" integer, "last_error" text, "version" integer default 0 not null, "created_at_ms" integer, "claim_dispatcher_id" text, "claim_host" text, "claim_pid" integer, "claimed_at_ms" integer, "attempts" integer default 0 not null, "max_attempts" integer default 1 not null, "retry_delay" integer default 0 not null, "retry_at" integer);

CREATE INDEX "idx_reservation_events_recorded_at" on "reservation_events" ("recorded_at");

CREATE INDEX "idx_reservation_events_run_key" on "reservation_events" ("run_key", "position");

CREATE INDEX "idx_reservations_created_at" on "reservations" ("created_at", "reservation_id");

CREATE INDEX idx_reservations_due
      ON reservations (reservation_status, MAX(COALESCE(not_before, created_at), COALESCE(retry_at, 0)));

CREATE INDEX "idx_reservations_job_id" on "reservations" ("job_id");

CREATE INDEX idx_reservations_ready
      ON reservations (reservation_status, COALESCE(not_before, created_at), created_at);

CREATE INDEX "idx_reservations_status_created_at" on "reservations" ("reservation_status", "created_at", "reservation_id");

CREATE INDEX "idx_reservations_status_expires_at" on "reservations" ("reservation_status", "expires_at");

CREATE INDEX "idx_reservations_status_not_before" on "reservations" ("reservation_status", "not_before");

CREATE INDEX "idx_reservations_updated_at" on "reservations" ("updated_at");

CREATE TRIGGER metrics_count_event AFTER INSERT ON reservation_events BEGIN
      INSERT INTO metrics_event_counts (type, events) VALUES (NEW.type, 1)
        ON CONFLICT (type) DO UPDATE SET events = events + 1;
    END;

CREATE TRIGGER metrics_count_reservation_delete AFTER DELETE ON reservations BEGIN
      UPDATE metrics_status_counts SET reservations = reservations - 1 WHERE status = OLD.reservation_status;
    END;

CREATE TRIGGER metrics_count_reservation_insert AFTER INSERT ON reservations BEGIN
      INSERT INTO metrics_status_counts (status, reservations) VALUES (NEW.reservation_status, 1)
        ON CONFLICT (status) DO UPDATE SET reservations = reservations + 1;
    END;

CREATE TRIGGER metrics_count_reservation_status AFTER UPDATE OF reservation_status ON reservations
      WHEN OLD.reservation_status IS NOT NEW.reservation_status BEGIN
      UPDATE metrics_status_counts SET reservations = reservations - 1 WHERE status = OLD.reservation_status;
      INSERT INTO metrics_status_counts (status, reservations) VALUES (NEW.reservation_status, 1)
        ON CONFLICT (status) DO UPDATE SET reservations = reservations + 1;
    END;

CREATE TRIGGER reservation_events_no_delete BEFORE DELETE ON reservation_events
      BEGIN SELECT RAISE(ABORT, 'reservation_events is append-only: events are never deleted'); END;

CREATE TRIGGER reservation_events_no_update BEFORE UPDATE ON reservation_events
      BEGIN SELECT RAISE(ABORT, 'reservation_events is append-only: events are never updated'); END;
