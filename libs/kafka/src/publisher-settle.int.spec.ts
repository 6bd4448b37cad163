import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChainVerifier, EventDraft, StaticKeyTrust, appendToChain } from '@rebootless/events';
import { ConfigResourceTypes } from 'kafkajs';
import { freshEventsTopic, readWholeTopic, testKafka } from '@rebootless/testing';
import { ChainStateFile } from './chain-state';
import { EventPublisher } from './publisher';
import { kafkaClient } from './log-reader';
import { kafkaBrokersFromEnv } from './topic';

const kafka = testKafka('publisher-settle-test');

const drift = (n: number): EventDraft => ({
  stream: `host/h${n % 3}`,
  payload: {
    type: 'DriftDetected',
    data: { hostId: `h${n % 3}`, kind: 'test', detail: `n=${n}`, expected: [], observed: [] },
  },
});

/**
 * Leaves a producer's state as a crash in the middle of a send would: a batch written ahead,
 * of which `landed` records reached the log.
 */
async function crashMidSend(landed: (seq: number) => boolean) {
  const topic = await freshEventsTopic('settle', 3);
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'settle-'));
  const first = await EventPublisher.open({ kafka, producerId: 'builder', stateDir, topic });
  await first.publish([drift(1), drift(2)]);
  await first.close();

  const files = new ChainStateFile(stateDir, 'builder');
  const key = files.readKey();
  const before = files.load()!.head;
  const batch = appendToChain(before, [3, 4, 5, 6, 7, 8].map(drift), key);
  const at = Date.now();
  files.save(before, {
    at,
    before: { seq: before.seq, hash: before.hash.toString('hex') },
    records: batch.events.map((e) => ({ seq: e.seq, key: e.stream, value: e.envelope })),
  });
  const raw = kafka.producer();
  await raw.connect();
  const arrived = batch.events.filter((e) => landed(e.seq));
  if (arrived.length > 0) {
    await raw.send({
      topic,
      acks: -1,
      messages: arrived.map((e) => ({ key: e.stream, value: Buffer.from(e.envelope), timestamp: String(at) })),
    });
  }
  await raw.disconnect();
  const landLate = async () => {
    const late = kafka.producer();
    await late.connect();
    await late.send({
      topic,
      acks: -1,
      messages: batch.events.map((e) => ({ key: e.stream, value: Buffer.from(e.envelope), timestamp: String(at) })),
    });
    await late.disconnect();
  };
  return { topic, stateDir, key, before, landLate };
}

async function reopenAndVerify(topic: string, stateDir: string, rawKey: Buffer, settleGraceMs = 0) {
  const logs: string[] = [];
  const pub = await EventPublisher.open({
    kafka,
    producerId: 'builder',
    stateDir,
    topic,
    settleGraceMs,
    log: (l) => logs.push(l.replace(/in \d+ ms/, 'in … ms')),
  });
  const opened = pub.head.seq;
  await pub.publish(drift(99));
  await pub.close();
  const v = new ChainVerifier(new StaticKeyTrust().vouch('builder', rawKey));
  (await readWholeTopic(kafka, topic)).forEach((r) => v.ingest(r.value, { partition: r.partition, offset: r.offset }));
  return { opened, logs, report: v.finish() };
}

