import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Ledger } from '../../src/db/open.js';
import { openLedger } from '../../src/db/open.js';
import { immediate } from '../../src/db/transaction.js';
import { EVENT_TYPES, RESERVATION_STATUSES } from '../../src/events/index.js';
import { execute } from '../../src/ledger.js';
import { dueQuery, readLedgerMetrics } from '../../src/metrics/ledger.js';
import { rebuildProjection } from '../../src/projections/replay.js';

/**
 * The ledger side of the metrics (src/metrics/ledger.ts): the counts kept by migration 0006's triggers
 * equal what a GROUP BY over the tables says, after every kind of write (the random sequences of
 * test/int/state-machine.property.int.test.ts check the same after every step), the migration fills
 * them from the rows already there, and the due reservations are read from an index.
 */

const MAKE_DB = new URL('../support/make-python-db.py', import.meta.url).pathname;
const T0 = 1_800_000_000_000; // epoch ms

const folders: string[] = [];
afterEach(() => {
  for (const f of folders.splice(0)) rmSync(f, { recursive: true, force: true });
});
function tempDb(): string {
  const folder = mkdtempSync(join(tmpdir(), 'ojr-metrics-'));
  folders.push(folder);
  return join(folder, 'reserver.sqlite3');
}

/** What the counts say, and what a scan of the tables says, every status and type included. */
async function countsAndScan(ledger: Ledger) {
  const m = await readLedgerMetrics(ledger.db, T0);
  const scan = (sql: string) => Object.fromEntries((ledger.raw.prepare(sql).all() as { k: string; n: number }[]).map((r) => [r.k, r.n]));
  const zeros = (names: readonly string[]) => Object.fromEntries(names.map((n) => [n, 0]));
  return {
    counted: { reservations: Object.fromEntries(m.reservations), events: Object.fromEntries(m.events) },
    scanned: {
      reservations: { ...zeros(RESERVATION_STATUSES), ...scan('SELECT reservation_status AS k, count(*) AS n FROM reservations GROUP BY 1') },
      events: { ...zeros(EVENT_TYPES), ...scan('SELECT type AS k, count(*) AS n FROM reservation_events GROUP BY 1') },
    },
  };
}

const owner = { dispatcher_id: 'test', host: 'test', pid: 1 };

/** One of each path through the state machine, at T0 (each write a millisecond later). */
async function writeEveryKind(ledger: Ledger): Promise<void> {
  let t = T0 - 60_000;
  const opts = (actor: string) => ({ actor, now: () => t++ });
  const reserve = (runKey: string, extra: Record<string, unknown> = {}) =>
    execute(ledger.db, null, { type: 'Reserve', runKey, command: ['true'], orchesjobStartOptions: [], metadata: null, notBefore: null, expiresAt: null, ...extra }, opts('test'));
  for (const key of ['ok', 'failed', 'cancelled', 'cleaned', 'released', 'waiting']) await reserve(key);
  await reserve('expired', { expiresAt: Math.floor((T0 - 30_000) / 1000) });
  await reserve('future', { notBefore: Math.floor(T0 / 1000) + 3600 });
  for (const key of ['ok', 'failed', 'cleaned', 'released']) await execute(ledger.db, { runKey: key }, { type: 'Claim', owner, argv: ['orchesjob'] }, opts('d'));
  await execute(ledger.db, { runKey: 'ok' }, { type: 'RecordDispatch', jobId: 'j1' }, opts('d'));
  await execute(ledger.db, { runKey: 'cleaned' }, { type: 'RecordDispatch', jobId: 'j2' }, opts('d'));
  await execute(ledger.db, { runKey: 'failed' }, { type: 'RecordFailure', error: 'boom', exitCode: 7 }, opts('d'));
  await execute(ledger.db, { runKey: 'released' }, { type: 'ReleaseClaim', reason: 'gone' }, opts('d'));
  await execute(ledger.db, { runKey: 'cancelled' }, { type: 'Cancel' }, opts('cli:cancel'));
  await execute(ledger.db, { runKey: 'cleaned' }, { type: 'Clean' }, opts('cli:clean'));
  t = T0 - 10_000; // past expires_at
  await execute(ledger.db, { runKey: 'expired' }, { type: 'Expire' }, opts('d'));
  await reserve('cleaned'); // the run key again: a new stream
}

