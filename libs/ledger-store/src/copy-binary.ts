/**
 * PostgreSQL's binary COPY format (the `COPY ... FROM STDIN (FORMAT binary)` input), for the
 * column types the read models use. Binary rather than text: bytea goes as raw bytes instead of
 * hex, and nothing needs escaping, which keeps the encoding cheap for the process that also
 * verifies and projects.
 */
const SIGNATURE = Buffer.from('PGCOPY\n\xff\r\n\0', 'latin1');

/** Column types (information_schema udt_name) the encoder knows. */
export type CopyColumnType = 'int2' | 'int4' | 'int8' | 'text' | 'bytea';

export function isCopyColumnType(t: string): t is CopyColumnType {
  return t === 'int2' || t === 'int4' || t === 'int8' || t === 'text' || t === 'bytea';
}

/** Rows of values (numbers, numeric strings for BIGINT, strings, bytes, null) as one COPY payload. */
export function encodeCopyBinary(types: readonly CopyColumnType[], rows: readonly (readonly unknown[])[]): Buffer {
  const out = new Growable(64 * 1024 + rows.length * types.length * 48);
  out.bytes(SIGNATURE);
  out.int32(0); // flags
  out.int32(0); // header extension length
  for (const row of rows) {
    if (row.length !== types.length)
      throw new Error(`COPY: a row has ${row.length} values for ${types.length} columns`);
    out.int16(types.length);
    for (let c = 0; c < types.length; c++) {
      const v = row[c];
      if (v === null || v === undefined) {
        out.int32(-1);
        continue;
      }
      switch (types[c]!) {
        case 'int2':
          out.int32(2);
          out.int16(Number(v));
          break;
        case 'int4':
          out.int32(4);
          out.int32(Number(v));
          break;
        case 'int8':
          out.int32(8);
          out.int64(v as bigint | number | string);
          break;
        case 'text':
          out.text(String(v));
          break;
        case 'bytea': {
          const b = v as Uint8Array;
          out.int32(b.length);
          out.bytes(b);
          break;
        }
      }
    }
  }
  out.int16(-1); // trailer
  return out.done();
}

/** An append-only byte buffer that doubles when full. */
class Growable {
  private buf: Buffer;
  private at = 0;

  constructor(size: number) {
    this.buf = Buffer.allocUnsafe(size);
  }

  private room(n: number): void {
    if (this.at + n <= this.buf.length) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.length * 2, this.at + n));
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }

  int16(v: number): void {
    this.room(2);
    this.at = this.buf.writeInt16BE(v, this.at);
  }

  int32(v: number): void {
    this.room(4);
    this.at = this.buf.writeInt32BE(v, this.at);
  }

  /** A safe integer goes as two 32-bit halves: no BigInt allocated for each value. */
  int64(v: bigint | number | string): void {
    this.room(8);
    const n = typeof v === 'number' ? v : typeof v === 'string' && v.length < 16 ? Number(v) : NaN;
    if (Number.isSafeInteger(n)) {
      const high = Math.floor(n / 4294967296);
      this.buf.writeInt32BE(high, this.at);
      this.buf.writeUInt32BE(n - high * 4294967296, this.at + 4);
      this.at += 8;
    } else this.at = this.buf.writeBigInt64BE(typeof v === 'bigint' ? v : BigInt(v), this.at);
  }

  bytes(b: Uint8Array): void {
    this.room(b.length);
    this.buf.set(b, this.at);
    this.at += b.length;
  }

  /** Length-prefixed UTF-8: written in place, the length filled in after. */
  text(s: string): void {
    this.room(4 + s.length * 3);
    const buf = this.buf;
    const start = this.at + 4;
    // Most values are short ASCII (ids, types, names): copied char by char, cheaper than a call
    // into the UTF-8 encoder; anything else goes to the encoder from the start.
    let n = 0;
    if (s.length <= 64) {
      for (; n < s.length; n++) {
        const c = s.charCodeAt(n);
        if (c >= 0x80) break;
        buf[start + n] = c;
      }
    }
    if (n < s.length) n = buf.write(s, start, 'utf8');
    buf.writeInt32BE(n, this.at);
    this.at = start + n;
  }

  done(): Buffer {
    return this.buf.subarray(0, this.at);
  }
}
