/**
 * Scale bench (`npm run bench`, or `node scripts/bench.mjs scale`): what each command costs as the
 * ledger grows, against the built CLI (dist/cli.js), with `node -e ''` on this machine as the yardstick.
 *
 * For ledgers of 0, 10k, 100k and 1M events (bench/generate.ts, cached under dist-bench/ledgers/):
 * - median wall time of `status`, `list --limit 50`, `reserve` (a new run key), `clean --run-key K
 *   --all` (one terminal reservation) and `metrics`, spawned 10 times each, interleaved with `node -e ''` and with
 *   the other sizes, each on a work copy of the cached ledger;
 * - start-up, the target's way: 21 rounds of `node -e ''`, `reserve` (a new run key) and `status`, side by
 *   side on the empty ledger; the start-up targets are judged on the median of the per-round ratios;
 * - `replay --verify` once;
 * - an idle `run --metrics-file` (the shipped unit's flags): CPU over 20 s (utime + stime from /proc/<pid>/stat) and resident memory (VmRSS);
 * then adopting a Python-tool database of 300,000 rows (test/support/make-python-db.py), and the
 * dispatcher bench's targets on a copy of the 1M ledger.
 *
 * Figures are printed next to their targets; nothing asserts (the machine is shared and noisy).
 * Flags: --sizes 0,10000,100000,1000000  --runs 10  --idle-seconds 20  --adopt-rows 300000
 *        --skip-idle --skip-adopt --skip-dispatch --skip-replay
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, existsSync, mkdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { dirname, join } from 'node:path';
import { openLedger } from '../src/db/open.js';
import { execute } from '../src/ledger.js';
import { firingLag, floorStartsPerSecond, pickupLatency, pythonStartSeconds, startsPerSecond, useLedgerTemplate } from './dispatch.bench.js';
import { cachedLedger, LEDGER_CACHE } from './generate.js';

const root = join(new URL('.', import.meta.url).pathname, '..');
const CLI = join(root, 'dist/cli.js');
const ORCHESJOB = join(root, 'bench/orchesjob.sh');
const WORK = join(root, 'dist-bench/work');
const RESULTS = join(root, 'dist-bench/scale-results.json');
const CLK_TCK = 100; // getconf CLK_TCK on Linux

/** One round of `firingLag`. */
type Lag = Awaited<ReturnType<typeof firingLag>>[number];

interface Options {
  sizes: number[];
  runs: number;
  idleSeconds: number;
  adoptRows: number;
  skip: Set<string>;
}

function parseOptions(args: string[]): Options {
  const options: Options = { sizes: [0, 10_000, 100_000, 1_000_000], runs: 10, idleSeconds: 20, adoptRows: 300_000, skip: new Set() };
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    const value = () => {
      const v = args[++i];
      if (v === undefined) throw new Error(`${a} needs a value`);
      return v;
    };
    if (a === '--sizes') options.sizes = value().split(',').map(Number);
    else if (a === '--runs') options.runs = Number(value());
    else if (a === '--idle-seconds') options.idleSeconds = Number(value());
    else if (a === '--adopt-rows') options.adoptRows = Number(value());
    else if (a.startsWith('--skip-')) options.skip.add(a.slice('--skip-'.length));
    else throw new Error(`unknown flag ${a}`);
  }
  if (!options.sizes.includes(0)) options.sizes.unshift(0); // the baseline every ratio needs
  return options;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const label = (n: number) => (n >= 1_000_000 ? `${n / 1_000_000}M` : n >= 1000 ? `${n / 1000}k` : String(n));
const mib = (bytes: number) => bytes / 2 ** 20;
const verdict = (ok: boolean) => (ok ? 'met' : 'MISSED');
function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Wall time of one spawned command, in ms; throws on an unexpected exit code. */
function timed(argv: string[], expectCode = 0): { ms: number; stdout: string } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 256 * 2 ** 20 });
  const ms = performance.now() - t0;
  if (r.status !== expectCode) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { ms, stdout: r.stdout };
}

