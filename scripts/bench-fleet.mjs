// node scripts/bench-fleet.mjs [--events N] [--hosts H] [--rounds R] [--scale-hosts H] [--scale-reservations R]
//
// How fast the fleet's central side stores events (docs/fleet.md, "How far it scales"), on this
// machine, with the shipped files: a private PostgreSQL (initdb, pg_ctl; as root it runs as the
// `postgres` user) made with deploy/central/schema.sql, a central rsyslogd running
// deploy/central/rsyslog.conf, and H edge rsyslogd running deploy/rsyslog/edge.conf, each tailing an
// events file into which N/H event lines (as `orchesjob-reserver events` prints them: Reserved,
// DispatchClaimed, Dispatched per reservation) are written at once. It prints:
//   1. the central insert rate through rsyslog: N events, from the first line written to the last row
//      stored (as shipped: one event per transaction), and the same with 128 per transaction;
//   2. the same statement without rsyslog (psql, one session): what PostgreSQL alone takes;
//   (1 and 2 once per round, --rounds times, and the best round: on a shared machine a neighbour's
//   disk load slows every commit);
//   3. the views' query times over a fleet of --scale-hosts hosts of --scale-reservations reservations
//      each (generated in SQL, three events per reservation, one in ten still waiting).
// Needs Debian's postgresql, rsyslog and rsyslog-pgsql. Run by hand; nothing here is a test.
import { spawn, spawnSync } from 'node:child_process';
import { appendFileSync, chownSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);
const flag = (name, fallback) => {
  const i = process.argv.indexOf(`--${name}`);
  return i === -1 ? fallback : Number(process.argv[i + 1]);
};
const EVENTS = flag('events', 20_000);
const HOSTS = flag('hosts', 2);
const ROUNDS = flag('rounds', 3);
const SCALE_HOSTS = flag('scale-hosts', 50);
const SCALE_RESERVATIONS = flag('scale-reservations', 2_000);

const pgRoot = '/usr/lib/postgresql';
const version = readdirSync(pgRoot).filter((v) => /^\d+$/.test(v)).sort((a, b) => b - a)[0];
if (version === undefined) throw new Error('PostgreSQL is not installed (Debian: apt-get install postgresql)');
const bin = join(pgRoot, version, 'bin');
const account = (() => {
  if (process.getuid() !== 0) return {};
  const line = readFileSync('/etc/passwd', 'utf8').split('\n').find((l) => l.startsWith('postgres:'));
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
})();

const dir = mkdtempSync(join(tmpdir(), 'orchesjob-reserver-bench-fleet-'));
const children = [];
let pgStarted = false;

function freePort() {
  return new Promise((res) => {
    const s = createServer().listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => res(port));
    });
  });
}

function run(file, args, options = {}) {
  const r = spawnSync(file, args, { encoding: 'utf8', maxBuffer: 1 << 28, ...options });
  if (r.status !== 0) throw new Error(`${file} ${args.join(' ')}: ${r.stdout}${r.stderr}`);
  return r.stdout;
}

const SUPER = { user: 'postgres', password: 'bench-superuser' };
const INGEST = { user: 'rsyslog', password: 'bench-ingest' };
let port;
function psql(script, as = SUPER) {
  return run(join(bin, 'psql'), ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', as.user, '-d', 'fleet', '-f', '-'], {
    input: script,
    env: { ...process.env, PGPASSWORD: as.password, PGTZ: 'UTC' },
  }).trim();
}

function render(relative, replacements) {
  let text = readFileSync(join(root, 'deploy', relative), 'utf8');
  for (const [from, to] of replacements) {
    if (!text.includes(from)) throw new Error(`deploy/${relative} no longer contains ${from}`);
    text = text.split(from).join(to);
  }
  return text;
}

