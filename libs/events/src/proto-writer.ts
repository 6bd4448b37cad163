/**
 * A minimal protobuf writer over one growable Buffer, for the fields the chain writes itself
 * (the EventBody header and the Envelope); payloads stay with the generated encoders. The
 * buffer is exposed so that callers can hash and hand out views of what they wrote.
 * Writes fields exactly as the generated (ts-proto) encoders do: proto3 defaults are omitted.
 */
export class ProtoWriter {
  buf: Buffer;
  pos = 0;

  constructor(size: number) {
    this.buf = Buffer.alloc(Math.max(64, size));
  }

  /** Makes room for `n` more bytes. */
  ensure(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const grown = Buffer.alloc(size);
    this.buf.copy(grown, 0, 0, this.pos);
    this.buf = grown;
  }

  /** A varint; `n` must be a non-negative safe integer. */
  varint(n: number): void {
    this.ensure(10);
    const buf = this.buf;
    let pos = this.pos;
    while (n > 0x7f) {
      buf[pos++] = (n % 128) | 0x80;
      n = Math.floor(n / 128);
    }
    buf[pos++] = n;
    this.pos = pos;
  }

  /** An int64/int32 field value: negative numbers take ten bytes (two's complement), as protobuf says. */
  signedVarint(n: number): void {
    if (!Number.isSafeInteger(n)) throw new RangeError(`not an integer protobuf can carry exactly: ${n}`);
    if (n >= 0) return this.varint(n);
    this.ensure(10);
    let v = BigInt.asUintN(64, BigInt(n));
    while (v > 0x7fn) {
      this.buf[this.pos++] = Number(v & 0x7fn) | 0x80;
      v >>= 7n;
    }
    this.buf[this.pos++] = Number(v);
  }

  tag(field: number, wireType: number): void {
    this.varint(field * 8 + wireType);
  }

  /** A string field, left out when empty. */
  string(field: number, s: string): void {
    if (s === '') return;
    this.tag(field, 2);
    const start = this.pos;
    const len = s.length;
    // Ids, names and streams are ASCII: copy the char codes; anything else goes through UTF-8.
    this.ensure(len + 5);
    this.varint(len);
    const buf = this.buf;
    let pos = this.pos;
    for (let i = 0; i < len; i++) {
      const c = s.charCodeAt(i);
      if (c > 0x7f) {
        this.pos = start;
        return this.utf8(s);
      }
      buf[pos++] = c;
    }
    this.pos = pos;
  }

  private utf8(s: string): void {
    const bytes = Buffer.byteLength(s, 'utf8');
    this.ensure(bytes + 5);
    this.varint(bytes);
    this.pos += this.buf.write(s, this.pos, bytes, 'utf8');
  }

  /** A bytes field, left out when empty. */
  bytes(field: number, b: Uint8Array): void {
    if (b.length === 0) return;
    this.tag(field, 2);
    this.varint(b.length);
    this.raw(b, 0, b.length);
  }

  /** Copies `b[start, end)` as is. */
  raw(b: Uint8Array, start: number, end: number): void {
    const len = end - start;
    this.ensure(len);
    // A hash's worth of bytes costs less to copy one by one than to make a view for set().
    if (len <= 32) {
      for (let i = 0; i < len; i++) this.buf[this.pos + i] = b[start + i]!;
    } else this.buf.set(b.subarray(start, end), this.pos);
    this.pos += len;
  }

  /**
   * Starts a nested message: writes its tag and reserves one byte for its length, which
   * join() fills in (moving the content when the length needs more than one byte).
   */
  fork(field: number): number {
    this.tag(field, 2);
    this.ensure(1);
    return this.pos++;
  }

  join(lengthAt: number): void {
    const start = lengthAt + 1;
    const len = this.pos - start;
    if (len < 0x80) {
      this.buf[lengthAt] = len;
      return;
    }
    const extra = varintSize(len) - 1;
    this.ensure(extra);
    this.buf.copyWithin(start + extra, start, this.pos);
    this.pos = lengthAt;
    this.varint(len);
    this.pos += len;
  }
}

export function varintSize(n: number): number {
  let size = 1;
  while (n > 0x7f) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}
