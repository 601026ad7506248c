/**
 * End to end: the package as a user installs it. `npm pack` the project, `npm install -g` the tarball
 * into a temporary prefix, and run the installed `orchesjob-reserver` (--version, --help, reserve,
 * status, a dispatcher that starts the reservation through the orchesjob stand-in, events).
 *
 * The install resolves dependencies from npm's cache first (`--prefer-offline`: `npm ci` filled it),
 * and better-sqlite3's install script (prebuild-install, else a 1-2 minute compile) finds a local
 * prebuild made from the project's own compiled better-sqlite3 when the versions match, so the
 * install takes seconds. Its install script still has to run for the CLI to work, so a package
 * manager that skipped it fails here. PACK_E2E_FROM_SOURCE=1 compiles better-sqlite3 from source
 * instead, as on a host without a prebuild.
 *
 * `npm pack --ignore-scripts`: `npm test` has just built dist/; packing must not rebuild it under
 * the other tests' feet.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { delimiter, dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileBundle } from '../../src/bundle.js';
import { SUBCOMMAND_NAMES } from '../../src/commands/index.js';
import { ROOT, sandbox, STANDIN, stripAnsi } from '../support/harness.js';

const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { name: string; version: string };
const NPM = process.platform === 'win32' ? 'npm.cmd' : 'npm';
const FROM_SOURCE = process.env['PACK_E2E_FROM_SOURCE'] === '1';

interface Result {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

/** Run a command to its end (at most `timeoutMs`), without blocking the test's event loop. */
function run(file: string, args: readonly string[], opts: { cwd: string; env?: NodeJS.ProcessEnv; timeoutMs?: number }): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on('data', (c: Buffer) => out.push(c));
    child.stderr.on('data', (c: Buffer) => err.push(c));
    const timeoutMs = opts.timeoutMs ?? 20_000;
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      if (signal === 'SIGKILL') reject(new Error(`${file} ${args.join(' ')} did not finish within ${timeoutMs} ms`));
      else resolve({ code, stdout: Buffer.concat(out).toString('utf8'), stderr: Buffer.concat(err).toString('utf8') });
    });
  });
}

/** The environment of the installed CLI: nothing from the project, node on PATH, its own home. */
function cliEnv(home: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ORCHESJOB') && !k.startsWith('npm_')) env[k] = v;
  env['PATH'] = [dirname(process.execPath), process.env['PATH'] ?? ''].join(delimiter);
  env['ORCHESJOB_RESERVER_HOME'] = home;
  return { ...env, ...extra };
}

/**
 * A prebuild tarball of the project's compiled better-sqlite3, named as prebuild-install looks for
 * it; null when there is none (or PACK_E2E_FROM_SOURCE=1). Returns the folder holding it.
 */
function localPrebuilds(dir: string): string | null {
  const moduleDir = join(ROOT, 'node_modules', 'better-sqlite3');
  const binary = join(moduleDir, 'build', 'Release', 'better_sqlite3.node');
  if (FROM_SOURCE || !existsSync(binary)) return null;
  const { version } = JSON.parse(readFileSync(join(moduleDir, 'package.json'), 'utf8')) as { version: string };
  const name = `better-sqlite3-v${version}-node-v${process.versions.modules}-${process.platform}-${process.arch}.tar.gz`;
  mkdirSync(dir, { recursive: true });
  const tar = spawnSync('tar', ['-czf', join(dir, name), '-C', moduleDir, 'build/Release/better_sqlite3.node']);
  return tar.status === 0 ? dir : null;
}

/** The commands whose bundle has a code cache: all of them (scripts/build.mjs). */
const CACHED = SUBCOMMAND_NAMES;

/** The bundles of `dist` whose V8 code cache this Node rejects (a cache is worth nothing if it is). */
function rejectedCodeCaches(dist: string): string[] {
  const bundles = ['main.js', ...CACHED.map((n) => `commands/${n}.js`)];
  return bundles.filter((b) => {
    const file = join(dist, b);
    return compileBundle(file, readFileSync(file, 'utf8'), readFileSync(`${file}.v8cache`)).cachedDataRejected !== false;
  });
}

