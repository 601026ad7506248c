import { spawn } from 'node:child_process';
import { chmodSync, mkdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { runCli, sandbox } from '../support/harness.js';

/**
 * Who can write the database can run commands as the dispatcher's user: `run` refuses a world-writable
 * file or folder, and what the CLI creates has no world permissions. A writer holding the lock for
 * seconds delays other writers; it does not make them fail.
 */

describe('trust and permissions', () => {
  it('creates the folder and the database without world permissions', async () => {
    const home = sandbox().dir;
    const db = join(home, 'new', 'deeper', 'reserver.sqlite3');
    const r = await runCli(['reserve', '--db', db, '--run-key', 'k', '--', 'true']);
    expect(r.code, r.stderr).toBe(0);
    for (const path of [db, join(home, 'new', 'deeper'), join(home, 'new')]) {
      expect(statSync(path).mode & 0o007, path).toBe(0);
    }
  });

  it('run refuses a world-writable database or folder (exit 1), and says why', async () => {
    const home = sandbox().dir;
    const folder = join(home, 'state');
    mkdirSync(folder, { mode: 0o750 });
    const db = join(folder, 'reserver.sqlite3');
    expect((await runCli(['reserve', '--db', db, '--run-key', 'k', '--', 'true'])).code).toBe(0);

    chmodSync(db, 0o666);
    const file = await runCli(['run', '--db', db]);
    expect(file.code).toBe(1);
    expect(file.stdout).toBe('');
    expect(file.lastStderrJson.error).toMatchInlineSnapshot(
      `"refusing to run: ${db} is world-writable, so any user could make this dispatcher run commands; remove the permission (chmod o-w ${db})"`,
    );

    chmodSync(db, 0o640);
    chmodSync(folder, 0o777);
    const dir = await runCli(['run', '--db', db]);
    expect(dir.code).toBe(1);
    expect(dir.lastStderrJson.error).toContain(`${folder} is world-writable`);
  });
});

describe('a busy database', () => {
  it('reserve waits for another process holding the write lock for seconds, then succeeds', async () => {
    const home = sandbox();
    expect((await runCli(['reserve', '--run-key', 'first', '--', 'true'])).code).toBe(0);
    const holdMs = 3000;
    const holder = spawn(
      process.execPath,
      [
        '-e',
        `const D = require('better-sqlite3'); const db = new D(process.argv[1]);
         db.exec('BEGIN IMMEDIATE'); process.stdout.write('locked\\n');
         setTimeout(() => { db.exec('COMMIT'); db.close(); }, ${holdMs});`,
        home.db,
      ],
      { cwd: process.cwd(), stdio: ['ignore', 'pipe', 'inherit'] },
    );
    const holderExited = new Promise((resolve) => holder.once('exit', resolve));
    await new Promise<void>((resolve) => holder.stdout.once('data', () => resolve()));
    const started = Date.now();
    const r = await runCli(['reserve', '--run-key', 'second', '--', 'true']);
    const waited = Date.now() - started;
    await holderExited;
    expect(r.code, r.stderr).toBe(0);
    expect(r.json.created).toBe(true);
    expect(waited).toBeGreaterThanOrEqual(holdMs - 500);
  });
});