/** A work copy of the cached ledger (or a new, empty database) with the same small fixture added. */
async function workCopy(size: number, runs: number): Promise<string> {
  const folder = join(WORK, `size-${size}`);
  rmSync(folder, { recursive: true, force: true });
  mkdirSync(folder, { recursive: true });
  const db = join(folder, 'reserver.sqlite3');
  if (size > 0) copyFileSync(await cachedLedger(size), db);
  const ledger = await openLedger(db);
  try {
    // The same rows in every size: one for `status`, one per `clean` run (+1 for the warm-up).
    const keys = ['bench-status', ...Array.from({ length: runs + 1 }, (_, i) => `bench-clean-${i}`)];
    for (const key of keys) {
      const { reservation } = await execute(
        ledger.db,
        null,
        { type: 'Reserve', runKey: key, command: ['/bin/true', key], orchesjobStartOptions: [], metadata: { bench: true }, notBefore: null, expiresAt: null },
        { actor: 'bench' },
      );
      const at = reservation.createdAtMs + 5;
      await execute(
        ledger.db,
        { reservationId: reservation.reservationId },
        { type: 'Claim', owner: { dispatcher_id: 'bench', host: 'bench', pid: 1 }, argv: ['orchesjob'] },
        { actor: 'dispatcher:bench', now: () => at },
      );
      await execute(ledger.db, { reservationId: reservation.reservationId }, { type: 'RecordDispatch', jobId: `job-${key}` }, {
        actor: 'dispatcher:bench',
        now: () => at + 200,
      });
    }
  } finally {
    await ledger.close();
  }
  return db;
}

function ledgerShape(db: string): { events: number; rows: number; streams: number; mib: number } {
  const r = spawnSync(
    'sqlite3',
    [db, 'SELECT (SELECT max(position) FROM reservation_events), (SELECT count(*) FROM reservations), (SELECT count(DISTINCT reservation_id) FROM reservation_events)'],
    { encoding: 'utf8' },
  );
  const [events, rows, streams] = r.status === 0 ? r.stdout.trim().split('|').map(Number) : [NaN, NaN, NaN];
  return { events: events ?? NaN, rows: rows ?? NaN, streams: streams ?? NaN, mib: mib(statSync(db).size) };
}

const startupKey = (i: number) => `bench-startup-${process.pid}-${i}`;

const COMMANDS = ['status', 'list', 'reserve', 'clean', 'metrics'] as const;
type Command = (typeof COMMANDS)[number];

function commandArgv(command: Command, db: string, run: number | 'warm', size: number): string[] {
  const i = run === 'warm' ? 0 : run + 1;
  switch (command) {
    case 'status':
      return [CLI, 'status', '--db', db, '--run-key', 'bench-status'];
    case 'list':
      return [CLI, 'list', '--db', db, '--limit', '50'];
    case 'reserve':
      return [CLI, 'reserve', '--db', db, '--run-key', `bench-new-${size}-${process.pid}-${i}`, '--', '/bin/true'];
    case 'clean':
      return [CLI, 'clean', '--db', db, '--run-key', `bench-clean-${i}`, '--all'];
    case 'metrics':
      return [CLI, 'metrics', '--db', db];
  }
}

/** `/proc/<pid>/stat` utime + stime, in clock ticks. */
function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}
function procStatusKiB(pid: number, field: string): number {
  const m = new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m === null ? NaN : Number(m[1]);
}

