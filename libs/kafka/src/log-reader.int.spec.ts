// readRecordsAt: the records a checkpoint names, read again by position (docs/adr/0028), across
// many fetches and partitions, near and far apart, with positions the log does not have.
import { freshEventsTopic, testKafka } from '@rebootless/testing';
import { readRecordsAt } from './log-reader';

const kafka = testKafka('log-reader-test');

describe('reading records by position', () => {
  it('returns each record asked for, however far apart, and null where the log has none', async () => {
    // Given 3 partitions of 4,000 records of 1 KiB each, sent 50 at a time (many fetches' worth)
    const topic = await freshEventsTopic('log-reader', 3);
    const producer = kafka.producer();
    await producer.connect();
    const valueOf = (partition: number, offset: number) =>
      Buffer.concat([Buffer.from(`${partition}:${offset}:`), Buffer.alloc(1024, partition + 1)]);
    for (let offset = 0; offset < 4_000; offset += 50)
      await producer.sendBatch({
        topicMessages: [0, 1, 2].map((partition) => ({
          topic,
          messages: Array.from({ length: 50 }, (_, i) => ({ partition, value: valueOf(partition, offset + i) })),
        })),
      });
    await producer.disconnect();

    // When positions are asked for: close together, far apart, repeated, past the end, not numbers
    const near = Array.from({ length: 1_500 }, (_, i): [number, string] => [i % 3, String(10 + i)]);
    const far = [0, 1, 2].flatMap((p) => [900, 2_500, 3_999].map((o): [number, string] => [p, String(o)]));
    const absent: [number, string][] = [
      [0, '4000'],
      [5, '1'],
      [1, '-1'],
      [2, 'x'],
    ];
    const got = await readRecordsAt(kafka, topic, [...near, ...far, [1, '900'], ...absent]);

    // Then every record asked for is the one at its position, and the rest are null
    for (const [p, o] of [...near, ...far]) expect(got.get(`${p}:${o}`)?.equals(valueOf(p, Number(o)))).toBe(true);
    for (const [p, o] of absent) expect(got.get(`${p}:${o}`)).toBeNull();
    expect(got.size).toBe(new Set([...near, ...far, ...absent].map(([p, o]) => `${p}:${o}`)).size);
  }, 120_000);
});
