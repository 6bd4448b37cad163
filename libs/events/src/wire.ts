/**
 * A minimal protobuf reader for the parts of an envelope the verifier needs (chain position,
 * type, hashes), so verifying a stream does not pay for decoding every payload.
 * The full decode stays with the generated code (decodeEvent).
 */

export class WireError extends Error {}

/** What the verifier sees of one envelope. */
export interface EnvelopeView {
  body: Uint8Array;
  hash: Uint8Array;
  signature: Uint8Array;
  eventId: string;
  type: string;
  stream: string;
  producerId: string;
  epoch: number;
  seq: number;
  prevHash: Uint8Array;
  /** The EventBody field number of the payload, 0 when none is set. */
  payloadField: number;
}

/**
 * Where the parts of one envelope lie in its bytes: offsets, no copies and no text decoded,
 * so that scanning a record allocates nothing. A field that is absent has start === end.
 */
export class EnvelopeLayout {
  bodyStart = 0;
  bodyEnd = 0;
  hashStart = 0;
  hashEnd = 0;
  signatureStart = 0;
  signatureEnd = 0;
  eventIdStart = 0;
  eventIdEnd = 0;
  typeStart = 0;
  typeEnd = 0;
  streamStart = 0;
  streamEnd = 0;
  producerIdStart = 0;
  producerIdEnd = 0;
  prevHashStart = 0;
  prevHashEnd = 0;
  epoch = 0;
  seq = 0;
  /** The EventBody field number of the payload, 0 when none is set. */
  payloadField = 0;
}

/** A cursor over `buf[pos, end)`. */
class Reader {
  buf: Uint8Array = EMPTY;
  pos = 0;
  end = 0;

  varint(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      if (this.pos >= this.end) throw new WireError('truncated varint');
      const byte = this.buf[this.pos++]!;
      result += (byte & 0x7f) * scale;
      if (byte < 0x80) {
        if (!Number.isSafeInteger(result)) throw new WireError('varint beyond 2^53');
        return result;
      }
      scale *= 128;
    }
    throw new WireError('varint longer than 10 bytes');
  }

  /** Moves past a length-delimited field's content; returns where it starts (it ends at pos). */
  span(): number {
    const len = this.varint();
    const start = this.pos;
    if (start + len > this.end) throw new WireError('length-delimited field runs past the end');
    this.pos = start + len;
    return start;
  }

  skip(wireType: number): void {
    switch (wireType) {
      case 0:
        this.varint();
        return;
      case 1:
        this.pos += 8;
        break;
      case 2:
        this.span();
        return;
      case 5:
        this.pos += 4;
        break;
      default:
        throw new WireError(`unsupported wire type ${wireType}`);
    }
    if (this.pos > this.end) throw new WireError('fixed-size field runs past the end');
  }
}

const EMPTY = new Uint8Array(0);
// Scanning is synchronous and never re-entered, so one cursor serves every call.
const reader = new Reader();

/**
 * Finds the parts of an encoded Envelope and the chain fields of its body, into `into`.
 * Throws WireError on malformed input.
 */
export function scanEnvelope(bytes: Uint8Array, into: EnvelopeLayout): EnvelopeLayout {
  const l = into;
  l.bodyStart = l.bodyEnd = l.hashStart = l.hashEnd = l.signatureStart = l.signatureEnd = -1;
  l.eventIdStart = l.eventIdEnd = l.typeStart = l.typeEnd = l.streamStart = l.streamEnd = 0;
  l.producerIdStart = l.producerIdEnd = l.prevHashStart = l.prevHashEnd = 0;
  l.epoch = l.seq = l.payloadField = 0;
  const r = reader;
  r.buf = bytes;
  r.pos = 0;
  r.end = bytes.length;
  try {
    while (r.pos < r.end) {
      const tag = r.varint();
      const field = Math.floor(tag / 8);
      const wt = tag & 7;
      if (wt !== 2 || field < 1 || field > 3) {
        r.skip(wt);
        continue;
      }
      const start = r.span();
      if (field === 1) {
        l.bodyStart = start;
        l.bodyEnd = r.pos;
      } else if (field === 2) {
        l.hashStart = start;
        l.hashEnd = r.pos;
      } else {
        l.signatureStart = start;
        l.signatureEnd = r.pos;
      }
    }
    if (l.bodyStart < 0) throw new WireError('envelope has no body');
    if (l.hashStart < 0) l.hashStart = l.hashEnd = 0;
    if (l.signatureStart < 0) l.signatureStart = l.signatureEnd = 0;
    scanBody(r, l);
  } finally {
    r.buf = EMPTY; // keep no record alive
  }
  return l;
}

function scanBody(r: Reader, l: EnvelopeLayout): void {
  r.pos = l.bodyStart;
  r.end = l.bodyEnd;
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wt = tag & 7;
    if (wt === 2 && field >= 1 && field <= 3) {
      const start = r.span();
      if (field === 1) {
        l.eventIdStart = start;
        l.eventIdEnd = r.pos;
      } else if (field === 2) {
        l.typeStart = start;
        l.typeEnd = r.pos;
      } else {
        l.streamStart = start;
        l.streamEnd = r.pos;
      }
    } else if (wt === 2 && field === 8) {
      const start = r.span();
      const bodyEnd = r.end;
      r.end = r.pos;
      r.pos = start;
      scanProducer(r, l);
      r.end = bodyEnd;
    } else {
      if (field >= 100) l.payloadField = field;
      r.skip(wt);
    }
  }
}

function scanProducer(r: Reader, l: EnvelopeLayout): void {
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wt = tag & 7;
    if (field === 1 && wt === 2) {
      l.producerIdStart = r.span();
      l.producerIdEnd = r.pos;
    } else if (field === 2 && wt === 0) l.epoch = r.varint();
    else if (field === 3 && wt === 0) l.seq = r.varint();
    else if (field === 4 && wt === 2) {
      l.prevHashStart = r.span();
      l.prevHashEnd = r.pos;
    } else r.skip(wt);
  }
}

export function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Text of a field the layout located. */
export function textAt(bytes: Uint8Array, start: number, end: number): string {
  return start === end ? '' : asBuffer(bytes).toString('utf8', start, end);
}

/** Reads an encoded Envelope and the chain fields of its body. Throws WireError on malformed input. */
export function readEnvelope(bytes: Uint8Array): EnvelopeView {
  const buf = asBuffer(bytes);
  const l = scanEnvelope(buf, new EnvelopeLayout());
  return {
    body: buf.subarray(l.bodyStart, l.bodyEnd),
    hash: buf.subarray(l.hashStart, l.hashEnd),
    signature: buf.subarray(l.signatureStart, l.signatureEnd),
    eventId: textAt(buf, l.eventIdStart, l.eventIdEnd),
    type: textAt(buf, l.typeStart, l.typeEnd),
    stream: textAt(buf, l.streamStart, l.streamEnd),
    producerId: textAt(buf, l.producerIdStart, l.producerIdEnd),
    epoch: l.epoch,
    seq: l.seq,
    prevHash: buf.subarray(l.prevHashStart, l.prevHashEnd),
    payloadField: l.payloadField,
  };
}