/** An idle `run` over `db`: start-up time, then CPU% and memory over `seconds`. */
async function idleRun(db: string, seconds: number): Promise<{ startupMs: number; cpuPercent: number; rssMiB: number; hwmMiB: number; lines: number }> {
  const t0 = performance.now();
  // With the metrics file, as the shipped unit runs it (issue 17): written at every poll.
  const metricsFile = join(dirname(db), 'orchesjob_reserver.prom');
  const child = spawn(process.execPath, [CLI, 'run', '--db', db, '--orchesjob-bin', ORCHESJOB, '--metrics-file', metricsFile], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  let buffered = '';
  let startedAt = 0;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    buffered += chunk;
    for (let nl = buffered.indexOf('\n'); nl !== -1; nl = buffered.indexOf('\n')) {
      const line = buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
      if (startedAt === 0 && line.includes('"reserver_started"')) startedAt = performance.now();
      lines.push(line);
    }
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const deadline = Date.now() + 120_000;
  while (startedAt === 0) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('run did not start');
    await sleep(5);
  }
  await sleep(3000); // past start-up recovery and the first ticks
  const pid = child.pid as number;
  const ticks0 = cpuTicks(pid);
  const w0 = performance.now();
  await sleep(seconds * 1000);
  const ticks1 = cpuTicks(pid);
  const wall = (performance.now() - w0) / 1000;
  const rss = procStatusKiB(pid, 'VmRSS');
  const hwm = procStatusKiB(pid, 'VmHWM');
  child.kill('SIGTERM');
  await exited;
  return {
    startupMs: startedAt - t0,
    cpuPercent: ((ticks1 - ticks0) / CLK_TCK / wall) * 100,
    rssMiB: rss / 1024,
    hwmMiB: hwm / 1024,
    lines: lines.filter((l) => !l.includes('"reserver_started"') && !l.includes('"reserver_stopped"')).length,
  };
}

