import { hostname } from 'node:os';
import type { Kysely, Migration } from 'kysely';
import { sql } from 'kysely';
import { ulid } from 'ulid';

/**
 * Adopt the rows of a database written by the Python tool: every `reservations` row that no ledger
 * event explains (`version = 0`, the default the first migration gave the column) gets the events
 * that lead to its current state, marked as imported (`data.imported = true`, actor `import`).
 * The rows keep every value (id, run key, times, job id, last_error, metadata, options); the fold of
 * the written events equals them, which `replay --verify` checks.
 *
 * Self-contained on purpose: a migration must behave the same forever, so it does not call the
 * application's write path, which may change.
 *
 * | status          | events written                                                         |
 * |-----------------|------------------------------------------------------------------------|
 * | RESERVED        | Reserved (+ DispatchClaimed, ClaimReleased when last_error says the    |
 * |                 | Python dispatcher recovered it)                                         |
 * | DISPATCHING     | Reserved, DispatchClaimed (owner `import`: recovery treats it as gone)  |
 * | DISPATCHED      | Reserved, DispatchClaimed, Dispatched(job_id)                           |
 * | DISPATCH_FAILED | Reserved, DispatchClaimed, DispatchFailed(last_error)                   |
 * | EXPIRED         | Reserved, Expired                                                       |
 * | CANCELLED       | Reserved, Cancelled                                                     |
 *
 * A status outside this list fails the migration (nothing is written; the file is left as it was).
 */
export const adoptPythonRows: Migration = {
  async up(db: Kysely<unknown>): Promise<void> {
    const host = hostname();
    const BATCH = 500;
    for (;;) {
      const { rows } = await sql<PythonRow>`
        SELECT reservation_id, run_key, command_json, reservation_status, job_id, not_before, expires_at,
               metadata_json, orchesjob_start_options_json, created_at, updated_at, dispatched_at, last_error
          FROM reservations WHERE version = 0 ORDER BY created_at, reservation_id LIMIT ${BATCH}`.execute(db);
      if (rows.length === 0) return;
      const events: EventRow[] = [];
      for (const row of rows) {
        const rowEvents = eventsFor(row, host);
        rowEvents.forEach((e, i) => {
          const ms = e.at * 1000;
          events.push([ulid(ms), row.reservation_id, i + 1, row.run_key, e.type, JSON.stringify(e.data), e.at, ms, 'import']);
        });
        const claim = row.reservation_status === 'DISPATCHING';
        await sql`UPDATE reservations
                     SET version = ${rowEvents.length}, created_at_ms = ${row.created_at * 1000},
                         claim_dispatcher_id = ${claim ? 'import' : null}, claim_host = ${claim ? host : null},
                         claim_pid = ${claim ? 0 : null}, claimed_at_ms = ${claim ? row.updated_at * 1000 : null}
                   WHERE reservation_id = ${row.reservation_id}`.execute(db);
      }
      for (let i = 0; i < events.length; i += 100) {
        const chunk = events.slice(i, i + 100);
        await sql`INSERT INTO reservation_events
          (event_id, reservation_id, version, run_key, type, data, recorded_at, recorded_at_ms, actor)
          VALUES ${sql.join(chunk.map((values) => sql`(${sql.join(values)})`))}`.execute(db);
      }
    }
  },
};

interface PythonRow {
  reservation_id: string;
  run_key: string;
  command_json: string;
  reservation_status: string;
  job_id: string | null;
  not_before: number | null;
  expires_at: number | null;
  metadata_json: string | null;
  orchesjob_start_options_json: string | null;
  created_at: number;
  updated_at: number;
  dispatched_at: number | null;
  last_error: string | null;
}

type EventRow = [string, string, number, string, string, string, number, number, string];

interface ImportedEvent {
  type: string;
  at: number;
  data: Record<string, unknown>;
}

function parseJson(text: string | null, fallback: unknown, what: string, row: PythonRow): unknown {
  if (text === null || text === '') return fallback;
  try {
    return JSON.parse(text);
  } catch {
    throw new Error(`cannot adopt reservation ${row.reservation_id}: its ${what} is not JSON`);
  }
}

function eventsFor(row: PythonRow, host: string): ImportedEvent[] {
  const command = parseJson(row.command_json, [], 'command_json', row);
  const options = parseJson(row.orchesjob_start_options_json, [], 'orchesjob_start_options_json', row);
  const metadata = parseJson(row.metadata_json, null, 'metadata_json', row);
  const reserved: ImportedEvent = {
    type: 'Reserved',
    at: row.created_at,
    data: {
      command,
      orchesjob_start_options: options,
      metadata,
      not_before: row.not_before,
      expires_at: row.expires_at,
      imported: true,
    },
  };
  const claimed = (at: number): ImportedEvent => ({
    type: 'DispatchClaimed',
    at,
    data: {
      dispatcher_id: 'import',
      host,
      pid: 0,
      argv: ['orchesjob', 'start', '--run-key', row.run_key, ...(options as string[]), '--', ...(command as string[])],
      late_by_ms: 0,
      imported: true,
    },
  });
  const last = row.updated_at;
  switch (row.reservation_status) {
    case 'RESERVED':
      if (row.last_error === 'recovered from DISPATCHING') {
        return [
          reserved,
          claimed(last),
          { type: 'ClaimReleased', at: last, data: { reason: 'recovered by the Python tool', previous_owner: null, imported: true } },
        ];
      }
      return [reserved];
    case 'DISPATCHING':
      return [reserved, claimed(last)];
    case 'DISPATCHED': {
      const at = row.dispatched_at ?? last;
      if (row.job_id === null) throw new Error(`cannot adopt reservation ${row.reservation_id}: DISPATCHED without a job_id`);
      return [reserved, claimed(at), { type: 'Dispatched', at, data: { job_id: row.job_id, imported: true } }];
    }
    case 'DISPATCH_FAILED':
      return [
        reserved,
        claimed(last),
        { type: 'DispatchFailed', at: last, data: { error: row.last_error ?? '', exit_code: null, imported: true } },
      ];
    case 'EXPIRED':
      return [reserved, { type: 'Expired', at: last, data: { expires_at: row.expires_at ?? last, imported: true } }];
    case 'CANCELLED':
      return [reserved, { type: 'Cancelled', at: last, data: { imported: true } }];
    default:
      throw new Error(`cannot adopt reservation ${row.reservation_id}: unknown status ${JSON.stringify(row.reservation_status)}`);
  }
}
