// What the agent tells the dispatcher about a delivery: whether it may be in the log already
// (sent before without an answer), so the dispatcher reads the log to its end before it writes
// again (docs/adr/0025, "events sent again"). A relay of the test's own stands for the stream.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readEnvelope } from '@rebootless/events';
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
  const sent: { seqs: number[]; sentBefore: boolean }[] = [];
  const relay: GatewayRelay = {
    relay(envelopes, sentBefore = false) {
      sent.push({ seqs: envelopes.map((e) => readEnvelope(e).seq), sentBefore });
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
  expect(sent).toEqual([
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
  expect(sent).toEqual([
    { seqs: [1, 2], sentBefore: true },
    { seqs: [3], sentBefore: false },
  ]);
});
