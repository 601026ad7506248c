-- orchesjob-reserver: the fleet's ledger in one PostgreSQL (15 or newer), fed by rsyslog (ompgsql).
--
--   createdb --encoding UTF8 --template template0 fleet
--   psql -v ON_ERROR_STOP=1 -d fleet -f schema.sql
--
-- Every edge host's ledger events arrive here, one row per event, keyed by (host, position): rsyslog
-- delivers at least once, and a line shipped twice is stored once (ON CONFLICT DO NOTHING in
-- deploy/central/rsyslog.conf's template). Views fold the current state per host the way the host's
-- own projection does (src/events/evolve.ts). docs/fleet.md explains the set-up and the queries.
--
-- Applying this file again is safe and is how an upgrade adds what is new: tables and indexes are
-- created only when missing, functions and views are replaced (their columns only ever grow at the end).
-- It runs in one transaction.

BEGIN;
-- Applied again, it would say for every table and index that it exists already.
SET LOCAL client_min_messages = warning;

-- ---------------------------------------------------------------------------------------------------
-- Roles: rsyslog logs in as a member of fleet_ingest, which may insert (and read the three columns
-- that tell a repeat, below); readers of fleet_reader may only read. (Cluster-wide: created once,
-- whatever the database.)
-- ---------------------------------------------------------------------------------------------------
DO $$
BEGIN
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_ingest') THEN CREATE ROLE fleet_ingest NOLOGIN; END IF;
  IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'fleet_reader') THEN CREATE ROLE fleet_reader NOLOGIN; END IF;
END
$$;

-- ---------------------------------------------------------------------------------------------------
-- The events: the host's ledger columns (docs/auditing.md), plus the host and the arrival time.
-- ---------------------------------------------------------------------------------------------------
CREATE TABLE IF NOT EXISTS reservation_events (
  host           text        NOT NULL,  -- the edge host: the HOSTNAME of the syslog message it sent
  position       bigint      NOT NULL,  -- the event's position in that host's ledger: 1, 2, 3 ... without gaps
  event_id       text        NOT NULL,  -- ULID
  reservation_id text        NOT NULL,  -- the stream; '@dispatch' for the dispatch control stream
  version        integer     NOT NULL,  -- 1..n within the stream
  run_key        text        NOT NULL,  -- '' on the control stream
  type           text        NOT NULL,
  data           jsonb       NOT NULL,
  recorded_at    bigint      NOT NULL,  -- epoch seconds, when the host committed it
  recorded_at_ms bigint      NOT NULL,
  actor          text        NOT NULL,
  received_at    timestamptz NOT NULL DEFAULT now(),  -- when it was first stored here
  PRIMARY KEY (host, position)
);

-- One stream, in order (the fold); one run key's history across hosts; failures, claims, Reserved
-- events by time; the control stream.
CREATE INDEX IF NOT EXISTS reservation_events_stream ON reservation_events (host, reservation_id, version);
CREATE INDEX IF NOT EXISTS reservation_events_run_key ON reservation_events (run_key, host, position);
CREATE INDEX IF NOT EXISTS reservation_events_type ON reservation_events (type, recorded_at);
CREATE INDEX IF NOT EXISTS reservation_events_control ON reservation_events (host, position)
  WHERE reservation_id = '@dispatch';

-- A shipped event is never updated or deleted, as on the host (whose triggers say the same).
CREATE OR REPLACE FUNCTION reservation_events_append_only() RETURNS trigger
  LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'reservation_events is append-only: events are never %',
    CASE TG_OP WHEN 'UPDATE' THEN 'updated' WHEN 'DELETE' THEN 'deleted' ELSE 'truncated' END;
END
$$;
CREATE OR REPLACE TRIGGER reservation_events_no_update BEFORE UPDATE ON reservation_events
  FOR EACH ROW EXECUTE FUNCTION reservation_events_append_only();
CREATE OR REPLACE TRIGGER reservation_events_no_delete BEFORE DELETE ON reservation_events
  FOR EACH ROW EXECUTE FUNCTION reservation_events_append_only();
CREATE OR REPLACE TRIGGER reservation_events_no_truncate BEFORE TRUNCATE ON reservation_events
  FOR EACH STATEMENT EXECUTE FUNCTION reservation_events_append_only();