function rsyslogd(name, dropIn, globals = '') {
  const work = join(dir, `${name}-work`);
  mkdirSync(work, { recursive: true });
  writeFileSync(join(dir, `${name}-dropin.conf`), dropIn);
  const config = join(dir, `${name}.conf`);
  writeFileSync(config, `module(load="imuxsock" SysSock.Use="off")\nglobal(workDirectory="${work}"${globals})\ninclude(file="${join(dir, `${name}-dropin.conf`)}")\n`);
  run('/usr/sbin/rsyslogd', ['-N1', '-f', config]);
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('PG')));
  const child = spawn('/usr/sbin/rsyslogd', ['-f', config, '-i', join(dir, `${name}.pid`), '-n'], { stdio: 'ignore', env });
  children.push(child);
  return child;
}

async function stop(child) {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((res) => child.once('exit', res));
  child.kill('SIGTERM');
  await exited;
}

const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

/** Resolves once 127.0.0.1:port accepts connections (an edge that finds no listener waits 5 s to retry). */
async function listening(port) {
  for (;;) {
    const ok = await new Promise((res) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => { socket.destroy(); res(true); });
      socket.once('error', () => res(false));
    });
    if (ok) return;
    await sleep(50);
  }
}

/** `count` event lines of one host, positions 1.., as `orchesjob-reserver events` prints them. */
function eventLines(count) {
  const t0 = Math.floor(Date.now() / 1000);
  const lines = [];
  for (let p = 1; p <= count; p++) {
    const n = Math.ceil(p / 3);
    const kind = (p - 1) % 3;
    const at = t0 + n;
    const type = ['Reserved', 'DispatchClaimed', 'Dispatched'][kind];
    const data = [
      { command: ['/usr/local/bin/backup.sh', '--full'], expires_at: null, metadata: { dag_id: 'nightly_backup', task_id: `reserve_${n}` }, not_before: at, orchesjob_start_options: ['--strict'] },
      { argv: ['orchesjob', 'start', '--run-key', `nightly-${n}`, '--strict', '--', '/usr/local/bin/backup.sh', '--full'], dispatcher_id: '01JTFX5Z7Q3M8V2K9N4B6C1D0E', host: 'edge', late_by_ms: 3, pid: 4242, process_start: 'boot 1234', start_timeout_ms: 60000 },
      { job_id: `job-${n}` },
    ][kind];
    const actor = kind === 0 ? 'cli:reserve' : 'dispatcher:01JTFX5Z7Q3M8V2K9N4B6C1D0E';
    lines.push(JSON.stringify({
      actor, data, event_id: `01BENCH${String(p).padStart(19, '0')}`, position: p, recorded_at: at,
      recorded_at_iso: new Date(at * 1000).toISOString().replace('.000Z', '+00:00'), recorded_at_ms: at * 1000 + 7,
      reservation_id: `01RES${String(n).padStart(21, '0')}`, run_key: `nightly-${n}`, type, version: kind + 1,
    }));
  }
  return lines;
}

function resetTable() {
  psql('ALTER TABLE reservation_events DISABLE TRIGGER reservation_events_no_truncate;\nTRUNCATE reservation_events, reservation_events_rejected;\nALTER TABLE reservation_events ENABLE TRIGGER reservation_events_no_truncate;\n');
}

/** Ship EVENTS lines from HOSTS edge rsyslogd through one central rsyslogd; events per second. */
async function throughRsyslog(label, centralSed) {
  resetTable();
  const tcpPort = await freePort();
  const passfile = join(dir, 'pgpass');
  writeFileSync(passfile, `127.0.0.1:${port}:fleet:${INGEST.user}:${INGEST.password}\n`, { mode: 0o600 });
  let conf = render('central/rsyslog.conf', [
    ['db.example.internal:5432', `127.0.0.1:${port}`],
    ['/etc/rsyslog.d/orchesjob-reserver.pgpass', passfile],
    ['Port="10514"', `Port="${tcpPort}"`],
  ]);
  for (const [from, to] of centralSed) conf = conf.replace(from, to);
  const central = rsyslogd(`central-${label}`, conf);
  await listening(tcpPort);
  const perHost = Math.floor(EVENTS / HOSTS);
  const edges = [];
  const files = [];
  for (let h = 0; h < HOSTS; h++) {
    const file = join(dir, `events-${label}-${h}.jsonl`);
    writeFileSync(file, '');
    files.push(file);
    edges.push(rsyslogd(`edge-${label}-${h}`, render('rsyslog/edge.conf', [
      ['/var/log/orchesjob-reserver/events.jsonl', file],
      ['central.example.internal', '127.0.0.1'],
      ['Port="10514"', `Port="${tcpPort}"`],
    ]), ` localHostname="edge-${h}"`));
  }
  await sleep(1500);
  const lines = eventLines(perHost).join('\n') + '\n';
  const started = process.hrtime.bigint();
  for (const file of files) appendFileSync(file, lines);
  const total = perHost * HOSTS;
  for (;;) {
    if (Number(psql('SELECT count(*) FROM reservation_events;')) >= total) break;
    await sleep(50);
  }
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  for (const c of [...edges, central]) await stop(c);
  const bytes = Number(psql("SELECT pg_total_relation_size('reservation_events');"));
  return { total, seconds, rate: total / seconds, bytesPerEvent: bytes / total };
}

