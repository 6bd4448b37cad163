import { Consumer, Kafka } from 'kafkajs';
import { LogRecord } from './log-reader';
import { EVENTS_TOPIC } from './topic';

export interface ConsumerRunnerOptions {
  kafka: Kafka;
  groupId: string;
  topic?: string;
  fromBeginning?: boolean;
  /**
   * Applies a batch of one partition's records. Resolve only once the effects are durable:
   * the offsets are committed after it resolves, never before, so a crash replays the batch.
   */
  handleBatch(records: LogRecord[], partition: number): Promise<void>;
}

export interface RunningConsumer {
  stop(): Promise<void>;
}

/**
 * Runs a consumer group member that commits each partition's offset only after its handler
 * made the batch's effects durable (at-least-once; handlers skip what they already applied).
 */
export async function runConsumer(opts: ConsumerRunnerOptions): Promise<RunningConsumer> {
  const topic = opts.topic ?? EVENTS_TOPIC;
  const consumer: Consumer = opts.kafka.consumer({ groupId: opts.groupId, maxWaitTimeInMs: 200 });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: opts.fromBeginning ?? true });
  await consumer.run({
    autoCommit: false,
    eachBatchAutoResolve: false,
    eachBatch: async ({ batch, resolveOffset, heartbeat, isRunning, isStale }) => {
      if (!isRunning() || isStale() || batch.messages.length === 0) return;
      const records: LogRecord[] = batch.messages.map((m) => ({
        partition: batch.partition,
        offset: m.offset,
        key: m.key?.toString() ?? null,
        value: m.value,
        timestamp: Number(m.timestamp),
        ...(m.headers && Object.keys(m.headers).length > 0 ? { headers: m.headers } : {}),
      }));
      await opts.handleBatch(records, batch.partition);
      const last = batch.messages[batch.messages.length - 1]!.offset;
      await consumer.commitOffsets([{ topic, partition: batch.partition, offset: String(BigInt(last) + 1n) }]);
      resolveOffset(last);
      await heartbeat();
    },
  });
  return { stop: () => consumer.disconnect() };
}
