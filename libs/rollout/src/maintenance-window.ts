// Maintenance windows: weekdays and a UTC time span; a span whose end is before its start runs
// past midnight (22:00 to 04:00) and belongs to the day it starts on.
import type { events } from '@rebootless/contracts';
import { RolloutInputError } from './errors';

const DAYS = ['sun', 'mon', 'tue', 'wed', 'thu', 'fri', 'sat'];
const HHMM = /^([01]\d|2[0-3]):([0-5]\d)$/;

export interface ParsedWindow {
  days: ReadonlySet<number>;
  startMinute: number;
  endMinute: number;
}

export function isWindowSet(window: events.MaintenanceWindow | undefined): window is events.MaintenanceWindow {
  return !!window && !!(window.days || window.startUtc || window.endUtc);
}

export function parseWindow(window: events.MaintenanceWindow, field = 'strategy.window'): ParsedWindow {
  const days = new Set<number>();
  const dayList = window.days.trim() ? window.days.split(',') : DAYS;
  for (const raw of dayList) {
    const day = DAYS.indexOf(raw.trim().slice(0, 3).toLowerCase());
    if (day < 0 || raw.trim().length < 3)
      throw new RolloutInputError(`${field}.days`, `"${raw.trim()}" is not a weekday (Mon, Tue, ... Sun)`);
    days.add(day);
  }
  return {
    days,
    startMinute: minuteOf(window.startUtc, `${field}.start_utc`),
    endMinute: minuteOf(window.endUtc, `${field}.end_utc`),
  };
}

function minuteOf(text: string, field: string): number {
  const m = HHMM.exec(text.trim());
  if (!m) throw new RolloutInputError(field, `"${text}" is not a UTC time HH:MM`);
  return Number(m[1]) * 60 + Number(m[2]);
}

/** Whether new commands may be sent at `now` (ms). */
export function insideWindow(window: ParsedWindow, now: number): boolean {
  const d = new Date(now);
  const minute = d.getUTCHours() * 60 + d.getUTCMinutes();
  const day = d.getUTCDay();
  const { startMinute: start, endMinute: end } = window;
  if (start === end) return window.days.has(day);
  if (start < end) return window.days.has(day) && minute >= start && minute < end;
  // Past midnight: the evening part is on a listed day, the morning part on the day after one.
  if (minute >= start) return window.days.has(day);
  return minute < end && window.days.has((day + 6) % 7);
}
