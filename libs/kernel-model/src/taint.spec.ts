import { decodeTaint, parseTainted, taintFlagNames, taintLetters, TAINT_FLAGS } from './taint';

describe('taint decoding (/proc/sys/kernel/tainted)', () => {
  it('a clean kernel has no flag', () => {
    expect(decodeTaint(0)).toEqual({ value: 0, flags: [], unknownBits: [] });
    expect(taintLetters(0)).toBe('');
  });

  it('45056 after loading an unsigned out-of-tree livepatch is O, E and K', () => {
    const decoded = decodeTaint(45056);
    expect(decoded.flags.map((f) => [f.bit, f.letter, f.name])).toEqual([
      [12, 'O', 'oot_module'],
      [13, 'E', 'unsigned_module'],
      [15, 'K', 'livepatch'],
    ]);
    expect(taintLetters(45056)).toBe('OEK');
    expect(taintFlagNames(45056)).toEqual(['oot_module', 'unsigned_module', 'livepatch']);
  });

  it('P proprietary, W warning and D died are decoded with the kernel letters', () => {
    expect(taintLetters(1 + 512 + 128)).toBe('PDW');
  });

  it('every documented bit has a distinct letter and name', () => {
    expect(new Set(TAINT_FLAGS.map((f) => f.letter)).size).toBe(TAINT_FLAGS.length);
    expect(new Set(TAINT_FLAGS.map((f) => f.name)).size).toBe(TAINT_FLAGS.length);
    expect(TAINT_FLAGS.map((f) => f.bit)).toEqual(TAINT_FLAGS.map((_, i) => i));
  });

  it('keeps bits it does not know (a newer kernel) instead of dropping them, beyond 32 bits too', () => {
    const value = 2 ** 15 + 2 ** 25 + 2 ** 40;
    expect(decodeTaint(value).unknownBits).toEqual([25, 40]);
    expect(taintFlagNames(value)).toEqual(['livepatch', 'bit25', 'bit40']);
  });

  it('parses the file text and refuses anything else', () => {
    expect(parseTainted('45056\n')).toBe(45056);
    expect(() => parseTainted('')).toThrow(/non-negative decimal/);
    expect(() => parseTainted('-1')).toThrow(/non-negative decimal/);
    expect(() => parseTainted('0x10')).toThrow(/non-negative decimal/);
    expect(() => decodeTaint(-3)).toThrow(/non-negative integer/);
  });
});
