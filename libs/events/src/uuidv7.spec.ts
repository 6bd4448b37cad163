import { uuidv7, uuidv7Time } from './uuidv7';

describe('uuidv7', () => {
  it('puts the time first, the version 7 and the RFC 9562 variant in place', () => {
    const id = uuidv7(0x0123456789ab, new Uint8Array(10));
    expect(id).toBe('01234567-89ab-7000-8000-000000000000');
    expect(uuidv7Time(id)).toBe(0x0123456789ab);
  });

  it('sorts by time as text', () => {
    const ids = [3, 1, 2].map((ms) => uuidv7(1_700_000_000_000 + ms));
    expect([...ids].sort()).toEqual([ids[1], ids[2], ids[0]]);
  });

  it('is unique for the same millisecond', () => {
    expect(new Set(Array.from({ length: 1000 }, () => uuidv7(5))).size).toBe(1000);
  });
});
