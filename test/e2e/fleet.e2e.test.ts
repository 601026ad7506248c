/**
 * End to end: the fleet in one PostgreSQL (docs/fleet.md). Two simulated edge hosts, each a ledger of
 * its own written by the built CLI (`reserve`, `run` against the orchesjob stand-in, `cancel`,
 * `clean`), each with the shipped events writer (deploy/orchesjob-reserver-events.sh) and an edge
 * rsyslogd running deploy/rsyslog/edge.conf under its own host name; one central rsyslogd running
 * deploy/central/rsyslog.conf (imtcp -> ompgsql) into a real PostgreSQL made with
 * deploy/central/schema.sql (test/support/postgres.ts). The shipped files are the ones run, only
 * paths, ports and host names replaced.
 *
 * Checked, after `kill -9` of an edge rsyslogd while it ships and its restart, and again after
 * PostgreSQL is stopped for ten seconds while both hosts go on working: the central table holds the
 * union of both ledgers event for event (nothing lost, nothing twice); fleet_reservations is what each
 * host's `list` prints (and its projection's further columns); the fleet versions of the questions of
 * docs/auditing.md (docs/fleet.md) give, host by host, what each host's own answer is.
 *
 * Skipped without PostgreSQL, rsyslogd or ompgsql, except under CI=true, where it fails (.ci/run
 * installs postgresql, rsyslog and rsyslog-pgsql).
 */
import { mkdirSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import type { ReservationCommand } from '../../src/events/index.js';
import { write } from '../../src/ledger.js';
import {
  centralEventsOf,
  CENTRAL_CONF,
  expectedCentralEvents,
  expectFleetAnswer,
  FLEET_VERSIONS,
  fleetQuery,
  fleetReservationsOf,
  hostAnswer,
  projectionExtrasOf,
  SCHEMA_SQL,
  splitFleetReservation,
} from '../support/fleet.js';
import type { DispatcherProcess, Sandbox } from '../support/harness.js';
import { CLI, ledgerEvents, runCli, sandbox, startDispatcher, withDb, withLedger, writeFaults } from '../support/harness.js';
import type { Postgres } from '../support/postgres.js';
import { createLogin, ompgsqlInstalled, PG_BIN, startPostgres, writePassfile } from '../support/postgres.js';
import type { Rsyslogd, Tracked } from '../support/rsyslog.js';
import { DEPLOY, freePort, renderShipped, RSYSLOGD, sleep, spawnTracked, startRsyslogd, waitForListener, waitUntil } from '../support/rsyslog.js';

const WRITER = join(DEPLOY, 'orchesjob-reserver-events.sh');

const missing = [
  PG_BIN === null ? 'PostgreSQL (Debian: postgresql)' : null,
  RSYSLOGD === null ? 'rsyslogd (Debian: rsyslog)' : null,
  ompgsqlInstalled() ? null : 'ompgsql (Debian: rsyslog-pgsql)',
].filter((m): m is string => m !== null);
const title = missing.length > 0 ? `fleet shipping: SKIPPED, missing ${missing.join(', ')}` : 'fleet: two edge hosts through rsyslog into one PostgreSQL';
if (missing.length > 0 && process.env['CI'] === 'true') throw new Error(`missing ${missing.join(', ')}: .ci/run installs them`);
if (missing.length > 0) console.warn(`test/e2e/fleet.e2e.test.ts: ${title}`);

/** What the shipped files say, and the test replaces. */
const SHIPPED = {
  eventsFile: '/var/log/orchesjob-reserver/events.jsonl',
  centralHost: 'central.example.internal',
  port: 'Port="10514"',
  database: 'db.example.internal:5432',
  passfile: '/etc/rsyslog.d/orchesjob-reserver.pgpass',
} as const;

/** Metadata that SQL, JSON and rsyslog each treat specially, and a line far above 8 KiB. */
const AWKWARD = { quote: "it's '' \"x\" \\ back\\slash %msg% %hostname%", text: 'é ü 😀 \u007f \u2028 tab\t <&>', blob: 'y'.repeat(60_000) };

interface Host {
  readonly name: string;
  readonly sb: Sandbox;
  readonly file: string;
  writer: Tracked | null;
  edge: Rsyslogd | null;
  dispatcher: DispatcherProcess | null;
}

/** The environment of a process that must not see a database password (libpq prefers PGPASSWORD to the passfile). */
function withoutPg(env: NodeJS.ProcessEnv): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(env).filter(([k]) => !k.startsWith('PG')));
}

