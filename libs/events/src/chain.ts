import { createHash } from 'node:crypto';
import { events } from '@rebootless/contracts';
import { EventPayload, payloadFields } from './event-types';
import { SigningKey, signHash } from './signing';
import { uuidv7 } from './uuidv7';

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

export function toTimestamp(ms: number): { seconds: string; nanos: number } {
  const seconds = Math.floor(ms / 1000);
  return { seconds: String(seconds), nanos: Math.round((ms - seconds * 1000) * 1e6) };
}

/**
 * Appends drafts to a chain. The last event is sealed (signed); the chain makes that one
 * signature vouch for every earlier event (docs/adr/0003-seals.md). Pure apart from the clock and
 * random ids, which may be passed in.
 */
export function appendToChain(
  head: ChainHead,
  drafts: readonly EventDraft[],
  key: SigningKey,
  now: () => number = Date.now,
): { events: ChainedEvent[]; head: ChainHead } {
  let { seq, hash } = head;
  const out: ChainedEvent[] = [];
  drafts.forEach((draft, i) => {
    if (!draft.stream) throw new Error(`event ${i} (${draft.payload.type}) has no stream`);
    const at = now();
    const eventId = draft.eventId ?? uuidv7(at);
    seq += 1;
    const body = events.EventBody.encode({
      eventId,
      type: draft.payload.type,
      stream: draft.stream,
      occurredAt: toTimestamp(draft.occurredAt?.getTime() ?? at),
      actor: draft.actor,
      correlationId: draft.correlationId ?? '',
      causationId: draft.causationId ?? '',
      producer: { producerId: head.producerId, epoch: head.epoch, seq: String(seq), prevHash: hash },
      ...payloadFields(draft.payload),
    }).finish();
    const eventHash = chainHash(hash, body);
    const sealed = i === drafts.length - 1;
    const signature = sealed ? signHash(key, eventHash) : new Uint8Array(0);
    out.push({
      eventId,
      type: draft.payload.type,
      stream: draft.stream,
      seq,
      hash: eventHash,
      sealed,
      envelope: encodeEnvelope(body, eventHash, signature),
    });
    hash = eventHash;
  });
  return { events: out, head: { ...head, seq, hash } };
}

/**
 * Envelope { body = 1; hash = 2; signature = 3 } written directly: three length-delimited
 * fields, one allocation, no second copy of the body through a generic writer.
 */
export function encodeEnvelope(body: Uint8Array, hash: Uint8Array, signature: Uint8Array): Buffer {
  const size = 1 + varintSize(body.length) + body.length + 1 + varintSize(hash.length) + hash.length +
    (signature.length > 0 ? 1 + varintSize(signature.length) + signature.length : 0);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  const field = (tag: number, bytes: Uint8Array) => {
    out[at++] = tag;
    at = writeVarint(out, at, bytes.length);
    out.set(bytes, at);
    at += bytes.length;
  };
  field(0x0a, body);
  field(0x12, hash);
  if (signature.length > 0) field(0x1a, signature);
  return out;
}

function varintSize(n: number): number {
  let size = 1;
  while (n >= 0x80) {
    n = Math.floor(n / 128);
    size++;
  }
  return size;
}

function writeVarint(out: Buffer, at: number, n: number): number {
  while (n >= 0x80) {
    out[at++] = (n & 0x7f) | 0x80;
    n = Math.floor(n / 128);
  }
  out[at++] = n;
  return at;
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
