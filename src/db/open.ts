import { closeSync, existsSync, fsyncSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import BetterSqlite3 from 'better-sqlite3';
import type { SqliteDatabase } from 'kysely';
import { Kysely, SqliteDialect } from 'kysely';
import { SCHEMA_VERSION } from '../../migrations/version.js';
import { messageOf, ReserverError } from '../errors.js';
import type { Ledger } from './handle.js';
import { BUSY_TIMEOUT_MS } from './handle.js';
import type { Database } from './schema.js';

export type { Ledger } from './handle.js';

/**
 * Open (creating when missing) the database at `path` and bring its schema up to date.
 *
 * When `PRAGMA user_version` says the schema is current, that one pragma is all the opening costs;
 * migrations are loaded and run only otherwise. A folder, or a file that is not SQLite, is refused
 * before anything is written to it.
 */
export async function openLedger(path: string): Promise<Ledger> {
  const file = resolve(path);
  refuseFolder(file);
  const created = existsSync(file) ? null : { folders: [] as string[] };
  let raw: BetterSqlite3.Database;
  // Whoever can write the database can make the dispatcher run commands: what is created here
  // (the folder, the file, and its -wal/-shm, which SQLite gives the file's mode) gets no world
  // permissions. Only for this moment: the jobs the dispatcher starts inherit the usual umask.
  const umask = process.umask(process.umask() | 0o007);
  try {
    const firstFolder = mkdirSync(dirname(file), { recursive: true, mode: 0o750 });
    if (created !== null && firstFolder !== undefined) created.folders = foldersFrom(firstFolder, dirname(file));
    raw = new BetterSqlite3(file, { timeout: BUSY_TIMEOUT_MS, nativeBinding: nativeAddon() });
  } catch (error) {
    throw new ReserverError('GENERAL', `cannot open database ${file}: ${messageOf(error)}`);
  } finally {
    process.umask(umask);
  }
  try {
    const version = readUserVersion(raw, file);
    // Durability (docs/durability.md): in WAL mode better-sqlite3's default (NORMAL) syncs only at checkpoints,
    // so a commit, and what a command prints after it, could be lost to a power cut. FULL syncs the WAL
    // in every COMMIT, before the commit becomes visible to other connections; EXTRA costs the same in
    // WAL mode and also syncs the folder after a rollback journal's deletion (the commit of the
    // rollback-journal mode that adopting a Python-tool file uses).
    raw.pragma('synchronous = EXTRA');
    raw.pragma('foreign_keys = ON');
    const db = new Kysely<Database>({ dialect: new SqliteDialect({ database: withStatementCache(raw) }) });
    const ledger: Ledger = { path: file, db, raw, close: () => db.destroy() };
    if (version !== SCHEMA_VERSION) {
      if (version > SCHEMA_VERSION) {
        throw new ReserverError(
          'GENERAL',
          `database ${file} has schema version ${version}, newer than this orchesjob-reserver knows (${SCHEMA_VERSION}); upgrade orchesjob-reserver`,
        );
      }
      const { migrate } = await import('./migrate.js');
      await migrate(ledger);
    }
    // SQLite fsyncs the folder when it first syncs a -wal or -journal, which covers a new database's
    // name too; nothing syncs the names of the folders made for it, in the folders above. Both are
    // synced here, before anything this process acknowledges depends on them.
    if (created !== null) for (const folder of [dirname(file), ...created.folders.map((f) => dirname(f))]) syncFolder(folder);
    return ledger;
  } catch (error) {
    if (raw.open) raw.close();
    throw error;
  }
}

/**
 * better-sqlite3's compiled addon, named directly. Left to itself better-sqlite3 asks the `bindings`
 * package, which tries a dozen paths with require() and reads its caller from a stack trace:
 * milliseconds of every command's start-up. `undefined` (that search) where `require` is not
 * available (the ES modules of the tests) or the addon is not at its usual place.
 */
function nativeAddon(): string | undefined {
  if (typeof require !== 'function') return undefined;
  try {
    const addon = join(dirname(require.resolve('better-sqlite3/package.json')), 'build', 'Release', 'better_sqlite3.node');
    return existsSync(addon) ? addon : undefined;
  } catch {
    return undefined;
  }
}

/**
 * fsync a folder, so that the names created or removed in it survive a power cut (POSIX: syncing a file
 * does not sync its folder entry).
 */
function syncFolder(folder: string): void {
  const fd = openSync(folder, 'r');
  try {
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** The folders `mkdirSync(..., { recursive: true })` made, from the first one it returned down to `last`. */
function foldersFrom(first: string, last: string): string[] {
  const folders: string[] = [];
  for (let folder = last; folder.length >= first.length; folder = dirname(folder)) {
    folders.unshift(folder);
    if (folder === first) break;
  }
  return folders;
}

/** Statements kept prepared; beyond this, the oldest is dropped. */
const STATEMENT_CACHE_SIZE = 256;

/**
 * Kysely prepares every query anew; in the dispatcher's loop preparing cost more than running. The
 * same SQL text gets the same better-sqlite3 statement (they are reusable; nothing here iterates one
 * while another call runs it, as every call is synchronous).
 */
function withStatementCache(raw: BetterSqlite3.Database): SqliteDatabase {
  const cache = new Map<string, BetterSqlite3.Statement>();
  return {
    close: () => raw.close(),
    prepare(sql: string) {
      let statement = cache.get(sql);
      if (statement === undefined) {
        statement = raw.prepare(sql);
        if (cache.size >= STATEMENT_CACHE_SIZE) cache.delete(cache.keys().next().value as string);
        cache.set(sql, statement);
      }
      return statement;
    },
  };
}

function refuseFolder(file: string): void {
  let isFolder = false;
  try {
    isFolder = statSync(file).isDirectory();
  } catch {
    return; // missing: it will be created
  }
  if (isFolder) {
    throw new ReserverError('INVALID_ARGUMENT', `database path ${file} is a folder, not an SQLite file`);
  }
}

function readUserVersion(raw: BetterSqlite3.Database, file: string): number {
  try {
    return raw.pragma('user_version', { simple: true }) as number;
  } catch (error) {
    const code = (error as { code?: string }).code;
    if (code === 'SQLITE_NOTADB' || code === 'SQLITE_CORRUPT') {
      throw new ReserverError(
        'INVALID_ARGUMENT',
        `${file} is not an orchesjob-reserver database (not an SQLite file); it was left untouched`,
      );
    }
    throw new ReserverError('GENERAL', `cannot read database ${file}: ${messageOf(error)}`);
  }
}

/**
 * Refuse a database that anyone on the host could write, or whose folder anyone could write (they
 * could replace it): whoever writes reservations runs commands as the dispatcher's user.
 */
export function refuseWorldWritable(path: string): void {
  const file = resolve(path);
  for (const target of [file, dirname(file)]) {
    let mode: number;
    try {
      mode = statSync(target).mode;
    } catch {
      continue; // not created yet: it will be created without world permissions
    }
    if ((mode & 0o002) !== 0) {
      throw new ReserverError(
        'GENERAL',
        `refusing to run: ${target} is world-writable, so any user could make this dispatcher run commands; ` +
          `remove the permission (chmod o-w ${target})`,
      );
    }
  }
}