describe('the npm package', () => {
  it("has a code cache this Node accepts beside each command's bundle", () => {
    expect(rejectedCodeCaches(join(ROOT, 'dist'))).toEqual([]);
  });

  it('ships only what runs: dist/ JavaScript and its code caches, the spawn addon, package.json, README, LICENSE', async () => {
    const r = await run(NPM, ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT });
    expect(r.code, r.stderr).toBe(0);
    const [report] = JSON.parse(r.stdout) as [{ files: { path: string; size: number }[]; unpackedSize: number }];
    const files = report.files.map((f) => f.path).sort();
    const unexpected = files.filter(
      (f) =>
        !['package.json', 'README.md', 'dist/package.json', 'dist/native/spawn.node'].includes(f) &&
        !/^LICEN[CS]E(\.\w+)?$/i.test(f) &&
        !/^dist\/.+\.js(\.map|\.v8cache)?$/.test(f),
    );
    expect(unexpected, 'files that do not belong in the package').toEqual([]);
    expect(files).toContain('dist/cli.js');
    expect(files).toContain('dist/native/spawn.node'); // compiled by the build (native/spawn.c)
    // A source map ships only beside its script (whether maps ship at all is package.json's `files`).
    const orphanMaps = files.filter((f) => f.endsWith('.map') && !files.includes(f.slice(0, -'.map'.length)));
    expect(orphanMaps).toEqual([]);
    // Every bundle cli.js can load is in the package, with its code cache.
    for (const name of SUBCOMMAND_NAMES) expect(files).toContain(`dist/commands/${name}.js`);
    for (const name of CACHED) expect(files).toContain(`dist/commands/${name}.js.v8cache`);
    expect(files).toContain('dist/main.js');
    const orphanCaches = files.filter((f) => f.endsWith('.v8cache') && !files.includes(f.slice(0, -'.v8cache'.length)));
    expect(orphanCaches).toEqual([]);
  });

  it(
    'installs with `npm install -g` into a fresh prefix, and the installed command works',
    async () => {
      const sb = sandbox();
      const tmp = sb.dir;
      const packDir = join(tmp, 'pack');
      const prefix = join(tmp, 'prefix');
      const home = join(tmp, 'home');
      mkdirSync(packDir);

      const packed = await run(NPM, ['pack', '--json', '--ignore-scripts', '--pack-destination', packDir], { cwd: ROOT, timeoutMs: 120_000 });
      expect(packed.code, packed.stderr).toBe(0);
      const [{ filename }] = JSON.parse(packed.stdout) as [{ filename: string }];
      expect(filename).toBe(`${pkg.name}-${pkg.version}.tgz`);

      const prebuilds = localPrebuilds(join(tmp, 'prebuilds'));
      const installEnv: NodeJS.ProcessEnv = { ...process.env };
      for (const k of Object.keys(installEnv)) if (k.startsWith('npm_')) delete installEnv[k]; // not `npm test`'s settings
      if (prebuilds !== null) installEnv['npm_config_better_sqlite3_local_prebuilds'] = prebuilds;
      const started = Date.now();
      const install = await run(
        NPM,
        ['install', '--global', '--prefix', prefix, '--prefer-offline', '--no-audit', '--no-fund', join(packDir, filename)],
        { cwd: tmp, env: installEnv, timeoutMs: 590_000 },
      );
      const seconds = ((Date.now() - started) / 1000).toFixed(1);
      expect(install.code, install.stdout + install.stderr).toBe(0);
      const installed = join(prefix, 'lib', 'node_modules', pkg.name);
      const compiled = existsSync(join(installed, 'node_modules', 'better-sqlite3', 'build', 'Release', 'obj'));
      console.info(`npm install -g of ${filename}: ${seconds} s (better-sqlite3 ${compiled ? 'compiled from source' : 'from the local prebuild'})`);

      // npm gives every file one fixed mtime; the caches must survive that (src/bundle.ts compares them).
      expect(rejectedCodeCaches(join(installed, 'dist'))).toEqual([]);

      const bin = join(prefix, 'bin', 'orchesjob-reserver');
      const cli = (args: readonly string[], extra: Record<string, string> = {}) =>
        run(bin, args, { cwd: tmp, env: cliEnv(home, extra) });

      const version = await cli(['--version']);
      expect({ code: version.code, stdout: version.stdout.trim() }, version.stderr).toEqual({
        code: 0,
        stdout: expect.stringContaining(pkg.version),
      });
      const help = await cli(['--help']);
      expect(help.code, help.stderr).toBe(0);
      for (const command of ['reserve', 'run', 'status', 'events']) expect(stripAnsi(help.stdout + help.stderr)).toContain(command);

      // reserve -> run (starts it through the orchesjob stand-in) -> status, on a fresh database.
      const reserved = await cli(['reserve', '--run-key', 'pack-1', '--', 'echo', 'installed']);
      expect(reserved.code, reserved.stderr).toBe(0);
      expect(JSON.parse(reserved.stdout)).toMatchObject({ created: true, reservation: { run_key: 'pack-1', reservation_status: 'RESERVED' } });

      // The sandbox's stand-in folder: the harness checks it for leaked stand-ins.
      const standin = { ORCHESJOB_BIN: STANDIN, ORCHESJOB_STANDIN_DIR: sb.oj };
      const dispatcher = spawn(bin, ['run', '--poll-interval', '0.5'], { cwd: tmp, env: cliEnv(home, standin), stdio: ['ignore', 'pipe', 'pipe'] });
      const out: Buffer[] = [];
      const err: Buffer[] = [];
      dispatcher.stdout.on('data', (c: Buffer) => out.push(c));
      dispatcher.stderr.on('data', (c: Buffer) => err.push(c));
      const exited = new Promise<number | null>((resolve) => dispatcher.once('exit', resolve));
      let reservation: any;
      try {
        const deadline = Date.now() + 15_000;
        for (;;) {
          const status = await cli(['status', '--run-key', 'pack-1']);
          expect(status.code, status.stderr).toBe(0);
          reservation = JSON.parse(status.stdout).reservation;
          if (!['RESERVED', 'DISPATCHING'].includes(reservation.reservation_status) || Date.now() > deadline) break;
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      } finally {
        dispatcher.kill('SIGTERM');
        expect(await exited, Buffer.concat([...out, ...err]).toString('utf8')).toBe(0);
      }
      expect(reservation).toMatchObject({ run_key: 'pack-1', reservation_status: 'DISPATCHED', command: ['echo', 'installed'] });
      expect(reservation.job_id).toEqual(expect.any(String));
      const lines = Buffer.concat(out)
        .toString('utf8')
        .split('\n')
        .filter(Boolean)
        .map((line) => JSON.parse(line) as { event: string; spawner?: string });
      const events = lines.map((line) => line.event);
      // The installed package's addon loads where it was built: starts go through posix_spawn.
      expect(lines[0]).toMatchObject({ event: 'reserver_started', spawner: 'posix_spawn' });
      expect(events).toEqual(expect.arrayContaining(['reserver_started', 'orchesjob_start_call', 'dispatch_succeeded', 'reserver_stopped']));
    },
    600_000,
  );
});
