/**
 * Metrics bench (`node scripts/bench.mjs metrics`, after `npm run build`): what the Prometheus metrics
 * (issue 17) cost, against the built CLI (dist/cli.js) and the cached 1M-event ledger of the scale bench
 * (bench/generate.ts, dist-bench/ledgers/).
 *
 * - migration 0005 on the 1M ledger (the first open of a copy made before it: counts filled by one
 *   GROUP BY per table);
 * - `metrics` start to exit on an empty ledger and on the 1M ledger, side by side with `node -e ''`,
 *   round after round: median of each, and the median of per-round ratios (1M / empty; target <= 1.25x);
 * - an idle `run` on the 1M ledger, with and without `--metrics-file`, one after the other: CPU over
 *   `--idle-seconds` (utime + stime from /proc/<pid>/stat; target < 0.5 %);
 * - the write path's cost of the triggers: `reserve` transactions in process (the ledger's one write
 *   call) with and without the four triggers, at `synchronous = EXTRA` (as every command writes) and
 *   `OFF` (the CPU alone), interleaved; and the dispatcher's throughput of starts with an instant
 *   orchesjob (bench/dispatch.bench.ts `startsPerSecond`) on an empty ledger with and without them.
 *
 * Figures are printed next to their targets; nothing asserts (the machine is shared and noisy).
 * Flags: --runs 21 --idle-seconds 20 --writes 2000 --throughput-rounds 5 --skip-idle --skip-writes
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { openLedger } from '../src/db/open.js';
import { execute } from '../src/ledger.js';
import { startsPerSecond, useLedgerTemplate } from './dispatch.bench.js';
import { cachedLedger } from './generate.js';

const root = join(new URL('.', import.meta.url).pathname, '..');
const CLI = join(root, 'dist/cli.js');
const ORCHESJOB = join(root, 'bench/orchesjob.sh');
const WORK = join(root, 'dist-bench/work-metrics');
const RESULTS = join(root, 'dist-bench/metrics-results.json');
const CLK_TCK = 100;
const DROP_TRIGGERS = `DROP TRIGGER metrics_count_event; DROP TRIGGER metrics_count_reservation_insert;
  DROP TRIGGER metrics_count_reservation_delete; DROP TRIGGER metrics_count_reservation_status;`;

interface Options {
  runs: number;
  idleSeconds: number;
  writes: number;
  throughputRounds: number;
  skip: Set<string>;
}

function parseOptions(args: string[]): Options {
  const o: Options = { runs: 21, idleSeconds: 20, writes: 2000, throughputRounds: 5, skip: new Set() };
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    const value = () => Number(args[++i]);
    if (a === '--runs') o.runs = value();
    else if (a === '--idle-seconds') o.idleSeconds = value();
    else if (a === '--writes') o.writes = value();
    else if (a === '--throughput-rounds') o.throughputRounds = value();
    else if (a.startsWith('--skip-')) o.skip.add(a.slice('--skip-'.length));
    else throw new Error(`unknown flag ${a}`);
  }
  return o;
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
};
const f1 = (n: number) => n.toFixed(1);
const f2 = (n: number) => n.toFixed(2);
const loadavg = () => readFileSync('/proc/loadavg', 'utf8').split(' ').slice(0, 3).join(' ');
const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function timed(argv: string[]): { ms: number; stdout: string } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, argv, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
  const ms = performance.now() - t0;
  if (r.status !== 0) throw new Error(`${argv.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { ms, stdout: r.stdout };
}

function cpuTicks(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return Number(fields[11]) + Number(fields[12]);
}

/** An idle `run` over `db` (extra flags): CPU % of a core over `seconds`, after 3 s of settling. */
async function idleCpu(db: string, extra: string[], seconds: number): Promise<number> {
  const child = spawn(process.execPath, [CLI, 'run', '--db', db, '--orchesjob-bin', ORCHESJOB, ...extra], { stdio: ['ignore', 'pipe', 'inherit'] });
  let started = false;
  child.stdout.setEncoding('utf8');
  child.stdout.on('data', (chunk: string) => {
    if (chunk.includes('"reserver_started"')) started = true;
  });
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const deadline = Date.now() + 120_000;
  while (!started) {
    if (Date.now() > deadline || child.exitCode !== null) throw new Error('run did not start');
    await sleep(5);
  }
  await sleep(3000);
  const pid = child.pid as number;
  const t0 = cpuTicks(pid);
  const w0 = performance.now();
  await sleep(seconds * 1000);
  const t1 = cpuTicks(pid);
  const wall = (performance.now() - w0) / 1000;
  child.kill('SIGTERM');
  await exited;
  return ((t1 - t0) / CLK_TCK / wall) * 100;
}

