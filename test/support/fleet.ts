/**
 * What the fleet tests share: the shipped schema and insert statement (deploy/central/), the lines a
 * host ships (what `orchesjob-reserver events` prints), the queries of docs/fleet.md and
 * docs/auditing.md, and the comparison of a fleet query's rows with the hosts' own answers.
 */
import { readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import type Database from 'better-sqlite3';
import { expect } from 'vitest';
import type { EventRow } from '../../src/events/store.js';
import { rowToEvent } from '../../src/events/store.js';
import { stringifySorted } from '../../src/json.js';
import { eventJson } from '../../src/output.js';
import type { Postgres, PsqlOptions } from './postgres.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..');

export const SCHEMA_SQL = readFileSync(join(ROOT, 'deploy', 'central', 'schema.sql'), 'utf8');
export const CENTRAL_CONF = 'central/rsyslog.conf';

/** The statement deploy/central/rsyslog.conf's template makes of a message, before substitution. */
export const INSERT_TEMPLATE: string = (() => {
  const conf = readFileSync(join(ROOT, 'deploy', CENTRAL_CONF), 'utf8');
  const m = /template\(name="orchesjob_reserver_pgsql_insert"[^)]*?string="([^"]*)"\)/s.exec(conf);
  if (m === null) throw new Error(`deploy/${CENTRAL_CONF} has no template orchesjob_reserver_pgsql_insert`);
  return m[1] as string;
})();

