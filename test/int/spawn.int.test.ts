/**
 * The two ways a child is started (src/orchesjob/spawn.ts): posix_spawn through the addon the build
 * compiles (dist/native/spawn.node, from native/spawn.c) and Node's child_process.spawn. Real
 * processes; each case runs under both, and the child must find the same world under either: stdin
 * /dev/null, two pipes and nothing else open, no signal ignored or blocked (Node ignores SIGPIPE;
 * glibc's two reserved signals aside), its own session when asked, this process's environment, PATH
 * lookup, and the same errors.
 */
import * as childProcess from 'node:child_process';
import { chmodSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Socket } from 'node:net';
import { constants } from 'node:os';
import { join } from 'node:path';
import { buildSync } from 'esbuild';
import { describe, expect, it } from 'vitest';
import type { SpawnAddon, Spawner, StartedChild } from '../../src/orchesjob/spawn.js';
import { childProcessSpawner, posixSpawner } from '../../src/orchesjob/spawn.js';
import { ROOT, sandbox } from '../support/harness.js';

const ADDON = join(ROOT, 'dist', 'native', 'spawn.node');
const addon = createRequire(import.meta.url)(ADDON) as SpawnAddon;
const viaNode = childProcessSpawner(childProcess.spawn);
const viaPosix = posixSpawner(addon, Socket, constants.signals, viaNode);

interface Ran {
  readonly stdout: string;
  readonly stderr: string;
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
  /** The events the child emitted, in order. */
  readonly order: string[];
}

/** Run a child to its 'close', or reject with the error it failed with (thrown or emitted). */
function run(spawner: Spawner, bin: string, args: readonly string[], ownSession = false): Promise<Ran> {
  return new Promise((resolve, reject) => {
    let child: StartedChild;
    try {
      child = spawner.spawn(bin, args, ownSession);
    } catch (error) {
      reject(error);
      return;
    }
    const order: string[] = [];
    let stdout = '';
    let stderr = '';
    child.on('error', reject);
    child.stdout?.on('data', (c: Buffer) => (stdout += c.toString('utf8')));
    child.stderr?.on('data', (c: Buffer) => (stderr += c.toString('utf8')));
    child.stdout?.on('close', () => order.push('stdout closed'));
    child.on('exit', () => order.push('exit'));
    child.on('close', (code: number | null, signal: NodeJS.Signals | null) => {
      order.push('close');
      resolve({ stdout, stderr, code, signal, order });
    });
  });
}

/**
 * src/orchesjob/spawn.ts bundled for a script of its own (a fresh Node, whose uncaught exceptions and
 * worker threads are its own), which makes `spawner` (the one named `name`) and then runs `body`.
 */
function runScript(name: string, body: string): childProcess.SpawnSyncReturns<string> {
  const dir = sandbox().dir;
  const bundle = join(dir, 'spawn.cjs');
  buildSync({ entryPoints: [join(ROOT, 'src', 'orchesjob', 'spawn.ts')], bundle: true, format: 'cjs', platform: 'node', outfile: bundle, logLevel: 'silent' });
  const prelude = `
    const s = require(${JSON.stringify(bundle)});
    const viaNode = s.childProcessSpawner(require('node:child_process').spawn);
    const spawner = ${JSON.stringify(name)} === 'posix_spawn'
      ? s.posixSpawner(require(${JSON.stringify(ADDON)}), require('node:net').Socket, require('node:os').constants.signals, viaNode)
      : viaNode;
  `;
  // PRELUDE: the same set-up, for a worker thread's own code.
  const script = `const PRELUDE = ${JSON.stringify(prelude)};\n${prelude}\n${body}`;
  return childProcess.spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 20_000 });
}

/**
 * This process's descriptors above 2 that are not close-on-exec (and so reach every child, by either
 * spawner): none of this program's, but one a test runner was started with may be.
 */
