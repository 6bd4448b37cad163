import { randomUUID } from 'node:crypto';
import { Admin, IHeaders, Kafka, logCreator, logLevel } from 'kafkajs';

export interface LogRecord {
  partition: number;
  offset: string;
  key: string | null;
  value: Buffer | null;
  timestamp: number;
  /** The record's headers as kafkajs gives them; `traceparent` links it to the trace that wrote it. */
  headers?: IHeaders;
}

export interface ReadRangeOptions {
  kafka: Kafka;
  topic: string;
  /** Start at the first record at or after this time (ms); default: each partition's beginning. */
  fromTimestamp?: number;
  /** Stop a partition at the first record later than this time (ms); default: its end when the read began. */
  untilTimestamp?: number;
  onRecord(record: LogRecord): void | Promise<void>;
  /** Gives up when the read takes longer (ms). */
  timeoutMs?: number;
}

/**
 * Reads a bounded stretch of a topic, every partition, up to the end offsets it had when the
 * read began, then stops. kafkajs has no manual assignment, so this joins a throw-away group
 * (never committing) and seeks each partition.
 */
export async function readRange(opts: ReadRangeOptions): Promise<{ records: number }> {
  const { kafka, topic } = opts;
  const admin = kafka.admin();
  await admin.connect();
  let starts: Map<number, string>;
  let ends: Map<number, string>;
  try {
    ({ starts, ends } = await rangeOffsets(admin, topic, opts.fromTimestamp));
  } finally {
    await admin.disconnect();
  }
  const todo = new Set([...ends].filter(([p, end]) => BigInt(starts.get(p)!) < BigInt(end)).map(([p]) => p));
  if (todo.size === 0) return { records: 0 };

  const groupId = `rebootless-reader-${randomUUID()}`;
  const consumer = kafka.consumer({ groupId, maxWaitTimeInMs: 100, retry: { retries: 3 } });
  let records = 0;
  // A rebalance (a broker lost mid-read, the group's coordinator with it) hands a partition back
  // from its beginning, since this reader never commits: what was read already is skipped.
  const next = new Map([...starts].map(([p, o]) => [p, BigInt(o)]));
  let settle!: (err?: unknown) => void;
  const done = new Promise<void>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve())));
  const timer = setTimeout(
    () =>
      settle(
        new Error(
          `reading ${topic} took longer than ${opts.timeoutMs ?? 60_000} ms; partitions left: ${[...todo].join(', ')}`,
        ),
      ),
    opts.timeoutMs ?? 60_000,
  );
  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      eachBatchAutoResolve: false,
      eachBatch: async ({ batch, resolveOffset, heartbeat }) => {
        const p = batch.partition;
        if (!todo.has(p)) return;
        const end = BigInt(ends.get(p)!);
        for (const m of batch.messages) {
          const ts = Number(m.timestamp);
          if (BigInt(m.offset) >= end || (opts.untilTimestamp !== undefined && ts > opts.untilTimestamp)) {
            todo.delete(p);
            break;
          }
          if (BigInt(m.offset) < next.get(p)!) continue;
          next.set(p, BigInt(m.offset) + 1n);
          records += 1;
          await opts.onRecord({
            partition: p,
            offset: m.offset,
            key: m.key?.toString() ?? null,
            value: m.value,
            timestamp: ts,
            ...(m.headers && Object.keys(m.headers).length > 0 ? { headers: m.headers } : {}),
          });
          resolveOffset(m.offset);
          if (BigInt(m.offset) + 1n >= end) todo.delete(p);
        }
        await heartbeat();
        if (todo.size === 0) settle();
      },
    });
    for (const [partition, offset] of starts) {
      try {
        consumer.seek({ topic, partition, offset });
      } catch {
        // The group is still forming (its coordinator was just lost): the read starts at each
        // partition's beginning instead, and skips to `starts` itself.
      }
    }
    await done;
  } finally {
    clearTimeout(timer);
    await consumer.disconnect();
    await dropGroup(kafka, groupId);
  }
  return { records };
}

/**
 * The records at the given positions (`partition:offset` → value; null: the log has no record
 * there). For a handful of records named by a checkpoint (docs/adr/0028): each partition is read
 * from the first offset asked for and jumps over long stretches between the next ones, so the
 * cost follows the records asked for, not the log.
 */
