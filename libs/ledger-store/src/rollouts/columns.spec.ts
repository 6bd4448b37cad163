import { canonicalJson } from './columns';

/** What canonicalJson must equal: JSON.stringify of the value with every object's keys sorted. */
const bySortedObjects = (value: unknown) =>
  JSON.stringify(value, (_key, v: unknown) =>
    v && typeof v === 'object' && !Array.isArray(v)
      ? Object.fromEntries(Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : 1)))
      : v,
  );

describe('canonicalJson', () => {
  it('writes what JSON.stringify writes for the same object with its keys sorted', () => {
    const values: unknown[] = [
      { b: 1, a: 'x', c: { z: [3, { y: null, x: true }], a: -0 } },
      { wave: 0, hostId: 'h-1', apply: { version: '1', patchId: 'p', at: 1795114820599 }, issue: undefined },
      { é: 'ü\u2028"\\', A: NaN, a: Infinity, list: [undefined, () => 1, 'x'], when: new Date(0), fn: () => 1 },
      [{ b: 2, a: 1 }, [], {}],
      'text',
      12.5,
      null,
    ];
    for (const v of values) expect(canonicalJson(v)).toBe(bySortedObjects(v));
  });

  it('gives one text whatever order the fields were set in', () => {
    expect(canonicalJson({ a: 1, b: { c: 2, d: 3 } })).toBe(canonicalJson({ b: { d: 3, c: 2 }, a: 1 }));
  });
});
