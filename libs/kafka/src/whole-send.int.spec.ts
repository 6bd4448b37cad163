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
});
