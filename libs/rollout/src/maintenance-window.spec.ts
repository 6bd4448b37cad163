import { insideWindow, parseWindow } from './maintenance-window';

const at = (iso: string) => Date.parse(iso);

describe('maintenance windows', () => {
  const weekend = parseWindow({ days: 'Sat,Sun', startUtc: '02:00', endUtc: '05:00' });

  it('is open on a listed day between start and end (UTC)', () => {
    expect(insideWindow(weekend, at('2026-11-21T02:00:00Z'))).toBe(true); // Saturday
    expect(insideWindow(weekend, at('2026-11-22T04:59:00Z'))).toBe(true); // Sunday
  });

  it('is closed outside the hours and on other days', () => {
    expect(insideWindow(weekend, at('2026-11-21T05:00:00Z'))).toBe(false);
    expect(insideWindow(weekend, at('2026-11-20T03:00:00Z'))).toBe(false); // Friday
  });

  it('lets a window run past midnight, belonging to the day it starts', () => {
    const friNight = parseWindow({ days: 'Fri', startUtc: '22:00', endUtc: '04:00' });
    expect(insideWindow(friNight, at('2026-11-20T23:30:00Z'))).toBe(true); // Friday evening
    expect(insideWindow(friNight, at('2026-11-21T03:00:00Z'))).toBe(true); // Saturday morning
    expect(insideWindow(friNight, at('2026-11-21T23:30:00Z'))).toBe(false); // Saturday evening
  });

  it('refuses times that are not HH:MM', () => {
    expect(() => parseWindow({ days: 'Mon', startUtc: '2am', endUtc: '05:00' })).toThrow(
      'strategy.window.start_utc: "2am" is not a UTC time HH:MM',
    );
  });
});