/** The statement rsyslog sends for one line (option.stdsql: every ' doubled). */
export function insertStatement(host: string, line: string): string {
  const q = (s: string) => s.replace(/'/g, "''");
  const sqlText = INSERT_TEMPLATE.replace('%hostname%', q(host)).replace('%msg%', q(line));
  return sqlText;
}

/** Store lines as rsyslog would, each statement its own transaction, as the ingest role given. */
export function ship(pg: Postgres, host: string, lines: readonly string[], options: PsqlOptions): void {
  if (lines.length === 0) return;
  pg.psql(lines.map((line) => `${insertStatement(host, line)};\n`).join(''), options);
}

/** The line `orchesjob-reserver events` prints for a ledger row (the line rsyslog ships). */
export function eventLine(row: EventRow): string {
  return stringifySorted(eventJson(rowToEvent(row)));
}

/** Every ledger row of a host's database, in position order. */
export function ledgerRowsOf(db: Database.Database): EventRow[] {
  return db.prepare('SELECT * FROM reservation_events ORDER BY position').all() as EventRow[];
}

/** A central row as `rows()` returns it, with the columns the ledger has. */
export interface CentralEvent {
  host: string;
  position: number;
  event_id: string;
  reservation_id: string;
  version: number;
  run_key: string;
  type: string;
  data: unknown;
  recorded_at: number;
  recorded_at_ms: number;
  actor: string;
}

/** The central table's events of one host, as the host's ledger rows look once `data` is parsed. */
export function centralEventsOf(pg: Postgres, host: string): Omit<CentralEvent, 'host'>[] {
  return pg.rows<CentralEvent>(
    `SELECT position, event_id, reservation_id, version, run_key, type, data, recorded_at, recorded_at_ms, actor
       FROM reservation_events WHERE host = :'host' ORDER BY position`,
    { vars: { host } },
  );
}

/** A host's ledger rows with `data` parsed: what the central table must hold for that host. */
export function expectedCentralEvents(rows: readonly EventRow[]): Omit<CentralEvent, 'host'>[] {
  return rows.map((r) => ({ ...r, data: JSON.parse(r.data) as unknown }));
}

// ---------------------------------------------------------------------------------------------------
// The documents' queries
// ---------------------------------------------------------------------------------------------------

function doc(name: string): string {
  return readFileSync(join(ROOT, 'docs', name), 'utf8');
}

/** Every `<!-- query: NAME -->` + ```sql block of a document. */
export function queriesOf(file: 'fleet.md' | 'auditing.md'): Map<string, string> {
  const queries = new Map<string, string>();
  for (const m of doc(file).matchAll(/<!-- query: ([a-z0-9-]+) -->\s*```sql\n([\s\S]*?)```/g)) {
    const [, name, sqlText] = m as unknown as [string, string, string];
    if (queries.has(name)) throw new Error(`query ${name} appears twice in docs/${file}`);
    queries.set(name, sqlText);
  }
  return queries;
}

export const FLEET_QUERIES = queriesOf('fleet.md');
export const HOST_QUERIES = queriesOf('auditing.md');

export function fleetQuery(name: string): string {
  const q = FLEET_QUERIES.get(name);
  if (q === undefined) throw new Error(`docs/fleet.md has no query ${name}`);
  return q;
}

/** Run docs/auditing.md's query NAME on a host's database. */
export function hostAnswer(db: Database.Database, name: string, params: Record<string, unknown> = {}): Record<string, unknown>[] {
  const q = HOST_QUERIES.get(name);
  if (q === undefined) throw new Error(`docs/auditing.md has no query ${name}`);
  return db.prepare(q).all(params) as Record<string, unknown>[];
}

/** The fleet version of each question of docs/auditing.md: which fleet query answers which host query. */
export const FLEET_VERSIONS: Readonly<Record<string, string>> = {
  'run-key-history': 'fleet-run-key-history',
  'late-claims': 'fleet-late-claims',
  'dispatch-failures': 'fleet-dispatch-failures',
  cancellations: 'fleet-cancellations',
  'reschedules-and-requeues': 'fleet-reschedules-and-requeues',
  'dispatch-pauses': 'fleet-dispatch-pauses',
  'dispatch-latency-per-day': 'fleet-dispatch-latency-per-day',
  waiting: 'fleet-waiting',
  'recovered-dispatches': 'fleet-recovered-dispatches',
  'released-claims': 'fleet-released-claims',
  'rebuild-state': 'fleet-rebuild-state',
};

const SQLITE_DATETIME = /^(\d{4}-\d\d-\d\d) (\d\d:\d\d:\d\d)$/;

/**
 * A host query's value as the fleet query gives it: `datetime(x, 'unixepoch')` text is a timestamptz
 * there (JSON `2026-05-04T00:00:30+00:00`, the session in UTC); JSON text (`json_extract` of an
 * object or array, the `data` column) is jsonb.
 */
function asFleetValue(hostValue: unknown, jsonColumn: boolean): unknown {
  if (typeof hostValue !== 'string') return hostValue;
  const dt = SQLITE_DATETIME.exec(hostValue);
  if (dt !== null) return `${dt[1]}T${dt[2]}+00:00`;
  if (jsonColumn) return JSON.parse(hostValue) as unknown;
  return hostValue;
}

export interface CompareOptions {
  /** Rows of the host's answer that the fleet version leaves out (a cleaned reservation). */
  readonly keepHostRow?: (row: Record<string, unknown>) => boolean;
  /** Compare each host's rows as a multiset: the host query leaves ties in no defined order. */
  readonly unordered?: boolean;
  /** Columns rounded differently by SQLite (binary floats) and PostgreSQL (numeric): the allowed difference. */
  readonly tolerance?: Readonly<Record<string, number>>;
}

/**
 * The fleet query's rows are, host by host and in order, the host query's rows on that host, with a
 * `host` column: the answer merged from the hosts.
 */
export function expectFleetAnswer(
  label: string,
  fleetRows: readonly Record<string, unknown>[],
  hostAnswers: ReadonlyMap<string, readonly Record<string, unknown>[]>,
  options: CompareOptions = {},
): void {
  const hosts = new Set(fleetRows.map((r) => r['host'] as string));
  const jsonColumns = new Set(
    fleetRows.flatMap((r) => Object.entries(r).filter(([, v]) => v !== null && typeof v === 'object').map(([k]) => k)),
  );
  for (const host of hosts) expect(hostAnswers.has(host), `${label}: rows of an unknown host ${host}`).toBe(true);
  for (const [host, hostRows] of hostAnswers) {
    const actual = fleetRows.filter((r) => r['host'] === host).map((r) => ({ ...r }));
    const kept = hostRows.filter((r) => options.keepHostRow?.(r) ?? true);
    const expected = kept.map((row) => {
      const out: Record<string, unknown> = { host };
      for (const [k, v] of Object.entries(row)) out[k] = asFleetValue(v, jsonColumns.has(k));
      return out;
    });
    if (options.unordered) {
      const key = (r: Record<string, unknown>) => stringifySorted(r);
      actual.sort((a, b) => key(a).localeCompare(key(b)));
      expected.sort((a, b) => key(a).localeCompare(key(b)));
    }
    for (const [column, allowed] of Object.entries(options.tolerance ?? {})) {
      actual.forEach((row, i) => {
        const want = expected[i]?.[column];
        const got = row[column];
        if (typeof want === 'number' && typeof got === 'number' && Math.abs(want - got) <= allowed + 1e-9) row[column] = want;
      });
    }
    expect(actual, `${label} on ${host}`).toEqual(expected);
  }
}

// ---------------------------------------------------------------------------------------------------
// The folded state
// ---------------------------------------------------------------------------------------------------

/** The 18 keys `list` prints for a reservation (DESIGN.md). */
export const LIST_KEYS = [
  'reservation_id', 'run_key', 'reservation_status', 'job_id', 'command', 'orchesjob_start_options', 'metadata',
  'not_before', 'not_before_iso', 'expires_at', 'expires_at_iso', 'created_at', 'created_at_iso', 'updated_at',
  'updated_at_iso', 'dispatched_at', 'dispatched_at_iso', 'last_error',
] as const;

/** The projection's columns beyond what `list` prints that fleet_reservations folds too. */
export const PROJECTION_EXTRAS = [
  'version', 'created_at_ms', 'claim_dispatcher_id', 'claim_host', 'claim_pid', 'claimed_at_ms', 'max_attempts', 'retry_delay',
] as const;

export type FleetReservation = Record<(typeof LIST_KEYS)[number] | (typeof PROJECTION_EXTRAS)[number], unknown>;

/** fleet_reservations of one host: the list keys and the extras, by reservation id. */
export function fleetReservationsOf(pg: Postgres, host: string, view = 'fleet_reservations'): FleetReservation[] {
  return pg.rows<FleetReservation>(
    `SELECT ${[...LIST_KEYS, ...PROJECTION_EXTRAS].join(', ')} FROM ${view} WHERE host = :'host' ORDER BY reservation_id`,
    { vars: { host } },
  );
}

/** The projection extras of a host's `reservations` rows, by reservation id. */
export function projectionExtrasOf(db: Database.Database): Record<string, unknown>[] {
  return db.prepare(`SELECT reservation_id, ${PROJECTION_EXTRAS.join(', ')} FROM reservations ORDER BY reservation_id`).all() as Record<string, unknown>[];
}

/** Split a fleet_reservations row into what `list` prints and the projection's extras. */
export function splitFleetReservation(row: FleetReservation): { list: Record<string, unknown>; extras: Record<string, unknown> } {
  const list: Record<string, unknown> = {};
  for (const k of LIST_KEYS) list[k] = row[k];
  const extras: Record<string, unknown> = { reservation_id: row.reservation_id };
  for (const k of PROJECTION_EXTRAS) extras[k] = row[k];
  return { list, extras };
}
