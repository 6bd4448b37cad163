// WholeSend against the real broker: records land where kafkajs' own partitioner puts them, and a
// send kafkajs reports whole while one partition was left out (its retry bug, docs/adr/0023) is
// refused. The bug needs a leader to move mid-retry; here the real producer's answer loses one
// partition the way that retry loses it.
import type { Producer } from 'kafkajs';
import { freshEventsTopic, readWholeTopic, testKafka } from '@rebootless/testing';
import { WholeSend } from './whole-send';

const kafka = testKafka('whole-send-test');
const records = Array.from({ length: 30 }, (_, i) => ({ key: `host/h${i % 10}`, value: Buffer.from(`r${i}`) }));

describe('a send checked partition by partition', () => {
  let producer: Producer;
  beforeAll(async () => {
    producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
    await producer.connect();
  });
  afterAll(() => producer.disconnect());

  it("puts each stream on the partition kafkajs' default partitioner gives its key", async () => {
    const [ours, theirs] = [await freshEventsTopic('whole', 6), await freshEventsTopic('plain', 6)];
    await new WholeSend(kafka, ours).send(producer, records);
    await producer.send({ topic: theirs, acks: -1, messages: records });
    const where = async (topic: string) =>
      (await readWholeTopic(kafka, topic)).map((r) => `${r.key}@${r.partition}:${r.value!.toString()}`).sort();
    expect(await where(ours)).toEqual(await where(theirs));
  });

  it('refuses a send of which Kafka answered for fewer partitions than were written to', async () => {
    const topic = await freshEventsTopic('silent', 6);
    const forgetful = {
      send: async (req: Parameters<Producer['send']>[0]) => (await producer.send(req)).slice(1),
    } as unknown as Producer;
    await expect(new WholeSend(kafka, topic).send(forgetful, records)).rejects.toThrow(
      new RegExp(`Kafka answered the request but not for partition\\(s\\) \\d+ of ${topic.replace(/\./g, '\\.')}`),
    );
  });

  it("writes a record over the broker's default message.max.bytes (a 100,000-host RolloutCreated) gzipped, read back byte for byte", async () => {
    const topic = await freshEventsTopic('big', 6);
    const admin = kafka.admin();
    await admin.connect();
    const [config] = (await admin.describeConfigs({ includeSynonyms: false, resources: [{ type: 2, name: topic }] }))
      .resources;
    await admin.disconnect();
    // The topic keeps the broker's default limit: the record below is over it as written.
    const limit = Number(config!.configEntries.find((e) => e.configName === 'max.message.bytes')!.configValue);
    expect(limit).toBe(1_048_588);
    const hostIds = Array.from({ length: 100_000 }, (_, i) => `bench-${String(i).padStart(6, '0')}`);
    const big = Buffer.from(hostIds.join('\n'));
    expect(big.length).toBeGreaterThan(limit);
    const plain = producer.send({ topic, acks: -1, messages: [{ key: 'rollout/r1', value: big }] });
    await expect(plain).rejects.toThrow(/larger than the max message size/);

    await new WholeSend(kafka, topic).send(producer, [{ key: 'rollout/r1', value: big }, ...records.slice(0, 3)]);
    const back = await readWholeTopic(kafka, topic);
    expect(back.filter((r) => r.key === 'rollout/r1').map((r) => r.value!.equals(big))).toEqual([true]);
    expect(back).toHaveLength(4);
  });
});
