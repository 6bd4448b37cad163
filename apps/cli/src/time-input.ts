// Instants and durations as operators type them. Pure: "now" is passed in.
import { UsageError } from './errors';

const UNIT_SECONDS: Readonly<Record<string, number>> = { s: 1, m: 60, h: 3600, d: 86_400, w: 604_800 };

export const INSTANT_FORMS =
  'RFC 3339 like 2026-11-22T08:00:00Z (or with an offset, +01:00), a date like 2026-11-22 (midnight UTC), ' +
  '"now", or a time ago like -30m, -2h, -7d';

const RFC3339 = /^(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))$/;
const DATE_ONLY = /^(\d{4})-(\d{2})-(\d{2})$/;
const RELATIVE = /^-(\d+)([smhdw])$/;

function validDate(year: number, month: number, day: number): boolean {
  const probe = new Date(Date.UTC(year, month - 1, day));
  return probe.getUTCFullYear() === year && probe.getUTCMonth() === month - 1 && probe.getUTCDate() === day;
}

/** Parses the value of an instant flag, e.g. `--at`; the error names the flag and the accepted forms. */
export function parseInstant(text: string, flag: string, now: Date): Date {
  const value = text.trim();
  const bad = (why?: string) =>
    new UsageError(`${flag} "${text}" is not an instant${why ? ` (${why})` : ''}: use ${INSTANT_FORMS}`);
  if (value.toLowerCase() === 'now') return new Date(now.getTime());

  const relative = RELATIVE.exec(value);
  if (relative) {
    return new Date(now.getTime() - Number(relative[1]) * UNIT_SECONDS[relative[2]!]! * 1000);
  }

  const dateOnly = DATE_ONLY.exec(value);
  if (dateOnly) {
    const [year, month, day] = [Number(dateOnly[1]), Number(dateOnly[2]), Number(dateOnly[3])];
    if (!validDate(year, month, day)) throw bad('no such day');
    return new Date(Date.UTC(year, month - 1, day));
  }

  const m = RFC3339.exec(value);
  if (!m) throw bad();
  const [year, month, day, hour, minute, second] = [1, 2, 3, 4, 5, 6].map((i) => Number(m[i]));
  if (!validDate(year!, month!, day!)) throw bad('no such day');
  if (hour! > 23 || minute! > 59 || second! > 60) throw bad('no such time of day');
  const ms = m[7] ? Number(m[7].padEnd(3, '0').slice(0, 3)) : 0;
  let offsetMinutes = 0;
  if (!m[8]) {
    const [oh, om] = [Number(m[10]), Number(m[11])];
    if (oh > 23 || om > 59) throw bad('no such offset');
    offsetMinutes = (m[9] === '-' ? -1 : 1) * (oh * 60 + om);
  }
  // A leap second is read as the last millisecond of its minute's end: a Date cannot hold 60.
  const utc = Date.UTC(year!, month! - 1, day!, hour!, minute!, Math.min(second!, 59), second === 60 ? 999 : ms);
  return new Date(utc - offsetMinutes * 60_000);
}

export const DURATION_FORMS = 'a number of seconds, or units like 90s, 5m, 1h30m, 2d';

/** Parses a duration such as `--soak 5m`; answers whole seconds. */
export function parseDuration(text: string, flag: string): number {
  const value = text.trim();
  const bad = () => new UsageError(`${flag} "${text}" is not a duration: use ${DURATION_FORMS}`);
  if (/^\d+$/.test(value)) return Number(value);
  if (!/^(\d+[smhdw])+$/.test(value)) throw bad();
  let seconds = 0;
  for (const [, amount, unit] of value.matchAll(/(\d+)([smhdw])/g)) seconds += Number(amount) * UNIT_SECONDS[unit!]!;
  if (!Number.isSafeInteger(seconds)) throw bad();
  return seconds;
}

/** "5m", "1h30m": how a duration in seconds reads best. */
export function formatDuration(seconds: number): string {
  if (seconds <= 0) return '0s';
  const parts: string[] = [];
  let rest = Math.round(seconds);
  for (const [unit, size] of [
    ['d', 86_400],
    ['h', 3600],
    ['m', 60],
    ['s', 1],
  ] as const) {
    if (rest >= size) {
      parts.push(`${Math.floor(rest / size)}${unit}`);
      rest %= size;
    }
  }
  return parts.join('');
}
