/**
 * Start-up A/B (`node scripts/bench.mjs ab <dist> <dist>...`): builds of the CLI side by side, interleaved,
 * because on this machine two runs minutes apart do not compare. For each build, on ledgers of its own:
 * - `reserve` (a new run key), `status` and `list --limit 50` on an empty ledger, `--rounds` rounds (31),
 *   each round after one `node -e ''`: wall time, and the process's CPU time (`process.cpuUsage()` at
 *   exit, printed by a `-r` preload; less disturbed by other tenants than the wall time);
 * - `run` from its spawn to its `reserver_started` line, `--run-rounds` rounds (31);
 * - the firing lag of a dispatcher's first dispatch (5 due on one second, 3 s after `reserver_started`)
 *   and warm (5 more, 2 s later): the latest start call of the 5 (bench/orchesjob.sh's job id) minus
 *   that second, `--lag-rounds` rounds (15; 0 skips it).
 * Each round runs every build, in an order that rotates. Printed: median, p25-p75 (for start-up also the
 * median of the per-round ratios to `node -e ''`, as the scale bench judges its target), and the median
 * of the per-round differences from the first build; every sample goes to dist-bench/startup-ab-results.json.
 *
 * A build is a `dist/` folder from which better-sqlite3 resolves: inside this checkout (for example
 * `dist-bench/ab/<name>/dist`, with a `node_modules` link beside it for the build). docs/performance.md
 * ("Code caches made by the build alone") shows how the figures there were made.
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = join(new URL('.', import.meta.url).pathname, '..');
const ORCHESJOB = join(root, 'bench/orchesjob.sh');
const RESULTS = join(root, 'dist-bench/startup-ab-results.json');

interface Options {
  builds: string[];
  rounds: number;
  runRounds: number;
  lagRounds: number;
}

function parseOptions(args: string[]): Options {
  const options: Options = { builds: [], rounds: 31, runRounds: 31, lagRounds: 15 };
  for (let i = 0; i < args.length; i++) {
    const a = args[i] as string;
    const count = () => {
      const v = Number(args[++i]);
      if (!Number.isInteger(v) || v < 0) throw new Error(`${a} needs a number of rounds`);
      return v;
    };
    if (a === '--rounds') options.rounds = count();
    else if (a === '--run-rounds') options.runRounds = count();
    else if (a === '--lag-rounds') options.lagRounds = count();
    else if (a.startsWith('--')) throw new Error(`unknown flag ${a}`);
    else options.builds.push(resolve(a));
  }
  if (options.builds.length < 2) throw new Error('usage: node scripts/bench.mjs ab [--rounds N] [--run-rounds N] [--lag-rounds N] <dist> <dist>...');
  return options;
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function median(values: number[]): number {
  const s = [...values].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 === 1 ? (s[m] as number) : ((s[m - 1] as number) + (s[m] as number)) / 2;
}

function quantile(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.round(p * (s.length - 1))] as number;
}

const f1 = (n: number) => n.toFixed(1);

/** The figures of every build for one measure, in round order (so that round i of each build is paired). */
type Samples = Map<string, number[]>;

function add(samples: Samples, build: string, value: number): void {
  const list = samples.get(build) ?? [];
  list.push(value);
  samples.set(build, list);
}

/** Every sample, by measure and build, for dist-bench/startup-ab-results.json. */
const results: Record<string, Record<string, number[]>> = {};

/** With `yardstick` (each round's `node -e ''`), also the median of the per-round ratios to it. */
function report(title: string, samples: Samples, builds: string[], yardstick?: number[]): void {
  results[title] = Object.fromEntries(samples);
  console.log(title);
  const first = samples.get(builds[0] as string) ?? [];
  for (const build of builds) {
    const a = samples.get(build) ?? [];
    const diff = a.map((x, i) => x - (first[i] as number));
    const ratio = yardstick === undefined ? '' : `  ${median(a.map((x, i) => x / (yardstick[i] as number))).toFixed(2)}x node -e ''`;
    console.log(
      `  ${build}: median ${f1(median(a))}  p25-p75 ${f1(quantile(a, 0.25))}-${f1(quantile(a, 0.75))}${ratio}` +
        (build === builds[0] ? '' : `   minus the first, per round: median ${f1(median(diff))} (p25-p75 ${f1(quantile(diff, 0.25))}..${f1(quantile(diff, 0.75))})`),
    );
  }
}

