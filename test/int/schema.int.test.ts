import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { SCHEMA_VERSION } from '../../migrations/index.js';
import { openLedger } from '../../src/db/open.js';

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

/** The Python tool's `init_db`, verbatim in meaning: the schema of the databases we adopt. */
export const PYTHON_SCHEMA = `
CREATE TABLE IF NOT EXISTS reservations (
  reservation_id TEXT PRIMARY KEY,
  run_key TEXT NOT NULL UNIQUE,
  command_json TEXT NOT NULL,
  reservation_status TEXT NOT NULL,
  job_id TEXT,
  not_before INTEGER,
  expires_at INTEGER,
  metadata_json TEXT,
  orchesjob_start_options_json TEXT NOT NULL DEFAULT '[]',
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  dispatched_at INTEGER,
  last_error TEXT
);
CREATE INDEX IF NOT EXISTS idx_reservations_status_not_before ON reservations (reservation_status, not_before);
CREATE INDEX IF NOT EXISTS idx_reservations_job_id ON reservations (job_id);
CREATE INDEX IF NOT EXISTS idx_reservations_updated_at ON reservations (updated_at);
`;

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

  it("migrates a database written by the Python tool in place, keeping its table and rows", async () => {
    const path = tempDb();
    const py = new Database(path);
    py.exec(PYTHON_SCHEMA);
    py.prepare(
      `INSERT INTO reservations VALUES ('7c09a7c4-0000-0000-0000-000000000001', 'old-key', '["/bin/true"]', 'DISPATCHED',
        'job-1', NULL, NULL, '{"dag_id":"d"}', '["--strict"]', 1777830000, 1777830003, 1777830003, NULL)`,
    ).run();
    py.close();
    const ledger = await openLedger(path);
    const row = await ledger.db.selectFrom('reservations').selectAll().executeTakeFirstOrThrow();
    await ledger.close();
    expect(row).toMatchObject({
      reservation_id: '7c09a7c4-0000-0000-0000-000000000001',
      run_key: 'old-key',
      command_json: '["/bin/true"]',
      reservation_status: 'DISPATCHED',
      job_id: 'job-1',
      metadata_json: '{"dag_id":"d"}',
      orchesjob_start_options_json: '["--strict"]',
      created_at: 1777830000,
      dispatched_at: 1777830003,
    });
    // The Python tool's own start-up (CREATE ... IF NOT EXISTS) and its reads still work on the file.
    const again = new Database(path);
    again.exec(PYTHON_SCHEMA);
    expect(again.prepare('SELECT * FROM reservations WHERE run_key = ?').get('old-key')).toMatchObject({ job_id: 'job-1' });
    again.close();
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