/** µs per `reserve` transaction through the ledger's write call, on a fresh database, with or without the triggers. */
async function reservesMicros(folder: string, n: number, triggers: boolean, synchronous: 'EXTRA' | 'OFF'): Promise<number> {
  const db = join(folder, `w-${triggers}-${synchronous}-${process.hrtime.bigint()}.sqlite3`);
  const ledger = await openLedger(db);
  try {
    if (!triggers) ledger.raw.exec(DROP_TRIGGERS);
    ledger.raw.pragma(`synchronous = ${synchronous}`);
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      await execute(
        ledger.db,
        null,
        { type: 'Reserve', runKey: `w-${i}`, command: ['/bin/true'], orchesjobStartOptions: [], metadata: null, notBefore: null, expiresAt: null },
        { actor: 'bench' },
      );
    }
    return ((performance.now() - t0) * 1000) / n;
  } finally {
    await ledger.close();
    for (const suffix of ['', '-wal', '-shm']) rmSync(db + suffix, { force: true });
  }
}

export async function main(args: string[] = []): Promise<void> {
  const opts = parseOptions(args);
  const results: Record<string, unknown> = {
    date: new Date().toISOString(),
    node: process.version,
    cpu: `${cpus().length} x ${cpus()[0]?.model}`,
    git: spawnSync('git', ['-C', root, 'log', '-1', '--format=%h %s'], { encoding: 'utf8' }).stdout.trim(),
    load: { start: loadavg() },
  };
  const loads = results['load'] as Record<string, string>;
  console.log(`\nmetrics bench: node ${process.version}, ${results['cpu']}, load average ${loadavg()}`);
  rmSync(WORK, { recursive: true, force: true });
  mkdirSync(WORK, { recursive: true });
  const empty = join(WORK, 'empty.sqlite3');
  const big = join(WORK, 'big.sqlite3');
  copyFileSync(await cachedLedger(1_000_000, (line) => console.log(`  [1M] ${line}`)), big);
  timed([CLI, 'list', '--db', empty, '--limit', '1']);

  // 1. The migration on the 1M ledger: the first command that opens it.
  const migration = timed([CLI, 'list', '--db', big, '--limit', '1']).ms;
  const shape = spawnSync('sqlite3', [big, 'SELECT max(position), (SELECT count(*) FROM reservations) FROM reservation_events'], { encoding: 'utf8' }).stdout.trim();
  console.log(`  1M ledger: ${shape} (last position|projection rows); migration 0005 on first open: ${f1(migration)} ms (the whole \`list --limit 1\`)`);
  results['migrationMs'] = migration;

  // 2. `metrics` start to exit, side by side.
  loads['metrics'] = loadavg();
  for (const db of [empty, big]) timed([CLI, 'metrics', '--db', db]);
  const rounds = { node: [] as number[], empty: [] as number[], big: [] as number[] };
  for (let i = 0; i < opts.runs; i++) {
    rounds.node.push(timed(['-e', '']).ms);
    const order = i % 2 === 0 ? (['empty', 'big'] as const) : (['big', 'empty'] as const);
    for (const which of order) rounds[which].push(timed([CLI, 'metrics', '--db', which === 'empty' ? empty : big]).ms);
  }
  const paired = median(rounds.big.map((ms, i) => ms / (rounds.empty[i] as number)));
  console.log(`\nmetrics, start to exit: ${opts.runs} rounds of node -e '', metrics on the empty ledger and on 1M (load average ${loads['metrics']})`);
  console.log(`  node -e '' ${f1(median(rounds.node))} ms   empty ${f1(median(rounds.empty))} ms   1M ${f1(median(rounds.big))} ms`);
  console.log(`  1M vs empty: ${f2(paired)}x (median of per-round ratios; ratio of medians ${f2(median(rounds.big) / median(rounds.empty))}x)   target <= 1.25x   ${paired <= 1.25 ? 'met' : 'MISSED'}`);
  console.log(`  metrics vs node -e '' on the empty ledger: ${f2(median(rounds.empty.map((ms, i) => ms / (rounds.node[i] as number))))}x`);
  results['metrics'] = { ...rounds, pairedRatio: paired };

  // 3. Idle `run` on 1M, with and without the metrics file.
  if (!opts.skip.has('idle')) {
    loads['idle'] = loadavg();
    console.log(`\nidle run on the 1M ledger: CPU over ${opts.idleSeconds} s after 3 s of settling (load average ${loads['idle']})`);
    const without = await idleCpu(big, [], opts.idleSeconds);
    const prom = join(WORK, 'orchesjob_reserver.prom');
    const withFile = await idleCpu(big, ['--metrics-file', prom], opts.idleSeconds);
    console.log(`  without --metrics-file ${f2(without)} %   with --metrics-file ${f2(withFile)} % of a core   target < 0.5 %   ${withFile < 0.5 ? 'met' : 'MISSED'}`);
    results['idle'] = { without, withMetricsFile: withFile };
  }

  // 4. The triggers' cost in the write path.
  if (!opts.skip.has('writes')) {
    loads['writes'] = loadavg();
    console.log(`\nwrite path: µs per reserve transaction (${opts.writes} each, median of 5 interleaved; load average ${loads['writes']})`);
    const writes: Record<string, number[]> = {};
    for (let round = 0; round < 5; round++) {
      for (const sync of ['OFF', 'EXTRA'] as const) {
        for (const triggers of round % 2 === 0 ? [true, false] : [false, true]) {
          const key = `${sync}/${triggers ? 'with' : 'without'}`;
          (writes[key] ??= []).push(await reservesMicros(WORK, opts.writes, triggers, sync));
        }
      }
    }
    for (const sync of ['OFF', 'EXTRA']) {
      const w = median(writes[`${sync}/with`] as number[]);
      const wo = median(writes[`${sync}/without`] as number[]);
      console.log(`  synchronous=${sync.padEnd(5)}: with triggers ${f1(w)} µs, without ${f1(wo)} µs: +${f1(w - wo)} µs (${f2(w / wo)}x)`);
    }
    // The dispatcher's throughput, instant orchesjob, on an empty ledger with and without the triggers.
    const withT = join(WORK, 'template-with.sqlite3');
    const withoutT = join(WORK, 'template-without.sqlite3');
    for (const [path, drop] of [[withT, false], [withoutT, true]] as const) {
      const l = await openLedger(path);
      if (drop) l.raw.exec(DROP_TRIGGERS);
      l.raw.pragma('wal_checkpoint(TRUNCATE)');
      await l.close();
    }
    const starts = { with: [] as number[], without: [] as number[] };
    for (let round = 0; round < opts.throughputRounds; round++) {
      for (const which of round % 2 === 0 ? (['with', 'without'] as const) : (['without', 'with'] as const)) {
        useLedgerTemplate(which === 'with' ? withT : withoutT);
        starts[which].push(await startsPerSecond(200, null, 0));
      }
    }
    useLedgerTemplate(null);
    console.log(
      `  dispatcher, 200 starts of an instant orchesjob (default 4 slots): with triggers ${f1(median(starts.with))}, without ${f1(median(starts.without))} starts/s ` +
        `(median of ${opts.throughputRounds}; with ${starts.with.map(f1).join(' ')}; without ${starts.without.map(f1).join(' ')})`,
    );
    results['writes'] = { micros: writes, startsPerSecond: starts };
  }
  loads['end'] = loadavg();
  writeFileSync(RESULTS, `${JSON.stringify(results, null, 2)}\n`);
  rmSync(WORK, { recursive: true, force: true });
  console.log(`\n(load average at the end ${loads['end']}; results also in ${RESULTS})`);
}