/** A fresh, migrated ledger in a folder of its own (`run` refuses a world-writable one). */
function freshLedger(cli: string): { db: string; remove: () => void } {
  const folder = mkdtempSync(join(tmpdir(), 'ojr-ab-'));
  const db = join(folder, 'reserver.sqlite3');
  const r = spawnSync(process.execPath, [cli, 'list', '--db', db], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cli} list: ${r.stderr}`);
  return { db, remove: () => rmSync(folder, { recursive: true, force: true }) };
}

/** Spawn to exit, and the CPU time the preload printed. */
function timed(preload: string, args: string[]): { wallMs: number; cpuMs: number } {
  const t0 = performance.now();
  const r = spawnSync(process.execPath, ['-r', preload, ...args], { encoding: 'utf8' });
  const wallMs = performance.now() - t0;
  const cpu = /ab-cpu-ms (\S+)/.exec(r.stderr);
  if (r.status !== 0 || cpu === null) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return { wallMs, cpuMs: Number(cpu[1]) };
}

function startup(opts: Options, preload: string): void {
  const commands = {
    reserve: (db: string, i: number) => ['reserve', '--db', db, '--run-key', `ab-${i}`, '--', '/bin/true'],
    status: (db: string) => ['status', '--db', db, '--run-key', 'ab-status'],
    list: (db: string) => ['list', '--db', db, '--limit', '50'],
  };
  const ledgers = new Map(opts.builds.map((b) => [b, freshLedger(join(b, 'cli.js'))]));
  const wall = new Map(Object.keys(commands).map((c) => [c, new Map() as Samples]));
  const cpu = new Map(Object.keys(commands).map((c) => [c, new Map() as Samples]));
  const node = { wall: [] as number[], cpu: [] as number[] };
  try {
    for (const [build, { db }] of ledgers) {
      const cli = join(build, 'cli.js');
      timed(preload, [cli, 'reserve', '--db', db, '--run-key', 'ab-status', '--', '/bin/true']); // what status reads
      for (const make of Object.values(commands)) timed(preload, [cli, ...make(db, -1)]); // warm-up
    }
    for (let i = 0; i < opts.rounds; i++) {
      const n = timed(preload, ['-e', '']);
      node.wall.push(n.wallMs);
      node.cpu.push(n.cpuMs);
      for (let j = 0; j < opts.builds.length; j++) {
        const build = opts.builds[(i + j) % opts.builds.length] as string;
        const { db } = ledgers.get(build) as { db: string };
        for (const [name, make] of Object.entries(commands)) {
          const t = timed(preload, [join(build, 'cli.js'), ...make(db, i)]);
          add(wall.get(name) as Samples, build, t.wallMs);
          add(cpu.get(name) as Samples, build, t.cpuMs);
        }
      }
    }
  } finally {
    for (const { remove } of ledgers.values()) remove();
  }
  results['node -e \'\', wall (ms)'] = { node: node.wall };
  console.log(
    `start-up, ${opts.rounds} rounds; node -e '' median ${f1(median(node.wall))} ms wall ` +
      `(p25-p75 ${f1(quantile(node.wall, 0.25))}-${f1(quantile(node.wall, 0.75))}), ${f1(median(node.cpu))} ms CPU`,
  );
  for (const name of Object.keys(commands)) {
    report(`${name}, wall (ms):`, wall.get(name) as Samples, opts.builds, node.wall);
    report(`${name}, CPU (ms):`, cpu.get(name) as Samples, opts.builds);
  }
}

/** A dispatcher of `build` on a fresh ledger; its lines, and when `reserver_started` came. */
function startDispatcher(build: string, db: string) {
  const t0 = performance.now();
  const child = spawn(process.execPath, [join(build, 'cli.js'), 'run', '--db', db, '--orchesjob-bin', ORCHESJOB], {
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: { event: string; run_key?: string; job_id?: string }[] = [];
  let startedMs: number | null = null;
  let buffered = '';
  child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
    buffered += chunk;
    for (let nl = buffered.indexOf('\n'); nl !== -1; nl = buffered.indexOf('\n')) {
      const line = JSON.parse(buffered.slice(0, nl)) as (typeof lines)[number];
      buffered = buffered.slice(nl + 1);
      if (line.event === 'reserver_started' && startedMs === null) startedMs = performance.now() - t0;
      lines.push(line);
    }
  });
  const exited = new Promise<void>((r) => child.on('exit', () => r()));
  return {
    lines,
    started: async (): Promise<number> => {
      while (startedMs === null) await sleep(2);
      return startedMs;
    },
    stop: async (): Promise<void> => {
      child.kill('SIGTERM');
      await exited;
    },
  };
}

async function runStartup(opts: Options): Promise<void> {
  const samples: Samples = new Map();
  for (let i = 0; i < opts.runRounds; i++) {
    for (let j = 0; j < opts.builds.length; j++) {
      const build = opts.builds[(i + j) % opts.builds.length] as string;
      const { db, remove } = freshLedger(join(build, 'cli.js'));
      const dispatcher = startDispatcher(build, db);
      add(samples, build, await dispatcher.started());
      await dispatcher.stop();
      remove();
    }
  }
  report(`run, spawn to reserver_started (ms), ${opts.runRounds} rounds:`, samples, opts.builds);
}

async function firingLag(opts: Options): Promise<void> {
  const first: Samples = new Map();
  const warm: Samples = new Map();
  for (let i = 0; i < opts.lagRounds; i++) {
    for (let j = 0; j < opts.builds.length; j++) {
      const build = opts.builds[(i + j) % opts.builds.length] as string;
      const cli = join(build, 'cli.js');
      const { db, remove } = freshLedger(cli);
      const dispatcher = startDispatcher(build, db);
      await dispatcher.started();
      const due = Math.floor(Date.now() / 1000) + 3;
      for (const [r, second] of [due, due + 2].entries()) {
        for (let k = 0; k < 5; k++) {
          const args = [cli, 'reserve', '--db', db, '--run-key', `lag-${r}-${k}`, '--not-before', String(second), '--', '/bin/true'];
          if (spawnSync(process.execPath, args).status !== 0) throw new Error(`reserve failed: ${args.join(' ')}`);
        }
      }
      while (dispatcher.lines.filter((l) => l.event === 'dispatch_succeeded').length < 10) await sleep(10);
      await dispatcher.stop();
      remove();
      // bench/orchesjob.sh's job ids carry the start call's time: bench-<pid>-<epoch ns>.
      const latest = (r: number, second: number) =>
        Math.max(
          ...dispatcher.lines
            .filter((l) => l.event === 'dispatch_succeeded' && l.run_key?.startsWith(`lag-${r}-`) === true)
            .map((l) => Number(BigInt((l.job_id as string).split('-')[2] as string) / 1_000_000n) - second * 1000),
        );
      add(first, build, latest(0, due));
      add(warm, build, latest(1, due + 2));
    }
  }
  report(`firing lag, first dispatch (ms), ${opts.lagRounds} rounds:`, first, opts.builds);
  report('firing lag, warm (ms):', warm, opts.builds);
}

export async function main(args: string[]): Promise<void> {
  const opts = parseOptions(args);
  const folder = mkdtempSync(join(tmpdir(), 'ojr-ab-preload-'));
  const preload = join(folder, 'cpu.cjs');
  writeFileSync(
    preload,
    "process.on('exit', () => { const u = process.cpuUsage(); process.stderr.write(`\\nab-cpu-ms ${(u.user + u.system) / 1000}\\n`); });\n",
  );
  try {
    console.log(`start-up A/B, node ${process.version}; builds:\n${opts.builds.map((b) => `  ${b}`).join('\n')}`);
    if (opts.rounds > 0) startup(opts, preload);
    if (opts.runRounds > 0) await runStartup(opts);
    if (opts.lagRounds > 0) await firingLag(opts);
    writeFileSync(RESULTS, `${JSON.stringify({ node: process.version, builds: opts.builds, results }, null, 1)}\n`);
    console.log(`samples: ${RESULTS}`);
  } finally {
    rmSync(folder, { recursive: true, force: true });
  }
}
