import { UsageError } from './errors';
import { formatDuration, parseDuration, parseInstant } from './time-input';

const now = new Date('2026-11-22T08:00:00.000Z');
const at = (text: string) => parseInstant(text, '--at', now).toISOString();

describe('instants', () => {
  it('reads RFC 3339 in UTC and with offsets, to the millisecond', () => {
    expect(at('2026-11-22T08:00:00Z')).toBe('2026-11-22T08:00:00.000Z');
    expect(at('2026-11-22T09:30:00+01:30')).toBe('2026-11-22T08:00:00.000Z');
    expect(at('2026-11-22t03:00:00.25-05:00')).toBe('2026-11-22T08:00:00.250Z');
    expect(at('2026-11-22T08:00:00.123456789Z')).toBe('2026-11-22T08:00:00.123Z');
  });

  it('reads a date as midnight UTC, "now", and times ago', () => {
    expect(at('2026-02-28')).toBe('2026-02-28T00:00:00.000Z');
    expect(at('now')).toBe('2026-11-22T08:00:00.000Z');
    expect(at('-30m')).toBe('2026-11-22T07:30:00.000Z');
    expect(at('-2h')).toBe('2026-11-22T06:00:00.000Z');
    expect(at('-7d')).toBe('2026-11-15T08:00:00.000Z');
    expect(at('-1w')).toBe('2026-11-15T08:00:00.000Z');
  });

  it.each([
    ['yesterday', ''],
    ['2026-11-22 08:00', ''],
    ['2026-11-22T08:00:00', ''],
    ['2026-02-30T00:00:00Z', ' (no such day)'],
    ['2026-13-01', ' (no such day)'],
    ['2026-11-22T24:00:00Z', ' (no such time of day)'],
    ['2h', ''],
    ['+2h', ''],
  ])('refuses %s, naming the flag and the accepted forms', (text, why) => {
    expect(() => parseInstant(text, '--as-of', now)).toThrow(UsageError);
    expect(() => parseInstant(text, '--as-of', now)).toThrow(
      `--as-of "${text}" is not an instant${why}: use RFC 3339 like 2026-11-22T08:00:00Z (or with an offset, +01:00), a date like 2026-11-22 (midnight UTC), "now", or a time ago like -30m, -2h, -7d`,
    );
  });
});

describe('durations', () => {
  it('reads seconds and units', () => {
    expect(parseDuration('90', '--soak')).toBe(90);
    expect(parseDuration('5m', '--soak')).toBe(300);
    expect(parseDuration('1h30m', '--soak')).toBe(5400);
    expect(parseDuration('2d', '--soak')).toBe(172_800);
  });

  it('refuses what is not a duration', () => {
    expect(() => parseDuration('5 minutes', '--soak')).toThrow(
      '--soak "5 minutes" is not a duration: use a number of seconds, or units like 90s, 5m, 1h30m, 2d',
    );
    expect(() => parseDuration('-5m', '--soak')).toThrow(UsageError);
  });

  it('writes durations back the short way', () => {
    expect(formatDuration(5400)).toBe('1h30m');
    expect(formatDuration(300)).toBe('5m');
    expect(formatDuration(0)).toBe('0s');
  });
});
