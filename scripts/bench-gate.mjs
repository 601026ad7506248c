// A gated `reserve` against a local one, whole process (node dist/cli.js ...), interleaved, each the
// median of RUNS (default 31): prints both and their ratio, next to the target (at most 1.3x).
// Usage: npm run build && node scripts/bench-gate.mjs [RUNS]
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const root = resolve(new URL('..', import.meta.url).pathname);
const cli = join(root, 'dist/cli.js');
const runs = Number(process.argv[2] ?? 31);
const dir = mkdtempSync(join(tmpdir(), 'orchesjob-reserver-bench-gate-'));
const db = join(dir, 'reserver.sqlite3');
const policy = join(dir, 'policy.toml');
writeFileSync(policy, `db = ${JSON.stringify(db)}\n[keys.bench]\nverbs = ["reserve"]\nrun_key_prefix = "b/"\ncommands = ["/bin/true"]\nstart_options = ["--strict"]\n`, { mode: 0o600 });
const env = { ...process.env, ORCHESJOB_RESERVER_HOME: dir };

function timed(args, extraEnv = {}) {
  const start = process.hrtime.bigint();
  const r = spawnSync(process.execPath, [cli, ...args], { env: { ...env, ...extraEnv }, encoding: 'utf8' });
  const ms = Number(process.hrtime.bigint() - start) / 1e6;
  if (r.status !== 0) throw new Error(`${args.join(' ')} exited ${r.status}: ${r.stderr}`);
  return ms;
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const reserveArgs = (key) => ['--run-key', key, '--metadata-json', '{"dag_id":"d"}', '--orchesjob-start-option', '--strict', '--', '/bin/true', 'x'];
try {
  timed(['list', '--db', db]); // create and migrate the database outside the measurement
  const local = [];
  const gated = [];
  for (let i = 0; i < runs + 2; i++) {
    const l = timed(['reserve', '--db', db, ...reserveArgs(`b/local-${i}`)]);
    const line = `orchesjob-reserver reserve ${reserveArgs(`b/gate-${i}`).map((w) => `'${w}'`).join(' ')}`;
    const g = timed(['gate', '--policy', policy, '--key', 'bench'], { SSH_ORIGINAL_COMMAND: line });
    if (i >= 2) { // the first two warm the page cache
      local.push(l);
      gated.push(g);
    }
  }
  const ratio = median(gated) / median(local);
  console.log(`local reserve: median ${median(local).toFixed(1)} ms of ${runs}`);
  console.log(`gated reserve: median ${median(gated).toFixed(1)} ms of ${runs}`);
  console.log(`ratio ${ratio.toFixed(2)}x (target: at most 1.30x) ${ratio <= 1.3 ? 'ok' : 'OVER'}`);
} finally {
  rmSync(dir, { recursive: true, force: true });
}
