import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChainVerifier, Finding, StaticKeyTrust, readEnvelope } from '@rebootless/events';
import { freshEventsTopic, readWholeTopic, testKafka } from '@rebootless/testing';
import { EventPublisher } from './publisher';
import { LogRecord } from './log-reader';

const kafka = testKafka('event-spine-test');

function draft(producer: string, n: number) {
  return {
    stream: `host/${producer}-h${n % 50}`,
    payload: {
      type: 'DriftDetected' as const,
      data: { hostId: `${producer}-h${n % 50}`, kind: 'test', detail: `event ${n}`, expected: [], observed: [] },
    },
  };
}

function verifyRecords(records: LogRecord[], trust: StaticKeyTrust) {
  const v = new ChainVerifier(trust);
  for (const r of records) v.ingest(r.value, { partition: r.partition, offset: r.offset });
  return v.finish();
}

describe('the event spine on a real broker', () => {
  let topic: string;
  let dir: string;
  beforeAll(async () => {
    topic = await freshEventsTopic('spine');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spine-'));
  });

  it('carries 3 producers x 10,000 events written concurrently, verifies every chain, then names each tampering', async () => {
    // Given three producers publishing 10,000 events each, at the same time, in batches of 250
    const producers = ['builder', 'dispatcher', 'agent/host-a'];
    const trust = new StaticKeyTrust();
    await Promise.all(
      producers.map(async (id) => {
        const pub = await EventPublisher.open({
          kafka,
          producerId: id,
          stateDir: path.join(dir, id.replace('/', '_')),
          topic,
        });
        trust.vouch(id, pub.key.rawPublicKey);
        const sends: Promise<unknown>[] = [];
        for (let i = 0; i < 9_999; i += 250) {
          sends.push(pub.publish(Array.from({ length: Math.min(250, 9_999 - i) }, (_, k) => draft(id, i + k))));
        }
        await Promise.all(sends);
        await pub.close();
      }),
    );

    // When a consumer reads the whole topic back
    const records = await readWholeTopic(kafka, topic);

    // Then every chain is whole: 10,000 events each (the epoch start included), all sealed, no finding
    expect(records).toHaveLength(30_000);
    const report = verifyRecords(records, trust);
    expect(report.findings).toEqual([]);
    expect(report.chains.map((c) => [c.producerId, c.lastSeq, c.sealed]).sort()).toEqual(
      producers.map((p) => [p, 10_000, 10_000]).sort(),
    );

    // When someone with access to the broker copies the log, altering one body, injecting a
    // duplicate and dropping one record
    const copy = await freshEventsTopic('tampered');
    const seqOf = (r: LogRecord) => readEnvelope(r.value!);
    const alterAt = records.findIndex((r) => seqOf(r).producerId === 'builder' && seqOf(r).seq === 4_242);
    const dupAt = records.findIndex((r) => seqOf(r).producerId === 'dispatcher' && seqOf(r).seq === 777);
    const dropAt = records.findIndex((r) => seqOf(r).producerId === 'agent/host-a' && seqOf(r).seq === 252); // right after a seal
    const tampered: { partition: number; key: string | null; value: Buffer }[] = [];
    records.forEach((r, i) => {
      if (i === dropAt) return;
      let value = r.value!;
      if (i === alterAt) {
        value = Buffer.from(value);
        const at = value.indexOf('event 4240');
        value.write('event 9999', at);
      }
      tampered.push({ partition: r.partition, key: r.key, value });
      if (i === dupAt + 5)
        tampered.push({
          partition: records[dupAt]!.partition,
          key: records[dupAt]!.key,
          value: records[dupAt]!.value!,
        });
    });
    const raw = kafka.producer();
    await raw.connect();
    for (let i = 0; i < tampered.length; i += 1000) {
      await raw.send({
        topic: copy,
        acks: -1,
        messages: tampered.slice(i, i + 1000).map((t) => ({ partition: t.partition, key: t.key, value: t.value })),
      });
    }
    await raw.disconnect();

    // Then the verifier, reading the copy, names each defect, its producer, seq and place
    const copied = await readWholeTopic(kafka, copy);
    const findings = verifyRecords(copied, trust).findings;
    const placeOf = (producerId: string, seq: number, nth = 0) =>
      copied
        .filter((r) => seqOf(r).producerId === producerId && seqOf(r).seq === seq)
        .map((r) => ({ partition: r.partition, offset: r.offset }))[nth];
    const summary = (f: Finding) => ({ kind: f.kind, producerId: f.producerId, seq: f.seq, position: f.position });
    expect(findings.map(summary)).toEqual(
      expect.arrayContaining([
        { kind: 'altered-body', producerId: 'builder', seq: 4_242, position: placeOf('builder', 4_242) },
        { kind: 'duplicate', producerId: 'dispatcher', seq: 777, position: placeOf('dispatcher', 777, 1) },
        { kind: 'gap', producerId: 'agent/host-a', seq: 252, position: placeOf('agent/host-a', 253) },
      ]),
    );
    expect(findings).toHaveLength(3);
    expect(findings.find((f) => f.kind === 'gap')!.detail).toMatch(
      /^agent\/host-a epoch \d+: seq 252 is missing after seq 251 at partition \d+ offset \d+; the chain resumes with seq 253/,
    );
  });
});