/** The shipped statement straight into psql, one session, autocommit: PostgreSQL without rsyslog. */
function withoutRsyslog() {
  resetTable();
  const template = /string="(INSERT INTO reservation_events[^"]*)"/.exec(readFileSync(join(root, 'deploy', 'central', 'rsyslog.conf'), 'utf8'))[1];
  const script = eventLines(EVENTS)
    .map((line) => `${template.replace('%hostname%', 'edge-0').replace('%msg%', line.replace(/'/g, "''"))};\n`)
    .join('');
  const started = process.hrtime.bigint();
  psql(script, INGEST);
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { total: EVENTS, seconds, rate: EVENTS / seconds };
}

/** A fleet generated in SQL, then the time of each view's full read. */
function viewTimes() {
  resetTable();
  psql(`
INSERT INTO reservation_events (host, position, event_id, reservation_id, version, run_key, type, data, recorded_at, recorded_at_ms, actor)
SELECT 'edge-' || h, (n - 1) * 3 + k, 'E' || h || '-' || n || '-' || k, 'R' || n, k, 'nightly-' || n,
       (ARRAY['Reserved', 'DispatchClaimed', 'Dispatched'])[k],
       CASE k WHEN 1 THEN jsonb_build_object('command', jsonb_build_array('backup.sh'), 'orchesjob_start_options', '[]'::jsonb, 'metadata', jsonb_build_object('n', n), 'not_before', 1777852800 + n * 60, 'expires_at', NULL)
              WHEN 2 THEN jsonb_build_object('dispatcher_id', 'D', 'host', 'edge-' || h, 'pid', 1, 'argv', '[]'::jsonb, 'late_by_ms', (n % 7) * 400)
              ELSE jsonb_build_object('job_id', 'job-' || n) END,
       1777852800 + n * 60 + k, (1777852800::bigint + n * 60 + k) * 1000, 'bench'
  FROM generate_series(1, ${SCALE_HOSTS}) AS h, generate_series(1, ${SCALE_RESERVATIONS}) AS n, generate_series(1, 3) AS k
 WHERE n % 10 <> 0 OR k = 1;
ANALYZE reservation_events;
`);
  const events = Number(psql('SELECT count(*) FROM reservation_events;'));
  const bytes = Number(psql("SELECT pg_total_relation_size('reservation_events');"));
  const timed = (label, query) => {
    const out = psql(`\\timing on\n${query}\n`);
    const ms = Number(/Time: ([\d.]+) ms/.exec(out)[1]);
    return { label, ms };
  };
  return {
    events,
    bytes,
    rows: [
      timed('fleet_reservations (count)', 'SELECT count(*) FROM fleet_reservations;'),
      timed("fleet_reservations of one host", "SELECT count(*) FROM fleet_reservations WHERE host = 'edge-1';"),
      timed('fleet_pending (count)', 'SELECT count(*) FROM fleet_pending;'),
      timed('fleet_late_starts (count)', 'SELECT count(*) FROM fleet_late_starts;'),
      timed('fleet_failures (count)', 'SELECT count(*) FROM fleet_failures;'),
      timed('fleet_dispatch', 'SELECT count(*) FROM fleet_dispatch;'),
      timed('fleet_hosts', 'SELECT count(*) FROM fleet_hosts;'),
      timed('fleet_gaps', 'SELECT count(*) FROM fleet_gaps;'),
    ],
  };
}

