// npm run demo: the main job end to end, in a temporary folder, with the stand-in orchesjob.
// Starts the dispatcher, reserves one job now, one 2 s ahead and one that expires first, prints the
// dispatcher's JSON Lines as they come and the final `list`, then stops the dispatcher (SIGTERM).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, statSync, readdirSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { consola } from 'consola';

const root = new URL('..', import.meta.url).pathname;
const cli = join(root, 'dist/cli.js');
const standin = join(root, 'test/support/orchesjob-standin.mjs');

function newestMtime(dir) {
  let newest = 0;
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const path = join(dir, entry.name);
    newest = Math.max(newest, entry.isDirectory() ? newestMtime(path) : statSync(path).mtimeMs);
  }
  return newest;
}

if (!existsSync(cli) || statSync(cli).mtimeMs < Math.max(newestMtime(join(root, 'src')), newestMtime(join(root, 'migrations')))) {
  consola.start('building dist/cli.js');
  const built = spawnSync('npm', ['run', '-s', 'build'], { cwd: root, stdio: 'inherit' });
  if (built.status !== 0) process.exit(built.status ?? 1);
}

const home = mkdtempSync(join(tmpdir(), 'orchesjob-reserver-demo-'));
const env = { ...process.env, ORCHESJOB_RESERVER_HOME: home, ORCHESJOB_BIN: standin, ORCHESJOB_STANDIN_DIR: join(home, 'orchesjob') };
const now = () => Math.floor(Date.now() / 1000);

function cliRun(args) {
  const r = spawnSync(process.execPath, [cli, ...args], { env, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`orchesjob-reserver ${args.join(' ')} failed (${r.status}): ${r.stderr}`);
  return { json: JSON.parse(r.stdout), text: r.stdout };
}

consola.info(`database: ${join(home, 'reserver.sqlite3')}; orchesjob: the stand-in ${standin}`);
consola.start('orchesjob-reserver run   (the dispatcher; its JSON Lines follow)');
const dispatcher = spawn(process.execPath, [cli, 'run'], { env, stdio: ['ignore', 'pipe', 'inherit'] });
const lines = [];
let buffered = '';
dispatcher.stdout.setEncoding('utf8');
dispatcher.stdout.on('data', (chunk) => {
  buffered += chunk;
  let nl;
  while ((nl = buffered.indexOf('\n')) !== -1) {
    const line = buffered.slice(0, nl);
    buffered = buffered.slice(nl + 1);
    lines.push(JSON.parse(line));
    process.stdout.write(`${line}\n`);
  }
});
const exited = new Promise((resolve) => dispatcher.on('exit', (code) => resolve(code)));
const waitFor = async (predicate, ms) => {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (lines.some(predicate)) return;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('the dispatcher did not print what the demo waited for');
};

let code = 0;
try {
  await waitFor((l) => l.event === 'reserver_started', 10_000);
  consola.start('reserve demo-now (no --not-before): dispatched at once');
  cliRun(['reserve', '--run-key', 'demo-now', '--metadata-json', '{"dag_id":"demo"}', '--', 'echo', 'hello now']);
  const at = now() + 2;
  consola.start(`reserve demo-later --not-before ${at} (2 s ahead)`);
  cliRun(['reserve', '--run-key', 'demo-later', '--not-before', String(at), '--orchesjob-start-option=--strict', '--', 'echo', 'hello later']);
  consola.start('reserve demo-expires: not before +10 s, but expires at +1 s: never dispatched');
  cliRun(['reserve', '--run-key', 'demo-expires', '--not-before', String(now() + 10), '--expires-at', String(now() + 1), '--', 'echo', 'never']);
  await waitFor((l) => l.event === 'dispatch_succeeded' && l.run_key === 'demo-later', 10_000);
  await waitFor((l) => l.event === 'reservation_expired' && l.run_key === 'demo-expires', 10_000);
  consola.start('stopping the dispatcher (SIGTERM)');
  dispatcher.kill('SIGTERM');
  const exitCode = await exited;
  if (exitCode !== 0) throw new Error(`the dispatcher exited with ${exitCode}`);
  consola.start('orchesjob-reserver list');
  const { json: listed, text } = cliRun(['list']);
  process.stdout.write(text);
  const statuses = Object.fromEntries(listed.reservations.map((r) => [r.run_key, r.reservation_status]));
  const expected = { 'demo-now': 'DISPATCHED', 'demo-later': 'DISPATCHED', 'demo-expires': 'EXPIRED' };
  for (const [key, status] of Object.entries(expected)) {
    if (statuses[key] !== status) throw new Error(`${key} is ${statuses[key]}, expected ${status}`);
  }
  consola.success('demo-now and demo-later DISPATCHED, demo-expires EXPIRED');
} catch (error) {
  consola.error(error instanceof Error ? error.message : error);
  dispatcher.kill('SIGKILL');
  code = 1;
} finally {
  rmSync(home, { recursive: true, force: true });
}
process.exit(code);
