/**
 * The dispatcher on a database adopted from the Python tool: the imported DISPATCHING claim (whose
 * owner, the Python dispatcher, is gone) is settled through orchesjob, never left stuck, and the
 * reservations that were waiting are dispatched once.
 */
import { spawnSync } from 'node:child_process';
import { describe, expect, it } from 'vitest';
import { executions, expectWellFormed, ledgerEvents, sandbox, startDispatcher, status } from '../support/harness.js';

const MAKE_DB = new URL('../support/make-python-db.py', import.meta.url).pathname;

describe('dispatcher on an adopted Python-tool database', () => {
  it('re-queues the imported claim orchesjob knows nothing of, then dispatches every waiting reservation once', async () => {
    const sb = sandbox();
    const made = spawnSync('python3', [MAKE_DB, sb.db], { encoding: 'utf8' });
    expect(made.status, made.stderr).toBe(0);
    const d = await startDispatcher(sb);
    const waiting = ['py-dispatching', 'py-reserved', 'py-recovered'];
    for (const key of waiting) {
      await d.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === key, 10_000);
    }
    await d.stop();
    expectWellFormed(d);
    const released = d.events('recovered_dispatching');
    expect(released.map((l) => l.run_key)).toEqual(['py-dispatching']);
    for (const key of waiting) {
      expect((await status(sb, key)).reservation_status).toBe('DISPATCHED');
      expect(executions(sb).filter((e) => e.run_key === key)).toHaveLength(1);
    }
    // Terminal rows were left alone; the ledger explains everything (no other transitions on them).
    expect((await status(sb, 'py-dispatched')).job_id).toBe('job-1');
    const types = ledgerEvents(sb.db)
      .filter((e) => e.run_key === 'py-dispatching')
      .map((e) => `${e.type}:${e.actor === 'import' ? 'import' : 'dispatcher'}`);
    expect(types).toEqual([
      'Reserved:import',
      'DispatchClaimed:import',
      'ClaimReleased:dispatcher',
      'DispatchClaimed:dispatcher',
      'Dispatched:dispatcher',
    ]);
  });
});
