import { writeSync } from 'node:fs';
import type { DispatchControl } from './events/control.js';
import { effectivePause } from './events/control.js';
import type { Reservation } from './events/index.js';
import type { StoredEvent } from './events/store.js';
import { stringifySorted } from './json.js';

/** The contract's JSON: keys sorted, 2-space indent, UTF-8 unescaped (Python's `indent=2, sort_keys=True`). */
export function formatJson(value: unknown): string {
  return stringifySorted(value, 2);
}

/** Print the one JSON document a successful command outputs. */
export function printJson(value: unknown): void {
  writeStdout(`${formatJson(value)}\n`);
}

/**
 * Write all of `text` to stdout, synchronously, as `process.stdout` does on Linux for files and
 * pipes; but touching `process.stdout` loads Node's streams (and sockets, for a pipe), milliseconds
 * of a command's start-up, for a command that writes one string. A pipe left non-blocking by whoever
 * made it may answer EAGAIN when full: wait a millisecond and write on.
 */
export function writeStdout(text: string): void {
  const bytes = Buffer.from(text, 'utf8');
  let offset = 0;
  while (offset < bytes.length) {
    try {
      offset += writeSync(1, bytes, offset);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== 'EAGAIN') throw error;
      Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 1);
    }
  }
}

/** The failure line: `{"error": "..."}`, spaced as the Python tool printed it. */
export function errorLine(message: string): string {
  return `{"error": ${JSON.stringify(message)}}`;
}

/** Epoch seconds -> `2026-05-04T10:00:00+00:00` (UTC, whole seconds), or null. */
export function isoUtc(seconds: number | null): string | null {
  if (seconds === null) return null;
  const date = new Date(seconds * 1000);
  if (Number.isNaN(date.getTime())) return null;
  return `${date.toISOString().slice(0, 19)}+00:00`;
}

/** Epoch ms -> `2026-05-04T19:00:00+09:00` in the process's time zone (TZ). */
export function localIso(ms: number): string {
  const d = new Date(Math.floor(ms / 1000) * 1000);
  const offset = -d.getTimezoneOffset();
  const sign = offset >= 0 ? '+' : '-';
  const abs = Math.abs(offset);
  const pad = (n: number, w = 2) => String(n).padStart(w, '0');
  return (
    `${pad(d.getFullYear(), 4)}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}` +
    `T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}` +
    `${sign}${pad(Math.floor(abs / 60))}:${pad(abs % 60)}`
  );
}

/** A ledger event as `history`, `events` and `replay` print it (`data` parsed, times in s, ISO and ms). */
export function eventJson(event: StoredEvent): Record<string, unknown> {
  return {
    position: event.position,
    event_id: event.eventId,
    reservation_id: event.reservationId,
    run_key: event.runKey,
    version: event.version,
    type: event.type,
    data: event.data,
    recorded_at: event.recordedAt,
    recorded_at_iso: isoUtc(event.recordedAt),
    recorded_at_ms: event.recordedAtMs,
    actor: event.actor,
  };
}

/** The 18-key reservation object every command prints; unset values are null, never missing. */
export function reservationJson(r: Reservation): Record<string, unknown> {
  return {
    reservation_id: r.reservationId,
    run_key: r.runKey,
    reservation_status: r.status,
    job_id: r.jobId,
    command: r.command,
    orchesjob_start_options: r.orchesjobStartOptions,
    metadata: r.metadata,
    not_before: r.notBefore,
    not_before_iso: isoUtc(r.notBefore),
    expires_at: r.expiresAt,
    expires_at_iso: isoUtc(r.expiresAt),
    created_at: r.createdAt,
    created_at_iso: isoUtc(r.createdAt),
    updated_at: r.updatedAt,
    updated_at_iso: isoUtc(r.updatedAt),
    dispatched_at: r.dispatchedAt,
    dispatched_at_iso: isoUtc(r.dispatchedAt),
    last_error: r.lastError,
  };
}

/** The dispatch control as `pause`, `status` and `list` print it: in force at `nowMs`, times with their ISO twins. */
export function dispatchJson(control: DispatchControl, nowMs: number): Record<string, unknown> {
  const c = effectivePause(control, nowMs);
  return {
    paused: c.paused,
    reason: c.reason,
    until: c.until,
    until_iso: isoUtc(c.until),
    since: c.since,
    since_iso: isoUtc(c.since),
  };
}
