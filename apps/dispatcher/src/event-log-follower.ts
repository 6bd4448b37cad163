// Reads the whole event log from its beginning, then keeps following it. The dispatcher keeps
// no state of its own on disk: everything it knows about rollouts, patches and hosts is rebuilt
// from the log at every start, and "caught up" says when the rebuild reached the log's end as it
// was at start (only then may it decide anything).
import { randomUUID } from 'node:crypto';
import type { Kafka } from 'kafkajs';
import { decodeEvent, readEnvelope, type DecodedEvent } from '@rebootless/events';

export interface FollowedEvent extends DecodedEvent {
  partition: number;
  offset: string;
}

export interface EventLogFollowerOptions {
  kafka: Kafka;
  topic: string;
  /** Only events of these types are decoded and handed on. */
  types: ReadonlySet<string>;
  onEvents(events: FollowedEvent[]): void;
  onError(error: unknown): void;
}

export class EventLogFollower {
  private stopped = false;

  private constructor(
    private readonly stopConsumer: () => Promise<void>,
    readonly caughtUp: Promise<void>,
  ) {}

  static async start(opts: EventLogFollowerOptions): Promise<EventLogFollower> {
    const admin = opts.kafka.admin();
    await admin.connect();
    let ends: Map<number, bigint>;
    try {
      const watermarks = await admin.fetchTopicOffsets(opts.topic);
      ends = new Map(
        watermarks.filter((w) => BigInt(w.high) > BigInt(w.low)).map((w) => [w.partition, BigInt(w.high)]),
      );
    } finally {
      await admin.disconnect();
    }
    let markCaughtUp!: () => void;
    const caughtUp = new Promise<void>((resolve) => (markCaughtUp = resolve));
    if (ends.size === 0) markCaughtUp();

    // A group of its own each start, never committing: every start replays the whole log.
    const groupId = `rebootless-dispatcher-${randomUUID()}`;
    const consumer = opts.kafka.consumer({ groupId, maxWaitTimeInMs: 50, maxBytesPerPartition: 4 * 1024 * 1024 });
    await consumer.connect();
    await consumer.subscribe({ topic: opts.topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch, heartbeat }) => {
        const decoded: FollowedEvent[] = [];
        for (const m of batch.messages) {
          if (!m.value) continue;
          try {
            // The cheap wire scan first: most of the log is of no interest to the dispatcher.
            if (!opts.types.has(readEnvelope(m.value).type)) continue;
            decoded.push({ ...decodeEvent(m.value), partition: batch.partition, offset: m.offset });
          } catch (error) {
            opts.onError(new Error(`unreadable record at ${batch.partition}/${m.offset}: ${String(error)}`));
          }
        }
        if (decoded.length > 0) opts.onEvents(decoded);
        const end = ends.get(batch.partition);
        const last = batch.messages.at(-1);
        if (end !== undefined && last && BigInt(last.offset) + 1n >= end) {
          ends.delete(batch.partition);
          if (ends.size === 0) markCaughtUp();
        }
        await heartbeat();
      },
    });
    const follower = new EventLogFollower(async () => {
      await consumer.disconnect();
      const cleanup = opts.kafka.admin();
      try {
        await cleanup.connect();
        await cleanup.deleteGroups([groupId]);
      } catch {
        // A leftover empty group is harmless; the broker expires it.
      } finally {
        await cleanup.disconnect();
      }
    }, caughtUp);
    return follower;
  }

  async stop(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    await this.stopConsumer();
  }
}