export async function readRecordsAt(
  kafka: Kafka,
  topic: string,
  positions: readonly [partition: number, offset: string][],
  timeoutMs = 60_000,
): Promise<Map<string, Buffer | null>> {
  const out = new Map<string, Buffer | null>();
  const wanted = new Map<number, bigint[]>();
  for (const [partition, offset] of positions) {
    const key = `${partition}:${offset}`;
    if (out.has(key)) continue;
    out.set(key, null);
    if (!/^\d{1,19}$/.test(offset)) continue;
    const list = wanted.get(partition) ?? [];
    wanted.set(partition, list);
    list.push(BigInt(offset));
  }
  const admin = kafka.admin();
  await admin.connect();
  let watermarks;
  try {
    watermarks = await admin.fetchTopicOffsets(topic);
  } finally {
    await admin.disconnect();
  }
  // Offsets outside the log are answered at once: no record there.
  const todo = new Map<number, bigint[]>();
  for (const w of watermarks) {
    const list = (wanted.get(w.partition) ?? []).filter((o) => o >= BigInt(w.low) && o < BigInt(w.high));
    if (list.length > 0)
      todo.set(
        w.partition,
        [...new Set(list)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0)),
      );
  }
  if (todo.size === 0) return out;
  const groupId = `rebootless-reader-${randomUUID()}`;
  const consumer = kafka.consumer({
    groupId,
    maxWaitTimeInMs: 100,
    maxBytesPerPartition: 256 * 1024,
    retry: { retries: 3 },
  });
  let settle!: (err?: unknown) => void;
  const done = new Promise<void>((resolve, reject) => (settle = (err) => (err ? reject(err) : resolve())));
  const timer = setTimeout(
    () => settle(new Error(`reading ${positions.length} record(s) of ${topic} took longer than ${timeoutMs} ms`)),
    timeoutMs,
  );
  /** A stretch longer than this between two records asked for is skipped by a seek. */
  const JUMP = 300n;
  try {
    await consumer.connect();
    await consumer.subscribe({ topic, fromBeginning: true });
    await consumer.run({
      autoCommit: false,
      // Each batch is resolved whole, so the next fetch goes on after it.
      eachBatchAutoResolve: true,
      eachBatch: async ({ batch }) => {
        const list = todo.get(batch.partition);
        if (!list || list.length === 0) return;
        for (const m of batch.messages) {
          const offset = BigInt(m.offset);
          while (list.length > 0 && list[0]! < offset) list.shift(); // not in the log (compacted away)
          if (list[0] === offset) {
            out.set(`${batch.partition}:${m.offset}`, m.value ?? null);
            list.shift();
          }
          if (list.length === 0) break;
        }
        const last = BigInt(batch.messages[batch.messages.length - 1]?.offset ?? '-1');
        if (list.length === 0) {
          todo.delete(batch.partition);
          consumer.pause([{ topic, partitions: [batch.partition] }]);
          if (todo.size === 0) settle();
        } else if (list[0]! - last > JUMP)
          consumer.seek({ topic, partition: batch.partition, offset: list[0]!.toString() });
      },
    });
    const idle = watermarks.map((w) => w.partition).filter((p) => !todo.has(p));
    if (idle.length > 0) consumer.pause([{ topic, partitions: idle }]);
    for (const [partition, list] of todo) consumer.seek({ topic, partition, offset: list[0]!.toString() });
    await done;
  } finally {
    clearTimeout(timer);
    await consumer.disconnect();
    await dropGroup(kafka, groupId);
  }
  return out;
}

async function rangeOffsets(admin: Admin, topic: string, fromTimestamp?: number) {
  const watermarks = await admin.fetchTopicOffsets(topic);
  const ends = new Map(watermarks.map((w) => [w.partition, w.high]));
  const starts = new Map(watermarks.map((w) => [w.partition, w.low]));
  if (fromTimestamp !== undefined) {
    for (const { partition, offset } of await admin.fetchTopicOffsetsByTimestamp(topic, fromTimestamp)) {
      // -1: no record at or after that time.
      starts.set(partition, offset === '-1' ? ends.get(partition)! : offset);
    }
  }
  return { starts, ends };
}

async function dropGroup(kafka: Kafka, groupId: string): Promise<void> {
  const admin = kafka.admin();
  try {
    await admin.connect();
    await admin.deleteGroups([groupId]);
  } catch {
    // A leftover empty group is harmless; the broker expires it.
  } finally {
    await admin.disconnect();
  }
}

/**
 * A kafkajs client with the project's defaults: errors only in the logs, and retries that ride
 * out a broker restart (`retries` lower for a quick yes/no, as at a service's start).
 */
export function kafkaClient(brokers: string[], clientId: string, retries = 8): Kafka {
  return new Kafka({
    clientId,
    brokers,
    logLevel: logLevel.ERROR,
    logCreator: quietRetriables,
    retry: { retries, initialRetryTime: 200 },
  });
}

// Errors kafkajs logs and then retries by itself, common right after a broker starts: noise.
const RETRIABLE = /group coordinator is not available|leadership election|not the leader for that topic-partition/i;

const quietRetriables: logCreator =
  () =>
  ({ level, log }) => {
    const { message, ...extra } = log;
    if (RETRIABLE.test(String(extra['error'] ?? ''))) return;
    const line = JSON.stringify({ level: logLevel[level], logger: 'kafkajs', message, ...extra });
    if (level <= logLevel.ERROR) process.stderr.write(line + '\n');
    else process.stdout.write(line + '\n');
  };

/** Offsets a reader has reached (each partition's next offset) vs the topic's end: how far it still has to go. */
export async function replayLag(
  kafka: Kafka,
  topic: string,
  positions: ReadonlyMap<number, bigint>,
): Promise<{ behind: bigint; end: bigint }> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    let behind = 0n;
    let end = 0n;
    for (const w of await admin.fetchTopicOffsets(topic)) {
      const high = BigInt(w.high);
      end += high;
      const at = positions.get(w.partition) ?? 0n;
      if (high > at) behind += high - at;
    }
    return { behind, end };
  } finally {
    await admin.disconnect();
  }
}
