import { encodeCopyBinary } from './copy-binary';

// Decodes the one row of a payload back to its fields' bytes, as PostgreSQL reads them.
function fields(payload: Buffer): (Buffer | null)[] {
  let at = 19; // signature (11), flags (4), header extension length (4)
  const n = payload.readInt16BE(at);
  at += 2;
  const out: (Buffer | null)[] = [];
  for (let i = 0; i < n; i++) {
    const len = payload.readInt32BE(at);
    at += 4;
    out.push(len < 0 ? null : payload.subarray(at, at + len));
    at += Math.max(len, 0);
  }
  expect(payload.readInt16BE(at)).toBe(-1);
  return out;
}

const int8 = (v: bigint) => {
  const b = Buffer.alloc(8);
  b.writeBigInt64BE(v);
  return b;
};

describe('encodeCopyBinary', () => {
  it('writes BIGINTs given as numbers, numeric strings and bigints alike', () => {
    for (const v of [
      0,
      1,
      -1,
      4294967295,
      4294967296,
      -4294967297,
      Number.MAX_SAFE_INTEGER,
      -Number.MAX_SAFE_INTEGER,
    ]) {
      for (const given of [v, String(v), BigInt(v)]) {
        expect(fields(encodeCopyBinary(['int8'], [[given]]))[0]).toEqual(int8(BigInt(v)));
      }
    }
    expect(fields(encodeCopyBinary(['int8'], [['9223372036854775807']]))[0]).toEqual(int8(9223372036854775807n));
  });

  it('writes text as UTF-8, ASCII or not, short or long', () => {
    for (const s of ['', 'host/h-0001', 'naïve ✓ 🚀', 'x'.repeat(64) + 'é', 'y'.repeat(1000), 'a'.repeat(63) + '€']) {
      expect(fields(encodeCopyBinary(['text'], [[s]]))[0]!.toString('utf8')).toBe(s);
    }
  });

  it('writes nulls, small ints and bytes', () => {
    const row = fields(encodeCopyBinary(['int2', 'int4', 'bytea', 'text'], [[7, -3, Buffer.from([1, 2, 3]), null]]));
    expect(row[0]!.readInt16BE()).toBe(7);
    expect(row[1]!.readInt32BE()).toBe(-3);
    expect(row[2]).toEqual(Buffer.from([1, 2, 3]));
    expect(row[3]).toBeNull();
  });
});
