/**
 * Dispatcher end to end: timing. A timed reservation starts at its `not_before` and not before; an
 * immediate one starts at once, whatever `--poll-interval` is; `--max-concurrent-starts` bounds the
 * starts in flight. Times come from the stand-in's `invocations.jsonl` (`ts_ms` when orchesjob ran) and
 * the ledger's `recorded_at_ms`.
 */
import { describe, expect, it } from 'vitest';
import {
  expectWellFormed,
  ledgerEvents,
  ROOT,
  reserve,
  sandbox,
  startDispatcher,
  startInvocations,
  status,
  writeFaults,
} from '../support/harness.js';

describe('dispatcher timing', () => {
  it('starts a reservation at not_before, not before it', async () => {
    const sb = sandbox();
    const d = await startDispatcher(sb);
    // A whole second 2-3 s ahead.
    const notBefore = Math.floor(Date.now() / 1000) + 3;
    await reserve(sb, 'timed', ['echo', 'timed'], ['--not-before', String(notBefore)]);
    await d.waitForLine((l) => l.event === 'reservation_accepted');
    // Nothing starts early.
    expect(d.events('orchesjob_start_call')).toEqual([]);
    await d.waitForLine((l) => l.event === 'dispatch_succeeded', 6000);
    expect(await d.stop()).toEqual({ code: 0, signal: null });
    expectWellFormed(d);

    const [start] = startInvocations(sb, 'timed');
    expect(start).toBeDefined();
    const lagMs = (start?.ts_ms ?? 0) - notBefore * 1000;
    const claim = ledgerEvents(sb.db).find((e) => e.type === 'DispatchClaimed');
    const claimLagMs = (claim?.recorded_at_ms ?? 0) - notBefore * 1000;
    console.log(`[timing] not_before start lag: claim recorded +${claimLagMs} ms, orchesjob start ran +${lagMs} ms`);
    expect(start?.ts_ms).toBeGreaterThanOrEqual(notBefore * 1000);
    expect(start?.ts_ms).toBeLessThan(notBefore * 1000 + 300);
    expect(claim?.recorded_at_ms).toBeGreaterThanOrEqual(notBefore * 1000);
    expect(startInvocations(sb)).toHaveLength(1);
    expect((await status(sb, 'timed')).reservation_status).toBe('DISPATCHED');
  });

  it('picks up an immediate reservation at once with the default 2 s poll interval', async () => {
    const sb = sandbox();
    const d = await startDispatcher(sb);
    expect(d.lines[0]?.poll_interval).toBe(2);
    // Let it fall asleep on its poll interval with nothing to do.
    await new Promise((resolve) => setTimeout(resolve, 700));
    const r = await reserve(sb, 'now');
    await d.waitForLine((l) => l.event === 'dispatch_succeeded', 5000);
    expect(await d.stop()).toEqual({ code: 0, signal: null });
    expectWellFormed(d);

    const [start] = startInvocations(sb, 'now');
    const lagMs = (start?.ts_ms ?? Infinity) - r.endedAtMs;
    const claim = ledgerEvents(sb.db).find((e) => e.type === 'DispatchClaimed');
    const reserved = ledgerEvents(sb.db).find((e) => e.type === 'Reserved');
    console.log(
      `[timing] immediate pickup: orchesjob start ran ${lagMs} ms after reserve exited; ` +
        `claim recorded ${(claim?.recorded_at_ms ?? 0) - (reserved?.recorded_at_ms ?? 0)} ms after Reserved`,
    );
    expect(lagMs).toBeLessThan(1000);
  });

  it('overlaps starts up to --max-concurrent-starts (default 4) and serialises them with 1', async () => {
    const keys = ['c-1', 'c-2', 'c-3', 'c-4'];
    const measure = async (args: string[]) => {
      const sb = sandbox();
      writeFaults(sb, { '*': { mode: 'slow', ms: 500 } });
      // Reserved before `run` starts, so that all four are ready on its first pass.
      await Promise.all(keys.map((key) => reserve(sb, key)));
      const d = await startDispatcher(sb, args);
      await d.waitForCount((l) => l.event === 'dispatch_succeeded', 4, 10_000);
      expect(await d.stop()).toEqual({ code: 0, signal: null });
      expectWellFormed(d); // positions strictly increasing in print order
      expect(d.events('orchesjob_start_call').map((l) => l.run_key).sort()).toEqual(keys);
      const starts = startInvocations(sb).map((i) => i.ts_ms);
      expect(starts).toHaveLength(4);
      if (args.length > 0) {
        // One slot: a finished start's slot is filled before that start is recorded, so each next
        // claim is in the ledger before the previous start's Dispatched.
        const claims = d.events('orchesjob_start_call').sort((a, b) => Number(a.position) - Number(b.position));
        const succeeded = new Map(d.events('dispatch_succeeded').map((l) => [l.run_key, Number(l.position)]));
        for (let i = 1; i < claims.length; i++) {
          expect(Number(claims[i]?.position)).toBeLessThan(succeeded.get(claims[i - 1]?.run_key) as number);
        }
      }
      return starts;
    };

    const parallel = await measure([]);
    const spread = Math.max(...parallel) - Math.min(...parallel);
    const serial = await measure(['--max-concurrent-starts', '1']);
    const gaps = serial.slice(1).map((t, i) => t - (serial[i] as number));
    console.log(`[timing] default concurrency: 4 starts within ${spread} ms; --max-concurrent-starts 1: gaps ${gaps.join(', ')} ms`);
    expect(spread).toBeLessThan(300);
    for (const gap of gaps) expect(gap).toBeGreaterThanOrEqual(500);
  }, 45_000);
});

