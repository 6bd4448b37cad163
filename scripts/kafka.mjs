#!/usr/bin/env node
// The project's Kafka broker, started without Docker (DESIGN.md section 6). Thin CLI over
// scripts/kafka-runtime.cjs (which the Jest global setup uses too) and the topic bootstrap of
// libs/kafka (built: libs/kafka/dist/topic.js).
//
//   node scripts/kafka.mjs fetch    resolve the Kafka 3.9.1 jars with Maven into the cache
//   node scripts/kafka.mjs start    start one KRaft broker+controller on 127.0.0.1, wait until it serves
//   node scripts/kafka.mjs stop     SIGTERM by PID (SIGKILL after 20 s)
//   node scripts/kafka.mjs status   running or not, pid, port
//   node scripts/kafka.mjs topic    create rebootless.events.v1 (idempotent) on KAFKA_BROKERS or 127.0.0.1:9092;
//                                   refuses fewer than 3 replicas unless --single-broker (the development broker)
//   node scripts/kafka.mjs cluster start|stop|status
//                                   three KRaft nodes on 127.0.0.1:19092-19094 (KAFKA_CLUSTER_BASE_PORT,
//                                   KAFKA_CLUSTER_DATA_DIR), replication factor 3, min.insync.replicas 2
//
// Every subcommand takes --json (one JSON object on stdout). Progress goes to stderr; errors go to
// stderr with a non-zero exit. Environment: KAFKA_PORT (9092), KAFKA_CONTROLLER_PORT (9093),
// KAFKA_DATA_DIR (<repo>/.data/kafka), REBOOTLESS_KAFKA_CACHE (~/.cache/rebootless/kafka-3.9.1),
// KAFKA_START_TIMEOUT (seconds, 60), KAFKA_HEAP_OPTS (-Xms256m -Xmx512m), KAFKA_BROKERS (use an
// existing cluster: `start` then only checks that it answers), EVENTS_TOPIC_PARTITIONS (12).

import { existsSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const require = createRequire(import.meta.url);
const runtime = require('./kafka-runtime.cjs');

const USAGE = `usage: node scripts/kafka.mjs <fetch|start|stop|status|topic|cluster start|cluster stop|cluster status> [--json]
  topic options: [--topic <name>] [--partitions <n>] [--replication-factor <n>] [--single-broker]`;
const CLUSTER_ACTIONS = ['start', 'stop', 'status'];

function parseArgs(argv) {
  const [command, ...rest] = argv;
  const flags = { json: false };
  if (command === 'cluster') {
    const action = rest.shift();
    if (!CLUSTER_ACTIONS.includes(action)) {
      throw new runtime.KafkaRuntimeError(
        `cluster needs one of ${CLUSTER_ACTIONS.join(', ')}, got "${action ?? ''}"\n${USAGE}`,
      );
    }
    flags.action = action;
  }
  for (let i = 0; i < rest.length; i += 1) {
    const arg = rest[i];
    if (arg === '--json') flags.json = true;
    else if (arg === '--single-broker' && command === 'topic') flags.singleBroker = true;
    else if (arg === '--topic' || arg === '--partitions' || arg === '--replication-factor') {
      const value = rest[i + 1];
      if (value === undefined || value.startsWith('--')) throw new runtime.KafkaRuntimeError(`${arg} needs a value`);
      flags[arg.slice(2)] = value;
      i += 1;
    } else if (arg === '-h' || arg === '--help') flags.help = true;
    else throw new runtime.KafkaRuntimeError(`unknown option ${arg}\n${USAGE}`);
  }
  return { command, flags };
}

function positiveInt(value, name) {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!/^\d+$/.test(String(value)) || !Number.isInteger(n) || n < 1) {
    throw new runtime.KafkaRuntimeError(`${name} must be a positive integer, got "${value}"`);
  }
  return n;
}

/** The built topic bootstrap of libs/kafka (single implementation, shared with services and tests). */
function loadTopicLib() {
  const built = path.join(runtime.REPO_ROOT, 'libs', 'kafka', 'dist', 'topic.js');
  if (!existsSync(built)) {
    throw new runtime.KafkaRuntimeError(
      `${built} does not exist: build libs/kafka first (npx tsc -b libs/kafka), or use npm run kafka:topic which does`,
    );
  }
  return require(built);
}

/** `start` with KAFKA_BROKERS set: use that cluster instead of starting one, but only if it answers. */
async function useExistingCluster(value) {
  const entries = value.split(',').map((entry) => entry.trim());
  for (const entry of entries) {
    const match = /^(.+):(\d+)$/.exec(entry);
    if (!match) throw new runtime.KafkaRuntimeError(`KAFKA_BROKERS entry "${entry}" is not host:port`);
    const host = match[1].replace(/^\[(.*)\]$/, '$1');
    if (await runtime.probeApiVersions(Number(match[2]), host)) {
      return { external: true, brokers: value, answered: entry };
    }
  }
  throw new runtime.KafkaRuntimeError(
    `KAFKA_BROKERS=${value} is set, so no local broker is started, but none of those brokers answers. ` +
      'Unset KAFKA_BROKERS to start the local broker, or start that cluster.',
  );
}

