import { randomUUID } from 'node:crypto';
import { Kafka } from 'kafkajs';
import {
  LogRecord,
  TopicDurability,
  ensureEventsTopic,
  kafkaBrokersFromEnv,
  kafkaClient,
  readRange,
  topicDurabilityFromEnv,
} from '@rebootless/kafka';

/** Tests and benches run on one development broker unless KAFKA_DURABILITY says otherwise. */
export function devTopicDurability(env: NodeJS.ProcessEnv = process.env): TopicDurability {
  return env['KAFKA_DURABILITY']?.trim() ? topicDurabilityFromEnv(env) : 'single-broker';
}

/** A client for the broker the Jest global setup started (or KAFKA_BROKERS). */
export function testKafka(clientId = 'rebootless-test'): Kafka {
  return kafkaClient(kafkaBrokersFromEnv(), clientId);
}

/** A new, uniquely named topic with the event log's settings, so tests never see each other's records. */
export async function freshEventsTopic(prefix: string, partitions = 6): Promise<string> {
  const topic = `test.${prefix}.${randomUUID().slice(0, 8)}`;
  await ensureEventsTopic({ brokers: kafkaBrokersFromEnv(), topic, partitions, durability: devTopicDurability() });
  return topic;
}

/** Every record of a topic as it stands now, in partition then offset order. */
export async function readWholeTopic(kafka: Kafka, topic: string): Promise<LogRecord[]> {
  const out: LogRecord[] = [];
  await readRange({ kafka, topic, onRecord: (r) => void out.push(r), timeoutMs: 120_000 });
  return out.sort((a, b) => a.partition - b.partition || Number(BigInt(a.offset) - BigInt(b.offset)));
}
