import { createHash } from 'node:crypto';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { events } from '@rebootless/contracts';
import { EventPayload, encodePayloadField, isEventType } from './event-types';
import { ProtoWriter, varintSize } from './proto-writer';
import { sha256Binary } from './sha256';
import { SigningKey, signHash } from './signing';
import { uuidv7 } from './uuidv7';
import { readEnvelope } from './wire';

/** prev_hash of the first event of every epoch. */
export const GENESIS_HASH: Buffer = Buffer.alloc(32);

/** hash = sha256(prev_hash || body) (DESIGN.md section 4). */
export function chainHash(prevHash: Uint8Array, body: Uint8Array): Buffer {
  return createHash('sha256').update(prevHash).update(body).digest();
}

/** Where a producer's chain stands: the last event written (seq 0 before the first). */
export interface ChainHead {
  producerId: string;
  epoch: number;
  seq: number;
  hash: Buffer;
}

/** What a producer says; the chain adds ids, position, hash and seal. */
export interface EventDraft {
  stream: string;
  payload: EventPayload;
  actor?: events.Actor;
  correlationId?: string;
  causationId?: string;
  occurredAt?: Date;
  eventId?: string;
}

export interface ChainedEvent {
  eventId: string;
  type: EventPayload['type'];
  stream: string;
  seq: number;
  hash: Buffer;
  sealed: boolean;
  /** The encoded Envelope: the Kafka record value. */
  envelope: Buffer;
}

export function startEpoch(producerId: string, epoch: number): ChainHead {
  if (!producerId) throw new Error('producerId must not be empty');
  if (!Number.isInteger(epoch) || epoch < 1 || epoch > 0xffffffff) {
    throw new Error(`epoch must be an integer from 1 to 2^32-1, got ${epoch}`);
  }
  return { producerId, epoch, seq: 0, hash: GENESIS_HASH };
}

// Encoding a batch: the payloads go through the generated encoders in one pass (one buffer
// per batch, not one per event); then each body is written into `scratch` right after its
// prev_hash, so `prev_hash || body` is one contiguous hash input, and its envelope is appended
// to the batch's buffer. Envelopes and hashes are handed out as views of that buffer.
const payloadWriter = new BinaryWriter();
const scratch = new ProtoWriter(4096);
const NO_SIGNATURE = Buffer.alloc(0);

/**
 * Appends drafts to a chain. The last event is sealed (signed); the chain makes that one
 * signature vouch for every earlier event (docs/adr/0003-event-chain.md). Pure apart from the clock and
 * random ids, which may be passed in. `sealLast` false leaves the batch unsealed, for a producer
 * that seals later what it sends (sealEnvelope; the agent's outbox, docs/adr/0030).
 */
export function appendToChain(
  head: ChainHead,
  drafts: readonly EventDraft[],
  key: SigningKey,
  now: () => number = Date.now,
  sealLast = true,
): { events: ChainedEvent[]; head: ChainHead } {
  drafts.forEach((draft, i) => {
    if (!isEventType(draft.payload.type))
      throw new Error(`event ${i} has an unknown type ${String(draft.payload.type)}`);
    if (!draft.stream) throw new Error(`event ${i} (${draft.payload.type}) has no stream`);
  });
  const payloads = encodePayloads(drafts);
  let out = new ProtoWriter(payloads.length + drafts.length * 200 + 128);
  const written: ChainedEvent[] = [];
  let seq = head.seq;
  let prevHash: Buffer = head.hash;
  let payloadAt = 0;
  for (let i = 0; i < drafts.length; i++) {
    const draft = drafts[i]!;
    const at = now();
    const eventId = draft.eventId ?? uuidv7(at);
    seq += 1;

    scratch.pos = 0;
    scratch.raw(prevHash, 0, prevHash.length);
    const bodyStart = scratch.pos;
    writeBodyHeader(scratch, draft, eventId, draft.occurredAt?.getTime() ?? at, head, seq, bodyStart);
    if (draft.payload.data !== undefined) {
      const end = fieldEnd(payloads, payloadAt);
      scratch.raw(payloads, payloadAt, end);
      payloadAt = end;
    }
    const digest = sha256Binary(scratch.buf.subarray(0, scratch.pos)); // the hash, as 32 char codes
    const sealed = sealLast && i === drafts.length - 1;
    const signature = sealed ? signHash(key, Buffer.from(digest, 'latin1')) : NO_SIGNATURE;

    // Envelope { body = 1; hash = 2; signature = 3 }, whole in one buffer. When the batch's
    // buffer is full the rest go to a new one: envelopes already handed out stay as they are.
    const bodyLen = scratch.pos - bodyStart;
    const size =
      1 + varintSize(bodyLen) + bodyLen + 2 + 32 + (sealed ? 1 + varintSize(signature.length) + signature.length : 0);
    if (out.pos + size > out.buf.length) out = new ProtoWriter(size * (drafts.length - i) + 128);
    const start = out.pos;
    out.tag(1, 2);
    out.varint(bodyLen);
    out.raw(scratch.buf, bodyStart, scratch.pos);
    out.tag(2, 2);
    out.varint(32);
    const hashAt = out.pos;
    for (let k = 0; k < 32; k++) out.buf[hashAt + k] = digest.charCodeAt(k);
    out.pos += 32;
    out.bytes(3, signature);

    prevHash = out.buf.subarray(hashAt, hashAt + 32);
    written.push({
      eventId,
      type: draft.payload.type,
      stream: draft.stream,
      seq,
      hash: prevHash,
      sealed,
      envelope: out.buf.subarray(start, out.pos),
    });
  }
  // A copy, so that a chain head does not keep a whole batch's buffer alive.
  return { events: written, head: { ...head, seq, hash: written.length > 0 ? Buffer.from(prevHash) : head.hash } };
}

