import { events } from '@rebootless/contracts';

/** One consumed record that passed verification, decoded. */
export interface VerifiedEvent {
  partition: number;
  offset: string;
  envelope: Buffer;
  body: events.EventBody;
}

/**
 * One event on its way through the read models: each read model that knows it names what the
 * audit row is about (host, patch and version) and says it in a sentence (summary).
 */
export interface EventContext {
  e: VerifiedEvent;
  /** occurred_at, ms. */
  at: number;
  hostId: string;
  patchId: string;
  version: string;
  summary: string;
}

export const occurredMs = (ts: { seconds: string; nanos: number } | undefined) =>
  ts ? Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000) : 0;
