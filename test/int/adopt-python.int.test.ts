import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { openLedger } from '../../src/db/open.js';
import { readStream } from '../../src/events/store.js';
import { execute } from '../../src/ledger.js';
import { foldLedger, rebuildProjection, verifyProjection } from '../../src/projections/replay.js';
import { immediate } from '../../src/db/transaction.js';
import { SCHEMA_VERSION } from '../../migrations/version.js';

/**
 * A database written by the Python tool (made by a Python script with its exact schema and rows) is
 * adopted in place: every row kept, explained by imported events, readable by the Python tool after.
 */

const MAKE_DB = new URL('../support/make-python-db.py', import.meta.url).pathname;
const PYTHON_COLUMNS = [
  'reservation_id',
  'run_key',
  'command_json',
  'reservation_status',
  'job_id',
  'not_before',
  'expires_at',
  'metadata_json',
  'orchesjob_start_options_json',
  'created_at',
  'updated_at',
  'dispatched_at',
  'last_error',
] as const;

const folders: string[] = [];
afterEach(() => {
  for (const f of folders.splice(0)) rmSync(f, { recursive: true, force: true });
});

function pythonDb(extraRows = 0): { path: string; rows: Record<string, unknown>[] } {
  const folder = mkdtempSync(join(tmpdir(), 'ojr-adopt-'));
  folders.push(folder);
  const path = join(folder, 'reserver.sqlite3');
  const made = spawnSync('python3', [MAKE_DB, path, String(extraRows)], { encoding: 'utf8' });
  expect(made.status, made.stderr).toBe(0);
  // The rows are printed only without extra rows.
  const lines = made.stdout.trim().split('\n').filter((l) => l !== '');
  return { path, rows: lines.map((l) => JSON.parse(l) as Record<string, unknown>) };
}

function pragmas(path: string): { journal: unknown; version: unknown } {
  const db = new Database(path, { readonly: true });
  try {
    return { journal: db.pragma('journal_mode', { simple: true }), version: db.pragma('user_version', { simple: true }) };
  } finally {
    db.close();
  }
}

function pythonRows(path: string): Record<string, unknown>[] {
  const db = new Database(path, { readonly: true });
  try {
    return db.prepare(`SELECT ${PYTHON_COLUMNS.join(', ')} FROM reservations ORDER BY run_key`).all() as Record<string, unknown>[];
  } finally {
    db.close();
  }
}

