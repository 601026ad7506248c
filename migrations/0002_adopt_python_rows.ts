import { hostname } from 'node:os';
import type { Kysely, Migration } from 'kysely';
import { sql } from 'kysely';
import { monotonicFactory } from 'ulid';
import type { Database as NativeDatabase } from 'better-sqlite3';
import { progress } from '../src/progress.js';

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
export function adoptPythonRows(native: NativeDatabase): Migration {
  return { up: (db) => adopt(db, native) };
}

/**
 * The events are written with one statement prepared on the native handle (the same connection,
 * inside the same transaction), stepped once per event: what Kysely would compile and await per
 * row, or what SQLite would unpack from a JSON batch, cost seconds more on 900,000 events.
 */
const INSERT_EVENT = `INSERT INTO reservation_events
  (event_id, reservation_id, version, run_key, type, data, recorded_at, recorded_at_ms, actor)
  VALUES (?, ?, ?, ?, ?, ?, ?, ?, 'import')`;

async function adopt(db: Kysely<unknown>, native: NativeDatabase): Promise<void> {
  const host = hostname();
  const BATCH = 2000;
  const eventId = importIds();
  const { rows: counted } = await sql<{ n: number }>`SELECT count(*) AS n FROM reservations WHERE version = 0`.execute(db);
  const total = Number(counted[0]?.n ?? 0);
  if (total === 0) return;
  const insert = native.prepare(INSERT_EVENT);
  // Shown only on a terminal.
  const report = progress("adopting the Python tool's reservations", 'rows');
  let adopted = 0;
  // Keyset pagination on rowid: each batch is an index seek, whatever the table's size.
  let after = 0;
  for (;;) {
    const { rows } = await sql<PythonRow & { row: number }>`
      SELECT rowid AS row, reservation_id, run_key, command_json, reservation_status, job_id, not_before,
             expires_at, metadata_json, orchesjob_start_options_json, created_at, updated_at, dispatched_at,
             last_error
        FROM reservations
       WHERE rowid > ${after} AND version = 0
       ORDER BY rowid LIMIT ${BATCH}`.execute(db);
    const last = rows.at(-1);
    if (last === undefined) break;
    after = last.row;
    const versions: [string, number][] = [];
    for (const row of rows) {
      const imported = eventsFor(row, host);
      versions.push([row.reservation_id, imported.length]);
      imported.forEach((e, i) => {
        insert.run(eventId(), row.reservation_id, i + 1, row.run_key, e.type, JSON.stringify(e.data), e.at, e.at * 1000);
      });
    }
    // The batch's rows: the version is the number of events just written; a DISPATCHING row holds
    // the imported claim (owner `import`, pid 0: a process that does not exist).
    await sql`UPDATE reservations
                 SET version = adopted.value ->> 1,
                     created_at_ms = created_at * 1000,
                     claim_dispatcher_id = CASE WHEN reservation_status = 'DISPATCHING' THEN 'import' END,
                     claim_host = CASE WHEN reservation_status = 'DISPATCHING' THEN ${host} END,
                     claim_pid = CASE WHEN reservation_status = 'DISPATCHING' THEN 0 END,
                     claimed_at_ms = CASE WHEN reservation_status = 'DISPATCHING' THEN updated_at * 1000 END
                FROM json_each(${JSON.stringify(versions)}) AS adopted
               WHERE reservations.reservation_id = adopted.value ->> 0`.execute(db);
    adopted += rows.length;
    report.update(adopted, total);
  }
  report.finish();
}

/**
 * Ids of the imported events: ULIDs of the import itself, in increasing order (`recorded_at` keeps
 * when each transition happened; the id says when its ledger record was made). Each id then lands at
 * the end of the unique index on `event_id`; ids of each event's own time, in random order across
 * rows, landed all over it, and that was most of the time adopting 300,000 rows took.
 */
function importIds(): () => string {
  const next = monotonicFactory();
  const now = Date.now();
  return () => next(now);
}

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