/** Peak resident memory of a command via /usr/bin/time, when present. */
function timedWithPeak(argv: string[], expectCode = 0): { ms: number; stdout: string; peakMiB: number | null } {
  const hasTime = existsSync('/usr/bin/time');
  const t0 = performance.now();
  const r = hasTime
    ? spawnSync('/usr/bin/time', ['-f', 'PEAK_KB=%M', process.execPath, ...argv], { encoding: 'utf8', maxBuffer: 512 * 2 ** 20 })
    : spawnSync(process.execPath, argv, { encoding: 'utf8', maxBuffer: 512 * 2 ** 20 });
  const ms = performance.now() - t0;
  if (r.status !== expectCode) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr.slice(-2000)}`);
  const peak = /PEAK_KB=(\d+)/.exec(r.stderr);
  return { ms, stdout: r.stdout, peakMiB: peak === null ? null : Number(peak[1]) / 1024 };
}

const f1 = (n: number) => n.toFixed(1);
const f0 = (n: number) => n.toFixed(0);

export async function main(args: string[] = []): Promise<void> {
  const opts = parseOptions(args);
  const results: Record<string, unknown> = {
    date: new Date().toISOString(),
    node: process.version,
    cpus: cpus().length,
    cpu: cpus()[0]?.model,
    sizes: opts.sizes,
    runs: opts.runs,
    load: { start: loadavg() },
    git: spawnSync('git', ['-C', root, 'log', '-1', '--format=%h %s'], { encoding: 'utf8' }).stdout.trim(),
    gitDirty: spawnSync('git', ['-C', root, 'status', '--short'], { encoding: 'utf8' }).stdout.trim().split('\n').filter(Boolean),
  };
  const loads = results['load'] as Record<string, string>;
  console.log(`\nscale bench: node ${process.version}, ${cpus().length} x ${cpus()[0]?.model}, load average ${loadavg()}`);

  // 1. Ledgers (generated once, cached) and work copies with the fixture.
  const dbs = new Map<number, string>();
  const shapes: Record<number, ReturnType<typeof ledgerShape>> = {};
  for (const size of opts.sizes) {
    if (size > 0) await cachedLedger(size, (line) => console.log(`  [${label(size)}] ${line}`));
    const db = await workCopy(size, opts.runs);
    dbs.set(size, db);
    shapes[size] = ledgerShape(db);
    const s = shapes[size];
    console.log(`  ledger ${label(size).padStart(4)}: ${s.events} events (incl. fixture), ${s.streams} reservations, ${s.rows} projection rows, ${f1(s.mib)} MiB`);
  }
  results['ledgers'] = shapes;

  // 2. Commands: warm-up, then `runs` rounds, each: node -e '' and every command on every size.
  loads['commands'] = loadavg();
  console.log(`\ncommands: median of ${opts.runs} spawned runs, interleaved (load average ${loads['commands']})`);
  timed(['-e', '']);
  for (const size of opts.sizes) for (const c of COMMANDS) timed(commandArgv(c, dbs.get(size) as string, 'warm', size));
  const yard: number[] = [];
  const times = new Map<string, number[]>();
  for (let run = 0; run < opts.runs; run++) {
    yard.push(timed(['-e', '']).ms);
    const order = opts.sizes.map((_, i) => opts.sizes[(i + run) % opts.sizes.length] as number);
    for (const size of order) {
      for (const c of COMMANDS) {
        const { ms, stdout } = timed(commandArgv(c, dbs.get(size) as string, run, size));
        if (c === 'clean' && (JSON.parse(stdout) as { deleted: number }).deleted !== 1) throw new Error(`clean deleted nothing at ${size}`);
        if (c === 'reserve' && (JSON.parse(stdout) as { created: boolean }).created !== true) throw new Error(`reserve created nothing at ${size}`);
        const key = `${c}@${size}`;
        times.set(key, [...(times.get(key) ?? []), ms]);
      }
    }
  }
  // What `reserve` added is due now: cancel it, so that the idle `run` below has nothing to do.
  for (const size of opts.sizes) {
    const ledger = await openLedger(dbs.get(size) as string);
    try {
      for (let i = 0; i <= opts.runs; i++) {
        await execute(ledger.db, { runKey: `bench-new-${size}-${process.pid}-${i}` }, { type: 'Cancel' }, { actor: 'bench' });
      }
    } finally {
      await ledger.close();
    }
  }
  const node = median(yard);
  const med = (c: Command, size: number) => median(times.get(`${c}@${size}`) as number[]);
  console.log(`  node -e '' (yardstick): ${f1(node)} ms   (all: ${yard.map(f0).join(' ')})`);
  const header = `  ${'command'.padEnd(10)}${opts.sizes.map((s) => `${label(s).padStart(10)}`).join('')}   x node at 0   x empty at ${label(opts.sizes.at(-1) as number)}`;
  console.log(header);
  const commandResults: Record<string, Record<number, number>> = {};
  for (const c of COMMANDS) {
    commandResults[c] = Object.fromEntries(opts.sizes.map((s) => [s, med(c, s)]));
    const largest = opts.sizes.at(-1) as number;
    console.log(
      `  ${c.padEnd(10)}${opts.sizes.map((s) => `${f1(med(c, s)).padStart(8)}ms`).join('')}   ${(med(c, 0) / node).toFixed(2)}x` +
        `         ${(med(c, largest) / med(c, 0)).toFixed(2)}x`,
    );
  }
  // The same figures with the noise of a shared machine taken out two ways (information only; the
  // targets are judged on the medians above): the fastest of the runs, and the median of per-round
  // ratios (each run compared with the run of the same round, a few hundred ms apart).
  const all = (c: Command, size: number) => times.get(`${c}@${size}`) as number[];
  const pairedRatio = (a: number[], b: number[]) => median(a.map((x, i) => x / (b[i] as number)));
  const largestSize = opts.sizes.at(-1) as number;
  console.log(`  robust view: fastest run (ms) per size; median of per-round ratios x node at 0, x empty at ${label(largestSize)}; node -e '' fastest ${f1(Math.min(...yard))} ms`);
  const robust: Record<string, { min: Record<number, number>; pairedVsNode: number; pairedVsEmpty: number }> = {};
  for (const c of COMMANDS) {
    const min = Object.fromEntries(opts.sizes.map((s) => [s, Math.min(...all(c, s))]));
    robust[c] = { min, pairedVsNode: pairedRatio(all(c, 0), yard), pairedVsEmpty: pairedRatio(all(c, largestSize), all(c, 0)) };
    console.log(
      `  ${c.padEnd(10)}${opts.sizes.map((s) => `${f1(min[s] as number).padStart(8)}ms`).join('')}   ${robust[c].pairedVsNode.toFixed(2)}x` +
        `         ${robust[c].pairedVsEmpty.toFixed(2)}x`,
    );
  }
  results['commands_robust'] = robust;

  // 2b. Start-up as the target states it: `node -e ''`, `reserve` (a new run key) and `status`, one
  // after the other on the empty ledger, round after round; each cost is the median of its rounds.
  // (Above, each round's one `node -e ''` is set against 16 commands on four ledgers.)
  const startupRounds = 2 * opts.runs + 1;
  const startup = { node: [] as number[], reserve: [] as number[], status: [] as number[] };
  const empty = dbs.get(0) as string;
  for (let i = 0; i < startupRounds; i++) {
    startup.node.push(timed(['-e', '']).ms);
    startup.reserve.push(timed([CLI, 'reserve', '--db', empty, '--run-key', startupKey(i), '--', '/bin/true']).ms);
    startup.status.push(timed([CLI, 'status', '--db', empty, '--run-key', 'bench-status']).ms);
  }
  // Judged on the median of each round's ratio (the command against the node -e '' just before it):
  // node's own time here jumps between about 90 and 140 ms from one minute to the next, and a ratio
  // of the two medians then compares samples taken in different modes.
  const startupRatio = (c: 'reserve' | 'status') => median(startup[c].map((ms, i) => ms / (startup.node[i] as number)));
  const ofMedians = (c: 'reserve' | 'status') => median(startup[c]) / median(startup.node);
  console.log(`\nstart-up, side by side on the empty ledger: ${startupRounds} rounds of node -e '', reserve, status; median of the per-round ratios (ratio of the medians)`);
  console.log(
    `  node -e '' ${f1(median(startup.node))} ms   reserve ${f1(median(startup.reserve))} ms: ${startupRatio('reserve').toFixed(2)}x (${ofMedians('reserve').toFixed(2)}x)` +
      `   status ${f1(median(startup.status))} ms: ${startupRatio('status').toFixed(2)}x (${ofMedians('status').toFixed(2)}x)   target <= 1.30x`,
  );
  console.log(`  node -e '' all: ${startup.node.map(f0).join(' ')}`);
  results['startup'] = { rounds: startupRounds, ...startup, ratio: { reserve: startupRatio('reserve'), status: startupRatio('status') } };
  {
    const ledger = await openLedger(empty);
    try {
      for (let i = 0; i < startupRounds; i++) await execute(ledger.db, { runKey: startupKey(i) }, { type: 'Cancel' }, { actor: 'bench' });
    } finally {
      await ledger.close();
    }
  }
  results['node_e_ms'] = node;
  results['node_e_all'] = yard;
  results['commands_ms'] = commandResults;
  results['commands_all'] = Object.fromEntries(times);

  // 3. replay --verify, once per size.
  const replay: Record<number, { seconds: number; peakMiB: number | null; events: number; verified: boolean }> = {};
  if (!opts.skip.has('replay')) {
    loads['replay'] = loadavg();
    console.log(`\nreplay --verify, once per size (load average ${loads['replay']})`);
    for (const size of opts.sizes) {
      const { ms, stdout, peakMiB } = timedWithPeak([CLI, 'replay', '--db', dbs.get(size) as string, '--verify']);
      const out = JSON.parse(stdout) as { verified: boolean; events: number };
      replay[size] = { seconds: ms / 1000, peakMiB, events: out.events, verified: out.verified };
      console.log(`  ${label(size).padStart(4)}: ${(ms / 1000).toFixed(2)} s, peak RSS ${peakMiB === null ? '?' : f0(peakMiB)} MiB, verified ${out.verified} (${out.events} events)`);
    }
    results['replay'] = replay;
  }

  // 4. An idle dispatcher on each size.
  const idle: Record<number, Awaited<ReturnType<typeof idleRun>>> = {};
  if (!opts.skip.has('idle')) {
    loads['idle'] = loadavg();
    console.log(`\nidle run: CPU and memory over ${opts.idleSeconds} s, after 3 s of settling (load average ${loads['idle']})`);
    for (const size of opts.sizes) {
      idle[size] = await idleRun(dbs.get(size) as string, opts.idleSeconds);
      const r = idle[size];
      console.log(
        `  ${label(size).padStart(4)}: CPU ${r.cpuPercent.toFixed(2)}% of a core, VmRSS ${f1(r.rssMiB)} MiB (peak ${f1(r.hwmMiB)}), ` +
          `start-up to reserver_started ${f0(r.startupMs)} ms, ${r.lines} event lines while idle`,
      );
    }
    results['idle'] = idle;
  }

  // 5. Adopting a Python-tool database.
  let adoption: { rows: number; seconds: number; peakMiB: number | null; events: number; afterMs: number; generateSeconds: number | null } | null = null;
  if (!opts.skip.has('adopt')) {
    loads['adopt'] = loadavg();
    const rows = opts.adoptRows;
    const cached = join(LEDGER_CACHE, `python-${rows}.sqlite3`);
    let generateSeconds: number | null = null;
    if (!existsSync(cached)) {
      const tmp = `${cached}.tmp-${process.pid}`;
      mkdirSync(LEDGER_CACHE, { recursive: true });
      const t0 = performance.now();
      // The script writes 7 rows of every status plus EXTRA_ROWS dispatched ones.
      const r = spawnSync('python3', [join(root, 'test/support/make-python-db.py'), tmp, String(rows - 7)], { stdio: ['ignore', 'ignore', 'inherit'] });
      if (r.status !== 0) throw new Error('make-python-db.py failed');
      spawnSync('sqlite3', [tmp, 'PRAGMA wal_checkpoint(TRUNCATE);'], { stdio: 'ignore' });
      for (const suffix of ['-wal', '-shm']) rmSync(tmp + suffix, { force: true });
      generateSeconds = (performance.now() - t0) / 1000;
      copyFileSync(tmp, cached);
      rmSync(tmp, { force: true });
      console.log(`  (wrote the Python-tool database of ${rows} rows in ${f1(generateSeconds)} s; cached)`);
    }
    const folder = join(WORK, 'python');
    rmSync(folder, { recursive: true, force: true });
    mkdirSync(folder, { recursive: true });
    const db = join(folder, 'reserver.sqlite3');
    copyFileSync(cached, db);
    console.log(`\nadoption of a Python-tool database of ${rows} rows: first \`list --limit 1\` (load average ${loads['adopt']})`);
    const first = timedWithPeak([CLI, 'list', '--db', db, '--limit', '1']);
    const after = timed([CLI, 'list', '--db', db, '--limit', '1']);
    const shape = ledgerShape(db);
    adoption = { rows, seconds: first.ms / 1000, peakMiB: first.peakMiB, events: shape.events, afterMs: after.ms, generateSeconds };
    console.log(
      `  adoption ${(first.ms / 1000).toFixed(2)} s (peak RSS ${first.peakMiB === null ? '?' : f0(first.peakMiB)} MiB), ${shape.events} events written, ` +
        `next list ${f0(after.ms)} ms   target <= 30 s   ${verdict(first.ms <= 30_000)}`,
    );
    results['adoption'] = adoption;
  }

  // 6. The dispatcher's targets on a copy of the largest ledger.
  let dispatch: Record<string, unknown> | null = null;
  const largest = opts.sizes.at(-1) as number;
  if (!opts.skip.has('dispatch') && largest > 0) {
    loads['dispatch'] = loadavg();
    console.log(`\ndispatcher targets on a copy of the ${label(largest)}-event ledger (load average ${loads['dispatch']})`);
    useLedgerTemplate(dbs.get(largest) as string);
    try {
      const simulated = pythonStartSeconds() ?? 0.1;
      const one = await startsPerSecond(200, 1, simulated);
      const dflt = await startsPerSecond(200, null, simulated);
      const [lag, lagWarm] = (await firingLag()) as [Lag, Lag];
      const [lag5, lag5Warm] = (await firingLag(['--max-concurrent-starts', '5'])) as [Lag, Lag];
      const pickups = await pickupLatency();
      // Throughput against the machine's floor, with an instant orchesjob: 3 interleaved pairs, median ratio.
      const pairs: { dispatcher: number; floor: number }[] = [];
      for (let i = 0; i < 3; i++) pairs.push({ floor: await floorStartsPerSecond(200, 4, 0), dispatcher: await startsPerSecond(200, null, 0) });
      const floorRatio = median(pairs.map((p) => p.dispatcher / p.floor));
      dispatch = {
        floorPairs: pairs,
        floorRatio,
        simulatedStartMs: simulated * 1000,
        startsPerSecondOne: one,
        startsPerSecondDefault: dflt,
        ratio: dflt / one,
        lagStartsMs: lag.starts,
        lagClaimsMs: lag.claims,
        lagWarmStartsMs: lagWarm.starts,
        lagWarmClaimsMs: lagWarm.claims,
        lag5StartsMs: lag5.starts,
        lag5ClaimsMs: lag5.claims,
        lag5WarmStartsMs: lag5Warm.starts,
        lag5WarmClaimsMs: lag5Warm.claims,
        pickupMs: pickups,
      };
      console.log(`  starts/s with a ${f0(simulated * 1000)} ms orchesjob: one at a time ${f1(one)}, default (4) ${f1(dflt)}: ratio ${f1(dflt / one)}x   target >= 3x   ${verdict(dflt / one >= 3)}`);
      for (const [what, l] of [
        ["default (4), the dispatcher's first dispatch", lag],
        ['default (4), the dispatcher warm', lagWarm],
        ["--max-concurrent-starts 5, the dispatcher's first dispatch", lag5],
        ['--max-concurrent-starts 5, the dispatcher warm', lag5Warm],
      ] as const) {
        console.log(
          `  firing lag of 5 due on one second, ${what}: start calls max ${f1(Math.max(...l.starts))} ms (${l.starts.map(f1).join(', ')}), ` +
            `claims max ${f1(Math.max(...l.claims))} ms   target <= 50   ${verdict(Math.max(...l.starts) <= 50)}`,
        );
      }
      console.log(
        `  instant orchesjob, default (4) against the floor (plain spawns, 4 at once, no ledger): ` +
          `${pairs.map((p) => `${f1(p.dispatcher)}/${f1(p.floor)}`).join(', ')} starts/s: median ${floorRatio.toFixed(2)}x   target >= 0.75x   ${verdict(floorRatio >= 0.75)}`,
      );
      // Negative: the start call came before the `reserve` process had exited (it commits, prints, then exits).
      console.log(`  pickup after reserve returned: max ${f1(Math.max(...pickups))} ms (${pickups.map(f1).join(', ')})   target <= 100   ${verdict(Math.max(...pickups) <= 100)}`);
    } finally {
      useLedgerTemplate(null);
    }
    results['dispatch'] = dispatch;
  }
  loads['end'] = loadavg();

  // 7. Summary: every figure next to its target.
  const big = largest;
  const lines: [string, string, string, boolean | null][] = [];
  lines.push([`node -e '' (command rounds)`, `${f1(node)} ms`, '', null]);
  lines.push([`node -e '' (start-up rounds)`, `${f1(median(startup.node))} ms`, '', null]);
  for (const c of ['reserve', 'status'] as const) {
    const ratio = startupRatio(c);
    lines.push([`${c} start-up, empty ledger`, `${ratio.toFixed(2)}x node (per round)`, '<= 1.30x', ratio <= 1.3]);
  }
  for (const c of COMMANDS) {
    const ratio = med(c, big) / med(c, 0);
    lines.push([`${c} at ${label(big)} vs empty`, `${f1(med(c, big))} ms = ${ratio.toFixed(2)}x`, '<= 1.25x', ratio <= 1.25]);
  }
  if (idle[big] !== undefined) {
    lines.push([`idle run CPU at ${label(big)}`, `${idle[big].cpuPercent.toFixed(2)}%`, '< 0.5%', idle[big].cpuPercent < 0.5]);
    lines.push([`idle run VmRSS at ${label(big)}`, `${f1(idle[big].rssMiB)} MiB`, '< 80 MiB', idle[big].rssMiB < 80]);
  }
  if (replay[big] !== undefined) {
    lines.push([`replay --verify at ${label(big)}`, `${replay[big].seconds.toFixed(2)} s`, '<= 15 s', replay[big].seconds <= 15 && replay[big].verified]);
  }
  if (adoption !== null) lines.push([`adopt ${adoption.rows} Python rows`, `${adoption.seconds.toFixed(2)} s`, '<= 30 s', adoption.seconds <= 30]);
  if (dispatch !== null) {
    const d = dispatch as {
      ratio: number;
      floorRatio: number;
      lagStartsMs: number[];
      lagWarmStartsMs: number[];
      lag5StartsMs: number[];
      lag5WarmStartsMs: number[];
      pickupMs: number[];
    };
    lines.push([`concurrent starts at ${label(big)}`, `${f1(d.ratio)}x`, '>= 3x', d.ratio >= 3]);
    lines.push([`starts vs the floor at ${label(big)}`, `${d.floorRatio.toFixed(2)}x (median of 3)`, '>= 0.75x', d.floorRatio >= 0.75]);
    lines.push([`firing lag at ${label(big)}, default (4), first dispatch`, `${f1(Math.max(...d.lagStartsMs))} ms`, '<= 50 ms', Math.max(...d.lagStartsMs) <= 50]);
    lines.push([`firing lag at ${label(big)}, default (4), warm`, `${f1(Math.max(...d.lagWarmStartsMs))} ms`, '<= 50 ms', Math.max(...d.lagWarmStartsMs) <= 50]);
    lines.push([`firing lag at ${label(big)}, 5 starts, first dispatch`, `${f1(Math.max(...d.lag5StartsMs))} ms`, '<= 50 ms', Math.max(...d.lag5StartsMs) <= 50]);
    lines.push([`firing lag at ${label(big)}, 5 starts, warm`, `${f1(Math.max(...d.lag5WarmStartsMs))} ms`, '<= 50 ms', Math.max(...d.lag5WarmStartsMs) <= 50]);
    lines.push([`pickup at ${label(big)}`, `${f1(Math.max(...d.pickupMs))} ms`, '<= 100 ms', Math.max(...d.pickupMs) <= 100]);
  }
  console.log(`\nsummary (load average at start ${loads['start']}, at end ${loads['end']})`);
  for (const [what, figure, target, ok] of lines) {
    console.log(`  ${what.padEnd(34)} ${figure.padEnd(26)} ${target.padEnd(10)} ${ok === null ? '' : verdict(ok)}`);
  }

  // Growth table (markdown, for docs/performance.md).
  const md: string[] = [];
  md.push(`| cost | ${opts.sizes.map((s) => `${label(s)} events`).join(' | ')} |`);
  md.push(`|---|${opts.sizes.map(() => '---:').join('|')}|`);
  for (const c of COMMANDS) md.push(`| \`${c}\` (ms, median of ${opts.runs}) | ${opts.sizes.map((s) => f1(med(c, s))).join(' | ')} |`);
  if (Object.keys(replay).length > 0) md.push(`| \`replay --verify\` (s) | ${opts.sizes.map((s) => replay[s]?.seconds.toFixed(2) ?? '').join(' | ')} |`);
  if (Object.keys(replay).length > 0) md.push(`| \`replay --verify\` peak RSS (MiB) | ${opts.sizes.map((s) => (replay[s]?.peakMiB == null ? '' : f0(replay[s]!.peakMiB!))).join(' | ')} |`);
  if (Object.keys(idle).length > 0) {
    md.push(`| idle \`run\` CPU (% of a core) | ${opts.sizes.map((s) => idle[s]?.cpuPercent.toFixed(2) ?? '').join(' | ')} |`);
    md.push(`| idle \`run\` VmRSS (MiB) | ${opts.sizes.map((s) => (idle[s] === undefined ? '' : f1(idle[s].rssMiB))).join(' | ')} |`);
    md.push(`| \`run\` start-up to \`reserver_started\` (ms) | ${opts.sizes.map((s) => (idle[s] === undefined ? '' : f0(idle[s].startupMs))).join(' | ')} |`);
  }
  md.push(`| projection rows | ${opts.sizes.map((s) => String(shapes[s]?.rows)).join(' | ')} |`);
  md.push(`| file size (MiB) | ${opts.sizes.map((s) => f1(shapes[s]?.mib ?? NaN)).join(' | ')} |`);
  console.log(`\ngrowth table (node -e '' = ${f1(node)} ms):\n${md.join('\n')}`);
  results['growth_markdown'] = md.join('\n');
  results['summary'] = lines;
  writeFileSync(RESULTS, `${JSON.stringify(results, null, 2)}\n`);
  rmSync(WORK, { recursive: true, force: true }); // the work copies (about 1 GiB); the cached ledgers stay
  console.log(`\n(results also in ${RESULTS})`);
}
