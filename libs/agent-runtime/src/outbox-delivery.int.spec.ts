// What the agent tells the dispatcher about a delivery: whether it may be in the log already
// (sent before without an answer), so the dispatcher reads the log to its end before it writes
// again (docs/adr/0025, "events sent again"); and facts held back to share the seal of the one
// that closes them (docs/adr/0030). A relay of the test's own stands for the stream.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readEnvelope, sealEnvelope, verifyHash } from '@rebootless/events';
import { OutboxDelivery } from './outbox-delivery';
import { EventOutbox } from './state/event-outbox';
import { GatewayRelaySink, type GatewayRelay } from './talk/event-sink';

let dir: string;
beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'outbox-delivery-'));
});
afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Answers each relay as told (true: acknowledged), and remembers what it was sent. */
function relayAnswering(answers: boolean[]) {
  const sent: { seqs: number[]; sentBefore: boolean; envelopes: Uint8Array[] }[] = [];
  const relay: GatewayRelay & { connected: boolean } = {
    connected: true,
    relay(envelopes, sentBefore = false) {
      sent.push({ seqs: envelopes.map((e) => readEnvelope(e).seq), sentBefore, envelopes: [...envelopes] });
      return answers.shift() === false ? Promise.reject(new Error('the stream dropped')) : Promise.resolve();
    },
  };
  return { relay, sent };
}

function delivery(outbox: EventOutbox, relay: GatewayRelay, sentBefore: boolean): OutboxDelivery {
  return new OutboxDelivery({
    outbox,
    sink: new GatewayRelaySink(),
    hostId: 'h1',
    relay: () => relay,
    tracing: false,
    log: () => undefined,
    sentBefore,
  });
}

const drift = (n: number) => ({
  type: 'DriftDetected' as const,
  data: { hostId: 'h1', kind: 'test', detail: `#${n}`, expected: [], observed: [] },
});

async function until(check: () => boolean): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 5));
  }
}

it('marks a delivery sent before only for what went out once without an answer', async () => {
  // Given a new epoch: its start was never sent
  const { outbox } = EventOutbox.open({ dir, producerId: 'agent/h1', syncWrites: false });
  const { relay, sent } = relayAnswering([false, true, true]);
  const d = delivery(outbox, relay, false);
  // When the first delivery gets no answer, and it goes again after the backoff
  d.record([drift(1)]);
  await until(() => sent.length === 2);
  // And a new event goes after it
  d.record([drift(2)]);
  await until(() => outbox.pendingCount === 0);
  d.stop();
  // Then only the second sending of seq 1-2 says it was sent before
  expect(sent.map(({ seqs, sentBefore }) => ({ seqs, sentBefore }))).toEqual([
    { seqs: [1, 2], sentBefore: false },
    { seqs: [1, 2], sentBefore: true },
    { seqs: [3], sentBefore: false },
  ]);
});

it('marks what an earlier run left in the outbox as sent before', async () => {
  // Given a run that recorded an event and stopped before any answer
  const first = EventOutbox.open({ dir, producerId: 'agent/h1', syncWrites: false });
  const earlier = delivery(first.outbox, relayAnswering([false]).relay, first.epoch === undefined);
  earlier.record([drift(1)]);
  earlier.stop();
  first.outbox.close();
  // When the agent starts again where its outbox stood
  const again = EventOutbox.open({ dir, producerId: 'agent/h1', syncWrites: false });
  expect(again.epoch).toBeUndefined();
  const { relay, sent } = relayAnswering([true, true]);
  const d = delivery(again.outbox, relay, again.epoch === undefined);
  d.flush();
  await until(() => again.outbox.pendingCount === 0);
  d.record([drift(2)]);
  await until(() => sent.length === 2 && again.outbox.pendingCount === 0);
  d.stop();
  // Then what it left goes out marked; what this run recorded does not
  expect(sent.map(({ seqs, sentBefore }) => ({ seqs, sentBefore }))).toEqual([
    { seqs: [1, 2], sentBefore: true },
    { seqs: [3], sentBefore: false },
  ]);
});

/** Which envelopes of a delivery carry a seal, each checked against the agent's key. */
function seals(outbox: EventOutbox, envelopes: readonly Uint8Array[]): boolean[] {
  return envelopes.map((e) => {
    const v = readEnvelope(e);
    if (v.signature.length === 0) return false;
    expect(verifyHash(outbox.key.rawPublicKey, v.hash, v.signature)).toBe(true);
    return true;
  });
}