/**
 * The envelope with its seal: a signature over the hash it carries, which the chain already
 * fixed (the signature is outside what is hashed, so sealing later changes no event's place).
 * Ed25519 signs deterministically: the same envelope sealed twice gives the same bytes. One sealed
 * already is returned as it is.
 */
export function sealEnvelope(envelope: Uint8Array, key: SigningKey): Buffer {
  const view = readEnvelope(envelope);
  if (view.signature.length > 0) return Buffer.isBuffer(envelope) ? envelope : Buffer.from(envelope);
  if (view.hash.length !== 32) throw new Error(`envelope ${view.eventId} has no 32-byte hash to seal`);
  const signature = signHash(key, view.hash);
  const out = new ProtoWriter(envelope.length + 2 + signature.length);
  out.raw(envelope, 0, envelope.length);
  out.bytes(3, signature); // the envelope's last field (body = 1, hash = 2, signature = 3)
  return Buffer.from(out.buf.subarray(0, out.pos));
}

/** The payloads of a batch, each as its EventBody oneof field, back to back. */
function encodePayloads(drafts: readonly EventDraft[]): Uint8Array {
  try {
    for (const { payload } of drafts) {
      if (payload.data !== undefined) encodePayloadField(payload, payloadWriter);
    }
  } catch (err) {
    payloadWriter.finish(); // drop what the failed batch left, so the next one starts clean
    throw err;
  }
  return payloadWriter.finish();
}

/** Where the length-delimited field starting at `at` ends (its tag, length and content). */
function fieldEnd(buf: Uint8Array, at: number): number {
  while (buf[at++]! & 0x80); // the tag
  let len = 0;
  let scale = 1;
  let byte: number;
  do {
    byte = buf[at++]!;
    len += (byte & 0x7f) * scale;
    scale *= 128;
  } while (byte & 0x80);
  return at + len;
}

/**
 * EventBody fields 1 to 8, in field order as the generated encoder writes them. The prev_hash
 * is the `prevLen` bytes at the start of the writer (the hash input's prefix).
 */
function writeBodyHeader(
  w: ProtoWriter,
  draft: EventDraft,
  eventId: string,
  occurredAtMs: number,
  head: ChainHead,
  seq: number,
  prevLen: number,
): void {
  w.string(1, eventId);
  w.string(2, draft.payload.type);
  w.string(3, draft.stream);
  if (!Number.isFinite(occurredAtMs)) throw new RangeError(`event ${eventId} has an invalid occurredAt`);
  const seconds = Math.floor(occurredAtMs / 1000);
  const nanos = nanosOf(occurredAtMs, seconds);
  const ts = w.fork(4);
  if (seconds !== 0) {
    w.tag(1, 0);
    w.signedVarint(seconds);
  }
  if (nanos !== 0) {
    w.tag(2, 0);
    w.signedVarint(nanos);
  }
  w.join(ts);
  if (draft.actor !== undefined) {
    const actor = w.fork(5);
    if (draft.actor.kind !== 0) {
      w.tag(1, 0);
      w.signedVarint(draft.actor.kind);
    }
    w.string(2, draft.actor.id);
    w.string(3, draft.actor.origin);
    w.join(actor);
  }
  w.string(6, draft.correlationId ?? '');
  w.string(7, draft.causationId ?? '');
  const producer = w.fork(8);
  w.string(1, head.producerId);
  if (head.epoch !== 0) {
    w.tag(2, 0);
    w.varint(head.epoch);
  }
  if (seq !== 0) {
    w.tag(3, 0);
    w.varint(seq);
  }
  if (prevLen > 0) {
    w.tag(4, 2);
    w.varint(prevLen);
    w.ensure(prevLen);
    w.buf.copyWithin(w.pos, 0, prevLen);
    w.pos += prevLen;
  }
  w.join(producer);
}

/** A Timestamp's nanos for a time in milliseconds, given its whole seconds. */
function nanosOf(ms: number, seconds: number): number {
  return Math.round((ms - seconds * 1000) * 1e6);
}

/** Envelope { body = 1; hash = 2; signature = 3 } for one event (appendToChain writes a batch's at once). */
export function encodeEnvelope(body: Uint8Array, hash: Uint8Array, signature: Uint8Array): Buffer {
  const w = new ProtoWriter(body.length + hash.length + signature.length + 16);
  w.tag(1, 2);
  w.varint(body.length);
  w.raw(body, 0, body.length);
  w.tag(2, 2);
  w.varint(hash.length);
  w.raw(hash, 0, hash.length);
  w.bytes(3, signature);
  return w.buf.subarray(0, w.pos);
}

export interface DecodedEvent {
  envelope: events.Envelope;
  body: events.EventBody;
}

/** Full decode, for consumers that act on payloads. Throws on malformed bytes. */
export function decodeEvent(value: Uint8Array): DecodedEvent {
  const envelope = events.Envelope.decode(value);
  return { envelope, body: events.EventBody.decode(envelope.body) };
}
