// The event log's topic (DESIGN.md section 4): one topic, many partitions, created explicitly
// (brokers run with auto.create.topics.enable=false), infinite retention, cleanup.policy=delete
// (never compacted: history is the product). ensureEventsTopic is the single implementation of the
// bootstrap; `node scripts/kafka.mjs topic` and the Jest global setup call it too.
import { type Admin, ConfigResourceTypes, Kafka, logLevel as KafkaLogLevel, type RetryOptions } from 'kafkajs';

export const EVENTS_TOPIC = 'rebootless.events.v1';
export const DEFAULT_EVENTS_TOPIC_PARTITIONS = 12;
export const DEFAULT_KAFKA_BROKERS = ['127.0.0.1:9092'];

/** Topic configs the event log depends on, with the only acceptable (effective) values. */
export const EVENTS_TOPIC_CONFIG: Readonly<Record<string, string>> = Object.freeze({
  'retention.ms': '-1',
  'retention.bytes': '-1',
  'cleanup.policy': 'delete',
});

/**
 * How many copies of the log the topic keeps. `replicated` (production, the default): 3 replicas,
 * `min.insync.replicas=2`, so an event acknowledged with acks=all survives the loss of any one
 * broker. `single-broker`: one copy, only for the development broker and tests (KAFKA_DURABILITY).
 */
export type TopicDurability = 'replicated' | 'single-broker';
export const REPLICATED_FACTOR = 3;
export const REPLICATED_MIN_INSYNC = 2;

/** KAFKA_DURABILITY (`replicated` | `single-broker`), else `replicated`. */
export function topicDurabilityFromEnv(env: NodeJS.ProcessEnv = process.env): TopicDurability {
  const raw = env['KAFKA_DURABILITY']?.trim();
  if (raw === undefined || raw === '') return 'replicated';
  if (raw === 'replicated' || raw === 'single-broker') return raw;
  throw new Error(`KAFKA_DURABILITY must be "replicated" or "single-broker", got "${raw}"`);
}

export interface EnsureEventsTopicOptions {
  /** host:port list; defaults to kafkaBrokersFromEnv(). Ignored when `admin` is given. */
  brokers?: string[];
  /** Defaults to rebootless.events.v1. */
  topic?: string;
  /** Defaults to EVENTS_TOPIC_PARTITIONS from the environment, else 12. */
  partitions?: number;
  /** Defaults to KAFKA_DURABILITY, else `replicated`. */
  durability?: TopicDurability;
  /** Defaults to 3 when replicated (never fewer), 1 for a single broker. Used only when the topic is created. */
  replicationFactor?: number;
  /** An already connected admin client to use (it is not disconnected). */
  admin?: Admin;
  /** kafkajs log level for the client created here; errors are thrown either way. Default: nothing. */
  logLevel?: KafkaLogLevel;
  /** kafkajs retry options for the client created here (kafkajs defaults: 5 retries, about 10 s). */
  retry?: RetryOptions;
}

export interface EventsTopicDescription {
  topic: string;
  /** true when this call created the topic, false when it already existed with the right settings. */
  created: boolean;
  partitions: number;
  replicationFactor: number;
  /** Effective values of the configs in EVENTS_TOPIC_CONFIG, and min.insync.replicas. */
  configs: Record<string, string>;
}

export interface TopicSettingDifference {
  setting: string;
  actual: string;
  expected: string;
}

/** The topic exists, but with settings the event log cannot accept. Never "fixed" automatically. */
export class EventsTopicMismatchError extends Error {
  constructor(
    readonly topic: string,
    readonly differences: TopicSettingDifference[],
  ) {
    super(
      `Kafka topic "${topic}" already exists with settings that differ from what the event log requires: ` +
        differences.map((d) => `${d.setting} is ${d.actual} (expected ${d.expected})`).join('; ') +
        '. It is not changed automatically (more partitions would re-map keys and break per-stream order; ' +
        'retention must be infinite and cleanup must be delete): fix or recreate the topic by hand' +
        (differences.some((d) => d.setting === 'partitions')
          ? ', or set EVENTS_TOPIC_PARTITIONS to its partition count.'
          : '.'),
    );
    this.name = 'EventsTopicMismatchError';
  }
}

const HOSTNAME =
  /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV6_BRACKETED = /^\[[0-9A-Fa-f:.]+\]$/;

/**
 * Brokers from KAFKA_BROKERS (comma-separated host:port), or 127.0.0.1:9092 when unset or blank.
 * Throws naming the first entry that is not host:port.
 */
