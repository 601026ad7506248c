import { createHash } from 'node:crypto';
import { messageOf } from '../errors.js';
import { stringifySorted } from '../json.js';
import type { CreateSocket } from '../unix-datagram.js';
import { sendDatagram } from '../unix-datagram.js';

/**
 * The gate's audit line in the system log: one per refusal, where an auditor looks (syslog, or
 * journald, which reads the same socket). Node has no unix datagram sockets, `/dev/log` is one, and the
 * gate starts no program but orchesjob (so not `logger`): the datagram goes through `unix-dgram`, a
 * small native addon (by a Node.js core author) built from source at install, loaded only when a line
 * is written, so an allowed call never pays for it. It is an optional dependency: where it could not
 * be built, a refusal is still a refusal, and says on stderr that its line was not written.
 *
 * The client chooses most of what the line says, so the line is built not to be suppressed: every
 * field is capped, everything outside printable ASCII is escaped, the whole datagram stays under
 * 2 KiB (a syslog daemon drops or cuts longer ones), the length and SHA-256 of the whole command line
 * stand for what was cut, and a send that fails is tried once more with a minimal line.
 */

/** Where the line goes unless the gate's `--syslog-socket` (in authorized_keys, never the environment) says otherwise. */
export const DEFAULT_SYSLOG_SOCKET = '/dev/log';

/** facility auth (4), severity warning (4): next to sshd's own lines (Debian: /var/log/auth.log). */
const PRIORITY = 4 * 8 + 4;
const MONTHS = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];

/** The longest a field of the line may be, in characters as written (escapes counted). */
export const MAX_FIELD_CHARS = 256;
/** A datagram is always shorter (bytes). */
export const MAX_DATAGRAM_BYTES = 2048;

/** What a refusal's line says. */
export interface Refusal {
  readonly key: string | null;
  readonly verb: string | null;
  readonly runKey: string | null;
  readonly reason: string;
  /** The whole `SSH_ORIGINAL_COMMAND`, or null (an interactive login): only its length and hash are written. */
  readonly command: string | null;
}

/**
 * The datagram, as glibc's `syslog(3)` writes it to a local socket: `<PRI>Mmm dd hh:mm:ss TAG[PID]: MSG`
 * (local time, no host name). The message is JSON in printable ASCII: a key, run key or reason with
 * control characters or quotes cannot forge a second line or a field. `minimal`: only the key, the
 * verb, "refused" and the command's hash, for the second try.
 */
export function syslogDatagram(refusal: Refusal, now: Date, pid: number, minimal = false): string {
  const two = (n: number) => String(n).padStart(2, '0');
  const stamp = `${MONTHS[now.getMonth()]} ${String(now.getDate()).padStart(2, ' ')} ${two(now.getHours())}:${two(now.getMinutes())}:${two(now.getSeconds())}`;
  const command = refusal.command === null ? null : commandDigest(refusal.command);
  const fields = minimal
    ? { key: cap(refusal.key), verb: cap(refusal.verb), reason: 'refused', command_sha256: command?.sha256 ?? null }
    : {
        key: cap(refusal.key),
        verb: cap(refusal.verb),
        run_key: cap(refusal.runKey),
        reason: cap(refusal.reason),
        command_bytes: command?.bytes ?? null,
        command_sha256: command?.sha256 ?? null,
      };
  return `<${PRIORITY}>${stamp} orchesjob-reserver-gate[${pid}]: ${asciiJson({ event: 'gate_refused', ...fields })}`;
}

/** The UTF-8 length and SHA-256 (hex) of the whole command line. */
function commandDigest(command: string): { bytes: number; sha256: string } {
  const bytes = Buffer.from(command, 'utf8');
  return { bytes: bytes.length, sha256: createHash('sha256').update(bytes).digest('hex') };
}

/** JSON with every character outside printable ASCII as a `\uXXXX` escape (they occur only inside strings). */
function asciiJson(value: unknown): string {
  return stringifySorted(value).replace(/[^\x20-\x7e]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** How many characters `c` (one code point) takes in `asciiJson`'s output. */
function escapedLength(c: string): number {
  const code = c.codePointAt(0) as number;
  if (c === '"' || c === '\\' || c === '\n' || c === '\r' || c === '\t' || c === '\b' || c === '\f') return 2;
  if (code >= 0x20 && code <= 0x7e) return 1;
  return code > 0xffff ? 12 : 6;
}

/**
 * `text` cut to what fits in `MAX_FIELD_CHARS` once escaped, ending in `…(+N chars)` (N: the code
 * points cut) when anything was cut; null stays null.
 */
export function cap(text: string | null): string | null {
  if (text === null) return null;
  const chars = Array.from(text);
  /** How many of the first characters fit in `room`. */
  const fitting = (room: number): number => {
    let width = 0;
    let kept = 0;
    while (kept < chars.length && width + escapedLength(chars[kept] as string) <= room) width += escapedLength(chars[kept++] as string);
    return kept;
  };
  if (fitting(MAX_FIELD_CHARS) === chars.length) return text;
  const kept = fitting(MAX_FIELD_CHARS - MARKER_ROOM);
  return `${chars.slice(0, kept).join('')}…(+${chars.length - kept} chars)`;
}

/** `…(+N chars)` escaped: `\u2026`, then at most 16 digits and 9 characters. */
const MARKER_ROOM = 32;

/**
 * Send the refusal's line to the system log at `path`; when the send fails, once more with the
 * minimal line. Returns why no line could be written, or null.
 */
export async function logRefusal(refusal: Refusal, path: string = DEFAULT_SYSLOG_SOCKET): Promise<string | null> {
  let createSocket: CreateSocket;
  try {
    ({ createSocket } = await import('unix-dgram'));
  } catch (error) {
    return `the audit line could not be written: cannot load unix-dgram (an optional dependency; reinstall with a C compiler to build it): ${messageOf(error)}`;
  }
  const now = new Date();
  const first = sendDatagram(createSocket, path, Buffer.from(syslogDatagram(refusal, now, process.pid), 'utf8'));
  if (first === null) return null;
  const second = sendDatagram(createSocket, path, Buffer.from(syslogDatagram(refusal, now, process.pid, true), 'utf8'));
  if (second === null) return null;
  return `the audit line could not be written to the system log (${path}): ${first}; the minimal line neither: ${second}`;
}