/** The events writer's environment: the host's home and file, the built CLI, node on PATH. */
function writerEnv(h: Host): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ORCHESJOB')) env[k] = v;
  env['PATH'] = [dirname(process.execPath), process.env['PATH'] ?? ''].join(delimiter);
  env['ORCHESJOB_RESERVER_HOME'] = h.sb.dir;
  env['ORCHESJOB_EVENTS_FILE'] = h.file;
  env['ORCHESJOB_RESERVER_BIN'] = CLI;
  return env;
}

const nowS = (): number => Math.floor(Date.now() / 1000);

async function cli(h: Host, args: readonly string[]): Promise<any> {
  const r = await runCli(args, { home: h.sb });
  expect({ code: r.code, stderr: r.stderr, args }).toEqual({ code: 0, stderr: '', args });
  return r.json;
}

/** Everything `list` prints on a host, by reservation id. */
async function listed(h: Host, status?: string): Promise<Record<string, unknown>[]> {
  const doc = await cli(h, ['list', '--limit', '100000', ...(status === undefined ? [] : ['--status', status])]);
  return (doc.reservations as Record<string, unknown>[]).sort((a, b) => String(a['reservation_id']).localeCompare(String(b['reservation_id'])));
}

/**
 * One round of real work on a host, every run key prefixed by `tag` (the same keys on both hosts):
 * started at once, started late, failed, failed once and retried, waiting, expired, cancelled then
 * cleaned and reserved again. Resolves once the dispatcher has settled all that can settle.
 */
async function work(h: Host, tag: string): Promise<void> {
  const k = (name: string) => `${tag}-${name}`;
  const now = nowS();
  await cli(h, ['reserve', '--run-key', k('ok'), '--', 'echo', 'ok']);
  await cli(h, ['reserve', '--run-key', k('awkward'), '--metadata-json', JSON.stringify(AWKWARD), '--', 'echo', "it's", 'a b']);
  await cli(h, ['reserve', '--run-key', k('late'), '--not-before', String(now - 3), '--', 'true']);
  await cli(h, ['reserve', '--run-key', k('fail'), '--', 'false']);
  await cli(h, ['reserve', '--run-key', k('retry'), '--max-attempts', '2', '--retry-delay', '1', '--', 'true']);
  await cli(h, ['reserve', '--run-key', k('waiting'), '--not-before', String(now + 3600), '--expires-at', String(now + 7200), '--', 'true']);
  await cli(h, ['reserve', '--run-key', k('expire'), '--not-before', String(now + 3600), '--expires-at', String(now + 1), '--', 'true']);
  const cancelled = await cli(h, ['reserve', '--run-key', k('again'), '--not-before', String(now + 3600), '--', 'true']);
  await cli(h, ['cancel', '--run-key', k('again')]);
  await cli(h, ['clean', '--reservation-id', cancelled.reservation.reservation_id]);
  await cli(h, ['reserve', '--run-key', k('again'), '--', 'echo', 'again']);
  const want: Record<string, string> = {
    ok: 'DISPATCHED', awkward: 'DISPATCHED', late: 'DISPATCHED', fail: 'DISPATCH_FAILED', retry: 'DISPATCHED',
    waiting: 'RESERVED', expire: 'EXPIRED', again: 'DISPATCHED',
  };
  let last = '';
  await waitUntilAsync(
    async () => {
      const byKey = new Map((await listed(h)).map((r) => [r['run_key'], r['reservation_status']]));
      last = JSON.stringify(Object.fromEntries([...byKey].filter(([key]) => String(key).startsWith(`${tag}-`))));
      return Object.entries(want).every(([name, status]) => byKey.get(k(name)) === status);
    },
    20_000,
    () => `${h.name} did not settle round ${tag}: ${last}\n${h.dispatcher?.dump()}`,
  );
}

async function waitUntilAsync(check: () => Promise<boolean>, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`not reached within ${timeoutMs} ms: ${describe()}`);
    await sleep(200);
  }
}

