import { constants } from 'node:os';
import { messageOf } from '../errors.js';
import { stringifySorted } from '../json.js';

/**
 * The gate's audit line in the system log: one per refusal, where an auditor looks (syslog, or
 * journald, which reads the same socket). Node has no unix datagram sockets, `/dev/log` is one, and the
 * gate starts no program but orchesjob (so not `logger`): the datagram goes through `unix-dgram`, a
 * small native addon (by a Node.js core author) built from source at install, loaded only when a line
 * is written, so an allowed call never pays for it.
 */

/** Where the line goes: `/dev/log`, unless this variable names another socket (for tests). */
export const SYSLOG_SOCKET_ENV = 'ORCHESJOB_RESERVER_SYSLOG_SOCKET';
export const DEFAULT_SYSLOG_SOCKET = '/dev/log';

/** facility auth (4), severity warning (4): next to sshd's own lines (Debian: /var/log/auth.log). */
const PRIORITY = 4 * 8 + 4;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** What a refusal's line says. */
export interface Refusal {
  readonly key: string | null;
  readonly verb: string | null;
  readonly runKey: string | null;
  readonly reason: string;
}

/**
 * The datagram, as glibc's `syslog(3)` writes it to a local socket: `<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG`
 * (local time, no host name). The message is JSON: a key, run key or reason with control characters
 * or quotes cannot forge a second line or a field.
 */
export function syslogDatagram(refusal: Refusal, now: Date, pid: number): string {
  const two = (n: number) => String(n).padStart(2, '0');
  const stamp = `${MONTHS[now.getMonth()]} ${String(now.getDate()).padStart(2, ' ')} ${two(now.getHours())}:${two(now.getMinutes())}:${two(now.getSeconds())}`;
  const message = stringifySorted({
    event: 'gate_refused',
    key: refusal.key,
    verb: refusal.verb,
    run_key: refusal.runKey,
    reason: refusal.reason,
  });
  return `<${PRIORITY}>${stamp} orchesjob-reserver-gate[${pid}]: ${message}`;
}

/** Send the refusal's line to the system log; returns why it could not be sent, or null. */
export async function logRefusal(refusal: Refusal, env: NodeJS.ProcessEnv = process.env): Promise<string | null> {
  const path = env[SYSLOG_SOCKET_ENV] || DEFAULT_SYSLOG_SOCKET;
  const datagram = Buffer.from(syslogDatagram(refusal, new Date(), process.pid), 'utf8');
  try {
    const { createSocket } = await import('unix-dgram');
    const socket = createSocket('unix_dgram');
    let failure: string | null = null;
    socket.on('error', (error) => {
      failure = errnoText(error);
    });
    socket.send(datagram, 0, datagram.length, path, (error) => {
      if (error !== undefined) failure = errnoText(error);
    });
    socket.close();
    return failure === null ? null : `cannot write to the system log (${path}): ${failure}`;
  } catch (error) {
    return `cannot write to the system log (${path}): ${messageOf(error)}`;
  }
}

/** unix-dgram's errors read `send -2`: name the errno (`send ENOENT`). */
function errnoText(error: Error): string {
  return messageOf(error).replace(/-(\d+)$/, (whole, n: string) => {
    const name = Object.entries(constants.errno).find(([, value]) => value === Number(n))?.[0];
    return name ?? whole;
  });
}