describe('dispatcher and a busy database', () => {
  it('another process holding the write lock for seconds delays a dispatch, without a dispatcher_error', async () => {
    const { spawn } = await import('node:child_process');
    const sb = sandbox();
    const d = await startDispatcher(sb);
    const due = Math.floor(Date.now() / 1000) + 2;
    await reserve(sb, 'busy-1', ['echo', 'busy'], ['--not-before', String(due)]);
    const holdMs = 3000;
    const holder = spawn(
      process.execPath,
      [
        '-e',
        `const D = require('better-sqlite3'); const db = new D(process.argv[1]);
         db.exec('BEGIN IMMEDIATE'); process.stdout.write('locked\\n');
         setTimeout(() => { db.exec('COMMIT'); db.close(); }, ${holdMs});`,
        sb.db,
      ],
      { cwd: ROOT, stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const holderExited = new Promise((resolve) => holder.once('exit', resolve));
    await new Promise<void>((resolve) => holder.stdout!.once('data', () => resolve()));
    const lockedAt = Date.now();
    const started = await d.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === 'busy-1', 15_000);
    await holderExited;
    await d.stop();
    expect(started).toBeDefined();
    expect(Date.now() - lockedAt).toBeGreaterThanOrEqual(holdMs - 500);
    expect(d.stderr).toBe('');
    expect(await status(sb, 'busy-1')).toMatchObject({ reservation_status: 'DISPATCHED' });
  });
});

describe('dispatcher and a database that goes away', () => {
  it('pauses with dispatcher_error while the file is moved away, resumes when it is back', async () => {
    const { renameSync } = await import('node:fs');
    const sb = sandbox();
    const d = await startDispatcher(sb, ['--poll-interval', '0.2', '--error-sleep', '0.2']);
    await reserve(sb, 'before', ['echo', 'before']);
    await d.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === 'before');
    const aside = `${sb.db}.aside`;
    renameSync(sb.db, aside);
    const deadline = Date.now() + 5000;
    while (!d.stderr.includes('is missing') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 50));
    const errorLine = JSON.parse(d.stderr.trim().split('\n')[0] ?? '{}');
    expect(errorLine).toMatchObject({ event: 'dispatcher_error' });
    expect(errorLine.error).toContain('is missing (moved or deleted)');
    renameSync(aside, sb.db);
    await reserve(sb, 'after', ['echo', 'after']);
    await d.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === 'after', 5000);
    expect(await d.stop()).toEqual({ code: 0, signal: null });
  });

  it('stops (exit 1) when the file is replaced by another, for its process manager to restart it', async () => {
    const { copyFileSync, renameSync } = await import('node:fs');
    const sb = sandbox();
    const d = await startDispatcher(sb, ['--poll-interval', '0.2']);
    await reserve(sb, 'one', ['echo', 'one']);
    await d.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === 'one');
    copyFileSync(sb.db, `${sb.db}.copy`);
    renameSync(`${sb.db}.copy`, sb.db);
    const exit = await d.exited;
    expect(exit.code).toBe(1);
    expect(d.stderr).toContain('was replaced by another file');
    expect(d.lines.at(-1)?.event).toBe('reserver_stopped');
  });

  it('replaced while a start runs: that start is recorded (in the file it opened), then it exits 1', async () => {
    const { copyFileSync, renameSync } = await import('node:fs');
    const sb = sandbox();
    writeFaults(sb, { slow: { mode: 'slow', ms: 1500 } });
    const d = await startDispatcher(sb, ['--poll-interval', '0.2']);
    await reserve(sb, 'slow', ['echo', 'slow']);
    await d.waitForLine((l) => l.event === 'orchesjob_start_call' && l.run_key === 'slow');
    copyFileSync(sb.db, `${sb.db}.copy`);
    renameSync(`${sb.db}.copy`, sb.db); // the old file lives on, unlinked, under the dispatcher's connection
    const exit = await d.exited;
    expect(exit.code).toBe(1);
    expect(d.stderr).toContain('was replaced by another file');
    expect(d.events('dispatch_succeeded').map((l) => l.run_key)).toEqual(['slow']);
    expect(d.lines.at(-1)?.event).toBe('reserver_stopped');
  }, 20_000);
});

describe('missed time', () => {
  it('a reservation whose not_before passed while no dispatcher ran is started late, and says how late', async () => {
    const sb = sandbox();
    const notBefore = Math.floor(Date.now() / 1000) - 120;
    await reserve(sb, 'missed', ['echo', 'missed'], ['--not-before', String(notBefore)]);
    await reserve(sb, 'missed-expired', ['echo', 'gone'], ['--not-before', String(notBefore), '--expires-at', String(notBefore + 60)]);
    const d = await startDispatcher(sb);
    const call = await d.waitForLine((l) => l.event === 'orchesjob_start_call' && l.run_key === 'missed');
    await d.waitForLine((l) => l.event === 'reservation_expired' && l.run_key === 'missed-expired');
    await d.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === 'missed');
    await d.stop();
    expect(call.late_by_ms).toBeGreaterThanOrEqual(120_000);
    expect(call.late_by_ms).toBeLessThan(150_000);
    const claim = ledgerEvents(sb.db).find((e) => e.type === 'DispatchClaimed');
    expect(JSON.parse(claim!.data).late_by_ms).toBe(call.late_by_ms);
    expect(d.events('orchesjob_start_call').map((l) => l.run_key)).toEqual(['missed']);
  });
});
