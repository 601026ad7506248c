import { invalidArgument } from './errors.js';

/** Latest accepted time: the end of year 9999, as Python's datetime allows. */
const MAX_EPOCH = 253_402_300_799;

const EPOCH = /^-?\d+$/;
const ISO =
  /^(\d{4})-(\d{2})-(\d{2})(?:[T ](\d{2}):(\d{2})(?::(\d{2})(?:[.,](\d{1,9}))?)?)?(?:(Z|z)|([+-])(\d{2})(?::?(\d{2}))?)?$/;

/**
 * Parse a `--not-before`/`--expires-at`/`--before`/`--after` value into epoch seconds.
 *
 * Accepts epoch seconds, or ISO 8601: a date, or a date and time with `T` or a space, optional
 * seconds and fraction (truncated), and an optional `Z` or `±HH[:MM]` offset. A time without an
 * offset, and a bare date, are the host's local time (TZ), as in the Python tool: `Date.parse` would
 * read a bare date as UTC, so the fields are assembled here instead. A local time skipped by a DST
 * change moves forward by the gap; a repeated one takes its first occurrence (Python's `fold=0`).
 */
export function parseTime(value: string, flag: string): number {
  const text = value.trim();
  const bad = () =>
    invalidArgument(`Invalid ${flag}: ${JSON.stringify(value)}. Expected epoch seconds or ISO 8601 datetime.`);
  if (text === '') throw invalidArgument(`Invalid ${flag}: empty value.`);
  if (EPOCH.test(text)) {
    const seconds = Number(text);
    if (!Number.isSafeInteger(seconds) || Math.abs(seconds) > MAX_EPOCH) throw bad();
    return seconds;
  }
  const m = ISO.exec(text);
  if (m === null) throw bad();
  const [, y, mo, d, h, mi, s, frac, zulu, sign, oh, om] = m;
  const year = Number(y);
  const month = Number(mo);
  const day = Number(d);
  const hour = Number(h ?? 0);
  const minute = Number(mi ?? 0);
  const second = Number(s ?? 0);
  const millis = frac === undefined ? 0 : Number(frac.padEnd(3, '0').slice(0, 3));
  if (
    month < 1 ||
    month > 12 ||
    day < 1 ||
    day > daysInMonth(year, month) ||
    hour > 23 ||
    minute > 59 ||
    second > 59
  ) {
    throw bad();
  }
  let ms: number;
  if (zulu !== undefined || sign !== undefined) {
    const offsetMinutes =
      zulu !== undefined ? 0 : (sign === '-' ? -1 : 1) * (Number(oh) * 60 + Number(om ?? 0));
    if (Math.abs(offsetMinutes) >= 24 * 60) throw bad();
    const utc = new Date(Date.UTC(year, month - 1, day, hour, minute, second, millis));
    utc.setUTCFullYear(year); // years 0..99 would otherwise mean 1900..1999
    ms = utc.getTime() - offsetMinutes * 60_000;
  } else {
    const local = new Date(year, month - 1, day, hour, minute, second, millis);
    local.setFullYear(year); // years 0..99 would otherwise mean 1900..1999
    ms = local.getTime();
  }
  return Math.floor(ms / 1000);
}

function daysInMonth(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}
