/**
 * Dispatcher benchmark (`npm run bench`): throughput of starts, firing lag and pickup latency, with
 * the shell-script orchesjob of bench/orchesjob.sh (about 4 ms a start), against the built CLI.
 *
 * Figures are printed next to their targets; nothing here asserts (the machine is shared and noisy).
 */
import { spawn, spawnSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { openLedger } from '../src/db/open.js';
import { execute } from '../src/ledger.js';

const root = join(new URL('.', import.meta.url).pathname, '..');
const CLI = join(root, 'dist/cli.js');
const ORCHESJOB = join(root, 'bench/orchesjob.sh');

interface Line {
  event: string;
  run_key?: string;
  job_id?: string;
  position?: number;
}

/** A running dispatcher whose JSON Lines are collected with the time each arrived. */
class Dispatcher {
  readonly lines: { at: number; line: Line }[] = [];
  private readonly child;
  private readonly exited: Promise<number | null>;
  constructor(db: string, extra: string[] = [], env: Record<string, string> = {}) {
    this.child = spawn(process.execPath, [CLI, 'run', '--db', db, '--orchesjob-bin', ORCHESJOB, ...extra], {
      stdio: ['ignore', 'pipe', 'inherit'],
      env: { ...process.env, ...env },
    });
    let buffered = '';
    this.child.stdout.setEncoding('utf8');
    this.child.stdout.on('data', (chunk: string) => {
      const at = Date.now();
      buffered += chunk;
      for (let nl = buffered.indexOf('\n'); nl !== -1; nl = buffered.indexOf('\n')) {
        this.lines.push({ at, line: JSON.parse(buffered.slice(0, nl)) as Line });
        buffered = buffered.slice(nl + 1);
      }
    });
    this.exited = new Promise((resolve) => this.child.on('exit', (code) => resolve(code)));
  }
  async waitFor(predicate: (line: Line) => boolean, count = 1, timeoutMs = 120_000): Promise<{ at: number; line: Line }[]> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.lines.filter((l) => predicate(l.line));
      if (found.length >= count) return found;
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${count} lines`);
      await sleep(5);
    }
  }
  async stop(): Promise<void> {
    this.child.kill('SIGTERM');
    await this.exited;
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The bench orchesjob's job ids carry the start call's time: `bench-<pid>-<epoch ns>`. */
function startedAtMs(jobId: string): number {
  const ns = jobId.split('-')[2] as string;
  return Number(BigInt(ns) / 1_000_000n);
}

/** When set, every bench database starts as a copy of this ledger (bench/scale.bench.ts: 1M events). */
let template: string | null = null;
export function useLedgerTemplate(path: string | null): void {
  template = path;
}

function freshDb(): { db: string; cleanup: () => void } {
  const folder = mkdtempSync(join(tmpdir(), 'ojr-bench-'));
  const db = join(folder, 'reserver.sqlite3');
  if (template !== null) copyFileSync(template, db);
  return { db, cleanup: () => rmSync(folder, { recursive: true, force: true }) };
}

export async function startsPerSecond(count: number, maxConcurrent: number | null, startSeconds: number): Promise<number> {
  const { db, cleanup } = freshDb();
  try {
    const ledger = await openLedger(db);
    for (let i = 0; i < count; i++) {
      await execute(
        ledger.db,
        null,
        { type: 'Reserve', runKey: `bench-${i}`, command: ['/bin/true', String(i)], orchesjobStartOptions: [], metadata: null, notBefore: null, expiresAt: null },
        { actor: 'bench' },
      );
    }
    await ledger.close();
    const dispatcher = new Dispatcher(
      db,
      maxConcurrent === null ? [] : ['--max-concurrent-starts', String(maxConcurrent)],
      startSeconds > 0 ? { BENCH_START_SECONDS: startSeconds.toFixed(3) } : {},
    );
    const [first] = await dispatcher.waitFor((l) => l.event === 'orchesjob_start_call');
    const done = await dispatcher.waitFor((l) => l.event === 'dispatch_succeeded', count);
    await dispatcher.stop();
    const elapsed = (done[count - 1]!.at - first!.at) / 1000;
    return count / elapsed;
  } finally {
    cleanup();
  }
}

/**
 * The machine's floor for dispatching: a plain Node loop spawning the same orchesjob `count` times,
 * `concurrency` at once, reading each JSON answer, with no ledger. A dispatcher can at best match it.
 */
export async function floorStartsPerSecond(count: number, concurrency: number, startSeconds: number): Promise<number> {
  const env = { ...process.env, ...(startSeconds > 0 ? { BENCH_START_SECONDS: startSeconds.toFixed(3) } : {}) };
  const startOne = (i: number) =>
    new Promise<void>((resolve, reject) => {
      const child = spawn(ORCHESJOB, ['start', '--run-key', `floor-${i}`, '--', '/bin/true', String(i)], {
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
        env,
      });
      let out = '';
      child.stdout.setEncoding('utf8').on('data', (chunk: string) => (out += chunk));
      child.on('close', (code) => {
        if (code === 0 && typeof (JSON.parse(out) as { job_id?: unknown }).job_id === 'string') resolve();
        else reject(new Error(`floor start ${i} failed: exit ${code}`));
      });
    });
  let next = 0;
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < count) await startOne(next++);
    }),
  );
  return count / ((performance.now() - t0) / 1000);
}

function reserveCli(db: string, args: string[]): void {
  const r = spawnSync(process.execPath, [CLI, 'reserve', '--db', db, ...args], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`reserve failed: ${r.stderr}`);
}

/**
 * Lags of 5 reservations due on one second, after that second began: of each start call (measured
 * inside orchesjob), and of each claim (the dispatcher's own `late_by_ms`). Round 1 is the first
 * dispatch of a dispatcher started 3 s before; round 2, 5 more due 2 s later, finds it warm (the
 * state of a dispatcher in service).
 */
export async function firingLag(extra: string[] = []): Promise<{ starts: number[]; claims: number[] }[]> {
  const { db, cleanup } = freshDb();
  try {
    const dispatcher = new Dispatcher(db, extra);
    await dispatcher.waitFor((l) => l.event === 'reserver_started');
    const first = Math.floor(Date.now() / 1000) + 3;
    const rounds = [first, first + 2];
    rounds.forEach((due, r) => {
      for (let i = 0; i < 5; i++) reserveCli(db, ['--run-key', `lag-${r}-${i}`, '--not-before', String(due), '--', '/bin/true']);
    });
    const done = await dispatcher.waitFor((l) => l.event === 'dispatch_succeeded', 5 * rounds.length);
    const claims = await dispatcher.waitFor((l) => l.event === 'orchesjob_start_call', 5 * rounds.length);
    await dispatcher.stop();
    return rounds.map((due, r) => {
      const mine = (l: { line: Line }) => l.line.run_key?.startsWith(`lag-${r}-`) === true;
      return {
        starts: done.filter(mine).map((d) => startedAtMs(d.line.job_id as string) - due * 1000),
        claims: claims.filter(mine).map((c) => (c.line as Line & { late_by_ms: number }).late_by_ms),
      };
    });
  } finally {
    cleanup();
  }
}

/** From `reserve` returning to the start call, for 5 immediate reservations made while idle. */
export async function pickupLatency(): Promise<number[]> {
  const { db, cleanup } = freshDb();
  try {
    const dispatcher = new Dispatcher(db);
    await dispatcher.waitFor((l) => l.event === 'reserver_started');
    const latencies: number[] = [];
    for (let i = 0; i < 5; i++) {
      await sleep(300); // let the dispatcher go idle (it sleeps up to the 2 s poll interval)
      reserveCli(db, ['--run-key', `pickup-${i}`, '--', '/bin/true']);
      const returned = Date.now();
      const [done] = await dispatcher.waitFor((l) => l.event === 'dispatch_succeeded' && l.run_key === `pickup-${i}`);
      latencies.push(startedAtMs(done!.line.job_id as string) - returned);
    }
    await dispatcher.stop();
    return latencies;
  } finally {
    cleanup();
  }
}

/**
 * How long a start of the real orchesjob takes before it answers, approximated by what it cannot
 * avoid: a Python interpreter loading the standard modules it imports (median of 5). The real start
 * then also writes its SQLite state and spawns its worker, so this is a lower bound.
 */
export function pythonStartSeconds(): number | null {
  const times: number[] = [];
  for (let i = 0; i < 5; i++) {
    const t0 = performance.now();
    const r = spawnSync('python3', ['-c', 'import argparse, json, sqlite3, subprocess, uuid, os, signal, datetime'], {
      stdio: 'ignore',
    });
    if (r.status !== 0) return null;
    times.push(performance.now() - t0);
  }
  times.sort((a, b) => a - b);
  return (times[2] as number) / 1000;
}

const fmt = (n: number) => n.toFixed(1);

export async function main(): Promise<void> {
  const count = 200;
  console.log(`dispatcher bench: ${count} ready reservations, orchesjob = bench/orchesjob.sh, node ${process.version}`);
  const python = pythonStartSeconds();
  const simulated = python ?? 0.1;
  console.log(
    `simulated orchesjob start time: ${fmt(simulated * 1000)} ms (${python === null ? 'python3 not found: fixed 100 ms' : 'python3 start-up with orchesjob\'s imports, median of 5'})`,
  );
  for (const startSeconds of [simulated, 0]) {
    const label = startSeconds === 0 ? 'instant orchesjob (dispatcher overhead only)' : 'orchesjob taking the simulated start time';
    const one = await startsPerSecond(count, 1, startSeconds);
    const dflt = await startsPerSecond(count, null, startSeconds);
    const floor = await floorStartsPerSecond(count, 4, startSeconds);
    console.log(`${label}:`);
    console.log(`  starts/s, --max-concurrent-starts 1:      ${fmt(one)}`);
    // The target is for a real orchesjob's start time; with an instant one, the dispatcher's own work is the limit.
    const target = startSeconds === 0 ? '(no target)' : 'target >= 3x';
    console.log(`  starts/s, default (4):                    ${fmt(dflt)}   ratio ${fmt(dflt / one)}x   ${target}`);
    console.log(`  floor, plain spawns 4 at once, no ledger: ${fmt(floor)}   default is ${(dflt / floor).toFixed(2)}x of it   target >= 0.75x`);
  }
  for (const [label, extra] of [
    ['default (4)', []],
    ['--max-concurrent-starts 5', ['--max-concurrent-starts', '5']],
  ] as const) {
    const rounds = await firingLag([...extra]);
    for (const [r, { starts, claims }] of rounds.entries()) {
      console.log(`firing lag, 5 due on one second, ${label}, ${r === 0 ? "the dispatcher's first dispatch" : 'the dispatcher warm (2 s later)'}:`);
      console.log(`  start calls (ms):   max ${fmt(Math.max(...starts))}   all ${starts.map(fmt).join(', ')}   target <= 50`);
      console.log(`  claims (ms):        max ${fmt(Math.max(...claims))}   all ${claims.map(fmt).join(', ')}`);
    }
  }
  const pickups = await pickupLatency();
  console.log(`pickup after reserve returned (ms):         max ${fmt(Math.max(...pickups))}   all ${pickups.map(fmt).join(', ')}   target <= 100`);
}
