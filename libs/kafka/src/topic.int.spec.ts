// The events topic bootstrap against the real broker of the Jest global setup (or KAFKA_BROKERS).
import { randomUUID } from 'node:crypto';
import { type Admin, ConfigResourceTypes, Kafka, logLevel } from 'kafkajs';
import {
  EVENTS_TOPIC,
  EventsTopicMismatchError,
  ensureEventsTopic,
  eventsTopicPartitionsFromEnv,
  kafkaBrokersFromEnv,
  topicDurabilityFromEnv,
} from './topic';

const brokers = kafkaBrokersFromEnv();
const uniqueTopic = (what: string) => `test.topic-bootstrap.${what}.${randomUUID().slice(0, 8)}`;

jest.setTimeout(60_000); // jest.config.js's per-project testTimeout is ignored by Jest 29

describe('ensureEventsTopic on a real broker', () => {
  let admin: Admin;
  const created: string[] = [];

  beforeAll(async () => {
    admin = new Kafka({ clientId: 'topic-int-spec', brokers, logLevel: logLevel.NOTHING }).admin();
    await admin.connect();
  });

  afterAll(async () => {
    if (created.length > 0) await admin.deleteTopics({ topics: created });
    await admin.disconnect();
  });

  async function topicConfig(topic: string): Promise<Record<string, string>> {
    const { resources } = await admin.describeConfigs({
      includeSynonyms: false,
      resources: [{ type: ConfigResourceTypes.TOPIC, name: topic }],
    });
    return Object.fromEntries((resources[0]?.configEntries ?? []).map((e) => [e.configName, e.configValue]));
  }

  it('leaves the events topic of the global setup as it is: configured partitions, infinite retention, delete policy', async () => {
    // Given the global setup has already ensured rebootless.events.v1
    // When the bootstrap runs again
    const again = await ensureEventsTopic({ brokers });

    // Then it reports the existing topic, unchanged, with the configured partition count and infinite retention
    expect(again).toEqual({
      topic: EVENTS_TOPIC,
      created: false,
      partitions: eventsTopicPartitionsFromEnv(),
      replicationFactor: expect.any(Number), // 1 on the test broker; whatever an external KAFKA_BROKERS cluster uses
      configs: {
        'retention.ms': '-1',
        'retention.bytes': '-1',
        'cleanup.policy': 'delete',
        'min.insync.replicas': expect.stringMatching(/^[12]$/),
      },
    });
    const metadata = await admin.fetchTopicMetadata({ topics: [EVENTS_TOPIC] });
    expect(metadata.topics[0]?.partitions).toHaveLength(eventsTopicPartitionsFromEnv());
  });

  it('creates a topic once, then finds it on every later (and concurrent) run', async () => {
    // Given a topic that does not exist yet
    const topic = uniqueTopic('idempotent');
    created.push(topic);
    expect(await admin.listTopics()).not.toContain(topic);

    // When the bootstrap runs, then runs three more times at once
    const first = await ensureEventsTopic({ brokers, topic, partitions: 5 });
    const later = await Promise.all([1, 2, 3].map(() => ensureEventsTopic({ brokers, topic, partitions: 5 })));

    // Then the first run created it and the others found it with the same settings
    expect(first).toMatchObject({ topic, created: true, partitions: 5, replicationFactor: 1 });
    for (const run of later) expect(run).toEqual({ ...first, created: false });

    // And the broker holds it with 5 partitions, a topic-level infinite retention and delete policy
    const metadata = await admin.fetchTopicMetadata({ topics: [topic] });
    expect(metadata.topics[0]?.partitions).toHaveLength(5);
    expect(await topicConfig(topic)).toMatchObject({
      'retention.ms': '-1',
      'retention.bytes': '-1',
      'cleanup.policy': 'delete',
    });
  });

  it('refuses an existing topic with one-day retention, naming the setting', async () => {
    // Given a topic someone created by hand with a retention of one day
    const topic = uniqueTopic('one-day');
    created.push(topic);
    await admin.createTopics({
      waitForLeaders: true,
      topics: [
        { topic, numPartitions: 3, replicationFactor: 1, configEntries: [{ name: 'retention.ms', value: '86400000' }] },
      ],
    });

    // When the bootstrap is asked for it with the same partition count
    const attempt = ensureEventsTopic({ brokers, topic, partitions: 3 });

    // Then it fails, saying exactly which setting differs and what it must be
    await expect(attempt).rejects.toThrow(EventsTopicMismatchError);
    await expect(attempt).rejects.toThrow(
      `Kafka topic "${topic}" already exists with settings that differ from what the event log requires: ` +
        'retention.ms is 86400000 (expected -1).',
    );
    // And it changed nothing
    expect((await topicConfig(topic))['retention.ms']).toBe('86400000');
  });

  it('lists every difference: partition count and compaction', async () => {
    // Given a compacted topic with 2 partitions
    const topic = uniqueTopic('compacted');
    created.push(topic);
    await admin.createTopics({
      waitForLeaders: true,
      topics: [
        {
          topic,
          numPartitions: 2,
          replicationFactor: 1,
          configEntries: [{ name: 'cleanup.policy', value: 'compact' }],
        },
      ],
    });

    // When the bootstrap is asked for 4 partitions
    const error = await ensureEventsTopic({ brokers, topic, partitions: 4 }).catch((e: unknown) => e);

    // Then the error names both differences
    expect(error).toBeInstanceOf(EventsTopicMismatchError);
    expect((error as EventsTopicMismatchError).differences).toEqual([
      { setting: 'partitions', actual: '2', expected: '4' },
      { setting: 'cleanup.policy', actual: 'compact', expected: 'delete' },
    ]);
    expect((error as Error).message).toContain(
      'partitions is 2 (expected 4); cleanup.policy is compact (expected delete)',
    );
    expect((error as Error).message).toContain('set EVENTS_TOPIC_PARTITIONS');
  });

  it('refuses to keep the event log on one broker unless told it is a development broker', async () => {
    // Given the test broker, a cluster of one
    const topic = uniqueTopic('replicated');
    // When the production bootstrap (replicated, the default) is pointed at it
    const refused = ensureEventsTopic({ brokers, topic, partitions: 2, durability: 'replicated' });
    // Then it names the broker count, the replication it needs and the override
    await expect(refused).rejects.toThrow(
      /has 1 broker\(s\); the event log keeps 3 replicas with min\.insync\.replicas=2 .*KAFKA_DURABILITY=single-broker/,
    );
    expect(await admin.listTopics()).not.toContain(topic);
    // And a weaker replication factor is refused before anything is asked of the cluster
    await expect(
      ensureEventsTopic({ brokers, topic, partitions: 2, durability: 'replicated', replicationFactor: 2 }),
    ).rejects.toThrow('replication factor 2 is too weak for the event log: it needs 3');
    // And the topic made for the development broker is refused as a production log
    created.push(topic);
    await ensureEventsTopic({ brokers, topic, partitions: 2, durability: 'single-broker' });
    await expect(ensureEventsTopic({ brokers, topic, partitions: 2, durability: 'replicated' })).rejects.toThrow(
      'replication factor is 1 (expected >= 3); min.insync.replicas is 1 (expected >= 2)',
    );
  }, 60_000);

  it('names an unreachable cluster', async () => {
    // Given no broker listens on port 1
    // When the bootstrap is pointed there
    // Then it fails naming the address
    await expect(ensureEventsTopic({ brokers: ['127.0.0.1:1'], retry: { retries: 0 } })).rejects.toThrow(
      /cannot reach Kafka at 127\.0\.0\.1:1: .*ECONNREFUSED/,
    );
  }, 30_000);
});

