// Jest global setup (root jest.config.js): a real Kafka broker for the int, e2e and kernel tiers
// (the kernel tier's agent in QEMU is driven by the real builder, dispatcher and ledger).
//
// - KAFKA_BROKERS set: use that cluster, start nothing.
// - Otherwise: start a private broker with scripts/kafka-runtime.cjs on a free port pair (so a
//   developer's broker on 9092 does not collide) with a fresh data dir under os.tmpdir(); set
//   process.env.KAFKA_BROKERS so test workers inherit it; jest-global-teardown.ts stops it.
// - Then ensure the events topic exists (EVENTS_TOPIC_PARTITIONS, default 12).
// - Skipped, no broker needed: REBOOTLESS_NO_KAFKA=1, or --selectProjects/--ignoreProjects on the
//   jest command line leave none of the int, e2e and kernel projects (e.g. `jest --selectProjects unit`).
//   A plain `jest some.spec.ts` cannot be told apart and starts the broker (about 3 s): set
//   REBOOTLESS_NO_KAFKA=1 or select the unit project to avoid it.
//
// Jest runs this file in plain Node with only its transform hook, not in the test module registry:
// moduleNameMapper does not apply, so '@rebootless/kafka' would resolve to the built dist. Like the
// tests, it loads libs/kafka from source instead (topic.ts only, not the whole index).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import type { EnsureEventsTopicOptions, EventsTopicDescription } from '@rebootless/kafka';

/** The fields of Jest's GlobalConfig used here. */
export interface JestGlobalConfigLike {
  rootDir: string;
  selectProjects?: string[];
  ignoreProjects?: string[];
}

/** What scripts/kafka-runtime.cjs exports (the parts used by the test harness). */
export interface KafkaRuntime {
  KAFKA_VERSION: string;
  findFreePorts(count: number): Promise<number[]>;
  fetchJars(options: { log?: (line: string) => void }): Promise<{ fetched: boolean; ms: number }>;
  startBroker(options: {
    port: number;
    controllerPort: number;
    dataDir: string;
    detached?: boolean;
    log?: (line: string) => void;
  }): Promise<{ brokers: string; pid: number; ms: number; logFile: string }>;
  stopBroker(options: {
    dataDir: string;
    port?: number;
    controllerPort?: number;
  }): Promise<{ stopped: boolean; forced: boolean }>;
}

interface TopicModule {
  ensureEventsTopic(options?: EnsureEventsTopicOptions): Promise<EventsTopicDescription>;
  kafkaBrokersFromEnv(env?: NodeJS.ProcessEnv): string[];
}

/** Shared with jest-global-teardown.ts (same process). */
export interface StartedKafka {
  runtime: KafkaRuntime;
  dataDir: string;
  port: number;
  controllerPort: number;
}
export const STARTED_KAFKA_KEY = '__rebootlessStartedKafka';
type GlobalWithKafka = typeof globalThis & { [STARTED_KAFKA_KEY]?: StartedKafka };

const say = (line: string): void => void process.stderr.write(`\n[jest global setup] ${line}`);

export function loadKafkaRuntime(rootDir: string): Promise<KafkaRuntime> {
  return import(path.join(rootDir, 'scripts', 'kafka-runtime.cjs')) as Promise<KafkaRuntime>;
}

/**
 * Values of a Jest CLI array option (`--selectProjects unit int`, `--selectProjects=unit`). Jest 29
 * keeps --selectProjects/--ignoreProjects out of the GlobalConfig handed to global setup, and this
 * code runs in Jest's main process, so it reads them from the command line.
 */
export function cliListOption(argv: readonly string[], name: string): string[] | undefined {
  let values: string[] | undefined;
  let collecting = false;
  for (const arg of argv) {
    if (arg.startsWith(`--${name}=`)) {
      (values ??= []).push(arg.slice(name.length + 3));
      collecting = false;
    } else if (arg === `--${name}`) {
      values ??= [];
      collecting = true;
    } else if (arg.startsWith('-')) {
      collecting = false;
    } else if (collecting) {
      values?.push(arg);
    }
  }
  return values;
}

