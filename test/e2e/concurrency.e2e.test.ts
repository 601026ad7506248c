/**
 * End to end: many `reserve` processes at the same moment on one fresh database file (none exists
 * when they start, so they also race to create and migrate it). Every process is started before any
 * is awaited.
 */
import { spawnSync } from 'node:child_process';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { SCHEMA_VERSION } from '../../migrations/version.js';
import { ledgerRows, runCli, sandbox, ULID } from '../support/harness.js';

const N = 20;
const MAKE_DB = new URL('../support/make-python-db.py', import.meta.url).pathname;

describe('concurrent reserve', () => {
  it(`${N} processes reserving ONE run key at once: exactly one created, one reservation, one event`, async () => {
    const home = sandbox();
    const runs = await Promise.all(
      Array.from({ length: N }, (_, i) => runCli(['reserve', '--run-key', 'same', '--', 'prog', String(i)])),
    );
    for (const r of runs) {
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
      expect(r.json).toBeDefined();
    }
    expect(runs.filter((r) => r.json.created === true)).toHaveLength(1);
    expect(runs.filter((r) => r.json.created === false)).toHaveLength(N - 1);
    const winner = runs.find((r) => r.json.created)!.json.reservation;
    expect(winner.reservation_id).toMatch(ULID);
    // Everybody got the winner's reservation, unchanged (its command, not their own).
    for (const r of runs) expect(r.json.reservation).toEqual(winner);

    const { events, reservations } = ledgerRows(home.db);
    expect(events.map((e) => [e.type, e.version, e.reservation_id, e.actor])).toEqual([
      ['Reserved', 1, winner.reservation_id, 'cli:reserve'],
    ]);
    expect(reservations).toHaveLength(1);
    expect(reservations[0]).toMatchObject({ reservation_id: winner.reservation_id, run_key: 'same', version: 1 });
  });

  it(`${N} processes reserving ${N} different run keys at once: all created, ${N} Reserved events at version 1`, async () => {
    const home = sandbox();
    const keys = Array.from({ length: N }, (_, i) => `key-${i}`);
    const runs = await Promise.all(keys.map((k) => runCli(['reserve', '--run-key', k, '--', 'prog', k])));
    for (const r of runs) {
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
      expect(r.json.created).toBe(true);
    }
    expect(runs.map((r) => r.json.reservation.run_key)).toEqual(keys);
    expect(runs.map((r) => r.json.reservation.command)).toEqual(keys.map((k) => ['prog', k]));
    const ids = runs.map((r) => r.json.reservation.reservation_id as string);
    expect(new Set(ids).size).toBe(N);

    const { events, reservations } = ledgerRows(home.db);
    expect(events).toHaveLength(N);
    expect(events.every((e) => e.type === 'Reserved' && e.version === 1 && e.actor === 'cli:reserve')).toBe(true);
    expect(new Set(events.map((e) => e.reservation_id))).toEqual(new Set(ids));
    expect(new Set(events.map((e) => e.event_id)).size).toBe(N);
    expect(events.map((e) => e.position)).toEqual(Array.from({ length: N }, (_, i) => i + 1));
    expect(reservations.map((r) => r.run_key).sort()).toEqual([...keys].sort());
    expect(reservations.every((r) => r.version === 1 && r.reservation_status === 'RESERVED')).toBe(true);
  });

  it(`${N} processes reserving at once on a Python-tool database: they race to adopt it, and it is adopted once`, async () => {
    const home = sandbox();
    const db = home.db;
    const extra = 3000;
    const made = spawnSync('python3', [MAKE_DB, db, String(extra)], { encoding: 'utf8' });
    expect(made.status, made.stderr).toBe(0);
    const pythonRows = 7 + extra;
    const keys = Array.from({ length: N }, (_, i) => `new-${i}`);
    const runs = await Promise.all(keys.map((k) => runCli(['reserve', '--run-key', k, '--', 'prog', k])));
    for (const r of runs) {
      expect({ code: r.code, stderr: r.stderr }).toEqual({ code: 0, stderr: '' });
      expect(r.json.created).toBe(true);
    }
    const { events, reservations } = ledgerRows(db);
    expect(reservations).toHaveLength(pythonRows + N);
    const imported = events.filter((e) => e.actor === 'import');
    expect(imported).toHaveLength(16 + extra * 3);
    expect(new Set(imported.map((e) => `${e.reservation_id}/${e.version}`)).size).toBe(imported.length);
    expect(events.filter((e) => e.actor === 'cli:reserve').map((e) => e.run_key).sort()).toEqual([...keys].sort());
    const verify = await runCli(['replay', '--verify']);
    expect(verify.code, verify.stderr).toBe(0);
    expect(verify.json).toMatchObject({ verified: true, reservations: pythonRows + N });
    const file = new Database(db, { readonly: true });
    try {
      expect(file.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(file.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
    } finally {
      file.close();
    }
  });
});