export function kafkaBrokersFromEnv(env: NodeJS.ProcessEnv = process.env): string[] {
  const raw = env['KAFKA_BROKERS'];
  if (raw === undefined || raw.trim() === '') return [...DEFAULT_KAFKA_BROKERS];
  return raw.split(',').map((part, index) => {
    const entry = part.trim();
    const bad = (why: string): Error =>
      new Error(`KAFKA_BROKERS entry ${index + 1} "${entry}" is invalid: ${why} (expected host:port[,host:port...])`);
    if (entry === '') throw bad('it is empty');
    const colon = entry.lastIndexOf(':');
    if (colon <= 0) throw bad('no port');
    const host = entry.slice(0, colon);
    const portText = entry.slice(colon + 1);
    if (!HOSTNAME.test(host) && !IPV6_BRACKETED.test(host)) throw bad(`"${host}" is not a host name or address`);
    const port = Number(portText);
    if (!/^\d{1,5}$/.test(portText) || port < 1 || port > 65535) throw bad(`"${portText}" is not a port (1-65535)`);
    return entry;
  });
}

/** EVENTS_TOPIC_PARTITIONS, else 12. */
export function eventsTopicPartitionsFromEnv(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env['EVENTS_TOPIC_PARTITIONS'];
  if (raw === undefined || raw.trim() === '') return DEFAULT_EVENTS_TOPIC_PARTITIONS;
  return positiveInteger(raw.trim(), 'EVENTS_TOPIC_PARTITIONS');
}