/** The projects whose tests talk to a broker. */
export const BROKER_TIERS = ['int', 'e2e', 'kernel'];

/** Why no broker is needed for this run, or null when int/e2e/kernel tests may run. */
export function skipReason(
  globalConfig: JestGlobalConfigLike,
  env: NodeJS.ProcessEnv = process.env,
  argv: readonly string[] = process.argv,
): string | null {
  if (env['REBOOTLESS_NO_KAFKA'] === '1') return 'REBOOTLESS_NO_KAFKA=1';
  const selected = globalConfig.selectProjects ?? cliListOption(argv, 'selectProjects');
  const ignored = globalConfig.ignoreProjects ?? cliListOption(argv, 'ignoreProjects') ?? [];
  const tiers = BROKER_TIERS.filter((tier) => (!selected || selected.includes(tier)) && !ignored.includes(tier));
  return tiers.length === 0 ? 'no int, e2e or kernel project selected' : null;
}

export default async function globalSetup(globalConfig: JestGlobalConfigLike): Promise<void> {
  const reason = skipReason(globalConfig);
  if (reason) {
    say(`no Kafka broker (${reason})\n`);
    return;
  }
  const rootDir = globalConfig.rootDir;
  // The tests' broker is one node; the processes they start (services, the stack) inherit this.
  if (!process.env['KAFKA_DURABILITY']?.trim()) process.env['KAFKA_DURABILITY'] = 'single-broker';
  let started: StartedKafka | undefined;
  let note: string;
  if (process.env['KAFKA_BROKERS']?.trim()) {
    note = `using KAFKA_BROKERS=${process.env['KAFKA_BROKERS']}`;
  } else {
    const runtime = await loadKafkaRuntime(rootDir);
    await runtime.fetchJars({ log: (line) => say(line) }); // prints only when it has to download
    const [port, controllerPort] = (await runtime.findFreePorts(2)) as [number, number];
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-kafka-'));
    started = { runtime, dataDir, port, controllerPort };
    try {
      // detached: false keeps the JVM in Jest's process group, so Ctrl-C stops it too.
      const broker = await runtime.startBroker({ port, controllerPort, dataDir, detached: false });
      process.env['KAFKA_BROKERS'] = broker.brokers;
      note = `started Kafka ${runtime.KAFKA_VERSION} on ${broker.brokers} in ${(broker.ms / 1000).toFixed(1)} s (pid ${broker.pid}, log ${broker.logFile})`;
    } catch (error) {
      fs.rmSync(dataDir, { recursive: true, force: true });
      throw error;
    }
    (globalThis as GlobalWithKafka)[STARTED_KAFKA_KEY] = started;
  }
  try {
    const topicModule = (await import(path.join(rootDir, 'libs', 'kafka', 'src', 'topic.ts'))) as TopicModule;
    const topic = await topicModule.ensureEventsTopic({ brokers: topicModule.kafkaBrokersFromEnv() });
    say(`${note}; topic ${topic.topic} ${topic.created ? 'created' : 'ready'} (${topic.partitions} partitions)\n`);
  } catch (error) {
    if (started) await stopStartedKafka();
    throw error;
  }
}

/** Stops the broker this setup started (if any) and removes its data dir. */
export async function stopStartedKafka(): Promise<boolean> {
  const g = globalThis as GlobalWithKafka;
  const started = g[STARTED_KAFKA_KEY];
  if (!started) return false;
  delete g[STARTED_KAFKA_KEY];
  const { runtime, dataDir, port, controllerPort } = started;
  try {
    await runtime.stopBroker({ dataDir, port, controllerPort });
  } finally {
    if (process.env['REBOOTLESS_KEEP_KAFKA_DATA'] !== '1') fs.rmSync(dataDir, { recursive: true, force: true });
  }
  return true;
}