it('tries nothing while the stream is down, and sends what waited under one seal once it is up', async () => {
  // Given a new agent whose stream to the dispatcher is not up yet
  const { outbox } = EventOutbox.open({ dir, producerId: 'agent/h1', syncWrites: false });
  const { relay, sent } = relayAnswering([]);
  relay.connected = false;
  const d = delivery(outbox, relay, false);
  // When it records its start facts one after the other
  d.record([drift(1)]);
  d.record([drift(2)]);
  await new Promise((r) => setTimeout(r, 200));
  // Then nothing was tried
  expect(sent).toHaveLength(0);
  // When the stream comes up (the link flushes on connecting)
  relay.connected = true;
  d.flush(true);
  await until(() => outbox.pendingCount === 0);
  d.stop();
  // Then everything went in one delivery, and only its last record carries a seal
  expect(sent.map((s) => s.seqs)).toEqual([[1, 2, 3]]);
  expect(seals(outbox, sent[0]!.envelopes)).toEqual([false, false, true]);
});

describe('a fact held back for the one that closes it', () => {
  it('goes out with it, under its one seal', async () => {
    // Given an agent whose epoch start is delivered
    const { outbox } = EventOutbox.open({ dir, producerId: 'agent/h1', syncWrites: false });
    const { relay, sent } = relayAnswering([]);
    const d = delivery(outbox, relay, false);
    d.flush();
    await until(() => outbox.pendingCount === 0);
    // When a fact is recorded held back for 60 s
    d.record([drift(1)], undefined, 60_000);
    await new Promise((r) => setTimeout(r, 200));
    // Then it is on disk and not sent
    expect(sent).toHaveLength(1);
    expect(
      EventOutbox.open({ dir, producerId: 'agent/h1', syncWrites: false })
        .outbox.pending()
        .map((r) => r.seq),
    ).toEqual([2]);
    // When the fact that closes it is recorded
    d.record([drift(2)]);
    await until(() => outbox.pendingCount === 0);
    d.stop();
    // Then both go in one delivery, and only the last carries a seal, which verifies
    expect(sent.map((s) => s.seqs)).toEqual([[1], [2, 3]]);
    expect(seals(outbox, sent[1]!.envelopes)).toEqual([false, true]);
  });

  it('goes out alone, sealed, when nothing closes it in time (held on the real clock, whatever dates the events)', async () => {
    const { outbox } = EventOutbox.open({
      dir,
      producerId: 'agent/h1',
      syncWrites: false,
      now: () => Date.UTC(2020, 0, 1),
    });
    const { relay, sent } = relayAnswering([]);
    const d = delivery(outbox, relay, false);
    const heldAt = Date.now();
    d.record([drift(1)], undefined, 300);
    // The epoch start goes at once; the held fact once its 300 ms are up
    await until(() => outbox.pendingCount === 0);
    d.stop();
    expect(Date.now() - heldAt).toBeGreaterThanOrEqual(300);
    expect(sent.map((s) => s.seqs)).toEqual([[1], [2]]);
    expect(seals(outbox, sent[1]!.envelopes)).toEqual([true]);
  });

  it('is sealed by the next run when the agent stopped while it was held, to the bytes a seal at once gives', async () => {
    // Given a run that held a fact and stopped
    const first = EventOutbox.open({ dir, producerId: 'agent/h1', syncWrites: false });
    const earlier = delivery(first.outbox, relayAnswering([]).relay, false);
    earlier.record([drift(1)], undefined, 60_000);
    await until(() => first.outbox.pendingCount === 1);
    earlier.stop();
    first.outbox.close();
    // When the agent starts again: nothing is held after a restart
    const again = EventOutbox.open({ dir, producerId: 'agent/h1', syncWrites: false });
    const [left] = again.outbox.pending();
    expect(left!.seq).toBe(2);
    expect(readEnvelope(left!.envelope).signature.length).toBe(0);
    const { relay, sent } = relayAnswering([]);
    const d = delivery(again.outbox, relay, true);
    d.flush();
    await until(() => again.outbox.pendingCount === 0);
    d.stop();
    // Then it goes out sealed, as the same bytes sealing its envelope on disk gives
    expect(sent.map((s) => s.seqs)).toEqual([[2]]);
    expect(seals(again.outbox, sent[0]!.envelopes)).toEqual([true]);
    expect(Buffer.from(sent[0]!.envelopes[0]!)).toEqual(sealEnvelope(left!.envelope, again.outbox.key));
  });

  it('goes out at once when a delivery is asked for now (the agent stops, or has just connected)', async () => {
    const { outbox } = EventOutbox.open({ dir, producerId: 'agent/h1', syncWrites: false });
    const { relay, sent } = relayAnswering([]);
    const d = delivery(outbox, relay, false);
    d.record([drift(1)], undefined, 60_000);
    await d.drain(5_000);
    d.stop();
    expect(sent.flatMap((s) => s.seqs)).toEqual([1, 2]);
    expect(seals(outbox, sent.at(-1)!.envelopes).at(-1)).toBe(true);
  });
});