describe('topicDurabilityFromEnv', () => {
  it('is replicated unless KAFKA_DURABILITY says single-broker, and names a wrong value', () => {
    expect(topicDurabilityFromEnv({})).toBe('replicated');
    expect(topicDurabilityFromEnv({ KAFKA_DURABILITY: 'single-broker' })).toBe('single-broker');
    expect(() => topicDurabilityFromEnv({ KAFKA_DURABILITY: 'one' })).toThrow(
      'KAFKA_DURABILITY must be "replicated" or "single-broker", got "one"',
    );
  });
});

describe('kafkaBrokersFromEnv', () => {
  it('defaults to the local broker when KAFKA_BROKERS is unset or blank', () => {
    expect(kafkaBrokersFromEnv({})).toEqual(['127.0.0.1:9092']);
    expect(kafkaBrokersFromEnv({ KAFKA_BROKERS: '  ' })).toEqual(['127.0.0.1:9092']);
  });

  it('reads a comma-separated host:port list', () => {
    expect(kafkaBrokersFromEnv({ KAFKA_BROKERS: 'kafka-1.internal:9092, 10.0.0.7:19092,[::1]:9092' })).toEqual([
      'kafka-1.internal:9092',
      '10.0.0.7:19092',
      '[::1]:9092',
    ]);
  });

  it.each([
    ['127.0.0.1', 'entry 1 "127.0.0.1" is invalid: no port'],
    ['127.0.0.1:9092,kafka:0', 'entry 2 "kafka:0" is invalid: "0" is not a port (1-65535)'],
    ['127.0.0.1:9092,,b:1', 'entry 2 "" is invalid: it is empty'],
    ['bad host:9092', 'entry 1 "bad host:9092" is invalid: "bad host" is not a host name or address'],
    ['kafka:90a', 'entry 1 "kafka:90a" is invalid: "90a" is not a port'],
  ])('rejects KAFKA_BROKERS=%j naming the bad entry', (value, message) => {
    expect(() => kafkaBrokersFromEnv({ KAFKA_BROKERS: value })).toThrow(`KAFKA_BROKERS ${message}`);
  });
});
