// Operator controls against a running dispatcher, ROUNDS times (default 20): `pause`, then a due
// reservation that must wait, then `resume`. Prints, from the ledger's clock (`recorded_at_ms`), how
// long after DispatchResumed was committed the held reservation's claim was (target: <= 100 ms), and
// how many claims happened while paused (target: 0). Also how soon after `reschedule` to "now" a
// reservation that was due in an hour is claimed.
// Usage: npm run build && node scripts/bench-controls.mjs [ROUNDS]
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import Database from 'better-sqlite3';

const root = resolve(new URL('..', import.meta.url).pathname);
const cli = join(root, 'dist/cli.js');
const standin = join(root, 'test/support/orchesjob-standin.mjs');
const rounds = Number(process.argv[2] ?? 20);
const dir = mkdtempSync(join(tmpdir(), 'orchesjob-reserver-bench-controls-'));
const db = join(dir, 'reserver.sqlite3');
const env = { ...process.env, ORCHESJOB_RESERVER_HOME: dir, ORCHESJOB_STANDIN_DIR: join(dir, 'standin') };

function cliSync(...args) {
  const r = spawnSync(process.execPath, [cli, args[0], '--db', db, ...args.slice(1)], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const events = () => {
  const h = new Database(db, { readonly: true });
  try {
    return h.prepare('SELECT type, run_key, recorded_at_ms FROM reservation_events ORDER BY position').all();
  } finally {
    h.close();
  }
};
async function until(check, ms = 5000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = check();
    if (v) return v;
    if (Date.now() > deadline) throw new Error('timed out');
    await sleep(20);
  }
}
const pct = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(xs.length * p))];

cliSync('list');
const run = spawn(process.execPath, [cli, 'run', '--db', db, '--orchesjob-bin', standin], { env, stdio: ['ignore', 'pipe', 'inherit'] });
run.stdout.resume();
try {
  await sleep(700);
  const lags = [];
  let claimsWhilePaused = 0;
  for (let i = 0; i < rounds; i++) {
    cliSync('pause', '--reason', `round ${i}`);
    cliSync('reserve', '--run-key', `held-${i}`, '--', '/bin/true');
    await sleep(150);
    cliSync('resume');
    const all = await until(() => {
      const e = events();
      return e.some((x) => x.type === 'Dispatched' && x.run_key === `held-${i}`) ? e : null;
    });
    const resumedAt = all.filter((x) => x.type === 'DispatchResumed').at(-1).recorded_at_ms;
    const pausedAt = all.filter((x) => x.type === 'DispatchPaused').at(-1).recorded_at_ms;
    const claim = all.find((x) => x.type === 'DispatchClaimed' && x.run_key === `held-${i}`);
    if (claim.recorded_at_ms < resumedAt && claim.recorded_at_ms > pausedAt) claimsWhilePaused++;
    lags.push(claim.recorded_at_ms - resumedAt);
  }
  const reschedule = [];
  for (let i = 0; i < Math.min(rounds, 10); i++) {
    cliSync('reserve', '--run-key', `later-${i}`, '--not-before', String(Math.floor(Date.now() / 1000) + 3600), '--', '/bin/true');
    const now = Math.floor(Date.now() / 1000);
    cliSync('reschedule', '--run-key', `later-${i}`, '--not-before', String(now));
    const all = await until(() => {
      const e = events();
      return e.some((x) => x.type === 'DispatchClaimed' && x.run_key === `later-${i}`) ? e : null;
    });
    const moved = all.find((x) => x.type === 'Rescheduled' && x.run_key === `later-${i}`).recorded_at_ms;
    reschedule.push(all.find((x) => x.type === 'DispatchClaimed' && x.run_key === `later-${i}`).recorded_at_ms - moved);
  }
  console.log(`resume -> claim of a held reservation, ${rounds} rounds: median ${pct(lags, 0.5)} ms, p95 ${pct(lags, 0.95)} ms, max ${Math.max(...lags)} ms (target <= 100 ms)`);
  console.log(`claims while paused: ${claimsWhilePaused} (target 0)`);
  console.log(`reschedule to now -> claim, ${reschedule.length} rounds: median ${pct(reschedule, 0.5)} ms, max ${Math.max(...reschedule)} ms`);
} finally {
  run.kill('SIGTERM');
  await new Promise((r) => run.on('exit', r));
  rmSync(dir, { recursive: true, force: true });
}
