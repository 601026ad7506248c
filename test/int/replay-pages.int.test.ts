import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Ledger } from '../../src/db/open.js';
import { openLedger } from '../../src/db/open.js';
import { immediate } from '../../src/db/transaction.js';
import { execute } from '../../src/ledger.js';
import { rebuildProjection, verifyProjection } from '../../src/projections/replay.js';

/**
 * `replay --verify` and `--rebuild` read the ledger a page of events at a time, in reservation-id
 * order, and the projection rows of each page's id range beside it. With pages of 1 to 7 events, every
 * way a stream can fall across page ends is crossed: a stream split over pages, a page ending where a
 * stream ends, projection rows with no events between two pages' ranges, and after the last one.
 */

const folders: string[] = [];
const ledgers: Ledger[] = [];
afterEach(async () => {
  for (const l of ledgers.splice(0)) await l.close();
  for (const f of folders.splice(0)) rmSync(f, { recursive: true, force: true });
});

async function ledgerOf(reservations: number): Promise<Ledger> {
  const folder = mkdtempSync(join(tmpdir(), 'ojr-pages-'));
  folders.push(folder);
  const ledger = await openLedger(join(folder, 'reserver.sqlite3'));
  ledgers.push(ledger);
  for (let i = 0; i < reservations; i++) {
    const key = `key-${i}`;
    await execute(
      ledger.db,
      null,
      { type: 'Reserve', runKey: key, command: ['echo', key], orchesjobStartOptions: [], metadata: null, notBefore: null, expiresAt: null },
      { actor: 'test' },
    );
    // 1, 2 or 3 events: reserved; cancelled; cancelled and cleaned (no projection row).
    if (i % 3 >= 1) await execute(ledger.db, { runKey: key }, { type: 'Cancel' }, { actor: 'test' });
    if (i % 3 === 2) await execute(ledger.db, { runKey: key }, { type: 'Clean' }, { actor: 'test' });
  }
  return ledger;
}

const PAGES = [1, 2, 3, 4, 7, 5000];

describe('replay --verify and --rebuild, page by page', () => {
  it('agree with a healthy projection whatever the page size', async () => {
    const ledger = await ledgerOf(20);
    for (const page of PAGES) {
      expect(await verifyProjection(ledger, page), `page ${page}`).toEqual({ verified: true, events: 39, reservations: 14, mismatches: [] });
    }
  });

  it('find every tampered row, once, whatever the page size', async () => {
    const ledger = await ledgerOf(20);
    const ids = ledger.raw.prepare('SELECT reservation_id AS id, run_key AS key FROM reservations ORDER BY reservation_id').all() as {
      id: string;
      key: string;
    }[];
    const [first, second, , fourth] = ids as [(typeof ids)[0], (typeof ids)[0], unknown, (typeof ids)[0]];
    ledger.raw.prepare(`UPDATE reservations SET job_id = 'forged' WHERE reservation_id = ?`).run(fourth.id);
    ledger.raw.prepare('DELETE FROM reservations WHERE reservation_id = ?').run(second.id);
    // Rows no event explains: one sorting before every stream, one between two, one after all.
    const forge = ledger.raw.prepare(`INSERT INTO reservations (reservation_id, run_key, command_json, reservation_status, created_at, updated_at)
      VALUES (?, ?, '["x"]', 'RESERVED', 0, 0)`);
    forge.run('0', 'forged-first');
    forge.run(`${first.id}~`, 'forged-between');
    forge.run('~', 'forged-last');
    const expected = [
      ['forged-first', 'row', 'present', 'no events'],
      ['forged-between', 'row', 'present', 'no events'],
      [second.key, 'row', 'missing', 'CANCELLED'],
      [fourth.key, 'job_id', 'forged', null],
      ['forged-last', 'row', 'present', 'no events'],
    ].sort();
    for (const page of PAGES) {
      const result = await verifyProjection(ledger, page);
      expect(result.verified).toBe(false);
      expect(result.reservations, `page ${page}`).toBe(14 - 1 + 3);
      expect(result.mismatches.map((m) => [m.run_key, m.field, m.projection, m.ledger]).sort(), `page ${page}`).toEqual(expected);
    }
  });

  it('--rebuild writes the fold back, whatever the page size', async () => {
    const ledger = await ledgerOf(20);
    const before = ledger.raw.prepare('SELECT * FROM reservations ORDER BY reservation_id').all();
    for (const page of [1, 3, 7]) {
      ledger.raw.prepare(`UPDATE reservations SET reservation_status = 'DISPATCHED', job_id = 'forged'`).run();
      ledger.raw.prepare(`INSERT INTO reservations (reservation_id, run_key, command_json, reservation_status, created_at, updated_at)
        VALUES ('~', 'forged', '["x"]', 'RESERVED', 0, 0)`).run();
      const rebuilt = await immediate(ledger.db, (tx) => rebuildProjection(tx, ledger.raw, page));
      expect(rebuilt).toEqual({ events: 39, reservations: 14 });
      expect(ledger.raw.prepare('SELECT * FROM reservations ORDER BY reservation_id').all(), `page ${page}`).toEqual(before);
    }
  });
});