/** `count` reservations reserved, cancelled and cleaned, each step one transaction of the real write path. */
async function burst(h: Host, count: number): Promise<void> {
  const keys = Array.from({ length: count }, (_, i) => `burst-${i}`);
  await withLedger(h.sb.db, async (ledger) => {
    const each = (actor: string, command: (key: string) => ReservationCommand, target: (key: string) => { runKey: string } | null) =>
      write(ledger.db, { actor }, async (w) => {
        for (const key of keys) await w.execute(target(key), command(key));
      });
    await each(
      'cli:reserve',
      (runKey) => ({ type: 'Reserve', runKey, command: ['echo', runKey], orchesjobStartOptions: [], metadata: { burst: true }, notBefore: nowS() + 3600, expiresAt: null }),
      () => null,
    );
    await each('cli:cancel', () => ({ type: 'Cancel' }), (runKey) => ({ runKey }));
    await each('cli:clean', () => ({ type: 'Clean' }), (runKey) => ({ runKey }));
  });
}

describe.skipIf(missing.length > 0)(title, () => {
  it('stores both ledgers event for event through a kill -9 of an edge rsyslogd and a 10 s PostgreSQL outage, and answers the operators\' questions for the fleet', async () => {
    const pg: Postgres = await startPostgres();
    const hosts: Host[] = [];
    let central: Rsyslogd | null = null;
    const diagnostics = () => {
      const processes: [string, Tracked | null][] = [['central rsyslogd', central]];
      for (const h of hosts) processes.push([`${h.name} rsyslogd`, h.edge], [`${h.name} writer`, h.writer]);
      return `${processes.map(([name, p]) => `\n--- ${name}:\n${p?.output() ?? '(stopped)'}`).join('')}\n--- PostgreSQL log (end):\n${pg.log().slice(-3000)}`;
    };
    const countsOk = () => hosts.every((h) => centralCount(h.name) === ledgerEvents(h.sb.db).length);
    const centralCount = (host: string): number => {
      const r = pg.psqlRaw("SELECT count(*) FROM reservation_events WHERE host = :'host';\n", { vars: { host } });
      return r.status === 0 ? Number(r.stdout.trim()) : -1;
    };
    const counts = () => hosts.map((h) => `${h.name}: central ${centralCount(h.name)} of ${ledgerEvents(h.sb.db).length}`).join(', ');
    const expectCentralIsLedgers = () => {
      for (const h of hosts) expect(centralEventsOf(pg, h.name), h.name).toEqual(expectedCentralEvents(ledgerEvents(h.sb.db)));
    };

    try {
      // Central: PostgreSQL with the schema and the ingest role, rsyslogd with ompgsql.
      pg.psql(SCHEMA_SQL);
      const ingest = createLogin(pg, 'rsyslog', 'fleet_ingest');
      const centralHome = sandbox();
      const passfile = join(centralHome.dir, 'orchesjob-reserver.pgpass');
      writePassfile(pg, passfile, ingest);
      const port = await freePort();
      const centralConf = renderShipped(CENTRAL_CONF, [
        [SHIPPED.database, `127.0.0.1:${pg.port}`],
        [SHIPPED.passfile, passfile],
        [SHIPPED.port, `Port="${port}"`],
      ]);
      central = startRsyslogd(centralHome.dir, 'central', centralConf, '', withoutPg(process.env));
      await waitForListener(port);

      // Two edge hosts.
      for (const name of ['edge-a', 'edge-b']) {
        const sb = sandbox();
        const h: Host = { name, sb, file: join(sb.dir, 'log', 'events.jsonl'), writer: null, edge: null, dispatcher: null };
        mkdirSync(dirname(h.file), { recursive: true });
        hosts.push(h);
        writeFaults(sb, {
          '*': { mode: 'none' },
          ...Object.fromEntries(['p1', 'p2', 'p3'].flatMap((tag) => [
            [`${tag}-fail`, { mode: 'exit', code: 5, stderr: `lock error on ${name}: it's "held"` }],
            [`${tag}-retry`, { mode: 'exit', code: 1, stderr: 'busy', times: 1 }],
          ])),
        });
      }
      const edgeConf = (h: Host) =>
        renderShipped('rsyslog/edge.conf', [
          [SHIPPED.eventsFile, h.file],
          [SHIPPED.centralHost, '127.0.0.1'],
          [SHIPPED.port, `Port="${port}"`],
        ]);
      const startEdge = (h: Host) => {
        h.edge = startRsyslogd(h.sb.dir, 'edge', edgeConf(h), ` localHostname="${h.name}"`);
      };
      for (const h of hosts) {
        h.writer = spawnTracked(WRITER, [], { cwd: h.sb.dir, env: writerEnv(h) });
        startEdge(h);
        h.dispatcher = await startDispatcher(h.sb, ['--poll-interval', '0.5', '--error-sleep', '0.5']);
      }

      // Round 1 on both hosts at once; everything arrives.
      await Promise.all(hosts.map((h) => work(h, 'p1')));
      await waitUntil(countsOk, 30_000, () => `${counts()}${diagnostics()}`);
      expectCentralIsLedgers();

      // kill -9 of edge-a's rsyslogd while it ships a burst; more work while it is down; restart.
      const a = hosts[0]!;
      const before = centralCount(a.name);
      await burst(a, 500);
      await waitUntil(() => centralCount(a.name) > before, 20_000, () => `no burst line arrived: ${counts()}${diagnostics()}`);
      a.edge!.child.kill('SIGKILL');
      expect(await a.edge!.exited()).toBe(null);
      const atKill = centralCount(a.name);
      a.edge = null;
      // Mid-stream: part of the burst was still on its way.
      expect(atKill, counts()).toBeLessThan(ledgerEvents(a.sb.db).length);
      await work(a, 'p2');
      startEdge(a);
      await waitUntil(countsOk, 30_000, () => `after the kill (central had ${atKill} of edge-a's events): ${counts()}${diagnostics()}`);
      expectCentralIsLedgers();

      // PostgreSQL stopped for ten seconds while both hosts go on working and shipping.
      pg.stop();
      const stoppedAt = Date.now();
      await Promise.all(hosts.map((h) => work(h, 'p3')));
      const duringOutage = counts();
      await sleep(Math.max(0, 10_000 - (Date.now() - stoppedAt)));
      pg.start();
      await waitUntil(countsOk, 40_000, () => `after the outage (during it: ${duringOutage}): ${counts()}${diagnostics()}`);

      // Settled: no dispatcher writes while the rest is compared.
      for (const h of hosts) {
        const stopped = await h.dispatcher!.stop();
        expect(stopped, h.dispatcher!.dump()).toEqual({ code: 0, signal: null });
        h.dispatcher = null;
      }
      await waitUntil(countsOk, 10_000, () => `${counts()}${diagnostics()}`);

      // 1. Event for event, once: the union of both ledgers; nothing set aside.
      expectCentralIsLedgers();
      expect(pg.rows('SELECT host, line, reason FROM reservation_events_rejected')).toEqual([]);
      expect(pg.rows('SELECT host, events, last_position, missing FROM fleet_hosts ORDER BY host')).toEqual(
        hosts.map((h) => ({ host: h.name, events: ledgerEvents(h.sb.db).length, last_position: ledgerEvents(h.sb.db).length, missing: 0 })),
      );
      expect(pg.rows('SELECT * FROM fleet_gaps')).toEqual([]);

      // 2. fleet_reservations is what each host's `list` prints, and its projection's further columns.
      for (const h of hosts) {
        const fleet = fleetReservationsOf(pg, h.name).map(splitFleetReservation);
        expect(fleet.map((f) => f.list), h.name).toEqual(await listed(h));
        expect(fleet.map((f) => f.extras), h.name).toEqual(withDb(h.sb.db, projectionExtrasOf));
        const pending = [...(await listed(h, 'RESERVED')), ...(await listed(h, 'DISPATCHING'))].map((r) => r['reservation_id']).sort();
        expect(fleetReservationsOf(pg, h.name, 'fleet_pending').map((r) => r.reservation_id).sort(), h.name).toEqual(pending);
      }

      // 3. docs/auditing.md's questions, asked of the fleet (docs/fleet.md) and of each host.
      const now = nowS();
      const cases: Record<string, { params: Record<string, string | number>; unordered?: boolean; tolerance?: Record<string, number> }> = {
        'run-key-history': { params: { run_key: 'p1-again' } },
        'late-claims': { params: { min_late_ms: 1001 } },
        'dispatch-failures': { params: { from: now - 3600, to: now + 3600 } },
        cancellations: { params: {} },
        'reschedules-and-requeues': { params: {} },
        'dispatch-pauses': { params: { now } },
        // SQLite rounds binary floats, PostgreSQL numerics: a half may round either way.
        'dispatch-latency-per-day': { params: {}, tolerance: { avg_reserve_to_dispatch_s: 0.1, max_reserve_to_dispatch_s: 0.1, avg_due_to_dispatch_ms: 1 } },
        waiting: { params: { now }, unordered: true },
        'recovered-dispatches': { params: {} },
        'released-claims': { params: {} },
        'rebuild-state': { params: { run_key: 'p3-waiting' } },
      };
      for (const [hostQuery, fleetName] of Object.entries(FLEET_VERSIONS)) {
        const c = cases[hostQuery]!;
        const answers = new Map(hosts.map((h) => [h.name, withDb(h.sb.db, (db) => hostAnswer(db, hostQuery, c.params))]));
        const fleetRows = pg.rows(fleetQuery(fleetName), { vars: c.params });
        expectFleetAnswer(fleetName, fleetRows, answers, { ...c, keepHostRow: (r) => r['reservation_status'] !== 'CLEANED' });
      }
      // Each question that the work gives an answer has one from both hosts.
      for (const name of ['fleet-run-key-history', 'fleet-late-claims', 'fleet-dispatch-failures', 'fleet-cancellations', 'fleet-dispatch-latency-per-day', 'fleet-waiting', 'fleet-rebuild-state']) {
        const vars = { ...cases[Object.keys(FLEET_VERSIONS).find((k) => FLEET_VERSIONS[k] === name)!]!.params };
        expect(new Set(pg.rows(fleetQuery(name), { vars }).map((r) => r['host'])), name).toEqual(new Set(['edge-a', 'edge-b']));
      }

      // 4. The fleet's own questions.
      // Late: the reservations made due 3 s in the past (and whatever a busy machine made late too).
      const lateStarts = (h: Host) =>
        ledgerEvents(h.sb.db).filter((e) => e.type === 'DispatchClaimed' && (JSON.parse(e.data) as { late_by_ms: number }).late_by_ms > 1000);
      const lateHosts = pg.rows(fleetQuery('fleet-late-hosts'), { vars: { from: now - 3600, to: now + 3600 } });
      expect(lateHosts.map((r) => [r['host'], r['late_starts']]).sort()).toEqual(hosts.map((h) => [h.name, lateStarts(h).length]).sort());
      for (const h of hosts) {
        expect(lateStarts(h).map((e) => e.run_key), h.name).toEqual(expect.arrayContaining(h.name === 'edge-a' ? ['p1-late', 'p2-late', 'p3-late'] : ['p1-late', 'p3-late']));
      }
      const failures = pg.rows(fleetQuery('fleet-failures-window'), { vars: { from: now - 3600, to: now + 3600 } });
      for (const h of hosts) {
        expect(
          failures.filter((f) => f['host'] === h.name).map((f) => [f['run_key'], f['type'], f['final'], f['exit_code']]).sort(),
          h.name,
        ).toEqual(['p1', 'p2', 'p3'].filter((tag) => h.name === 'edge-a' || tag !== 'p2').flatMap((tag) => [
          [`${tag}-fail`, 'DispatchFailed', true, 5],
          [`${tag}-retry`, 'DispatchAttemptFailed', false, 1],
        ]).sort());
      }
      expect(pg.rows(fleetQuery('fleet-shipping')).map((r) => [r['host'], r['missing'], r['dispatch_paused']])).toEqual([
        ['edge-a', 0, false],
        ['edge-b', 0, false],
      ]);
    } finally {
      for (const h of hosts) await h.dispatcher?.stop().catch(() => undefined);
      for (const h of hosts) await h.writer?.stop();
      await central?.stop();
      for (const h of hosts) {
        const code = await h.edge?.stop();
        expect(code, h.edge?.output()).toBe(0);
      }
      if (pg.running) pg.stop();
    }
  }, 120_000);
});
