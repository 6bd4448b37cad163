// Calls to publish made at once (a gateway binding the keys of thousands of agents that connect
// together) go out gathered into a few batches, on a real broker: each call's events together
// and in call order, each call answered with its own events, the chain whole.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { events } from '@rebootless/contracts';
import { ChainVerifier, StaticKeyTrust, readEnvelope } from '@rebootless/events';
import { freshEventsTopic, readWholeTopic, testKafka } from '@rebootless/testing';
import { EventPublisher } from './publisher';

const kafka = testKafka('publisher-gather-test');
const CALLS = 2_000;

function drafts(call: number) {
  // One to three events a call, on hosts spread over the partitions.
  return Array.from({ length: 1 + (call % 3) }, (_, k) => ({
    stream: `host/h${call % 97}`,
    payload: {
      type: 'DriftDetected' as const,
      data: { hostId: `h${call % 97}`, kind: 'test', detail: `${call}/${k}`, expected: [], observed: [] },
    },
  }));
}

describe('publish calls made at once', () => {
  it('are gathered into a few batches, each call together and in call order, each answered with its own events', async () => {
    const topic = await freshEventsTopic('gather');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gather-'));
    const pub = await EventPublisher.open({ kafka, producerId: 'gateway', stateDir: dir, topic });
    const trust = new StaticKeyTrust().vouch('gateway', pub.key.rawPublicKey);

    // When 2,000 calls are made without waiting for one another
    const answers = await Promise.all(Array.from({ length: CALLS }, (_, call) => pub.publish(drafts(call))));
    await pub.close();

    // Then each call is answered with its own events, in order, right after the call before it
    let seq = 1; // the epoch start
    answers.forEach((written, call) => {
      expect(written.map((e) => e.seq)).toEqual(drafts(call).map(() => ++seq));
    });

    // And the log holds the chain whole, in call order
    const records = await readWholeTopic(kafka, topic);
    const v = new ChainVerifier(trust);
    for (const r of records) v.ingest(r.value, { partition: r.partition, offset: r.offset });
    expect(v.finish().findings).toEqual([]);
    const bySeq = records
      .map((r) => ({ view: readEnvelope(r.value!), value: r.value! }))
      .sort((a, b) => a.view.seq - b.view.seq);
    expect(bySeq.map((r) => r.view.seq)).toEqual(Array.from({ length: seq }, (_, i) => i + 1));
    const details = bySeq.slice(1).map((r) => events.EventBody.decode(r.view.body).driftDetected!.detail);
    expect(details).toEqual(
      Array.from({ length: CALLS }, (_, call) => drafts(call).map((_, k) => `${call}/${k}`)).flat(),
    );

    // And the calls went out gathered: each batch carries one seal, far fewer than one a call
    const seals = bySeq.filter((r) => r.view.signature.length > 0).length;
    expect(seals).toBeLessThan(CALLS / 10);
  }, 120_000);
});