-- Lines that are not an event line (cut by a message size limit, garbage on the port), and lines of a
-- second ledger under a host name already taken: kept, once, instead of failing the insert or being
-- dropped as repeats. A failing statement would not only stop the shipping: in Debian 12's
-- ompgsql (rsyslog 8.2302) it also loses the statements before it in the same transaction.
CREATE TABLE IF NOT EXISTS reservation_events_rejected (
  host        text        NOT NULL,
  line        text        NOT NULL,
  reason      text        NOT NULL,
  received_at timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX IF NOT EXISTS reservation_events_rejected_once ON reservation_events_rejected (host, md5(line));

-- ---------------------------------------------------------------------------------------------------
-- Ingest: one line of `orchesjob-reserver events` (compact JSON: position, event_id, reservation_id,
-- run_key, version, type, data, recorded_at, recorded_at_iso, recorded_at_ms, actor) -> one row.
-- The rsyslog template: INSERT INTO reservation_events SELECT * FROM fleet_event_of_line(host, line)
-- ON CONFLICT DO NOTHING. It never raises for what a line holds: a line that is no event line, or
-- another event at a (host, position) already stored, goes to reservation_events_rejected and yields
-- no row.
-- ---------------------------------------------------------------------------------------------------

-- The row of a parsed line; raises when it is not an event line.
CREATE OR REPLACE FUNCTION fleet_event_of_json(p_host text, j jsonb) RETURNS reservation_events
  LANGUAGE plpgsql STABLE AS $$
DECLARE
  e reservation_events;
BEGIN
  e.host := p_host;
  e.position := (j->>'position')::bigint;
  e.event_id := j->>'event_id';
  e.reservation_id := j->>'reservation_id';
  e.version := (j->>'version')::integer;
  e.run_key := j->>'run_key';
  e.type := j->>'type';
  e.data := j->'data';
  e.recorded_at := (j->>'recorded_at')::bigint;
  e.recorded_at_ms := (j->>'recorded_at_ms')::bigint;
  e.actor := j->>'actor';
  e.received_at := now();
  IF e.position IS NULL OR e.position < 1 OR e.event_id IS NULL OR e.reservation_id IS NULL
     OR e.version IS NULL OR e.version < 1 OR e.run_key IS NULL OR e.type IS NULL
     OR jsonb_typeof(e.data) IS DISTINCT FROM 'object' OR e.recorded_at IS NULL
     OR e.recorded_at_ms IS NULL OR e.actor IS NULL THEN
    RAISE EXCEPTION 'not an event line: a field is missing or has the wrong type';
  END IF;
  RETURN e;
END
$$;

CREATE OR REPLACE FUNCTION fleet_event_of_line(p_host text, p_line text) RETURNS SETOF reservation_events
  LANGUAGE plpgsql AS $$
DECLARE
  e reservation_events;
  reason text;
  stored text;
BEGIN
  BEGIN
    e := fleet_event_of_json(p_host, p_line::jsonb);
  EXCEPTION WHEN others THEN
    reason := SQLERRM;
    -- PostgreSQL text holds neither NUL nor a lone UTF-16 surrogate, which JSON can escape (\u0000,
    -- \udc00; JSON.stringify writes a surrogate as an escape only when it is lone). Only orchesjob's
    -- stderr in an error, or metadata, can carry them: they are stored as U+FFFD.
    IF p_line ~ '\\u(0000|[dD][89a-fA-F])' THEN
      BEGIN
        e := fleet_event_of_json(p_host, regexp_replace(p_line,
               '(?<!\\)((?:\\\\)*)\\u(?:0000|[dD][89a-fA-F][0-9a-fA-F]{2})', '\1\\ufffd', 'g')::jsonb);
        reason := NULL;
      EXCEPTION WHEN others THEN
        NULL; -- keep the first reason
      END;
    END IF;
  END;
  -- The same host and position, another event: two ledgers ship under one host name (two hosts with
  -- the same short name, a host whose database was made anew). ON CONFLICT would drop this line
  -- without a word; it is kept aside instead, saying so.
  IF reason IS NULL THEN
    SELECT r.event_id INTO stored FROM reservation_events AS r WHERE r.host = p_host AND r.position = e.position;
    IF stored IS DISTINCT FROM e.event_id AND stored IS NOT NULL THEN
      reason := format('position %s of host %s holds another event (%s): two ledgers ship under one host name',
                       e.position, p_host, stored);
    END IF;
  END IF;
  IF reason IS NOT NULL THEN
    INSERT INTO reservation_events_rejected (host, line, reason) VALUES (p_host, p_line, reason)
      ON CONFLICT DO NOTHING;
    RETURN;
  END IF;
  RETURN NEXT e;
END
$$;

-- ---------------------------------------------------------------------------------------------------
-- Views
-- ---------------------------------------------------------------------------------------------------

-- Epoch seconds as the host's `*_iso` fields print them: UTC, whole seconds, `+00:00`.
CREATE OR REPLACE FUNCTION fleet_iso(seconds bigint) RETURNS text
  LANGUAGE sql STABLE PARALLEL SAFE
  RETURN to_char(to_timestamp(seconds) AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"+00:00"');

-- The current state of every reservation of every host that is not cleaned: the host's `reservations`
-- projection (and `list`), folded from the events as src/events/evolve.ts folds them:
--   status     of the last event (Rescheduled keeps RESERVED; Requeued makes it RESERVED again);
--   job_id     and dispatched_at of Dispatched;
--   not_before and expires_at of the last Reserved, Rescheduled or Requeued;
--   last_error of the last event other than Rescheduled (which leaves it as it was);
--   claim_*    of the last event while it is DispatchClaimed.
-- A status of NULL names an event type this schema does not know: apply a newer schema.sql.
CREATE OR REPLACE VIEW fleet_reservations AS
SELECT r.host,
       r.reservation_id,
       r.run_key,
       CASE last.type
         WHEN 'Reserved' THEN 'RESERVED'
         WHEN 'ClaimReleased' THEN 'RESERVED'
         WHEN 'DispatchAttemptFailed' THEN 'RESERVED'
         WHEN 'Rescheduled' THEN 'RESERVED'
         WHEN 'Requeued' THEN 'RESERVED'
         WHEN 'DispatchClaimed' THEN 'DISPATCHING'
         WHEN 'Dispatched' THEN 'DISPATCHED'
         WHEN 'DispatchFailed' THEN 'DISPATCH_FAILED'
         WHEN 'DispatchRefused' THEN 'DISPATCH_FAILED'
         WHEN 'Expired' THEN 'EXPIRED'
         WHEN 'Cancelled' THEN 'CANCELLED'
       END AS reservation_status,
       dispatched.data->>'job_id' AS job_id,
       r.data->'command' AS command,
       r.data->'orchesjob_start_options' AS orchesjob_start_options,
       NULLIF(r.data->'metadata', 'null'::jsonb) AS metadata,
       (times.data->>'not_before')::bigint AS not_before,
       fleet_iso((times.data->>'not_before')::bigint) AS not_before_iso,
       (times.data->>'expires_at')::bigint AS expires_at,
       fleet_iso((times.data->>'expires_at')::bigint) AS expires_at_iso,
       r.recorded_at AS created_at,
       fleet_iso(r.recorded_at) AS created_at_iso,
       last.recorded_at AS updated_at,
       fleet_iso(last.recorded_at) AS updated_at_iso,
       dispatched.recorded_at AS dispatched_at,
       fleet_iso(dispatched.recorded_at) AS dispatched_at_iso,
       CASE cause.type
         WHEN 'DispatchFailed' THEN cause.data->>'error'
         WHEN 'DispatchAttemptFailed' THEN cause.data->>'error'
         WHEN 'DispatchRefused' THEN cause.data->>'error'
         WHEN 'Expired' THEN 'expired before dispatch'
         WHEN 'ClaimReleased' THEN 'recovered from DISPATCHING'
       END AS last_error,
       last.version,
       r.recorded_at_ms AS created_at_ms,
       CASE WHEN last.type = 'DispatchClaimed' THEN last.data->>'dispatcher_id' END AS claim_dispatcher_id,
       CASE WHEN last.type = 'DispatchClaimed' THEN last.data->>'host' END AS claim_host,
       CASE WHEN last.type = 'DispatchClaimed' THEN (last.data->>'pid')::bigint END AS claim_pid,
       CASE WHEN last.type = 'DispatchClaimed' THEN last.recorded_at_ms END AS claimed_at_ms,
       COALESCE((r.data->>'max_attempts')::integer, 1) AS max_attempts,
       COALESCE((r.data->>'retry_delay')::integer, 0) AS retry_delay
  FROM reservation_events AS r
 CROSS JOIN LATERAL (
        SELECT e.type, e.version, e.recorded_at, e.recorded_at_ms, e.data
          FROM reservation_events AS e
         WHERE e.host = r.host AND e.reservation_id = r.reservation_id
         ORDER BY e.version DESC LIMIT 1) AS last
 CROSS JOIN LATERAL (
        SELECT e.data
          FROM reservation_events AS e
         WHERE e.host = r.host AND e.reservation_id = r.reservation_id
           AND e.type IN ('Reserved', 'Rescheduled', 'Requeued')
         ORDER BY e.version DESC LIMIT 1) AS times
 CROSS JOIN LATERAL (
        SELECT e.type, e.data
          FROM reservation_events AS e
         WHERE e.host = r.host AND e.reservation_id = r.reservation_id AND e.type <> 'Rescheduled'
         ORDER BY e.version DESC LIMIT 1) AS cause
  LEFT JOIN LATERAL (
        SELECT e.recorded_at, e.data
          FROM reservation_events AS e
         WHERE e.host = r.host AND e.reservation_id = r.reservation_id AND e.type = 'Dispatched'
         ORDER BY e.version DESC LIMIT 1) AS dispatched ON true
 WHERE r.type = 'Reserved'
   AND r.reservation_id <> '@dispatch'
   AND last.type <> 'Cleaned';

-- What still waits to be started, or is being started, everywhere; due_at as the host's `waiting`
-- query computes it (not_before, else the creation).
CREATE OR REPLACE VIEW fleet_pending AS
SELECT f.*, COALESCE(f.not_before, f.created_at) AS due_at
  FROM fleet_reservations AS f
 WHERE f.reservation_status IN ('RESERVED', 'DISPATCHING');

-- Every start that failed: each DispatchFailed and DispatchRefused (the reservation became
-- DISPATCH_FAILED: final) and each DispatchAttemptFailed (attempts were left: it was queued again).
CREATE OR REPLACE VIEW fleet_failures AS
SELECT e.host,
       e.position,
       e.reservation_id,
       e.run_key,
       e.type,
       e.type <> 'DispatchAttemptFailed' AS final,
       e.recorded_at AS failed_at,
       fleet_iso(e.recorded_at) AS failed_at_iso,
       (e.data->>'exit_code')::integer AS exit_code,
       e.data->>'error' AS error,
       (e.data->>'attempt')::integer AS attempt,
       (e.data->>'max_attempts')::integer AS max_attempts,
       (e.data->>'retry_at')::bigint AS retry_at,
       e.actor
  FROM reservation_events AS e
 WHERE e.type IN ('DispatchFailed', 'DispatchAttemptFailed', 'DispatchRefused');

-- Start calls (DispatchClaimed: the `orchesjob_start_call` the dispatcher prints before the spawn)
-- made more than a second after the reservation was due. late_by_ms is the dispatcher's own measure,
-- from when it was due: not_before, else the creation, or the retry time after a failed attempt.
-- due_at and late_by_ms_recomputed take not_before as it was at the claim: that of the latest
-- Reserved, Rescheduled or Requeued before it, as the host's `late-claims` query does (else the
-- creation). Claims imported from the Python tool (whole seconds) are left out.
CREATE OR REPLACE VIEW fleet_late_starts AS
SELECT c.host,
       c.position,
       c.reservation_id,
       c.run_key,
       c.recorded_at AS claimed_at,
       c.recorded_at_ms AS claimed_at_ms,
       c.data->>'dispatcher_id' AS dispatcher_id,
       COALESCE((t.data->>'not_before')::bigint, r.recorded_at) AS due_at,
       (c.data->>'late_by_ms')::bigint AS late_by_ms,
       c.recorded_at_ms - COALESCE((t.data->>'not_before')::bigint * 1000, r.recorded_at_ms) AS late_by_ms_recomputed
  FROM reservation_events AS c
  JOIN reservation_events AS r
    ON r.host = c.host AND r.reservation_id = c.reservation_id AND r.version = 1
 CROSS JOIN LATERAL (
        SELECT e.data
          FROM reservation_events AS e
         WHERE e.host = c.host AND e.reservation_id = c.reservation_id AND e.version < c.version
           AND e.type IN ('Reserved', 'Rescheduled', 'Requeued')
         ORDER BY e.version DESC LIMIT 1) AS t
 WHERE c.type = 'DispatchClaimed'
   AND c.data->'imported' IS NULL
   AND (c.data->>'late_by_ms')::bigint > 1000;

-- The host names, one index probe each (a loose index scan of the primary key).
CREATE OR REPLACE VIEW fleet_host_names AS
WITH RECURSIVE h(host) AS (
  (SELECT host FROM reservation_events ORDER BY host LIMIT 1)
  UNION ALL
  SELECT (SELECT e.host FROM reservation_events AS e WHERE e.host > h.host ORDER BY e.host LIMIT 1)
    FROM h WHERE h.host IS NOT NULL
)
SELECT host FROM h WHERE host IS NOT NULL;

-- Per host: is dispatching paused (the control stream '@dispatch': DispatchPaused, DispatchResumed)?
-- The host's dispatch_control row, folded as src/events/control.ts folds it: paused when the last
-- control event is a DispatchPaused; reason and until of that pause; since and actor: when and by whom
-- the current pause began, that is the last DispatchPaused that does not follow a DispatchPaused still
-- in force when it was recorded (a pause while paused changes reason and until, not since; a pause
-- after one whose until had passed begins anew); version: of the last control event, 0 before any.
-- As on the host, a pause whose until has passed stays paused until the host records its
-- DispatchResumed (until_passed); in_force says whether it holds dispatching at the database's clock.
CREATE OR REPLACE VIEW fleet_dispatch AS
SELECT h.host,
       COALESCE(last.type = 'DispatchPaused', false) AS paused,
       CASE WHEN last.type = 'DispatchPaused' THEN last.data->>'reason' END AS reason,
       CASE WHEN last.type = 'DispatchPaused' THEN (last.data->>'until')::bigint END AS until,
       began.recorded_at AS since,
       began.actor,
       COALESCE(last.version, 0) AS version,
       COALESCE(last.type = 'DispatchPaused'
                AND (last.data->>'until' IS NULL OR (last.data->>'until')::bigint > extract(epoch FROM now())), false) AS in_force
  FROM fleet_host_names AS h
  LEFT JOIN LATERAL (
        SELECT e.type, e.version, e.data
          FROM reservation_events AS e
         WHERE e.host = h.host AND e.reservation_id = '@dispatch'
         ORDER BY e.position DESC LIMIT 1) AS last ON true
  LEFT JOIN LATERAL (
        SELECT p.recorded_at, p.actor
          FROM reservation_events AS p
          LEFT JOIN reservation_events AS b
            ON b.host = p.host AND b.reservation_id = '@dispatch' AND b.version = p.version - 1
         WHERE p.host = h.host AND p.reservation_id = '@dispatch' AND p.type = 'DispatchPaused'
           AND (b.type IS DISTINCT FROM 'DispatchPaused' OR (b.data->>'until')::bigint <= p.recorded_at)
         ORDER BY p.position DESC LIMIT 1) AS began ON last.type = 'DispatchPaused';

-- Per host: how much arrived, and whether anything is missing. Positions are 1, 2, 3 ... on the
-- host, so missing = last_position - events (0 when nothing before the last arrival is missing);
-- fleet_gaps says which. A host whose last_received_at is old has stopped shipping (or writing).
CREATE OR REPLACE VIEW fleet_hosts AS
SELECT host,
       count(*) AS events,
       max(position) AS last_position,
       max(position) - count(*) AS missing,
       max(recorded_at) AS last_recorded_at,
       max(received_at) AS last_received_at
  FROM reservation_events
 GROUP BY host;

-- Ranges of positions that did not arrive (docs/fleet.md: refilling one from the host's ledger).
CREATE OR REPLACE VIEW fleet_gaps AS
SELECT host, previous + 1 AS first_missing, position - 1 AS last_missing, position - previous - 1 AS missing
  FROM (SELECT host, position,
               COALESCE(lag(position) OVER (PARTITION BY host ORDER BY position), 0) AS previous
          FROM reservation_events) AS s
 WHERE position > previous + 1;

-- ---------------------------------------------------------------------------------------------------
-- Privileges
-- ---------------------------------------------------------------------------------------------------
REVOKE ALL ON reservation_events, reservation_events_rejected FROM PUBLIC;
GRANT INSERT ON reservation_events, reservation_events_rejected TO fleet_ingest;
-- What the ingest needs to tell a repeated line from another ledger's line at the same position.
GRANT SELECT (host, position, event_id) ON reservation_events TO fleet_ingest;
GRANT SELECT ON reservation_events, reservation_events_rejected, fleet_reservations, fleet_pending,
  fleet_failures, fleet_late_starts, fleet_host_names, fleet_dispatch, fleet_hosts, fleet_gaps
  TO fleet_reader;

COMMIT;