function inheritable(): string[] {
  return readdirSync('/proc/self/fd')
    .filter((fd) => Number(fd) > 2)
    .filter((fd) => {
      try {
        const flags = /^flags:\s+(\d+)/m.exec(readFileSync(`/proc/self/fdinfo/${fd}`, 'utf8'))?.[1];
        return flags !== undefined && (parseInt(flags, 8) & 0o2000000) === 0; // O_CLOEXEC
      } catch {
        return false; // the descriptor readdirSync itself used, closed since
      }
    })
    .sort((a, b) => Number(a) - Number(b));
}

/** What a child sees of its own set-up, printed by a shell. */
const SELF = [
  'readlink /proc/$$/fd/0',
  // the signals grep inherits from sh, not those of sh itself, which blocks them all while it forks
  'grep -E "^(SigBlk|SigIgn)" /proc/self/status',
  // fields 5 and 6 of /proc/PID/stat (after the parenthesised name): process group and session
  'sed "s/.*) //" /proc/$$/stat | cut -d" " -f3,4',
  'echo "pid $$ env $ORCHESJOB_SPAWN_TEST"',
].join('; ');

describe.each([
  ['posix_spawn', viaPosix],
  ['child_process', viaNode],
])('spawning with %s', (name, spawner) => {
  it('is the spawner it says', () => {
    expect(spawner.name).toBe(name);
  });

  it('pipes stdout and stderr, reports the exit code, and closes after the exit and both pipes', async () => {
    const r = await run(spawner, '/bin/sh', ['-c', 'printf "out\\n"; printf "err\\n" >&2; exit 3']);
    expect(r).toMatchObject({ stdout: 'out\n', stderr: 'err\n', code: 3, signal: null });
    expect(r.order.filter((e) => e !== 'stdout closed')).toEqual(['exit', 'close']);
  });

  it('reports a child killed by a signal by its name, with no exit code', async () => {
    const r = await run(spawner, '/bin/sh', ['-c', 'kill -TERM $$; sleep 5']);
    expect([r.code, r.signal]).toEqual([null, 'SIGTERM']);
  });

  it('gives the child /dev/null, its two pipes and nothing more, no ignored or blocked signal, and our environment', async () => {
    process.env['ORCHESJOB_SPAWN_TEST'] = 'seen';
    try {
      const [a, b] = await Promise.all([run(spawner, '/bin/sh', ['-c', SELF]), run(spawner, '/bin/sh', ['-c', SELF])]);
      // ls itself, spawned directly (a shell's own listing would catch the pipes of its pipelines), two
      // at once: its descriptors are 0, 1, 2, those that reach every child, and the folder it reads.
      const listings = await Promise.all([run(spawner, '/bin/ls', ['-1', '/proc/self/fd']), run(spawner, '/bin/ls', ['-1', '/proc/self/fd'])]);
      const inherited = [0, 1, 2, ...inheritable().map(Number)];
      let folder = 3;
      while (inherited.includes(folder)) folder++;
      for (const listing of listings) {
        expect(listing.stdout.trim().split('\n').map(Number).sort((x, y) => x - y)).toEqual([...inherited, folder].sort((x, y) => x - y));
      }
      for (const r of [a, b]) {
        const [stdin, sigBlk, sigIgn, groupAndSession, self] = r.stdout.trim().split('\n');
        expect(stdin).toBe('/dev/null');
        // glibc's posix_spawn leaves its two reserved signals (32 and 33, below SIGRTMIN) ignored, and
        // nothing else; no program can use those two, and a glibc program sets them up for itself.
        expect(sigIgn).toBe(name === 'posix_spawn' ? 'SigIgn:\t0000000180000000' : 'SigIgn:\t0000000000000000');
        expect(sigBlk).toBe('SigBlk:\t0000000000000000');
        const pid = Number(/^pid (\d+)/.exec(self ?? '')?.[1]);
        expect(groupAndSession?.split(' ').map(Number)).not.toContain(pid); // not in a group or session of its own
        expect(self).toBe(`pid ${pid} env seen`);
        expect(r.code).toBe(0);
      }
    } finally {
      delete process.env['ORCHESJOB_SPAWN_TEST'];
    }
  });

  it('starts the child in a session and process group of its own when asked', async () => {
    const r = await run(spawner, '/bin/sh', ['-c', SELF], true);
    const lines = r.stdout.trim().split('\n');
    const pid = Number(/^pid (\d+)/.exec(lines[4] ?? '')?.[1]);
    expect(pid).toBeGreaterThan(0);
    expect(lines[3]?.split(' ').map(Number)).toEqual([pid, pid]);
  });

  it('looks the program up on PATH', async () => {
    const r = await run(spawner, 'sh', ['-c', 'echo found']);
    expect(r.stdout).toBe('found\n');
  });

  it('runs a script without #! with /bin/sh, as execvp does', async () => {
    const sb = sandbox();
    const script = join(sb.dir, 'no-shebang');
    writeFileSync(script, 'echo "ran $1"\n');
    chmodSync(script, 0o755);
    const r = await run(spawner, script, ['it']);
    expect(r).toMatchObject({ stdout: 'ran it\n', code: 0 });
  });

  it('refuses a program or argument with a NUL byte, as Node does, and starts nothing', async () => {
    const error = (await run(spawner, '/bin/echo', ['a\0b']).then(
      () => null,
      (e: unknown) => e,
    )) as NodeJS.ErrnoException | null;
    expect(error?.code).toBe('ERR_INVALID_ARG_VALUE');
  });

  it('lets an exception thrown by an exit listener be uncaught, as ChildProcess does', () => {
    const r = runScript(
      name,
      `process.on('uncaughtException', (e) => console.log('uncaught: ' + e.message));
       const child = spawner.spawn('/bin/true', [], false);
       child.on('exit', () => { throw new Error('thrown by an exit listener'); });
       child.on('close', () => console.log('closed'));`,
    );
    // ChildProcess itself never emits 'close' after that; the posix_spawn child does.
    const expected = name === 'posix_spawn' ? ['closed', 'uncaught: thrown by an exit listener'] : ['uncaught: thrown by an exit listener'];
    expect([r.status, r.stderr, r.stdout.trim().split('\n').sort()]).toEqual([0, '', expected]);
  });

  it.each([
    ['a missing program', 'ENOENT', (dir: string) => join(dir, 'no-such-program')],
    [
      'a file that is not executable',
      'EACCES',
      (dir: string) => {
        const file = join(dir, 'not-executable');
        writeFileSync(file, '#!/bin/sh\necho no\n');
        return file;
      },
    ],
  ])('fails to start %s with %s, as Node says it', async (_what, code, make) => {
    const file = make(sandbox().dir);
    const error = (await run(spawner, file, []).then(
      () => null,
      (e: unknown) => e,
    )) as NodeJS.ErrnoException | null;
    expect(error).not.toBeNull();
    expect({ code: error?.code, message: error?.message, path: error?.path, syscall: error?.syscall }).toEqual({
      code,
      message: `spawn ${file} ${code}`,
      path: file,
      syscall: `spawn ${file}`,
    });
  });
});

// The addon's threadsafe function outlives a worker's environment (native/spawn.c, struct waiter).
// Node's own spawn leaves that child a zombie (its worker's loop, which would reap it, is gone).
describe('spawning with posix_spawn from a worker thread', () => {
  it('survives the worker ending with its child still running, and leaves no zombie', () => {
    const r = runScript(
      'posix_spawn',
      `const { Worker } = require('node:worker_threads');
       const worker = new Worker(PRELUDE + \`
         const child = spawner.spawn('/bin/sleep', ['0.3'], false);
         require('node:worker_threads').parentPort.postMessage(child.pid);
       \`, { eval: true });
       worker.once('message', async (pid) => {
         await worker.terminate();
         await new Promise((resolve) => setTimeout(resolve, 800)); // the sleep ends meanwhile
         let state = 'gone';
         try { state = require('node:fs').readFileSync('/proc/' + pid + '/stat', 'utf8').split(') ')[1].split(' ')[0]; } catch {}
         console.log('child ' + state);
       });`,
    );
    expect([r.status, r.signal, r.stderr, r.stdout.trim()]).toEqual([0, null, '', 'child gone']);
  });
});
