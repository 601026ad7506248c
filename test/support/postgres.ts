/**
 * A private PostgreSQL for the fleet tests (`test/int/fleet-sql.int.test.ts`,
 * `test/e2e/fleet.e2e.test.ts`): Debian's postgresql (15 or newer) on a temporary data folder, on
 * 127.0.0.1 and a free port, made with `initdb` and run with `pg_ctl`, as an operator would. initdb
 * refuses to run as root: as root, every server program runs as the `postgres` system user (the
 * package creates it), in a temp folder that user owns; otherwise as the current user.
 *
 * Clients reach it over TCP with a password (scram-sha-256; the superuser `postgres`, and login roles
 * the tests create), through the real `psql`: the queries of docs/fleet.md use psql's variables
 * (`:'run_key'`), so the tests run them the way an operator does. No password is put in this
 * process's environment: rsyslogd, spawned with it, reads only the password file it is given.
 *
 * Importing this module registers an `afterAll` that fails the file when a server started here is
 * still running (and stops it at once), and removes every server's folder. Stop them in the test.
 */
import { spawnSync } from 'node:child_process';
import { accessSync, chownSync, constants, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll } from 'vitest';
import { freePort } from './rsyslog.js';

/** The folder of initdb, pg_ctl and psql (the newest installed major version), or null. */
export const PG_BIN: string | null = findPgBin();

/** Debian's rsyslog-pgsql: the ompgsql output module. */
export const OMPGSQL_MODULE = '/usr/lib/x86_64-linux-gnu/rsyslog/ompgsql.so';

function findPgBin(): string | null {
  const root = '/usr/lib/postgresql';
  let versions: string[] = [];
  try {
    versions = readdirSync(root).filter((v) => /^\d+$/.test(v) && Number(v) >= 15);
  } catch {
    return null;
  }
  for (const version of versions.sort((a, b) => Number(b) - Number(a))) {
    const bin = join(root, version, 'bin');
    try {
      for (const tool of ['initdb', 'pg_ctl', 'postgres', 'psql']) accessSync(join(bin, tool), constants.X_OK);
      return bin;
    } catch {
      /* incomplete: try the next */
    }
  }
  return null;
}

export function ompgsqlInstalled(): boolean {
  return existsSync(OMPGSQL_MODULE);
}

/** The superuser the data folder is made with, and its password. */
export const SUPERUSER = 'postgres';
const SUPERUSER_PASSWORD = 'fleet-test-superuser';

export interface Credentials {
  readonly user: string;
  readonly password: string;
}

export interface PsqlOptions {
  /** Default: `fleet`. */
  readonly db?: string;
  /** Default: the superuser. */
  readonly as?: Credentials;
  /** psql variables (`-v name=value`), for `:name` and `:'name'` in the script. */
  readonly vars?: Readonly<Record<string, string | number>>;
  /** Working folder (for `\copy ... FROM 'file'`). */
  readonly cwd?: string;
}

