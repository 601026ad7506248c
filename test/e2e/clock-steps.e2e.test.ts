/**
 * Wall-clock steps (an NTP step, a VM resumed, an operator's `date -s`), made with libfaketime (Debian's
 * `libfaketime`, which .ci/run installs): the dispatcher and the stand-in orchesjob it starts read one
 * stepped wall clock from an offset file, as processes on one host do; the monotonic clock, which timers
 * use, is left alone, as a real step leaves it. The test's own `reserve` calls run before a step (offset
 * 0, the real clock), and its `status` calls only read.
 * - Forward an hour: a reservation due in that hour fires, and one whose expiry it passed expires.
 * - Back an hour: nothing fires early (by the clock it now reads) and nothing fires twice.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { describe, expect, it } from 'vitest';
import type { Sandbox } from '../support/harness.js';
import { cliOk, sandbox, sleep, startDispatcher, startInvocations, status } from '../support/harness.js';

const LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1';
const present = fs.existsSync(LIBFAKETIME);
if (!present && process.env['CI'] === 'true') throw new Error(`${LIBFAKETIME} is missing: .ci/run installs Debian's libfaketime`);

/** A wall clock the test steps: every process started with `env` reads `offset` seconds from now. */
class SteppedClock {
  readonly file: string;
  readonly env: Record<string, string>;
  constructor(sb: Sandbox) {
    this.file = path.join(sb.dir, 'faketime');
    this.set(0);
    this.env = { LD_PRELOAD: LIBFAKETIME, FAKETIME_TIMESTAMP_FILE: this.file, FAKETIME_NO_CACHE: '1', DONT_FAKE_MONOTONIC: '1' };
  }
  /** Step the clock to `offset` seconds from the real time. */
  set(offset: number): void {
    fs.writeFileSync(`${this.file}.tmp`, `${offset >= 0 ? '+' : ''}${offset}\n`);
    fs.renameSync(`${this.file}.tmp`, this.file);
  }
}

const nowSec = () => Math.floor(Date.now() / 1000);

describe.skipIf(!present)('the wall clock stepped under a running dispatcher (libfaketime)', () => {
  it('stepped forward an hour: what fell due in that hour fires, what expired in it expires', async () => {
    const sb = sandbox();
    const clock = new SteppedClock(sb);
    const d = await startDispatcher(sb, ['--poll-interval', '0.5'], { env: clock.env });
    const t = nowSec();
    const reserve = (key: string, extra: string[]) =>
      cliOk(sb, ['reserve', '--db', sb.db, '--run-key', key, ...extra, '--', 'echo', key]);
    await reserve('step-due', ['--not-before', String(t + 1800)]);
    await reserve('step-expiring', ['--not-before', String(t + 7200), '--expires-at', String(t + 1800)]);
    await sleep(1500);
    expect(startInvocations(sb)).toEqual([]);

    clock.set(3600);
    const steppedAt = Date.now();
    const fired = await d.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === 'step-due', 10_000);
    const expired = await d.waitForLine((l) => l.event === 'reservation_expired' && l.run_key === 'step-expiring', 10_000);
    const at = (line: object) => d.arrivedAtMs[d.lines.indexOf(line as never)] as number;
    console.log(`[clock] stepped +1 h: due one fired ${at(fired) - steppedAt} ms after the step, expiry ${at(expired) - steppedAt} ms after (poll interval 500 ms)`);
    expect(startInvocations(sb, 'step-due')).toHaveLength(1);
    expect(startInvocations(sb, 'step-expiring')).toEqual([]);
    expect((await status(sb, 'step-expiring')).reservation_status).toBe('EXPIRED');
    expect(await d.stop()).toEqual({ code: 0, signal: null });
  }, 30_000);

  it('stepped back an hour: a reservation due in seconds waits for the clock it now reads, and nothing runs twice', async () => {
    const sb = sandbox();
    const clock = new SteppedClock(sb);
    const d = await startDispatcher(sb, ['--poll-interval', '0.5'], { env: clock.env });
    await cliOk(sb, ['reserve', '--db', sb.db, '--run-key', 'back-now', '--', 'echo', 'now']);
    await d.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === 'back-now', 10_000);
    await cliOk(sb, ['reserve', '--db', sb.db, '--run-key', 'back-soon', '--not-before', String(nowSec() + 2), '--', 'echo', 'soon']);

    clock.set(-3600); // its not_before is now an hour away
    await sleep(5000);
    expect(startInvocations(sb, 'back-soon')).toEqual([]);
    expect((await status(sb, 'back-soon')).reservation_status).toBe('RESERVED');

    clock.set(0); // the clock comes back: it fires once, and the first one is not run again
    await d.waitForLine((l) => l.event === 'dispatch_succeeded' && l.run_key === 'back-soon', 10_000);
    expect(startInvocations(sb, 'back-now')).toHaveLength(1);
    expect(startInvocations(sb, 'back-soon')).toHaveLength(1);
    expect(await d.stop()).toEqual({ code: 0, signal: null });
  }, 40_000);
});
