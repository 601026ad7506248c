import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { SCHEMA_VERSION } from '../../migrations/index.js';
import { openLedger } from '../../src/db/open.js';
import { nextDueAt, nextDueQueries } from '../../src/projections/reservations.js';

const SCHEMA_FILE = new URL('../../schema.sql', import.meta.url);

const folders: string[] = [];
afterEach(() => {
  for (const f of folders.splice(0)) rmSync(f, { recursive: true, force: true });
});
function tempDb(): string {
  const folder = mkdtempSync(join(tmpdir(), 'ojr-schema-'));
  folders.push(folder);
  return join(folder, 'reserver.sqlite3');
}

/** The schema as SQLite stores it, in a stable order. */
function dumpSchema(path: string): string {
  const db = new Database(path, { readonly: true });
  try {
    const rows = db
      .prepare(
        `SELECT type, name, sql FROM sqlite_master
          WHERE sql IS NOT NULL AND name NOT LIKE 'sqlite_%'
          ORDER BY CASE type WHEN 'table' THEN 0 WHEN 'index' THEN 1 ELSE 2 END, name`,
      )
      .all() as { sql: string }[];
    return `${rows.map((r) => `${r.sql};`).join('\n\n')}\n`;
  } finally {
    db.close();
  }
}

describe('schema', () => {
  it('matches the committed schema.sql (UPDATE_SCHEMA=1 rewrites it)', async () => {
    const path = tempDb();
    const ledger = await openLedger(path);
    await ledger.close();
    const actual = dumpSchema(path);
    if (process.env['UPDATE_SCHEMA'] === '1') writeFileSync(SCHEMA_FILE, actual);
    expect(actual).toBe(readFileSync(SCHEMA_FILE, 'utf8'));
  });

  it('stamps user_version, uses WAL, and refuses updates and deletes of events', async () => {
    const path = tempDb();
    const ledger = await openLedger(path);
    try {
      expect(ledger.raw.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      expect(ledger.raw.pragma('journal_mode', { simple: true })).toBe('wal');
      ledger.raw
        .prepare(
          `INSERT INTO reservation_events (event_id, reservation_id, version, run_key, type, data, recorded_at, recorded_at_ms, actor)
           VALUES ('e1', 'r1', 1, 'k', 'Cancelled', '{}', 1, 1000, 'test')`,
        )
        .run();
      expect(() => ledger.raw.prepare(`UPDATE reservation_events SET actor = 'x'`).run()).toThrowErrorMatchingInlineSnapshot(`[SqliteError: reservation_events is append-only: events are never updated]`);
      expect(() => ledger.raw.prepare(`DELETE FROM reservation_events`).run()).toThrowErrorMatchingInlineSnapshot(`[SqliteError: reservation_events is append-only: events are never deleted]`);
      expect(() =>
        ledger.raw
          .prepare(
            `INSERT INTO reservation_events (event_id, reservation_id, version, run_key, type, data, recorded_at, recorded_at_ms, actor)
             VALUES ('e2', 'r1', 1, 'k', 'Cancelled', '{}', 1, 1000, 'test')`,
          )
          .run(),
      ).toThrow(/UNIQUE constraint failed: reservation_events.reservation_id, reservation_events.version/);
    } finally {
      await ledger.close();
    }
  });

  it('reopens a current database without migrating again or writing to it', async () => {
    const path = tempDb();
    await (await openLedger(path)).close();
    const before = readFileSync(path);
    const ledger = await openLedger(path);
    // The migrator's own tables are untouched and there is still exactly one migration row per migration.
    const rows = ledger.raw.prepare('SELECT name FROM kysely_migration').all();
    expect(rows).toHaveLength(SCHEMA_VERSION);
    await ledger.close();
    expect(readFileSync(path).equals(before)).toBe(true);
  });
});

describe("the dispatcher's next due time", () => {
  it('is read from the first entry of an index, not from every waiting row', async () => {
    const ledger = await openLedger(tempDb());
    try {
      const queries = nextDueQueries(ledger.db);
      const plan = (query: (typeof queries)['due']) => {
        const { sql, parameters } = query.compile();
        return (ledger.raw.prepare(`EXPLAIN QUERY PLAN ${sql}`).all(...parameters) as { detail: string }[]).map((r) => r.detail);
      };
      // One SEARCH each on the right index (a MIN over an index prefix reads its first entry); a SCAN,
      // another index or a second step would mean reading every waiting row. (SQLite versions differ
      // on saying COVERING.)
      expect(plan(queries.due)).toHaveLength(1);
      expect(plan(queries.due)[0]).toMatch(/^SEARCH reservations USING (COVERING )?INDEX idx_reservations_due \(reservation_status=\?\)$/);
      expect(plan(queries.expiry)).toHaveLength(1);
      expect(plan(queries.expiry)[0]).toMatch(
        /^SEARCH reservations USING (COVERING )?INDEX idx_reservations_status_expires_at \(reservation_status=\? AND expires_at>\?\)$/,
      );
    } finally {
      await ledger.close();
    }
  });

  it('is the earliest due time or expiry among RESERVED rows, a pending retry counting from its retry_at', async () => {
    const ledger = await openLedger(tempDb());
    try {
      expect(await nextDueAt(ledger.db)).toBeNull();
      const insert = ledger.raw.prepare(
        `INSERT INTO reservations (reservation_id, run_key, command_json, reservation_status, not_before, expires_at,
                                   created_at, updated_at, retry_at)
         VALUES (?, ?, '[]', ?, ?, ?, ?, ?, ?)`,
      );
      // [status, not_before, expires_at, created_at, retry_at]
      const rows: [string, number | null, number | null, number, number | null][] = [
        ['DISPATCHED', null, null, 100, null], // not waiting: ignored
        ['RESERVED', 900, null, 200, null],
        ['RESERVED', 500, null, 300, 800], // a retry: due at 800, not 500
        ['RESERVED', null, null, 700, 650], // retry_at before created_at: due at 700
        ['CANCELLED', null, 50, 60, null], // not waiting: ignored
      ];
      const due = () => {
        const waiting = rows.filter(([status]) => status === 'RESERVED');
        const times = [
          ...waiting.map(([, notBefore, , createdAt, retryAt]) => Math.max(notBefore ?? createdAt, retryAt ?? 0)),
          ...waiting.flatMap(([, , expiresAt]) => (expiresAt === null ? [] : [expiresAt])),
        ];
        return Math.min(...times);
      };
      rows.forEach(([status, notBefore, expiresAt, createdAt, retryAt], i) =>
        insert.run(`r${i}`, `k${i}`, status, notBefore, expiresAt, createdAt, createdAt, retryAt),
      );
      expect(await nextDueAt(ledger.db)).toBe(700);
      expect(due()).toBe(700);
      rows.push(['RESERVED', 2000, 690, 400, null]); // expires before anything is due
      insert.run('r5', 'k5', 'RESERVED', 2000, 690, 400, 400, null);
      expect(await nextDueAt(ledger.db)).toBe(690);
      expect(due()).toBe(690);
    } finally {
      await ledger.close();
    }
  });
});

describe('opening a new file while another process holds it', () => {
  it('waits for the lock to switch to WAL instead of failing at once', async () => {
    const path = tempDb();
    const other = new Database(path); // rollback journal, as a fresh file starts
    other.exec('CREATE TABLE t (x)');
    other.exec('BEGIN IMMEDIATE'); // readers may read; the journal mode cannot change
    const released = new Promise<void>((resolve) =>
      setTimeout(() => {
        other.exec('COMMIT');
        other.close();
        resolve();
      }, 300),
    );
    const started = Date.now();
    const ledger = await openLedger(path);
    const waited = Date.now() - started;
    await released;
    try {
      expect(ledger.raw.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(waited).toBeGreaterThanOrEqual(250);
    } finally {
      await ledger.close();
    }
  });
});