export interface PsqlResult {
  readonly status: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface Postgres {
  readonly port: number;
  /** The server's folder: data/, the server log. */
  readonly dir: string;
  /** Run `script` through `psql -f -` (ON_ERROR_STOP, unaligned, tuples only); the result, whatever it is. */
  psqlRaw(script: string, options?: PsqlOptions): PsqlResult;
  /** As `psqlRaw`, failing (throwing with psql's stderr) unless psql exits 0; returns stdout. */
  psql(script: string, options?: PsqlOptions): string;
  /** The rows of one query (no trailing `;` needed), as JSON objects: `json_agg` of the query's rows. */
  rows<T = Record<string, unknown>>(query: string, options?: PsqlOptions): T[];
  /** `pg_ctl stop -m fast` (clients are disconnected, the server shuts down cleanly). */
  stop(): void;
  /** `pg_ctl start`, waiting until it accepts connections. */
  start(): void;
  readonly running: boolean;
  /** The server log so far. */
  log(): string;
}

interface Account {
  readonly uid: number;
  readonly gid: number;
}

/** As root: the `postgres` system user. Otherwise: run as we are. */
function serverAccount(): Account | null {
  if (process.getuid?.() !== 0) return null;
  const line = readFileSync('/etc/passwd', 'utf8')
    .split('\n')
    .find((l) => l.startsWith('postgres:'));
  if (line === undefined) throw new Error('running as root, and there is no postgres user to run PostgreSQL as (Debian: apt-get install postgresql)');
  const [, , uid, gid] = line.split(':');
  return { uid: Number(uid), gid: Number(gid) };
}

const started = new Set<Postgres>();
const folders: string[] = [];

/** Run a server program as the server's account; throws with its output unless it exits 0. */
function runServerTool(bin: string, tool: string, args: readonly string[], account: Account | null, cwd: string): string {
  const r = spawnSync(join(bin, tool), args, {
    cwd,
    encoding: 'utf8',
    timeout: 90_000,
    env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin', LANG: 'C.UTF-8', TZ: 'UTC' },
    ...(account === null ? {} : { uid: account.uid, gid: account.gid }),
  });
  if (r.status !== 0) throw new Error(`${tool} ${args.join(' ')} failed (${r.status ?? r.signal}):\n${r.stdout}${r.stderr}`);
  return r.stdout;
}

/**
 * initdb a fresh data folder, start the server on 127.0.0.1 and a free port, and create the database
 * `fleet` (UTF8, as docs/fleet.md says).
 */
export async function startPostgres(): Promise<Postgres> {
  if (PG_BIN === null) throw new Error('PostgreSQL is not installed (Debian: apt-get install postgresql)');
  const bin = PG_BIN;
  const account = serverAccount();
  const dir = mkdtempSync(join(tmpdir(), 'orchesjob-reserver-pg-'));
  folders.push(dir);
  if (account !== null) chownSync(dir, account.uid, account.gid);
  const data = join(dir, 'data');
  const logFile = join(dir, 'server.log');
  const pwfile = join(dir, 'superuser-password');
  writeFileSync(pwfile, `${SUPERUSER_PASSWORD}\n`, { mode: 0o600 });
  if (account !== null) chownSync(pwfile, account.uid, account.gid);
  runServerTool(
    bin,
    'initdb',
    ['-D', data, '-U', SUPERUSER, `--pwfile=${pwfile}`, '-E', 'UTF8', '--locale=C', '--auth-local=trust', '--auth-host=scram-sha-256', '--no-sync'],
    account,
    dir,
  );
  const port = await freePort();
  // The socket goes in the server's folder, not /var/run/postgresql (the system server's).
  const serverOptions = `-h 127.0.0.1 -p ${port} -k ${dir}`;
  let running = false;

  const psqlRaw = (script: string, options: PsqlOptions = {}): PsqlResult => {
    const as = options.as ?? { user: SUPERUSER, password: SUPERUSER_PASSWORD };
    const vars = Object.entries(options.vars ?? {}).flatMap(([k, v]) => ['-v', `${k}=${v}`]);
    const r = spawnSync(
      join(bin, 'psql'),
      ['-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-h', '127.0.0.1', '-p', String(port), '-U', as.user, '-d', options.db ?? 'fleet', ...vars, '-f', '-'],
      {
        input: script,
        encoding: 'utf8',
        timeout: 60_000,
        maxBuffer: 256 * 1024 * 1024,
        ...(options.cwd === undefined ? {} : { cwd: options.cwd }),
        env: { ...process.env, PGPASSWORD: as.password, PGTZ: 'UTC', PGCONNECT_TIMEOUT: '10', PGAPPNAME: 'orchesjob-reserver-tests' },
      },
    );
    return { status: r.status, stdout: r.stdout, stderr: r.stderr };
  };
  const psql = (script: string, options: PsqlOptions = {}): string => {
    const r = psqlRaw(script, options);
    if (r.status !== 0) throw new Error(`psql failed (${r.status}):\n${r.stderr}\n--- script:\n${script}`);
    return r.stdout;
  };

  const pg: Postgres = {
    port,
    dir,
    psqlRaw,
    psql,
    rows<T>(query: string, options: PsqlOptions = {}): T[] {
      const body = query.trim().replace(/;\s*$/, '');
      const out = psql(`SELECT coalesce(json_agg(q), '[]'::json) FROM (\n${body}\n) AS q;\n`, options);
      return JSON.parse(out) as T[];
    },
    stop() {
      runServerTool(bin, 'pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop'], account, dir);
      running = false;
    },
    start() {
      runServerTool(bin, 'pg_ctl', ['-D', data, '-l', logFile, '-o', serverOptions, '-w', '-t', '60', 'start'], account, dir);
      running = true;
    },
    get running() {
      return running;
    },
    log: () => (existsSync(logFile) ? readFileSync(logFile, 'utf8') : ''),
  };
  started.add(pg);
  pg.start();
  psql(`CREATE DATABASE fleet ENCODING 'UTF8' TEMPLATE template0;\n`, { db: 'postgres' });
  return pg;
}

/** A login role in `group` (fleet_ingest, fleet_reader), for the ingest or a reader. */
export function createLogin(pg: Postgres, user: string, group: string): Credentials {
  const password = `${user}-password`;
  pg.psql(`CREATE ROLE ${user} LOGIN PASSWORD '${password}' IN ROLE ${group};\n`);
  return { user, password };
}

/**
 * A libpq password file for `who` on this server (what deploy/central/rsyslog.conf's `passfile=`
 * names), mode 0600: libpq ignores a password file others can read.
 */
export function writePassfile(pg: Postgres, file: string, who: Credentials): void {
  writeFileSync(file, `127.0.0.1:${pg.port}:fleet:${who.user}:${who.password}\n`, { mode: 0o600 });
}

afterAll(() => {
  const leaked: string[] = [];
  for (const pg of started) {
    if (pg.running) {
      leaked.push(`PostgreSQL on port ${pg.port} (${pg.dir}) is still running`);
      try {
        pg.stop();
      } catch {
        /* best effort */
      }
    }
  }
  started.clear();
  for (const dir of folders.splice(0)) rmSync(dir, { recursive: true, force: true });
  if (leaked.length > 0) throw new Error(`leaked PostgreSQL servers: ${leaked.join('; ')}`);
});
