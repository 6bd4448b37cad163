import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { freshEventsTopic, testKafka } from '@rebootless/testing';
import { runConsumer } from './consumer';
import { LogRecord } from './log-reader';
import { EventPublisher } from './publisher';

const kafka = testKafka('consumer-test');

async function until(check: () => boolean, what: string, ms = 30_000) {
  const end = Date.now() + ms;
  while (!check()) {
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

async function eventually<T>(read: () => Promise<T>, ok: (v: T) => boolean, what: string, ms = 30_000): Promise<T> {
  const end = Date.now() + ms;
  for (;;) {
    const v = await read();
    if (ok(v)) return v;
    if (Date.now() > end) throw new Error(`${what}: not within ${ms} ms (last: ${String(v)})`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('the consumer runner', () => {
  it('commits a batch only after its handler succeeded, so a failed batch is delivered again', async () => {
    const topic = await freshEventsTopic('consumer', 1);
    const pub = await EventPublisher.open({
      kafka,
      producerId: 'builder',
      stateDir: fs.mkdtempSync(path.join(os.tmpdir(), 'consumer-')),
      topic,
    });
    const publish = async (count: number) => {
      for (let i = 0; i < count; i += 20) {
        await pub.publish(
          Array.from({ length: Math.min(20, count - i) }, (_, k) => ({
            stream: 'build/b1',
            payload: {
              type: 'BuildFailed' as const,
              data: {
                buildId: 'b1',
                kernelRelease: '6.1.0-56-cloud-amd64',
                stage: 'compile',
                diagnostics: [`n=${i + k}`],
                code: 'INTERNAL',
              },
            },
          })),
        );
      }
    };
    const groupId = `test-${randomUUID()}`;
    const admin = kafka.admin();
    await admin.connect();
    const committed = async () =>
      Number((await admin.fetchOffsets({ groupId, topics: [topic] }))[0]!.partitions[0]!.offset);

    // Given a handler that makes records durable, and fails ("disk full") from offset 120 on
    const durable: string[] = [];
    let failures = 0;
    const first = await runConsumer({
      kafka,
      groupId,
      topic,
      handleBatch: async (records: LogRecord[]) => {
        if (records.some((r) => Number(r.offset) >= 120)) {
          failures += 1;
          throw new Error('disk full');
        }
        records.forEach((r) => durable.push(r.offset));
      },
    });
    // When 120 events (the epoch start included) arrive, then 80 more that the handler cannot apply
    await publish(119);
    await until(() => durable.length === 120, 'the first 120 are applied');
    await eventually(committed, (o) => o === 120, 'the commit of offset 120');
    await publish(80);
    await pub.close();
    await until(() => failures >= 2, 'the handler fails, and is retried');
    await first.stop();

    // Then the committed offset covers exactly what was made durable, not the failed batch
    expect(await committed()).toBe(120);

    // When the group runs again with a healthy handler
    const again: string[] = [];
    const second = await runConsumer({
      kafka,
      groupId,
      topic,
      handleBatch: async (records) => void records.forEach((r) => again.push(r.offset)),
    });
    await until(() => again.includes('199'), 'the rest is delivered');
    await second.stop();
    await admin.disconnect();

    // Then delivery resumes exactly where the durable effects end: nothing lost, nothing twice
    expect(again[0]).toBe('120');
    expect([...durable, ...again]).toEqual(Array.from({ length: 200 }, (_, i) => String(i)));
  });
});
