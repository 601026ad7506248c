/**
 * End to end: every bad input of DESIGN.md ("Bad input gets a clear error and exit 2, and writes
 * nothing"), run against a home that does not exist yet (no folder, no database may appear) and, for
 * the first case of each group, against a seeded database (it must stay byte-for-byte the same).
 * Messages are pinned with inline snapshots.
 */
import { existsSync, mkdirSync, readdirSync, writeFileSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { execute } from '../../src/ledger.js';
import type { RunResult, Sandbox } from '../support/harness.js';
import { filesIn, ledgerRows, runCli, sandbox, sandboxAt, sha256, withLedger } from '../support/harness.js';

/** exit 2, nothing on stdout, `{"error": ...}` as the last stderr line; returns the message. */
function invalid(r: RunResult): string {
  expect({ code: r.code, stdout: r.stdout }, r.stderr).toEqual({ code: 2, stdout: '' });
  expect(Object.keys(r.lastStderrJson ?? {}), r.stderr).toEqual(['error']);
  return r.lastStderrJson.error as string;
}

/** A home with a database holding one reservation (run key `seeded`). */
async function seededHome(): Promise<{ home: Sandbox; db: string; sha: string }> {
  const home = sandbox();
  const db = home.db;
  await withLedger(db, (ledger) =>
    execute(
      ledger.db,
      null,
      { type: 'Reserve', runKey: 'seeded', command: ['prog'], orchesjobStartOptions: [], metadata: null, notBefore: null, expiresAt: null },
      { actor: 'test:seed' },
    ),
  );
  return { home, db, sha: sha256(db) };
}

/**
 * Run each argv, all at once, with a home that does not exist yet: any write would have to create the
 * database (and the folder), so "no folder appeared" proves "nothing written". The first argv also runs
 * against a home whose database holds one reservation, which must stay byte-for-byte the same.
 * Asserts exit 2 for all, and the same message for both homes; returns the messages, in order.
 */
async function rejects(cases: readonly (readonly string[])[]): Promise<string[]> {
  const seeded = await seededHome();
  const rowsBefore = ledgerRows(seeded.db);
  const filesBefore = filesIn(seeded.home.dir); // a read-only reader may leave an empty -wal/-shm behind
  const missingHome = sandboxAt(join(sandbox().dir, 'not-created-yet'));
  const [withDb, ...runs] = await Promise.all([
    runCli(cases[0]!, { home: seeded.home }),
    ...cases.map((args) => runCli(args, { home: missingHome })),
  ]);
  const messages = runs.map((r) => invalid(r!).replaceAll(missingHome.dir, '<HOME>'));
  expect(invalid(withDb!).replaceAll(seeded.home.dir, '<HOME>')).toBe(messages[0]);
  expect(existsSync(missingHome.dir), 'a failed command created the home folder').toBe(false);
  expect(filesIn(seeded.home.dir)).toEqual(filesBefore);
  expect(sha256(seeded.db)).toBe(seeded.sha);
  expect(ledgerRows(seeded.db)).toEqual(rowsBefore);
  return messages;
}

describe('reserve: bad input is exit 2 and writes nothing', () => {
  it('run key: empty, control characters, over 512 characters, missing', async () => {
    const messages = await rejects([
      ['reserve', '--run-key', '', '--', 'prog'],
      ['reserve', '--run-key', 'a\tb', '--', 'prog'],
      ['reserve', '--run-key', 'a\u007fb', '--', 'prog'],
      ['reserve', '--run-key', 'a\u0085b', '--', 'prog'],
      ['reserve', '--run-key', 'é'.repeat(513), '--', 'prog'],
      ['reserve', '--', 'prog'],
      ['reserve', '--run-key', '--', 'prog'],
    ]);
    expect(messages).toMatchInlineSnapshot(`
      [
        "Invalid --run-key: empty value.",
        "Invalid --run-key: contains a control character.",
        "Invalid --run-key: contains a control character.",
        "Invalid --run-key: contains a control character.",
        "Invalid --run-key: longer than 512 characters.",
        "the following arguments are required: --run-key",
        "option --run-key requires a value",
      ]
    `);
  });

  it('a run key of exactly 512 characters (code points, not bytes) is accepted', async () => {
    sandbox();
    const [ascii, accented] = await Promise.all([
      runCli(['reserve', '--run-key', 'x'.repeat(512), '--', 'prog']),
      runCli(['reserve', '--run-key', 'é'.repeat(512), '--', 'prog']),
    ]);
    expect([ascii.code, accented.code, ascii.stderr, accented.stderr]).toEqual([0, 0, '', '']);
    expect(accented.json.reservation.run_key).toBe('é'.repeat(512));
  });

  it('metadata: not an object, invalid JSON, over 64 KiB', async () => {
    const big = `{"a":"${'x'.repeat(64 * 1024 - 7)}"}`; // 65537 bytes
    expect(Buffer.byteLength(big)).toBe(64 * 1024 + 1);
    const messages = await rejects(
      ['[1,2]', 'null', '"text"', '{', '', big].map((m) => [
        'reserve',
        '--run-key',
        'k',
        '--metadata-json',
        m,
        '--',
        'prog',
      ]),
    );
    expect(messages).toMatchInlineSnapshot(`
      [
        "Invalid metadata_json: must be a JSON object.",
        "Invalid metadata_json: must be a JSON object.",
        "Invalid metadata_json: must be a JSON object.",
        "Invalid metadata_json: must be valid JSON object.",
        "Invalid metadata_json: must be valid JSON object.",
        "Invalid metadata_json: larger than 65536 bytes.",
      ]
    `);
  });

  it('metadata of exactly 64 KiB is accepted', async () => {
    sandbox();
    const max = `{"a":"${'x'.repeat(64 * 1024 - 8)}"}`;
    expect(Buffer.byteLength(max)).toBe(64 * 1024);
    const r = await runCli(['reserve', '--run-key', 'k', '--metadata-json', max, '--', 'prog']);
    expect([r.code, r.stderr]).toEqual([0, '']);
    expect(r.json.reservation.metadata.a).toHaveLength(64 * 1024 - 8);
  });

  it('no command', async () => {
    const messages = await rejects([
      ['reserve', '--run-key', 'k', '--'],
      ['reserve', '--run-key', 'k', '--', ''],
    ]);
    expect(messages).toMatchInlineSnapshot(`
      [
        "reserve requires command after --",
        "Invalid command: the program name is empty.",
      ]
    `);
  });

  it('unparseable times', async () => {
    const messages = await rejects(
      [
        ['--not-before', 'tomorrow'],
        ['--not-before', ''],
        ['--not-before', '2026-02-30T00:00:00Z'],
        ['--not-before', '2026-05-04T03:00:00+25:00'],
        ['--not-before', '1.5'],
        ['--expires-at', '04/05/2026'],
      ].map((flag) => ['reserve', '--run-key', 'k', ...flag, '--', 'prog']),
    );
    expect(messages).toMatchInlineSnapshot(`
      [
        "Invalid not_before: "tomorrow". Expected epoch seconds or ISO 8601 datetime.",
        "Invalid not_before: empty value.",
        "Invalid not_before: "2026-02-30T00:00:00Z". Expected epoch seconds or ISO 8601 datetime.",
        "Invalid not_before: "2026-05-04T03:00:00+25:00". Expected epoch seconds or ISO 8601 datetime.",
        "Invalid not_before: "1.5". Expected epoch seconds or ISO 8601 datetime.",
        "Invalid expires_at: "04/05/2026". Expected epoch seconds or ISO 8601 datetime.",
      ]
    `);
  });

  it('unknown flags, and flags given twice', async () => {
    const messages = await rejects([
      ['reserve', '--run-key', 'k', '--bogus', '--', 'prog'],
      ['reserve', '--run-key', 'k', '--not-before=1', '--not-before=2', '--', 'prog'],
      ['reserve', '--run-key', 'k', '-x', '--', 'prog'],
    ]);
    expect(messages).toMatchInlineSnapshot(`
      [
        "unknown option: --bogus",
        "option --not-before given more than once",
        "unknown option: -x",
      ]
    `);
  });
});

describe('other commands: bad input is exit 2 and writes nothing', () => {
  it('list: --limit 0, -1, abc; unknown --status', async () => {
    const messages = await rejects([
      ['list', '--limit', '0'],
      ['list', '--limit', '-1'],
      ['list', '--limit', 'abc'],
      ['list', '--status', 'FOO'],
      ['list', '--bogus'],
    ]);
    expect(messages).toMatchInlineSnapshot(`
      [
        "Invalid --limit: "0" (a positive integer).",
        "Invalid --limit: "-1" (a positive integer).",
        "Invalid --limit: "abc" (a positive integer).",
        "Invalid --status: "FOO" (choose from RESERVED, DISPATCHING, DISPATCHED, CANCELLED, EXPIRED, DISPATCH_FAILED).",
        "unknown option: --bogus",
      ]
    `);
  });

  it('status / result / cancel: both or neither of --run-key and --reservation-id; unknown flags', async () => {
    const messages = await rejects([
      ['status'],
      ['status', '--run-key', 'seeded', '--reservation-id', 'x'],
      ['result'],
      ['cancel', '--run-key', 'seeded', '--reservation-id', 'x'],
      ['status', '--reservation-id', ''],
      ['status', '--run-key', 'seeded', 'extra'],
      ['cancel', '--run-key', 'seeded', '--dry-run'],
    ]);
    expect(messages).toMatchInlineSnapshot(`
      [
        "Specify exactly one of --run-key or --reservation-id.",
        "Specify exactly one of --run-key or --reservation-id.",
        "Specify exactly one of --run-key or --reservation-id.",
        "Specify exactly one of --run-key or --reservation-id.",
        "Invalid --reservation-id: empty value.",
        "unexpected argument: "extra"",
        "unknown option: --dry-run",
      ]
    `);
  });

  it('no command, an unknown command', async () => {
    const messages = await rejects([['bogus'], ['--bogus']]);
    expect(messages).toMatchInlineSnapshot(`
      [
        "invalid choice: "bogus" (choose from reserve, run, status, result, cancel, list, clean, history, events, replay, gate, reschedule, requeue, pause, resume, wait, metrics)",
        "invalid choice: "--bogus" (choose from reserve, run, status, result, cancel, list, clean, history, events, replay, gate, reschedule, requeue, pause, resume, wait, metrics)",
      ]
    `);
  });

  it('no arguments at all: exit 2 and nothing on stdout', async () => {
    // DESIGN.md: "Failure: nothing on stdout". The usage text belongs on stderr here.
    const messages = await rejects([[]]);
    expect(messages).toMatchInlineSnapshot(`
      [
        "a command is required",
      ]
    `);
  });
});

describe('status of a run key that does not exist', () => {
  it('is exit 4 and appends nothing', async () => {
    const { db } = await seededHome();
    const before = ledgerRows(db);
    const r = await runCli(['status', '--run-key', 'nope']);
    expect({ code: r.code, stdout: r.stdout, last: r.lastStderrJson }).toEqual({
      code: 4,
      stdout: '',
      last: { error: 'Reservation not found.' },
    });
    expect(ledgerRows(db)).toEqual(before);
  });

  it('on a home without a database: exit 4 (the database is created on the way)', async () => {
    const home = sandboxAt(join(sandbox().dir, 'fresh'));
    const r = await runCli(['status', '--run-key', 'nope'], { home });
    expect([r.code, r.stdout, r.lastStderrJson]).toEqual([4, '', { error: 'Reservation not found.' }]);
    // Documented behaviour of the code (every command opens, and so creates and migrates, the database):
    expect(existsSync(home.db)).toBe(true);
    expect(ledgerRows(home.db).events).toEqual([]);
  });
});

describe('--db that is not a database', () => {
  /** Run a writing and a reading command against `path` at once; their messages, path replaced by <DB>. */
  async function refused(path: string, code: number): Promise<string[]> {
    const runs = await Promise.all([
      runCli(['reserve', '--run-key', 'k', '--db', path, '--', 'prog']),
      runCli(['list', '--db', path]),
    ]);
    return runs.map((r) => {
      expect({ code: r.code, stdout: r.stdout }).toEqual({ code, stdout: '' });
      expect(Object.keys(r.lastStderrJson ?? {})).toEqual(['error']);
      return (r.lastStderrJson.error as string).replaceAll(path, '<DB>');
    });
  }

  it('a folder: exit 2, clear error, nothing created inside', async () => {
    const folder = join(sandbox().dir, 'a-folder');
    mkdirSync(folder);
    const messages = await refused(folder, 2);
    expect(new Set(messages).size).toBe(1);
    expect(messages[0]).toMatchInlineSnapshot(`"database path <DB> is a folder, not an SQLite file"`);
    expect(readdirSync(folder)).toEqual([]);
  });

  for (const [what, bytes] of [
    ['random bytes', randomBytes(8192)],
    ['a text file', Buffer.from('hello\nthis is not SQLite\n')],
    ['a file with an SQLite header and garbage', Buffer.concat([Buffer.from('SQLite format 3\0'), Buffer.alloc(200, 0xab)])],
  ] as const) {
    it(`${what}: exit 2, clear error, the file byte-for-byte unchanged, no -wal/-shm/-journal`, async () => {
      const home = sandbox();
      const folder = join(home.dir, 'data');
      mkdirSync(folder);
      const file = join(folder, 'not-a-db.sqlite3');
      writeFileSync(file, bytes);
      const before = sha256(file);
      const messages = await refused(file, 2);
      expect(new Set(messages).size).toBe(1);
      expect(messages[0]).toMatchInlineSnapshot(`"<DB> is not an orchesjob-reserver database (not an SQLite file); it was left untouched"`);
      expect(sha256(file)).toBe(before);
      expect(filesIn(folder)).toEqual(['not-a-db.sqlite3']);
      expect(existsSync(home.db)).toBe(false);
    });
  }
});