async function run(command, flags, log) {
  switch (command) {
    case 'fetch':
      return runtime.fetchJars({ log });
    case 'start': {
      const external = process.env.KAFKA_BROKERS?.trim();
      if (external) {
        const result = await useExistingCluster(external);
        log(`kafka: KAFKA_BROKERS is set; using the existing cluster at ${external} (it answers), not starting one`);
        return result;
      }
      return runtime.startBroker({ log });
    }
    case 'stop':
      return runtime.stopBroker({ log });
    case 'status':
      return runtime.brokerStatus({});
    case 'topic': {
      const { ensureEventsTopic, kafkaBrokersFromEnv } = loadTopicLib();
      const brokers = kafkaBrokersFromEnv();
      log(`kafka: ensuring topic ${flags.topic ?? 'rebootless.events.v1'} on ${brokers.join(',')}`);
      return ensureEventsTopic({
        brokers,
        topic: flags.topic,
        partitions: positiveInt(flags.partitions, '--partitions'),
        replicationFactor: positiveInt(flags['replication-factor'], '--replication-factor'),
        ...(flags.singleBroker ? { durability: 'single-broker' } : {}),
      });
    }
    case 'cluster':
      if (flags.action === 'start') return runtime.startCluster({ log });
      if (flags.action === 'stop') return runtime.stopCluster({ log });
      return runtime.clusterStatus({});
    default:
      throw new runtime.KafkaRuntimeError(command ? `unknown command "${command}"\n${USAGE}` : USAGE);
  }
}

function humanLine(command, result) {
  switch (command) {
    case 'fetch':
      return result.fetched
        ? `fetched ${result.jars} jars into ${result.libDir}`
        : `already fetched: ${result.jars} jars in ${result.libDir}`;
    case 'start':
      if (result.external) return `KAFKA_BROKERS=${result.brokers}`;
      if (result.alreadyRunning) {
        process.stderr.write(`kafka: already running (pid ${result.pid}), started earlier by this script\n`);
      }
      return `KAFKA_BROKERS=${result.brokers}`;
    case 'stop':
      return result.stopped ? `stopped (pid ${result.pid}${result.forced ? ', SIGKILL' : ''})` : '';
    case 'status':
      return result.running
        ? `running: pid ${result.pid}, port ${result.port}, ${result.ready ? 'answering' : 'NOT answering yet'}`
        : `not running (port ${result.port}, data dir ${result.dataDir})`;
    case 'cluster':
      if (result.nodes.every((n) => n.stopped === false)) return '';
      if (result.nodes.some((n) => n.stopped !== undefined)) {
        return result.nodes
          .map((n) => `node ${n.id}: ${n.stopped ? `stopped (pid ${n.pid})` : 'was not running'}`)
          .join('\n');
      }
      if (result.nodes.some((n) => n.running !== undefined)) {
        return result.nodes
          .map(
            (n) =>
              `node ${n.id}: ${n.running ? `pid ${n.pid}, port ${n.port}, ${n.ready ? 'answering' : 'NOT answering'}` : `not running (port ${n.port})`}`,
          )
          .join('\n');
      }
      return `KAFKA_BROKERS=${result.brokers}`;
    case 'topic':
      return `topic ${result.topic}: ${result.created ? 'created' : 'exists'}, ${result.partitions} partitions, replication factor ${result.replicationFactor}, ${Object.entries(
        result.configs,
      )
        .map(([k, v]) => `${k}=${v}`)
        .join(' ')}`;
    default:
      return JSON.stringify(result);
  }
}

async function main(argv) {
  let flags = { json: argv.includes('--json') };
  try {
    const parsed = parseArgs(argv);
    flags = parsed.flags;
    if (flags.help) {
      process.stdout.write(`${USAGE}\n`);
      return 0;
    }
    const log = (line) => process.stderr.write(`${line}\n`);
    const result = await run(parsed.command, flags, log);
    if (flags.json) process.stdout.write(`${JSON.stringify({ ok: true, ...result })}\n`);
    else {
      const line = humanLine(parsed.command, result);
      if (line) process.stdout.write(`${line}\n`);
    }
    return 0;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`kafka: error: ${message}\n`);
    if (flags.json) process.stdout.write(`${JSON.stringify({ ok: false, error: message })}\n`);
    return 1;
  }
}

export { main };
export const { startBroker, stopBroker, brokerStatus, fetchJars } = runtime;

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main(process.argv.slice(2));
}
