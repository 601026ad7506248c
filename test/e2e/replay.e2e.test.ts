import { hostname } from 'node:os';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { runCli, sandbox, withLedger } from '../support/harness.js';

/** `replay` through the built CLI: as-of views, --verify (exit 7 on a mismatch), --rebuild. */

async function reserveMany(keys: string[]): Promise<void> {
  for (const key of keys) {
    const r = await runCli(['reserve', '--run-key', key, '--', 'echo', key]);
    expect(r.code, r.stderr).toBe(0);
  }
}

describe('replay', () => {
  it('shows the reservations as they were at a position', async () => {
    sandbox();
    await reserveMany(['a', 'b']);
    expect((await runCli(['cancel', '--run-key', 'a'])).code).toBe(0);
    const atTwo = await runCli(['replay', '--position', '2']);
    expect(atTwo.code).toBe(0);
    expect(atTwo.json.as_of_position).toBe(2);
    expect(atTwo.json.reservations.map((r: { run_key: string; reservation_status: string }) => [r.run_key, r.reservation_status])).toEqual([
      ['b', 'RESERVED'],
      ['a', 'RESERVED'],
    ]);
    expect(Object.keys(atTwo.json.reservations[0]).sort()).toHaveLength(18);
    const now = await runCli(['replay', '--position', '3']);
    expect(now.json.reservations.find((r: { run_key: string }) => r.run_key === 'a').reservation_status).toBe('CANCELLED');
    const asOf = await runCli(['replay', '--as-of', '2000-01-01T00:00:00Z']);
    expect(asOf.json).toEqual({ as_of_position: 0, reservations: [] });
  });

  it('--verify agrees on a healthy ledger and names a field changed behind its back (exit 7); --rebuild repairs it', async () => {
    const home = sandbox();
    await reserveMany(['a', 'b']);
    const ok = await runCli(['replay', '--verify']);
    expect(ok.code).toBe(0);
    expect(ok.json).toEqual({ verified: true, events: 2, reservations: 2, mismatches: [] });

    const db = new Database(home.db);
    db.prepare(`UPDATE reservations SET reservation_status = 'DISPATCHED', job_id = 'forged' WHERE run_key = 'b'`).run();
    db.close();
    const bad = await runCli(['replay', '--verify']);
    expect(bad.code).toBe(7);
    expect(bad.json.verified).toBe(false);
    expect(bad.json.mismatches.map((m: { run_key: string; field: string }) => [m.run_key, m.field]).sort()).toEqual([
      ['b', 'job_id'],
      ['b', 'reservation_status'],
    ]);

    const rebuilt = await runCli(['replay', '--rebuild']);
    expect(rebuilt.code, rebuilt.stderr).toBe(0);
    expect(rebuilt.json).toEqual({ rebuilt: true, events: 2, reservations: 2 });
    expect((await runCli(['replay', '--verify'])).json.verified).toBe(true);
    expect((await runCli(['status', '--run-key', 'b'])).json.reservation.reservation_status).toBe('RESERVED');
  });

  it('--rebuild is refused while a live dispatcher holds a claim', async () => {
    const home = sandbox();
    await reserveMany(['a']);
    // A claim owned by this (live) test process, through the real write path.
    await withLedger(home.db, async (ledger) => {
      const { execute } = await import('../../src/ledger.js');
      await execute(
        ledger.db,
        { runKey: 'a' },
        { type: 'Claim', owner: { dispatcher_id: 'live', host: hostname(), pid: process.pid }, argv: ['orchesjob'] },
        { actor: 'test', now: () => Date.now() + 1000 },
      );
    });
    const refused = await runCli(['replay', '--rebuild']);
    expect(refused.code).toBe(1);
    expect(refused.stdout).toBe('');
    expect(refused.lastStderrJson.error).toMatch(/refusing to rebuild: 1 reservation\(s\) are claimed by a dispatcher that is still running/);
  });

  it('rejects a missing or double mode and a bad position (exit 2)', async () => {
    sandbox();
    for (const args of [['replay'], ['replay', '--verify', '--rebuild'], ['replay', '--position', '-1'], ['replay', '--as-of', 'soon']]) {
      const r = await runCli(args);
      expect(r.code, args.join(' ')).toBe(2);
      expect(r.stdout).toBe('');
      expect(r.lastStderrJson).toHaveProperty('error');
    }
  });
});
