import { EventEmitter } from 'node:events';
import type { Readable } from 'node:stream';

/**
 * How a child is started: with posix_spawn(3), through the addon built from native/spawn.c
 * (dist/native/spawn.node), where it loads; with `node:child_process` otherwise.
 *
 * Node 20's `child_process.spawn` forks, and a fork of the dispatcher copies its page tables and
 * makes every page it writes afterwards fault once: with an instant orchesjob, a third of the
 * dispatcher's main thread. posix_spawn runs the child in the parent's memory until it execs
 * (clone with CLONE_VM | CLONE_VFORK), and copies nothing. Both set the child up alike (native/spawn.c
 * says how); `ORCHESJOB_RESERVER_SPAWNER=child_process` chooses Node's spawn all the same.
 */

/** A started child as `ChildProcess` presents one: 'exit', then 'close' once its pipes closed too. */
export interface StartedChild extends EventEmitter {
  readonly pid?: number | undefined;
  readonly stdout: Readable | null;
  readonly stderr: Readable | null;
}

export type SpawnerName = 'posix_spawn' | 'child_process';

export interface Spawner {
  readonly name: SpawnerName;
  /**
   * Start `bin args...` with stdin /dev/null and stdout and stderr piped, in a session of its own when
   * `ownSession`. A child that did not start throws, or emits 'error' on a later tick.
   */
  spawn(bin: string, args: readonly string[], ownSession: boolean): StartedChild;
}

/** native/spawn.c's interface. onExit's code and signal are both null when the status was lost. */
export interface SpawnAddon {
  spawn(file: string, argv: string[], ownSession: boolean, onExit: (code: number | null, signal: number | null) => void): [number, number, number];
}

type NodeSpawn = typeof import('node:child_process').spawn;
type SocketClass = typeof import('node:net').Socket;

/** `node:child_process`'s spawn, as libuv does it: a fork, then exec. */
export function childProcessSpawner(spawn: NodeSpawn): Spawner {
  return {
    name: 'child_process',
    spawn: (bin, args, ownSession) => spawn(bin, args, { detached: ownSession, stdio: ['ignore', 'pipe', 'pipe'] }),
  };
}

/**
 * posix_spawn through `addon`. A program that is not an executable file format (ENOEXEC: a script
 * without `#!`) goes to `fallback`, which runs it with /bin/sh as execvp does; posix_spawn does not.
 */
export function posixSpawner(addon: SpawnAddon, Socket: SocketClass, signals: Record<string, number>, fallback: Spawner): Spawner {
  const signalNames = new Map(Object.entries(signals).map(([name, number]) => [number, name as NodeJS.Signals]));
  return {
    name: 'posix_spawn',
    spawn(bin, args, ownSession) {
      const child = new PosixChild();
      let ids: [number, number, number];
      try {
        // Deferred: an exception thrown by an 'exit' listener is then uncaught, as with ChildProcess
        // (in the addon's callback it would only be warned about).
        const onExit = (code: number | null, signal: number | null) =>
          process.nextTick(() => child.exited(code, signal === null ? null : (signalNames.get(signal) ?? null)));
        ids = addon.spawn(bin, [bin, ...args], ownSession, onExit);
      } catch (error) {
        if ((error as NodeJS.ErrnoException).code === 'ENOEXEC') return fallback.spawn(bin, args, ownSession);
        throw error;
      }
      const [pid, stdoutFd, stderrFd] = ids;
      child.started(pid, new Socket({ fd: stdoutFd, readable: true, writable: false }), new Socket({ fd: stderrFd, readable: true, writable: false }));
      return child;
    },
  };
}

/** A child started by the addon: 'exit' when it exited, 'close' when it exited and both pipes closed. */
class PosixChild extends EventEmitter implements StartedChild {
  pid: number | undefined;
  stdout: Readable | null = null;
  stderr: Readable | null = null;
  private openPipes = 2;
  private exit: [number | null, NodeJS.Signals | null] | null = null;

  started(pid: number, stdout: Readable, stderr: Readable): void {
    this.pid = pid;
    this.stdout = stdout;
    this.stderr = stderr;
    for (const pipe of [stdout, stderr]) {
      pipe.on('close', () => {
        this.openPipes--;
        this.maybeClose();
      });
    }
  }

  exited(code: number | null, signal: NodeJS.Signals | null): void {
    this.exit = [code, signal];
    try {
      this.emit('exit', code, signal);
    } finally {
      this.maybeClose();
    }
  }

  private maybeClose(): void {
    if (this.openPipes === 0 && this.exit !== null) this.emit('close', ...this.exit);
  }
}

/** Where the built CLI keeps the addon, from dist/cli.js (whose `require` the bundles are given). */
const ADDON = './native/spawn.node';

/**
 * The spawner this process uses: posix_spawn where the addon loads (in the built CLI) and
 * `ORCHESJOB_RESERVER_SPAWNER` does not say `child_process`; Node's spawn otherwise. Throws on any
 * other value of that variable.
 */
export async function loadSpawner(): Promise<Spawner> {
  const choice = process.env['ORCHESJOB_RESERVER_SPAWNER'];
  if (choice !== undefined && choice !== '' && choice !== 'posix_spawn' && choice !== 'child_process') {
    throw new Error(`ORCHESJOB_RESERVER_SPAWNER must be posix_spawn or child_process, not ${JSON.stringify(choice)}`);
  }
  const [childProcess, net, os] = await Promise.all([import('node:child_process'), import('node:net'), import('node:os')]);
  const fallback = childProcessSpawner(childProcess.spawn);
  if (choice === 'child_process') return fallback;
  const addon = loadAddon();
  if (typeof addon !== 'string') return posixSpawner(addon, net.Socket, os.constants.signals, fallback);
  if (choice === 'posix_spawn') throw new Error(`ORCHESJOB_RESERVER_SPAWNER=posix_spawn, but ${ADDON} did not load: ${addon}`);
  return fallback; // not built, or built for another platform: Node's spawn does the same work, slower
}

/** The addon, or why there is none (the ES modules of the tests; a build for another platform). */
function loadAddon(): SpawnAddon | string {
  if (typeof require !== 'function') return 'no require() here (not the built CLI)';
  try {
    return require(ADDON) as SpawnAddon;
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}