describe('metrics counts (migration 0006)', () => {
  it('equal a scan of the tables after every kind of write, clean, a re-reserved run key and replay --rebuild', async () => {
    const ledger = await openLedger(tempDb());
    try {
      await writeEveryKind(ledger);
      const after = await countsAndScan(ledger);
      expect(after.counted).toEqual(after.scanned);
      expect(after.counted.reservations).toEqual({ RESERVED: 4, DISPATCHING: 0, DISPATCHED: 1, CANCELLED: 1, EXPIRED: 1, DISPATCH_FAILED: 1 });
      expect(after.counted.events['Reserved']).toBe(9);
      expect(after.counted.events['Cleaned']).toBe(1);
      expect(after.counted.events['DispatchRefused']).toBe(0);
      await immediate(ledger.db, (tx) => rebuildProjection(tx, ledger.raw));
      const rebuilt = await countsAndScan(ledger);
      expect(rebuilt.counted).toEqual(rebuilt.scanned);
      expect(rebuilt.counted).toEqual(after.counted);
    } finally {
      await ledger.close();
    }
  });

  it('are filled by the migration from the rows a database already holds', async () => {
    const path = tempDb();
    let ledger = await openLedger(path);
    await writeEveryKind(ledger);
    const expected = (await countsAndScan(ledger)).scanned;
    // Back to schema 4, as a database written before this migration.
    ledger.raw.exec(`DROP TRIGGER metrics_count_event; DROP TRIGGER metrics_count_reservation_insert;
      DROP TRIGGER metrics_count_reservation_delete; DROP TRIGGER metrics_count_reservation_status;
      DROP TABLE metrics_event_counts; DROP TABLE metrics_status_counts;
      DELETE FROM kysely_migration WHERE name = '0006_metrics_counts'; PRAGMA user_version = 5;`);
    await ledger.close();
    ledger = await openLedger(path);
    try {
      const { counted, scanned } = await countsAndScan(ledger);
      expect(scanned).toEqual(expected);
      expect(counted).toEqual(expected);
    } finally {
      await ledger.close();
    }
  });

  it("are right after adopting the Python tool's rows, which bypass the write path", async () => {
    const path = tempDb();
    const made = spawnSync('python3', [MAKE_DB, path, '50'], { encoding: 'utf8' });
    expect(made.status, made.stderr).toBe(0);
    const ledger = await openLedger(path);
    try {
      const { counted, scanned } = await countsAndScan(ledger);
      expect(counted).toEqual(scanned);
      expect(Object.values(counted.reservations).reduce((a, b) => a + b, 0)).toBe(57);
    } finally {
      await ledger.close();
    }
  });
});

describe('due reservations', () => {
  it('count RESERVED ones whose due time (not_before, else created_at; a retry: retry_at) has passed, and the oldest one', async () => {
    const ledger = await openLedger(tempDb());
    try {
      const insert = ledger.raw.prepare(
        `INSERT INTO reservations (reservation_id, run_key, command_json, reservation_status, not_before, created_at, updated_at, retry_at)
         VALUES (?, ?, '[]', ?, ?, ?, ?, ?)`,
      );
      const now = 10_000; // epoch seconds
      // [status, not_before, created_at, retry_at]
      const rows: [string, number | null, number, number | null][] = [
        ['RESERVED', null, now - 30, null], // due 30 s ago
        ['RESERVED', now - 100, now - 500, null], // due 100 s ago: the oldest
        ['RESERVED', now + 5, now - 500, null], // not yet
        ['RESERVED', now - 400, now - 500, now + 60], // a retry not due yet
        ['RESERVED', null, now, null], // due this second
        ['DISPATCHING', now - 1000, now - 1000, null], // claimed: not due
        ['DISPATCH_FAILED', now - 2000, now - 2000, null],
      ];
      rows.forEach(([status, notBefore, createdAt, retryAt], i) => insert.run(`r${i}`, `k${i}`, status, notBefore, createdAt, createdAt, retryAt));
      const m = await readLedgerMetrics(ledger.db, now * 1000 + 250);
      expect(m.due).toBe(3);
      expect(m.oldestDueAgeSeconds).toBeCloseTo(100.25, 6);
      const none = await readLedgerMetrics(ledger.db, (now - 200) * 1000);
      expect({ due: none.due, oldest: none.oldestDueAgeSeconds }).toEqual({ due: 0, oldest: 0 });
      expect(m.paused).toBe(false);
      expect(m.position).toBe(0);
    } finally {
      await ledger.close();
    }
  });

  it('are one range of idx_reservations_due, not a scan of the waiting rows', async () => {
    const ledger = await openLedger(tempDb());
    try {
      const { sql, parameters } = dueQuery(ledger.db, 1_800_000_000).compile();
      const plan = (ledger.raw.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...parameters) as { detail: string }[]).map((r) => r.detail);
      expect(plan).toHaveLength(1);
      expect(plan[0]).toMatch(/^SEARCH reservations USING (COVERING )?INDEX idx_reservations_due \(reservation_status=\? AND <expr><\?\)$/);
    } finally {
      await ledger.close();
    }
  });
});
