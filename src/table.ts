import type { DispatchControl } from './events/control.js';
import { effectivePause } from './events/control.js';
import type { Reservation } from './events/index.js';
import { shellJoin } from './orchesjob/argv.js';
import { localIso } from './output.js';

/**
 * `--format table`: reservations for a person at a terminal. Times in the host's local zone with
 * their distance from now ("in 2h", "3m ago"). The JSON documents stay the interface; this is only
 * a view of them.
 */

/** "in 2h", "3m ago", "now": the largest unit, rounded. */
export function relative(seconds: number, nowSec: number): string {
  const delta = seconds - nowSec;
  const abs = Math.abs(delta);
  if (abs < 5) return 'now';
  const units: [number, string][] = [
    [86_400, 'd'],
    [3600, 'h'],
    [60, 'm'],
    [1, 's'],
  ];
  const [size, unit] = units.find(([s]) => abs >= s) ?? [1, 's'];
  const amount = `${Math.round(abs / size)}${unit}`;
  return delta > 0 ? `in ${amount}` : `${amount} ago`;
}

/** `2026-05-04 03:00:00 +09:00 (in 2h)`, or `-`. */
export function localTime(seconds: number | null, nowSec: number): string {
  if (seconds === null) return '-';
  const iso = localIso(seconds * 1000); // 2026-05-04T03:00:00+09:00
  return `${iso.slice(0, 10)} ${iso.slice(11, 19)} ${iso.slice(19)} (${relative(seconds, nowSec)})`;
}

function firstLine(text: string | null, max: number): string {
  if (text === null) return '-';
  const line = text.split('\n')[0] ?? '';
  return line.length > max ? `${line.slice(0, max - 1)}…` : line;
}

/** Columns padded to their widest cell. */
function columns(rows: string[][]): string {
  const widths = rows[0]?.map((_, i) => Math.max(...rows.map((r) => (r[i] ?? '').length))) ?? [];
  return rows.map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join('  ')).join('\n');
}

/**
 * The line above a table while dispatching is paused (`pause`): since when, why, until when; empty
 * while it is not.
 */
export function pausedBanner(control: DispatchControl, nowSec: number): string {
  const c = effectivePause(control, nowSec * 1000);
  if (!c.paused) return '';
  const why = c.reason === null ? '' : `: ${firstLine(c.reason, 80)}`;
  const until = c.until === null ? 'until resume' : `until ${localTime(c.until, nowSec)}`;
  return `DISPATCHING PAUSED since ${localTime(c.since, nowSec)}, ${until}${why}\n\n`;
}

/** `list --format table`: one line per reservation (after the paused banner, while paused). */
export function reservationsTable(reservations: readonly Reservation[], nowSec: number, control?: DispatchControl): string {
  const banner = control === undefined ? '' : pausedBanner(control, nowSec);
  if (reservations.length === 0) return `${banner}(no reservations)\n`;
  const header = ['RUN KEY', 'STATUS', 'DUE', 'EXPIRES', 'CREATED', 'JOB ID', 'LAST ERROR'];
  const rows = reservations.map((r) => [
    r.runKey,
    r.status,
    localTime(r.notBefore ?? r.createdAt, nowSec),
    localTime(r.expiresAt, nowSec),
    relative(r.createdAt, nowSec),
    r.jobId ?? '-',
    firstLine(r.lastError, 60),
  ]);
  return `${banner}${columns([header, ...rows])}\n`;
}

/** `status --format table`: one reservation, a field per line (after the paused banner, while paused). */
export function reservationDetail(r: Reservation, nowSec: number, job?: unknown, control?: DispatchControl): string {
  const rows: [string, string][] = [
    ['run key', r.runKey],
    ['reservation id', r.reservationId],
    ['status', r.status],
    ['command', shellJoin(r.command)],
    ['start options', r.orchesjobStartOptions.join(' ') || '-'],
    ['not before', localTime(r.notBefore, nowSec)],
    ['expires at', localTime(r.expiresAt, nowSec)],
    ['created', localTime(r.createdAt, nowSec)],
    ['updated', localTime(r.updatedAt, nowSec)],
    ['dispatched', localTime(r.dispatchedAt, nowSec)],
    ['job id', r.jobId ?? '-'],
    ['attempts', r.maxAttempts > 1 ? `${r.attempts} of ${r.maxAttempts}` : String(r.attempts)],
    ['last error', r.lastError ?? '-'],
    ['metadata', r.metadata === null ? '-' : JSON.stringify(r.metadata)],
  ];
  if (job !== undefined) {
    const status = (job as { status?: unknown } | null)?.status;
    rows.push(['job status', typeof status === 'string' ? status : JSON.stringify(job)]);
  }
  const width = Math.max(...rows.map(([k]) => k.length));
  const banner = control === undefined ? '' : pausedBanner(control, nowSec);
  return `${banner}${rows.map(([k, v]) => `${k.padEnd(width)}  ${v.replaceAll('\n', `\n${' '.repeat(width + 2)}`)}`).join('\n')}\n`;
}