describe('adopting a database written by the Python tool', () => {
  it('keeps every row and value, explains each with imported events, and verifies', async () => {
    const { path, rows } = pythonDb();
    expect(rows.map((r) => r.reservation_status).sort()).toEqual(
      ['CANCELLED', 'DISPATCHED', 'DISPATCHING', 'DISPATCH_FAILED', 'EXPIRED', 'RESERVED', 'RESERVED'].sort(),
    );
    const before = pythonRows(path);
    const ledger = await openLedger(path);
    try {
      expect(pythonRows(path)).toEqual(before);
      const verified = await verifyProjection(ledger);
      expect(verified).toMatchObject({ verified: true, reservations: 7, mismatches: [] });
      const byKey = new Map(before.map((r) => [r.run_key as string, r]));
      const expectedTypes: Record<string, string[]> = {
        'py-reserved': ['Reserved'],
        'py-recovered': ['Reserved', 'DispatchClaimed', 'ClaimReleased'],
        'py-dispatching': ['Reserved', 'DispatchClaimed'],
        'py-dispatched': ['Reserved', 'DispatchClaimed', 'Dispatched'],
        'py-failed': ['Reserved', 'DispatchClaimed', 'DispatchFailed'],
        'py-expired': ['Reserved', 'Expired'],
        'py-cancelled': ['Reserved', 'Cancelled'],
      };
      for (const [key, types] of Object.entries(expectedTypes)) {
        const row = byKey.get(key)!;
        const events = await readStream(ledger.db, row.reservation_id as string);
        expect(events.map((e) => e.type), key).toEqual(types);
        expect(events.map((e) => e.version)).toEqual(types.map((_, i) => i + 1));
        for (const e of events) {
          expect(e.actor).toBe('import');
          expect((e.data as { imported?: boolean }).imported).toBe(true);
          expect(e.runKey).toBe(key);
        }
        expect(events[0]?.recordedAt).toBe(row.created_at);
      }
      // Metadata written by Python (1.5, non-ASCII keys) survives as text and as data.
      const reserved = await readStream(ledger.db, byKey.get('py-reserved')!.reservation_id as string);
      expect(reserved[0]?.data).toMatchObject({ metadata: { dag_id: 'd', n: 1.5 }, orchesjob_start_options: ['--strict'] });
    } finally {
      await ledger.close();
    }
    // Opening again adopts nothing twice.
    const again = await openLedger(path);
    const count = again.raw.prepare('SELECT count(*) AS n FROM reservation_events').get() as { n: number };
    await again.close();
    expect(count.n).toBe(16);
  });

  it('lets the Python tool read the file afterwards', async () => {
    const { path } = pythonDb();
    await (await openLedger(path)).close();
    const script = [
      'import json, sqlite3, sys',
      'conn = sqlite3.connect(sys.argv[1]); conn.row_factory = sqlite3.Row',
      // what the Python tool's connect/init_db/fetch_by_run_key do
      'conn.execute("PRAGMA journal_mode=WAL")',
      `conn.executescript(open(sys.argv[2]).read().split('SCHEMA = """')[1].split('"""')[0])`,
      'row = conn.execute("SELECT * FROM reservations WHERE run_key = ?", ("py-dispatched",)).fetchone()',
      'print(json.dumps({"status": row["reservation_status"], "job_id": row["job_id"], "command": json.loads(row["command_json"])}))',
    ].join('\n');
    const read = spawnSync('python3', ['-c', script, path, MAKE_DB], { encoding: 'utf8' });
    expect(read.status, read.stderr).toBe(0);
    expect(JSON.parse(read.stdout)).toEqual({
      status: 'DISPATCHED',
      job_id: 'job-1',
      command: ['/jobs/run.sh', '--key', 'py-dispatched'],
    });
  });

  it('treats adopted rows like any other: cancel, replay at a position, rebuild', async () => {
    const { path } = pythonDb();
    const ledger = await openLedger(path);
    try {
      const { reservation } = await execute(ledger.db, { runKey: 'py-expired' }, { type: 'Cancel' }, { actor: 'test' });
      expect(reservation).toMatchObject({ status: 'CANCELLED', version: 3 });
      const atImport = await foldLedger(ledger, { position: 16 });
      expect([...atImport.states.values()].find((r) => r.runKey === 'py-expired')?.status).toBe('EXPIRED');
      ledger.raw.prepare(`UPDATE reservations SET job_id = 'forged' WHERE run_key = 'py-dispatched'`).run();
      const tampered = await verifyProjection(ledger);
      expect(tampered.verified).toBe(false);
      expect(tampered.mismatches).toEqual([
        expect.objectContaining({ run_key: 'py-dispatched', field: 'job_id', projection: 'forged', ledger: 'job-1' }),
      ]);
      await immediate(ledger.db, (tx) => rebuildProjection(tx, ledger.raw));
      expect((await verifyProjection(ledger)).verified).toBe(true);
    } finally {
      await ledger.close();
    }
  });

  describe('journal mode', () => {
    it('imports with a rollback journal when it has the file to itself, and leaves the file in WAL mode, current', async () => {
      const { path } = pythonDb(500);
      expect(pragmas(path).journal).toBe('wal'); // as the Python tool leaves it
      const ledger = await openLedger(path);
      try {
        expect(ledger.raw.pragma('journal_mode', { simple: true })).toBe('wal');
        // The import went to the file itself: the WAL holds only what came after it (user_version).
        expect(statSync(`${path}-wal`).size).toBeLessThan(8 * 4096);
        expect(await verifyProjection(ledger)).toMatchObject({ verified: true, reservations: 507 });
      } finally {
        await ledger.close();
      }
      expect(pragmas(path)).toEqual({ journal: 'wal', version: SCHEMA_VERSION });
    });

    it('imports in WAL mode as usual while another connection holds the file', async () => {
      const { path } = pythonDb(500);
      const other = new Database(path);
      try {
        other.prepare('SELECT count(*) FROM reservations').get();
        const ledger = await openLedger(path);
        try {
          // The import went through the WAL (hundreds of pages; about one without the other connection).
          expect(statSync(`${path}-wal`).size).toBeGreaterThan(64 * 4096);
          expect(await verifyProjection(ledger)).toMatchObject({ verified: true, reservations: 507 });
        } finally {
          await ledger.close();
        }
        expect(other.pragma('journal_mode', { simple: true })).toBe('wal');
      } finally {
        other.close();
      }
      expect(pragmas(path)).toEqual({ journal: 'wal', version: SCHEMA_VERSION });
    });

    it('leaves the file as it was, in WAL mode, when the adoption fails', async () => {
      const { path } = pythonDb(50);
      const bad = new Database(path);
      bad.prepare(`UPDATE reservations SET reservation_status = 'PAUSED' WHERE run_key = 'py-extra-40'`).run();
      bad.close();
      const before = pythonRows(path);
      await expect(openLedger(path)).rejects.toThrow(/unknown status "PAUSED"/);
      expect(pragmas(path)).toEqual({ journal: 'wal', version: 0 });
      expect(pythonRows(path)).toEqual(before);
      const file = new Database(path, { readonly: true });
      try {
        expect(file.prepare(`SELECT name FROM sqlite_schema WHERE name = 'reservation_events'`).all()).toEqual([]);
      } finally {
        file.close();
      }
    });

    it('finishes the switch back to WAL when the importing process died before it (user_version not yet set)', async () => {
      const { path } = pythonDb(20);
      await (await openLedger(path)).close();
      // What a process killed between the import's commit and its return to WAL leaves behind.
      const died = new Database(path);
      died.pragma('journal_mode = DELETE');
      died.pragma('user_version = 0');
      died.close();
      expect(pragmas(path)).toEqual({ journal: 'delete', version: 0 });
      const ledger = await openLedger(path);
      try {
        const events = ledger.raw.prepare('SELECT count(*) AS n FROM reservation_events').get() as { n: number };
        expect(events.n).toBe(16 + 20 * 3); // nothing imported twice (each extra row is DISPATCHED)
        expect(await verifyProjection(ledger)).toMatchObject({ verified: true, reservations: 27 });
      } finally {
        await ledger.close();
      }
      expect(pragmas(path)).toEqual({ journal: 'wal', version: SCHEMA_VERSION });
    });
  });
});
