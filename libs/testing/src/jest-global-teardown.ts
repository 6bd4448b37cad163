// Jest global teardown (root jest.config.js): stops the Kafka broker that jest-global-setup.ts
// started for this run and removes its data dir (kept with REBOOTLESS_KEEP_KAFKA_DATA=1). A cluster
// given by KAFKA_BROKERS is never touched.
import { stopStartedKafka } from './jest-global-setup';

export default async function globalTeardown(): Promise<void> {
  if (await stopStartedKafka()) process.stderr.write('[jest global teardown] stopped the test Kafka broker\n');
}
