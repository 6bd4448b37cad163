// kafkajs 2.2.4 can resolve a send of which a partition was never written: when a request to one
// leader fails, its retry re-sends only to brokers that have not answered yet, so a partition whose
// leadership moved to a broker that already answered for its own partitions is dropped, and
// `send` resolves (found with a broker SIGKILLed under load: cluster-faults.int.spec.ts,
// docs/adr/0023). Every writer of the event log sends through here and is told when that happens.
import { CompressionTypes, type Kafka, type PartitionMetadata, Partitioners, type Producer } from 'kafkajs';

export interface KeyedRecord {
  key: string;
  value: Buffer;
  timestamp?: string;
}

const placeByKey = Partitioners.DefaultPartitioner();

/**
 * A partition's share of a request above this is sent gzipped. The broker refuses a record batch
 * over `message.max.bytes` (1 MiB by default) after compression; one RolloutCreated naming 100,000
 * hosts is 1.4 MB as written and a few hundred KiB gzipped. Smaller requests go as they are: gzip
 * costs CPU on both ends and the log's usual records are small signed envelopes.
 */
export const COMPRESS_ABOVE_BYTES = 512 * 1024;
/** Bytes a record adds to its batch besides its key and value (headers and varints, roughly). */
const RECORD_OVERHEAD = 32;

/**
 * Places records on the partitions kafkajs' default partitioner picks for their keys (the same
 * function, so every stream stays in the partition it always had), and checks that Kafka
 * answered without error for each of them.
 */
export class WholeSend {
  private partitions: Promise<PartitionMetadata[]> | undefined;

  constructor(
    private readonly kafka: Kafka,
    private readonly topic: string,
  ) {}

  /** Resolves once all in-sync replicas hold every record; rejects naming any partition left out. */
  async send(producer: Producer, records: readonly KeyedRecord[], headers?: Record<string, string>): Promise<void> {
    const topic = this.topic;
    const partitionMetadata = await this.partitionMetadata();
    const placed = records.map((r) => ({
      ...r,
      ...(headers ? { headers } : {}),
      partition: placeByKey({ topic, partitionMetadata, message: { key: r.key, value: r.value } }),
    }));
    const perPartition = new Map<number, number>();
    for (const m of placed)
      perPartition.set(
        m.partition,
        (perPartition.get(m.partition) ?? 0) + m.key.length + m.value.length + RECORD_OVERHEAD,
      );
    const compression =
      Math.max(0, ...perPartition.values()) > COMPRESS_ABOVE_BYTES ? CompressionTypes.GZIP : CompressionTypes.None;
    const answers = await producer.send({ topic, acks: -1, compression, messages: placed });
    const answered = new Set(answers.filter((a) => a.errorCode === 0).map((a) => a.partition));
    const silent = [...new Set(placed.map((m) => m.partition))].filter((p) => !answered.has(p));
    if (silent.length > 0) {
      throw new Error(
        `Kafka answered the request but not for partition(s) ${silent.sort((a, b) => a - b).join(', ')} of ${topic}: those records may not be written`,
      );
    }
  }

  /** The topic's partitions, read once: the topic bootstrap never lets their number change. */
  private partitionMetadata(): Promise<PartitionMetadata[]> {
    this.partitions ??= this.readPartitions().catch((error: unknown) => {
      this.partitions = undefined;
      throw error;
    });
    return this.partitions;
  }

  private async readPartitions(): Promise<PartitionMetadata[]> {
    const admin = this.kafka.admin();
    await admin.connect();
    try {
      const { topics } = await admin.fetchTopicMetadata({ topics: [this.topic] });
      const count = topics.find((t) => t.name === this.topic)?.partitions.length ?? 0;
      if (count === 0) throw new Error(`Kafka topic "${this.topic}" has no partitions`);
      // Only the count matters for keyed records; the leaders here are placeholders.
      return Array.from({ length: count }, (_, partitionId) => ({
        partitionErrorCode: 0,
        partitionId,
        leader: 0,
        replicas: [],
        isr: [],
        offlineReplicas: [],
      }));
    } finally {
      await admin.disconnect();
    }
  }
}
