/**
 * The pieces of the durability work that a process can test alone: the pragma every connection gets,
 * queries compiled once (`src/db/prepared.ts`), and the waker that sleeps until another connection's
 * commit shows (`src/db/waker.ts`).
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sql } from 'kysely';
import { afterEach, describe, expect, it } from 'vitest';
import type { Ledger } from '../../src/db/open.js';
import { openLedger } from '../../src/db/open.js';
import { prepared } from '../../src/db/prepared.js';
import { committedElsewhere, LedgerWaker } from '../../src/db/waker.js';
import { execute } from '../../src/ledger.js';

const folders: string[] = [];
const ledgers: Ledger[] = [];
afterEach(async () => {
  for (const l of ledgers.splice(0)) await l.close();
  for (const f of folders.splice(0)) rmSync(f, { recursive: true, force: true });
});
async function open(path?: string): Promise<Ledger> {
  let file = path;
  if (file === undefined) {
    const folder = mkdtempSync(join(tmpdir(), 'ojr-durability-'));
    folders.push(folder);
    file = join(folder, 'reserver.sqlite3');
  }
  const ledger = await openLedger(file);
  ledgers.push(ledger);
  return ledger;
}

const reserveKey = (ledger: Ledger, runKey: string) =>
  execute(
    ledger.db,
    null,
    { type: 'Reserve', runKey, command: ['/bin/true'], orchesjobStartOptions: [], metadata: null, notBefore: null, expiresAt: null },
    { actor: 'test' },
  );

describe('every connection', () => {
  it('syncs each commit: synchronous = EXTRA (3), in WAL mode', async () => {
    const ledger = await open();
    expect(ledger.raw.pragma('synchronous', { simple: true })).toBe(3);
    expect(ledger.raw.pragma('journal_mode', { simple: true })).toBe('wal');
  });
});

describe('prepared(): a query Kysely compiles once', () => {
  it('binds each call’s values in the compiled order, repeated arguments and the builder’s constants included', async () => {
    const ledger = await open();
    await reserveKey(ledger, 'p-1');
    await reserveKey(ledger, 'p-2');
    const query = prepared((db, runKey: string, status: string) =>
      db
        .selectFrom('reservations')
        .select(['run_key', 'reservation_status'])
        .where((eb) => eb.or([eb('run_key', '=', runKey), eb('reservation_status', '=', status)]))
        .where('run_key', '!=', 'never')
        .where(sql<boolean>`${runKey} = ${runKey}`, '=', sql<boolean>`1`),
    );
    expect(await query(ledger.db, 'p-1', 'NOPE')).toEqual([{ run_key: 'p-1', reservation_status: 'RESERVED' }]);
    expect(await query(ledger.db, 'p-2', 'NOPE')).toEqual([{ run_key: 'p-2', reservation_status: 'RESERVED' }]);
    expect((await query(ledger.db, 'none', 'RESERVED')).map((r) => r.run_key).sort()).toEqual(['p-1', 'p-2']);
  });

  it('refuses, at its first use, a builder that drops an argument', async () => {
    const ledger = await open();
    const dropping = prepared((db, _unused: string) => db.selectFrom('reservations').selectAll());
    await expect(dropping(ledger.db, 'x')).rejects.toThrow(/does not use its argument 0/);
  });
});

describe('LedgerWaker: a sleep that another connection’s commit ends', () => {
  it('ends when another process commits, not on its own commits', async () => {
    const mine = await open();
    const other = await open(mine.path);
    const waker = new LedgerWaker(mine.path, committedElsewhere(mine.raw));
    waker.watch();
    try {
      // Its own commit: the sleep runs to its timeout.
      let t0 = Date.now();
      const own = waker.sleep(400);
      await reserveKey(mine, 'own');
      await own;
      expect(Date.now() - t0).toBeGreaterThanOrEqual(350);

      // Another connection's commit ends it (the file event, or a follow-up after the commit shows).
      t0 = Date.now();
      const woken = waker.sleep(5000);
      await reserveKey(other, 'other');
      await woken;
      const ms = Date.now() - t0;
      console.log(`[waker] another connection's commit ended a 5 s sleep after ${ms} ms`);
      expect(ms).toBeLessThan(2500);
    } finally {
      waker.close();
    }
  });

  it('keeps a wake that came while nobody slept, until clear() forgets it', async () => {
    const mine = await open();
    const waker = new LedgerWaker(mine.path, () => false);
    try {
      waker.wake();
      let t0 = Date.now();
      await waker.sleep(5000); // kept: returns at once
      expect(Date.now() - t0).toBeLessThan(1000);
      waker.wake();
      waker.clear();
      t0 = Date.now();
      await waker.sleep(200); // forgotten: runs to its timeout
      expect(Date.now() - t0).toBeGreaterThanOrEqual(190);
    } finally {
      waker.close();
    }
  });

  it('a commit that becomes visible after the last file event still wakes it (the follow-up checks)', async () => {
    const mine = await open();
    let visible = false;
    const waker = new LedgerWaker(mine.path, () => visible);
    waker.watch();
    try {
      const t0 = Date.now();
      const woken = waker.sleep(5000);
      await reserveKey(mine, 'frames-written'); // a file event, while `committed` still says no
      await new Promise((resolve) => setTimeout(resolve, 100));
      visible = true; // the commit shows now, with no file event of its own
      await woken;
      expect(Date.now() - t0).toBeLessThan(1500);
    } finally {
      waker.close();
    }
  });
});
