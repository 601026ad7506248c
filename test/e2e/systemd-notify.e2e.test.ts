/**
 * End to end: `run` under systemd's notification protocol (sd_notify(3)), with the test in systemd's
 * place: a unix datagram socket it listens on, named by `NOTIFY_SOCKET` (and `WATCHDOG_USEC`, as
 * systemd sets them for `Type=notify` and `WatchdogSec=`). `run` says READY=1 after recovery, feeds
 * the watchdog from its loop (more often than its poll interval when the watchdog needs it), keeps a
 * STATUS= line, and says STOPPING=1 on SIGTERM. Without `NOTIFY_SOCKET`, or when it cannot notify,
 * it dispatches as before.
 */
import { createRequire } from 'node:module';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { DispatcherProcess } from '../support/harness.js';
import { reserve, sandbox, sleep, startDispatcher } from '../support/harness.js';
import { waitUntil } from '../support/rsyslog.js';

interface Listener {
  readonly messages: { readonly at: number; readonly text: string }[];
  close(): void;
}

/** A unix datagram socket at `path` that keeps every message (unix-dgram: Node has none of its own). */
function listen(path: string): Listener {
  const { createSocket } = createRequire(import.meta.url)('unix-dgram') as {
    createSocket(type: 'unix_dgram', listener: (message: Buffer) => void): { bind(path: string): void; close(): void; on(e: 'error', l: (e: Error) => void): void };
  };
  const messages: { at: number; text: string }[] = [];
  const socket = createSocket('unix_dgram', (message) => messages.push({ at: Date.now(), text: message.toString('utf8') }));
  socket.on('error', (error) => {
    throw error;
  });
  socket.bind(path);
  return { messages, close: () => socket.close() };
}

const texts = (l: Listener) => l.messages.map((m) => m.text);

async function stopped(d: DispatcherProcess): Promise<void> {
  expect(await d.stop()).toEqual({ code: 0, signal: null });
}

describe('run under systemd (Type=notify, WatchdogSec=)', () => {
  it('says READY=1 once started, WATCHDOG=1 from its loop within the watchdog interval, STATUS=, and STOPPING=1 on SIGTERM', async () => {
    const sb = sandbox();
    const socket = join(sb.dir, 'notify.sock');
    const systemd = listen(socket);
    try {
      // A 30 s poll interval and a 3 s watchdog: the loop must turn more often than it would polling.
      const env = { NOTIFY_SOCKET: socket, WATCHDOG_USEC: '3000000' };
      const d = await startDispatcher(sb, ['--poll-interval', '30'], { env });
      await waitUntil(() => texts(systemd).filter((t) => t === 'WATCHDOG=1').length >= 3, 10_000, () => JSON.stringify(texts(systemd)));
      expect(texts(systemd)[0]).toBe('READY=1\nSTATUS=dispatching (recovery done)');
      const pings = systemd.messages.filter((m) => m.text === 'WATCHDOG=1').map((m) => m.at);
      for (let i = 1; i < pings.length; i++) expect(pings[i]! - pings[i - 1]!).toBeLessThan(3_000);
      expect(texts(systemd)).toContain('STATUS=nothing due, 0 reserved, 0 dispatching, ledger position 0');

      await reserve(sb, 'job', ['true']);
      await d.waitForLine((l) => l.event === 'dispatch_succeeded', 10_000);
      await waitUntil(() => texts(systemd).some((t) => t.endsWith('ledger position 3')), 10_000, () => JSON.stringify(texts(systemd)));
      const before = systemd.messages.length;
      await stopped(d);
      expect(texts(systemd).slice(before)).toContain('STOPPING=1\nSTATUS=stopping: recording the starts in flight');
      expect(d.stderr).toBe('');
    } finally {
      systemd.close();
    }
  });

  it('leaves the watchdog alone when WATCHDOG_PID names another process, and still says READY=1', async () => {
    const sb = sandbox();
    const socket = join(sb.dir, 'notify.sock');
    const systemd = listen(socket);
    try {
      const d = await startDispatcher(sb, ['--poll-interval', '0.2'], { env: { NOTIFY_SOCKET: socket, WATCHDOG_USEC: '1000000', WATCHDOG_PID: '1' } });
      await waitUntil(() => systemd.messages.length >= 2, 10_000, () => JSON.stringify(texts(systemd)));
      await sleep(1_500);
      await stopped(d);
      expect(texts(systemd)[0]).toMatch(/^READY=1\n/);
      expect(texts(systemd)).not.toContain('WATCHDOG=1');
    } finally {
      systemd.close();
    }
  });

  it('dispatches as before when it cannot notify: nobody listens, an abstract socket, or no unix-dgram; each said once', async () => {
    const sb = sandbox();
    const blocker = join(sb.dir, 'no-unix-dgram.cjs');
    writeFileSync(blocker, "const M = require('module'); const r = M._resolveFilename; M._resolveFilename = function (request, ...rest) { if (request === 'unix-dgram') throw Object.assign(new Error(\"Cannot find module 'unix-dgram'\"), { code: 'MODULE_NOT_FOUND' }); return r.call(this, request, ...rest); };\n");
    const cases = [
      { env: { NOTIFY_SOCKET: join(sb.dir, 'nobody.sock'), WATCHDOG_USEC: '600000' }, says: /^systemd notification "READY=1" to .*nobody\.sock failed: .*(ENOENT|ECONNREFUSED)/ },
      { env: { NOTIFY_SOCKET: '@/org/example/notify' }, says: /^NOTIFY_SOCKET @\/org\/example\/notify is an abstract socket/ },
      { env: { NOTIFY_SOCKET: join(sb.dir, 'any.sock'), NODE_OPTIONS: `--require ${blocker}` }, says: /^systemd is not notified: cannot load unix-dgram .*Cannot find module 'unix-dgram'/ },
    ];
    for (const [i, { env, says }] of cases.entries()) {
      const d = await startDispatcher(sb, ['--poll-interval', '0.2'], { env });
      await reserve(sb, `job-${i}`, ['true']);
      await d.waitForLine((l) => l.event === 'dispatch_succeeded' && l['run_key'] === `job-${i}`, 10_000);
      await sleep(1_500); // watchdog pings that fail too
      await stopped(d);
      const errors = d.stderr.split('\n').filter((l) => l !== '').map((l) => JSON.parse(l) as { event: string; error: string });
      expect(errors.map((e) => e.event), d.stderr).toEqual(['dispatcher_error']);
      expect(errors[0]?.error).toMatch(says);
    }
  }, 60_000);
});