try {
  if (account.uid !== undefined) chownSync(dir, account.uid, account.gid);
  const pwfile = join(dir, 'pw');
  writeFileSync(pwfile, `${SUPER.password}\n`, { mode: 0o600 });
  if (account.uid !== undefined) chownSync(pwfile, account.uid, account.gid);
  const data = join(dir, 'data');
  const asServer = { ...account, env: { PATH: process.env.PATH, LANG: 'C.UTF-8' } };
  run(join(bin, 'initdb'), ['-D', data, '-U', 'postgres', `--pwfile=${pwfile}`, '-E', 'UTF8', '--locale=C', '--auth-host=scram-sha-256', '--auth-local=trust'], asServer);
  port = await freePort();
  run(join(bin, 'pg_ctl'), ['-D', data, '-l', join(dir, 'server.log'), '-o', `-h 127.0.0.1 -p ${port} -k ${dir}`, '-w', 'start'], asServer);
  pgStarted = true;
  run(join(bin, 'psql'), ['-X', '-q', '-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-d', 'postgres', '-c', "CREATE DATABASE fleet ENCODING 'UTF8' TEMPLATE template0"], { env: { ...process.env, PGPASSWORD: SUPER.password } });
  psql(readFileSync(join(root, 'deploy', 'central', 'schema.sql'), 'utf8'));
  psql(`CREATE ROLE ${INGEST.user} LOGIN PASSWORD '${INGEST.password}' IN ROLE fleet_ingest;`);

  console.log(`PostgreSQL ${version} (defaults: fsync on, synchronous_commit on), rsyslog ${/\d+\.\d+/.exec(run('/usr/sbin/rsyslogd', ['-v']))[0]}, ${HOSTS} edge hosts, ${EVENTS} events, ${ROUNDS} rounds`);
  // Each measurement once per round, side by side, so that a neighbour's disk load hits all of them
  // alike; the best round is what the machine can do.
  const results = { shipped: [], batched: [], direct: [] };
  let bytesPerEvent = 0;
  for (let round = 1; round <= ROUNDS; round++) {
    const shipped = await throughRsyslog(`shipped-${round}`, []);
    bytesPerEvent = shipped.bytesPerEvent;
    const batched = await throughRsyslog(`batched-${round}`, [['queue.dequeueBatchSize="1"', 'queue.dequeueBatchSize="128"']]);
    const direct = withoutRsyslog();
    results.shipped.push(shipped.rate);
    results.batched.push(batched.rate);
    results.direct.push(direct.rate);
    console.log(`  round ${round}: as shipped ${Math.round(shipped.rate)}, 128 per transaction ${Math.round(batched.rate)}, psql ${Math.round(direct.rate)} events/s`);
  }
  const best = (rates) => `${Math.round(Math.max(...rates))} events/s (rounds: ${rates.map(Math.round).join(', ')})`;
  console.log(`through rsyslog, as shipped (one event per transaction): ${best(results.shipped)}`);
  console.log(`through rsyslog, 128 events per transaction (not shipped): ${best(results.batched)}`);
  console.log(`the same statement from psql, one session, no rsyslog: ${best(results.direct)}`);
  console.log(`stored: ${Math.round(bytesPerEvent)} bytes per event with the indexes`);
  const views = viewTimes();
  console.log(`views over ${views.events} events (${SCALE_HOSTS} hosts x ${SCALE_RESERVATIONS} reservations; table and indexes ${Math.round(views.bytes / 2 ** 20)} MiB, ${Math.round(views.bytes / views.events)} bytes per event):`);
  for (const row of views.rows) console.log(`  ${row.label.padEnd(32)} ${row.ms.toFixed(0).padStart(7)} ms`);
} finally {
  for (const c of children) await stop(c);
  if (pgStarted) spawnSync(join(bin, 'pg_ctl'), ['-D', join(dir, 'data'), '-m', 'fast', '-w', 'stop'], { ...account, stdio: 'ignore' });
  rmSync(dir, { recursive: true, force: true });
}