function positiveInteger(value: string | number, name: string): number {
  const n = typeof value === 'number' ? value : /^\d+$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got "${value}"`);
  return n;
}

const TOPIC_NAME = /^[A-Za-z0-9._-]{1,249}$/;

/**
 * Creates the events topic with infinite retention and delete cleanup, or checks that the existing
 * one has the requested partition count and those configs (throws EventsTopicMismatchError naming
 * each difference). Idempotent and safe to run concurrently.
 */
export async function ensureEventsTopic(options: EnsureEventsTopicOptions = {}): Promise<EventsTopicDescription> {
  const topic = options.topic ?? EVENTS_TOPIC;
  if (!TOPIC_NAME.test(topic) || topic === '.' || topic === '..') {
    throw new Error(`"${topic}" is not a legal Kafka topic name`);
  }
  const partitions =
    options.partitions === undefined
      ? eventsTopicPartitionsFromEnv()
      : positiveInteger(options.partitions, 'partitions');
  const durability = options.durability ?? topicDurabilityFromEnv();
  const replicated = durability === 'replicated';
  const replicationFactor = positiveInteger(
    options.replicationFactor ?? (replicated ? REPLICATED_FACTOR : 1),
    'replicationFactor',
  );
  if (replicated && replicationFactor < REPLICATED_FACTOR) {
    throw new Error(
      `replication factor ${replicationFactor} is too weak for the event log: it needs ${REPLICATED_FACTOR} ` +
        '(set KAFKA_DURABILITY=single-broker only for a development broker)',
    );
  }

  let admin = options.admin;
  const ownAdmin = admin === undefined;
  if (admin === undefined) {
    const brokers = options.brokers ?? kafkaBrokersFromEnv();
    admin = new Kafka({
      clientId: 'rebootless-topic-bootstrap',
      brokers,
      logLevel: options.logLevel ?? KafkaLogLevel.NOTHING,
      ...(options.retry ? { retry: options.retry } : {}),
    }).admin();
    try {
      await admin.connect();
    } catch (error) {
      throw new Error(`cannot reach Kafka at ${brokers.join(',')}: ${(error as Error).message}`, { cause: error });
    }
  }
  try {
    let created = false;
    if (!(await admin.listTopics()).includes(topic)) {
      if (replicated) await requireBrokers(admin, replicationFactor);
      // false = someone else created it meanwhile: verify theirs like any existing topic.
      created = await admin.createTopics({
        // kafkajs' own wait asks one broker and gives up on UNKNOWN_TOPIC_OR_PARTITION, which a
        // cluster's other brokers answer until the controller's metadata reaches them.
        waitForLeaders: false,
        topics: [
          {
            topic,
            numPartitions: partitions,
            replicationFactor,
            configEntries: Object.entries({
              ...EVENTS_TOPIC_CONFIG,
              ...(replicated ? { 'min.insync.replicas': String(REPLICATED_MIN_INSYNC) } : {}),
            }).map(([name, value]) => ({ name, value })),
          },
        ],
      });
    }
    await waitForLeaders(admin, topic);
    const description = await describeTopic(admin, topic);
    const differences: TopicSettingDifference[] = [];
    if (description.partitions !== partitions) {
      differences.push({ setting: 'partitions', actual: String(description.partitions), expected: String(partitions) });
    }
    for (const [name, expected] of Object.entries(EVENTS_TOPIC_CONFIG)) {
      const actual = description.configs[name];
      if (actual !== expected) differences.push({ setting: name, actual: actual ?? '(unknown)', expected });
    }
    if (replicated) differences.push(...replicationShortfall(description));
    if (differences.length > 0) throw new EventsTopicMismatchError(topic, differences);
    return { ...description, created };
  } finally {
    if (ownAdmin) await admin.disconnect();
  }
}

/**
 * Refuses to create a replicated topic on a cluster with too few brokers, naming what it found.
 * Waits up to 15 s first: a cluster that has just started registers its brokers one by one.
 */
async function requireBrokers(admin: Admin, needed: number): Promise<void> {
  const deadline = Date.now() + 15_000;
  let { brokers } = await admin.describeCluster();
  while (brokers.length < needed && Date.now() < deadline) {
    await new Promise((resolve) => setTimeout(resolve, 500));
    ({ brokers } = await admin.describeCluster());
  }
  if (brokers.length < needed) {
    throw new Error(
      `the Kafka cluster at ${brokers.map((b) => `${b.host}:${b.port}`).join(',')} has ${brokers.length} broker(s); ` +
        `the event log keeps ${needed} replicas with min.insync.replicas=${REPLICATED_MIN_INSYNC} ` +
        '(start a cluster with "npm run kafka:cluster -- start", or set KAFKA_DURABILITY=single-broker for a development broker)',
    );
  }
}

/**
 * Runs `ask` until it has an answer, for up to 30 s: right after a topic is created, a
 * cluster's brokers answer UNKNOWN_TOPIC_OR_PARTITION until the controller's metadata reaches
 * them, and `ask` returns undefined while the answer is not there yet.
 */
async function untilKnown<T>(topic: string, what: string, ask: () => Promise<T | undefined>): Promise<T> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    try {
      const answer = await ask();
      if (answer !== undefined) return answer;
    } catch (error) {
      if ((error as { type?: string }).type !== 'UNKNOWN_TOPIC_OR_PARTITION' || Date.now() > deadline) throw error;
    }
    if (Date.now() > deadline) throw new Error(`Kafka topic "${topic}": ${what} after 30 s`);
    await new Promise((resolve) => setTimeout(resolve, 250));
  }
}

async function waitForLeaders(admin: Admin, topic: string): Promise<void> {
  await untilKnown(topic, 'partitions without a leader', async () => {
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
    const partitions = topics.find((t) => t.name === topic)?.partitions ?? [];
    return partitions.length > 0 && partitions.every((p) => p.leader >= 0) ? true : undefined;
  });
}

/** Where an existing topic keeps fewer copies, or accepts writes with fewer in sync, than the log needs. */
function replicationShortfall(d: Omit<EventsTopicDescription, 'created'>): TopicSettingDifference[] {
  const out: TopicSettingDifference[] = [];
  if (d.replicationFactor < REPLICATED_FACTOR) {
    out.push({
      setting: 'replication factor',
      actual: String(d.replicationFactor),
      expected: `>= ${REPLICATED_FACTOR}`,
    });
  }
  const minIsr = Number(d.configs['min.insync.replicas'] ?? '1');
  if (!(minIsr >= REPLICATED_MIN_INSYNC)) {
    out.push({
      setting: 'min.insync.replicas',
      actual: d.configs['min.insync.replicas'] ?? '(unknown)',
      expected: `>= ${REPLICATED_MIN_INSYNC}`,
    });
  }
  return out;
}

async function describeTopic(admin: Admin, topic: string): Promise<Omit<EventsTopicDescription, 'created'>> {
  const found = await untilKnown(topic, 'no metadata', async () =>
    (await admin.fetchTopicMetadata({ topics: [topic] })).topics.find((t) => t.name === topic),
  );
  const described = await untilKnown(topic, 'no configs', () =>
    admin.describeConfigs({
      includeSynonyms: false,
      resources: [
        {
          type: ConfigResourceTypes.TOPIC,
          name: topic,
          configNames: [...Object.keys(EVENTS_TOPIC_CONFIG), 'min.insync.replicas'],
        },
      ],
    }),
  );
  const resource = described.resources[0];
  if (!resource || resource.errorCode !== 0) {
    throw new Error(`describeConfigs for topic "${topic}" failed: ${resource?.errorMessage ?? 'no result'}`);
  }
  const configs: Record<string, string> = {};
  for (const entry of resource.configEntries) configs[entry.configName] = entry.configValue;
  return {
    topic,
    partitions: found.partitions.length,
    replicationFactor: Math.min(...found.partitions.map((p) => p.replicas.length)),
    configs,
  };
}
