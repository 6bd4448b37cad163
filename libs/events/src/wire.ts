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

const EMPTY = new Uint8Array(0);

class Reader {
  pos: number;
  constructor(
    readonly buf: Buffer,
    start: number,
    readonly end: number,
  ) {
    this.pos = start;
  }

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

  /** Start and end of a length-delimited field's content. */
  span(): [number, number] {
    const len = this.varint();
    const start = this.pos;
    if (start + len > this.end) throw new WireError('length-delimited field runs past the end');
    this.pos = start + len;
    return [start, start + len];
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

function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.isBuffer(bytes) ? bytes : Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/** Reads an encoded Envelope and the chain fields of its body. Throws WireError on malformed input. */
export function readEnvelope(bytes: Uint8Array): EnvelopeView {
  const buf = asBuffer(bytes);
  const view: EnvelopeView = {
    body: EMPTY,
    hash: EMPTY,
    signature: EMPTY,
    eventId: '',
    type: '',
    stream: '',
    producerId: '',
    epoch: 0,
    seq: 0,
    prevHash: EMPTY,
    payloadField: 0,
  };
  const env = new Reader(buf, 0, buf.length);
  let bodyStart = -1;
  let bodyEnd = -1;
  while (env.pos < env.end) {
    const tag = env.varint();
    const field = Math.floor(tag / 8);
    const wt = tag & 7;
    if (wt === 2 && field >= 1 && field <= 3) {
      const [s, e] = env.span();
      if (field === 1) [bodyStart, bodyEnd] = [s, e];
      else if (field === 2) view.hash = buf.subarray(s, e);
      else view.signature = buf.subarray(s, e);
    } else env.skip(wt);
  }
  if (bodyStart < 0) throw new WireError('envelope has no body');
  view.body = buf.subarray(bodyStart, bodyEnd);

  const body = new Reader(buf, bodyStart, bodyEnd);
  while (body.pos < body.end) {
    const tag = body.varint();
    const field = Math.floor(tag / 8);
    const wt = tag & 7;
    if (wt === 2 && (field === 1 || field === 2 || field === 3)) {
      const [s, e] = body.span();
      const text = buf.toString('utf8', s, e);
      if (field === 1) view.eventId = text;
      else if (field === 2) view.type = text;
      else view.stream = text;
    } else if (wt === 2 && field === 8) {
      const [s, e] = body.span();
      readProducer(new Reader(buf, s, e), view);
    } else {
      if (field >= 100) view.payloadField = field;
      body.skip(wt);
    }
  }
  return view;
}

function readProducer(r: Reader, view: EnvelopeView): void {
  while (r.pos < r.end) {
    const tag = r.varint();
    const field = Math.floor(tag / 8);
    const wt = tag & 7;
    if (field === 1 && wt === 2) {
      const [s, e] = r.span();
      view.producerId = r.buf.toString('utf8', s, e);
    } else if (field === 2 && wt === 0) view.epoch = r.varint();
    else if (field === 3 && wt === 0) view.seq = r.varint();
    else if (field === 4 && wt === 2) {
      const [s, e] = r.span();
      view.prevHash = r.buf.subarray(s, e);
    } else r.skip(wt);
  }
}
