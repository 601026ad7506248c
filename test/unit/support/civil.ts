/**
 * Calendar arithmetic done by hand (Howard Hinnant's days_from_civil), so that time tests compute
 * their expectations without calling `Date` the way the code under test does.
 */

/** Days since 1970-01-01 of a proleptic Gregorian date. */
export function daysFromCivil(year: number, month: number, day: number): number {
  const y = month <= 2 ? year - 1 : year;
  const era = Math.floor(y / 400);
  const yoe = y - era * 400; // [0, 399]
  const mp = month > 2 ? month - 3 : month + 9; // March = 0
  const doy = Math.floor((153 * mp + 2) / 5) + day - 1; // [0, 365]
  const doe = yoe * 365 + Math.floor(yoe / 4) - Math.floor(yoe / 100) + doy; // [0, 146096]
  return era * 146_097 + doe - 719_468;
}

/** Epoch seconds of a wall-clock time at a fixed UTC offset (`offsetMinutes` east of UTC). */
export function epochAt(
  year: number,
  month: number,
  day: number,
  hour = 0,
  minute = 0,
  second = 0,
  offsetMinutes = 0,
): number {
  return daysFromCivil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second - offsetMinutes * 60;
}

/** Offsets used by the zone tests, in minutes east of UTC. */
export const JST = 9 * 60;
export const EST = -5 * 60;
export const EDT = -4 * 60;
