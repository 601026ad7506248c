import type { Generated } from 'kysely';

/**
 * The ledger: one row per event, never updated or deleted (triggers refuse both).
 * Times are epoch seconds, plus milliseconds for latency forensics.
 */
export interface ReservationEventsTable {
  position: Generated<number>;
  event_id: string;
  reservation_id: string;
  version: number;
  run_key: string;
  type: string;
  /** JSON payload of `type`, snake_case keys. */
  data: string;
  recorded_at: number;
  recorded_at_ms: number;
  actor: string;
}

/**
 * The projection the commands read: the Python tool's columns with their names and meanings, plus
 * the last applied event's `version` and the live claim's owner.
 */
export interface ReservationsTable {
  reservation_id: string;
  run_key: string;
  command_json: string;
  reservation_status: string;
  job_id: string | null;
  not_before: number | null;
  expires_at: number | null;
  metadata_json: string | null;
  orchesjob_start_options_json: string;
  created_at: number;
  updated_at: number;
  dispatched_at: number | null;
  last_error: string | null;
  version: number;
  created_at_ms: number | null;
  claim_dispatcher_id: string | null;
  claim_host: string | null;
  claim_pid: number | null;
  claimed_at_ms: number | null;
  attempts: number;
  max_attempts: number;
  /** Seconds between a failed attempt and the next. */
  retry_delay: number;
  /** Epoch seconds at which the next attempt is due, after a failed one. */
  retry_at: number | null;
}

/** The dispatch control stream's projection: one row (`stream_id` '@dispatch') once it has events. */
export interface DispatchControlTable {
  stream_id: string;
  /** 1 while paused by the last event (its `until` may have passed since). */
  paused: number;
  reason: string | null;
  until: number | null;
  since: number | null;
  actor: string | null;
  version: number;
}

/** Ledger events per type, kept by a trigger on every insert (migration 0006): what the metrics read. */
export interface MetricsEventCountsTable {
  type: string;
  events: number;
}

/** Projection rows per status, kept by triggers on `reservations` (migration 0006). */
export interface MetricsStatusCountsTable {
  status: string;
  reservations: number;
}

export interface Database {
  reservation_events: ReservationEventsTable;
  reservations: ReservationsTable;
  dispatch_control: DispatchControlTable;
  metrics_event_counts: MetricsEventCountsTable;
  metrics_status_counts: MetricsStatusCountsTable;
}