describe('settling a batch whose send was cut short', () => {
  it('keeps a batch that fully reached the log, without sending it twice', async () => {
    const { topic, stateDir, key } = await crashMidSend(() => true);
    const { opened, logs, report } = await reopenAndVerify(topic, stateDir, key.rawPublicKey);
    expect(logs).toEqual(['builder: settled seq 4-9: 6 in the log, 0 re-sent']);
    expect(opened).toBe(9);
    expect(report.findings).toEqual([]);
    expect(report.chains[0]).toMatchObject({ lastSeq: 10, events: 10 });
  });

  it('re-sends, byte for byte, the part of a batch that did not arrive', async () => {
    // Kafka appends a partition's share of a request whole or not at all: what arrives of a
    // batch is a prefix per partition. Here the first request of the batch went through.
    const { topic, stateDir, key } = await crashMidSend((seq) => seq <= 6);
    const { logs, report } = await reopenAndVerify(topic, stateDir, key.rawPublicKey);
    expect(logs).toEqual(['builder: settled seq 4-9: 3 in the log, 3 re-sent']);
    expect(report.findings).toEqual([]);
    expect(report.chains[0]).toMatchObject({ lastSeq: 10, events: 10, sealed: 10 });
  });

  it('withdraws a batch of which nothing arrived, and continues from before it', async () => {
    const { topic, stateDir, key, before } = await crashMidSend(() => false);
    const { opened, logs, report } = await reopenAndVerify(topic, stateDir, key.rawPublicKey, 1_000);
    expect(logs).toEqual([
      'builder: none of seq 4+ found yet; looking again in … ms',
      'builder: withdrew seq 4-9: none reached the log',
    ]);
    expect(opened).toBe(before.seq);
    expect(report.findings).toEqual([]);
    expect(report.chains[0]).toMatchObject({ lastSeq: 4, events: 4 });
  });

  it('keeps a batch that lands late (a broker held it for its replicas) instead of forking the chain', async () => {
    // Given a batch of which nothing is in the log yet, but which a broker writes a moment later
    const { topic, stateDir, key, landLate } = await crashMidSend(() => false);
    const late = new Promise((resolve) => setTimeout(resolve, 500)).then(landLate);
    // When the producer reopens, with a grace of 4 s for late batches
    const { opened, logs, report } = await reopenAndVerify(topic, stateDir, key.rawPublicKey, 4_000);
    await late;
    // Then the batch is kept as it landed, and the chain goes on after it: no conflict, no gap
    expect(logs).toEqual([
      'builder: none of seq 4+ found yet; looking again in … ms',
      'builder: settled seq 4-9: 6 in the log, 0 re-sent',
    ]);
    expect(opened).toBe(9);
    expect(report.findings).toEqual([]);
    expect(report.chains[0]).toMatchObject({ lastSeq: 10, events: 10, sealed: 10 });
  });
});

describe('a publish whose send the broker refused', () => {
  it('sends the withdrawn batch again once the broker takes writes, so the caller sees one success and the log holds it once', async () => {
    // Given a topic whose broker refuses every write for a while: its max.message.bytes
    // lowered under any batch's size (MESSAGE_TOO_LARGE: nothing is appended)
    const topic = await freshEventsTopic('refused', 3);
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'refused-'));
    const impatient = kafkaClient(kafkaBrokersFromEnv(), 'publisher-refused-test', 1);
    const logs: string[] = [];
    const pub = await EventPublisher.open({
      kafka: impatient,
      producerId: 'builder',
      stateDir,
      topic,
      settleGraceMs: 200,
      log: (l) => logs.push(l),
    });
    const admin = kafka.admin();
    await admin.connect();
    const maxBytes = (n: number) =>
      admin.alterConfigs({
        validateOnly: false,
        resources: [
          {
            type: ConfigResourceTypes.TOPIC,
            name: topic,
            configEntries: [{ name: 'max.message.bytes', value: String(n) }],
          },
        ],
      });
    await maxBytes(64);
    await new Promise((r) => setTimeout(r, 1_000)); // the broker applies a topic's new config within a moment
    // When a batch is published, and the broker takes writes again 3 s later
    const reopened = new Promise((r) => setTimeout(r, 3_000)).then(() => maxBytes(1_048_588));
    const written = await pub.publish([drift(1), drift(2), drift(3)]);
    await reopened;
    await pub.close();
    await admin.disconnect();
    // Then the publish resolved, after its batch was withdrawn and sent again at least once
    expect(written.map((e) => e.seq)).toEqual([2, 3, 4]);
    expect(logs.some((l) => /withdrew seq 2-4: none reached the log/.test(l))).toBe(true);
    expect(logs.some((l) => l.includes('sending the 3 withdrawn event(s) again'))).toBe(true);
    // And the log holds the epoch's start and the three events once each, in one sealed chain
    const v = new ChainVerifier(new StaticKeyTrust().vouch('builder', pub.key.rawPublicKey));
    const records = await readWholeTopic(kafka, topic);
    records.forEach((r) => v.ingest(r.value, { partition: r.partition, offset: r.offset }));
    const report = v.finish();
    expect(records).toHaveLength(4);
    expect(report.findings).toEqual([]);
    expect(report.chains[0]).toMatchObject({ lastSeq: 4, events: 4 });
  });
});
