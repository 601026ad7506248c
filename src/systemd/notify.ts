import { messageOf } from '../errors.js';
import type { CreateSocket } from '../unix-datagram.js';
import { sendDatagram } from '../unix-datagram.js';

/**
 * systemd's notification protocol (sd_notify(3)): a service of `Type=notify` sends datagrams such as
 * `READY=1`, `WATCHDOG=1`, `STOPPING=1`, `STATUS=...` to the unix socket `NOTIFY_SOCKET` names, and
 * systemd takes them from the service's main process only (`NotifyAccess=main`, the default). Node has
 * no unix datagram sockets, so they go through `unix-dgram` (the optional native addon the gate's
 * audit line uses), loaded only when `NOTIFY_SOCKET` is set. Not `systemd-notify`: it sends from its
 * own process, which systemd ignores under `NotifyAccess=main`, unless `--pid` makes it also announce
 * a new main pid; and it would be one process per watchdog ping.
 *
 * Without `NOTIFY_SOCKET` nothing here runs and nothing changes.
 */
/** What sends systemd's notifications: `SystemdNotifier`, or a test's recorder. */
export interface Notifier {
  /** systemd's watchdog interval (`WATCHDOG_USEC`), ms, or null when no watchdog watches this process. */
  readonly watchdogMs: number | null;
  send(assignments: readonly string[]): void;
}

export class SystemdNotifier implements Notifier {
  private failing = false;

  private constructor(
    private readonly socket: string,
    readonly watchdogMs: number | null,
    private readonly createSocket: CreateSocket,
    private readonly reportError: (message: string) => void,
  ) {}

  /**
   * The notifier `env` asks for, or null without `NOTIFY_SOCKET`. When unix-dgram cannot be loaded or
   * the socket is abstract (`@...`, which unix-dgram cannot address), says so through `reportError`
   * once and returns null: dispatching goes on, and systemd's start timeout tells the operator.
   */
  static async fromEnv(env: NodeJS.ProcessEnv, reportError: (message: string) => void): Promise<SystemdNotifier | null> {
    const socket = env['NOTIFY_SOCKET'];
    if (socket === undefined || socket === '') return null;
    if (socket.startsWith('@')) {
      reportError(`NOTIFY_SOCKET ${socket} is an abstract socket, which unix-dgram cannot send to: systemd is not notified`);
      return null;
    }
    try {
      const { createSocket } = await import('unix-dgram');
      return new SystemdNotifier(socket, watchdogMs(env, process.pid), createSocket, reportError);
    } catch (error) {
      reportError(`systemd is not notified: cannot load unix-dgram (an optional dependency; reinstall with a C compiler to build it): ${messageOf(error)}`);
      return null;
    }
  }

  /** A failure is reported once, until a send works again (the watchdog is fed every second). */
  send(assignments: readonly string[]): void {
    const error = sendDatagram(this.createSocket, this.socket, Buffer.from(assignments.join('\n'), 'utf8'));
    if (error !== null && !this.failing) this.reportError(`systemd notification ${JSON.stringify(assignments[0] ?? '')} to ${this.socket} failed: ${error}`);
    this.failing = error !== null;
  }
}

/**
 * The watchdog interval in ms (`WATCHDOG_USEC`), when it is meant for this process: systemd sets
 * `WATCHDOG_PID` to the main pid, so a child that inherited the environment does not take it for its
 * own (sd_watchdog_enabled(3)). Null otherwise.
 */
export function watchdogMs(env: NodeJS.ProcessEnv, pid: number): number | null {
  const usec = Number(env['WATCHDOG_USEC']);
  const forPid = env['WATCHDOG_PID'];
  if (!Number.isSafeInteger(usec) || usec <= 0) return null;
  if (forPid !== undefined && forPid !== '' && Number(forPid) !== pid) return null;
  return usec / 1000;
}
