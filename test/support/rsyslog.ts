/**
 * Helpers for `test/e2e/rsyslog.e2e.test.ts`: run the shipped rsyslog configurations
 * (`deploy/rsyslog/*.conf`) with private rsyslogd instances as the current user, and the shipped
 * events writer (`deploy/orchesjob-reserver-events.sh`).
 *
 * The configurations are the shipped files themselves with their production paths, host and port
 * replaced (`renderShipped`); a replacement that no longer matches fails the test, so the shipped
 * files cannot drift away from what is tested. Each rsyslogd gets a main configuration shaped like
 * Debian's /etc/rsyslog.conf (a module loaded first, a work directory, then the drop-in) and its own
 * pid file and work directory.
 *
 * Importing this module registers an `afterEach` that fails the test when a process started through
 * `startRsyslogd`/`spawnTracked` is still running (and SIGKILLs it). Stop them in the test itself.
 */
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, constants, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { delimiter, join } from 'node:path';
import { afterEach, expect } from 'vitest';
import { ROOT } from './harness.js';

export const DEPLOY = join(ROOT, 'deploy');

/**
 * The rsyslogd executable, or null when rsyslog is not installed. Looked up on PATH and in the sbin
 * folders, which an unprivileged user's PATH often lacks.
 */
export const RSYSLOGD: string | null = findExecutable('rsyslogd', ['/usr/sbin', '/sbin', '/usr/local/sbin']);

/** An executable on PATH or in one of the `extra` folders, or null. */
export function findExecutable(name: string, extra: readonly string[]): string | null {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), ...extra].filter(Boolean);
  for (const dir of dirs) {
    const file = join(dir, name);
    try {
      accessSync(file, constants.X_OK);
      return file;
    } catch {
      /* not here */
    }
  }
  return null;
}

/**
 * A shipped file's text with each `[from, to]` replaced (every occurrence). Throws when a `from` does
 * not occur: the shipped file changed and the test must follow.
 */
export function renderShipped(relativePath: string, replacements: ReadonlyArray<readonly [string, string]>): string {
  let text = readFileSync(join(DEPLOY, relativePath), 'utf8');
  for (const [from, to] of replacements) {
    if (!text.includes(from)) throw new Error(`deploy/${relativePath} no longer contains ${JSON.stringify(from)}`);
    text = text.split(from).join(to);
  }
  return text;
}

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.on('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => {
        if (address !== null && typeof address === 'object') resolve(address.port);
        else reject(new Error('no port'));
      });
    });
  });
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
export async function waitForListener(port: number, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const accepted = await new Promise<boolean>((resolve) => {
      const socket = connect(port, '127.0.0.1');
      socket.once('connect', () => {
        socket.destroy();
        resolve(true);
      });
      socket.once('error', () => resolve(false));
    });
    if (accepted) return;
    if (Date.now() > deadline) throw new Error(`nothing listens on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Poll `check` every 100 ms until it returns true; throws with `describe()` after `timeoutMs`. */
export async function waitUntil(check: () => boolean, timeoutMs: number, describe: () => string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`not reached within ${timeoutMs} ms: ${describe()}`);
    await sleep(100);
  }
}

// ---------------------------------------------------------------------------
// Processes
// ---------------------------------------------------------------------------

export interface Tracked {
  readonly child: ChildProcess;
  /** stdout and stderr so far. */
  output(): string;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code (null when killed). */
  stop(graceMs?: number): Promise<number | null>;
  /** Resolves with the exit code once the process has exited by itself. */
  exited(): Promise<number | null>;
}

const tracked = new Set<ChildProcess>();

/** Spawn a long-lived process whose output is kept and which the afterEach checks for leaks. */
export function spawnTracked(file: string, args: readonly string[], options: SpawnOptions): Tracked {
  const child = spawn(file, args, { ...options, stdio: ['ignore', 'pipe', 'pipe'] });
  tracked.add(child);
  const chunks: Buffer[] = [];
  child.stdout?.on('data', (chunk: Buffer) => chunks.push(chunk));
  child.stderr?.on('data', (chunk: Buffer) => chunks.push(chunk));
  const exit = new Promise<number | null>((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve(child.exitCode);
    else child.once('exit', (code) => resolve(code));
  });
  return {
    child,
    output: () => Buffer.concat(chunks).toString('utf8'),
    exited: () => exit,
    async stop(graceMs = 10_000) {
      if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      try {
        return await exit;
      } finally {
        clearTimeout(timer);
      }
    },
  };
}

export interface Rsyslogd extends Tracked {
  readonly config: string;
}

/**
 * Write `<dir>/<name>.conf`, a main configuration shaped like Debian's (a module, the work directory
 * `<dir>/<name>-work` and the further `global()` parameters `globals` (" name=\"value\""), then the drop-in `dropIn` written beside it), check it with
 * `rsyslogd -N1`, and run `rsyslogd -n` on it with the pid file `<dir>/<name>.pid`, in the environment
 * `env` (default: this process's).
 */
export function startRsyslogd(dir: string, name: string, dropIn: string, globals = '', env: NodeJS.ProcessEnv = process.env): Rsyslogd {
  if (RSYSLOGD === null) throw new Error('rsyslogd is not installed');
  const work = join(dir, `${name}-work`);
  const dropInFile = join(dir, `${name}-orchesjob-reserver.conf`);
  const config = join(dir, `${name}.conf`);
  mkdirSync(work, { recursive: true });
  writeFileSync(dropInFile, dropIn);
  writeFileSync(
    config,
    [
      // Debian's rsyslog.conf loads imuxsock first; its system socket needs root, so it stays off.
      'module(load="imuxsock" SysSock.Use="off")',
      `global(workDirectory="${work}"${globals})`,
      `include(file="${dropInFile}")`,
      '',
    ].join('\n'),
  );
  const check = spawnSync(RSYSLOGD, ['-N1', '-f', config], { encoding: 'utf8' });
  if (check.status !== 0) throw new Error(`rsyslogd -N1 rejects ${name}:\n${check.stdout}${check.stderr}`);
  const rsyslogd = spawnTracked(RSYSLOGD, ['-f', config, '-i', join(dir, `${name}.pid`), '-n'], { cwd: dir, env });
  return { ...rsyslogd, config };
}

afterEach(async () => {
  const leaked: string[] = [];
  const exits: Promise<unknown>[] = [];
  for (const child of tracked) {
    if (child.exitCode === null && child.signalCode === null) {
      leaked.push(`${child.spawnargs.join(' ')} (pid ${child.pid}) is still running`);
      exits.push(new Promise((resolve) => child.once('exit', resolve)));
      child.kill('SIGKILL');
    }
  }
  tracked.clear();
  // Gone before the temp folders are removed, so that nothing writes into them meanwhile; and a soft
  // failure, so that the other afterEach hooks (test/support/harness.ts removes the sandboxes) still run.
  await Promise.all(exits);
  expect.soft(leaked, 'leaked processes').toEqual([]);
});
