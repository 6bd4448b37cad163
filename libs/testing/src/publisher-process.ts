// A producer as its own OS process, for tests that kill it: publishes batches of events and
// prints "acked <seq>" after each acknowledgement. Settings come from the environment:
// KAFKA_BROKERS, TOPIC, PRODUCER_ID, STATE_DIR, BATCH (default 50), LIMIT (events; default endless).
import { EventPublisher, kafkaBrokersFromEnv, kafkaClient } from '@rebootless/kafka';

async function main(): Promise<void> {
  const env = (name: string): string => {
    const v = process.env[name];
    if (!v) throw new Error(`${name} must be set`);
    return v;
  };
  const producerId = env('PRODUCER_ID');
  const batch = Number(process.env['BATCH'] ?? 50);
  const limit = Number(process.env['LIMIT'] ?? Infinity);
  const kafka = kafkaClient(kafkaBrokersFromEnv(), 'publisher-process');
  const pub = await EventPublisher.open({
    kafka,
    producerId,
    stateDir: env('STATE_DIR'),
    topic: env('TOPIC'),
    log: (l) => console.log(l),
  });
  console.log(`opened epoch ${pub.head.epoch} at seq ${pub.head.seq}`);
  let sent = 0;
  while (sent < limit) {
    const n = Math.min(batch, limit - sent);
    const written = await pub.publish(
      Array.from({ length: n }, (_, i) => ({
        stream: `host/h${(sent + i) % 7}`,
        payload: {
          type: 'DriftDetected' as const,
          data: { hostId: `h${(sent + i) % 7}`, kind: 'test', detail: `n=${sent + i}`, expected: [], observed: [] },
        },
      })),
    );
    sent += n;
    console.log(`acked ${written[written.length - 1]!.seq}`);
  }
  await pub.close();
  console.log('closed');
}

main().catch((err: Error) => {
  console.error(err.stack ?? err.message);
  process.exit(1);
});
