#!/usr/bin/env node
// The main job on one machine: Kafka, the events topic, and the four services as real processes,
// each healthy and each with its run recorded in the verified event log (npm start).
//
//   node scripts/stack.mjs up [--detach] [--json]   start what is not running, wait until healthy,
//                                                   verify the log; stay in the foreground until
//                                                   Ctrl-C (then stop everything), unless --detach
//   node scripts/stack.mjs down [--json]            stop the services and the broker this script started
//   node scripts/stack.mjs status [--json]          each service's pid and health
//
// State lives under <repo>/.data: one data dir per service, logs in .data/logs, pid files in
// .data/run. KAFKA_BROKERS points at an existing cluster instead of starting a broker.
// Progress goes to stderr; errors go to stderr with a non-zero exit code.

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';

const require = createRequire(import.meta.url);
const runtime = require('./kafka-runtime.cjs');
const ROOT = runtime.REPO_ROOT;
const DATA = path.join(ROOT, '.data');
// The development PKI every service and client of the local stack uses (scripts/pki.mjs).
const PKI = process.env.REBOOTLESS_PKI_DIR?.trim() || path.join(DATA, 'pki');

// 7451-7454: below Linux's ephemeral range (32768-60999), so no outgoing connection's local port
// (e.g. a Kafka client's) can take a service's port before the service binds it.
const SERVICES = [
  { name: 'builder', prefix: 'BUILDER', port: 7451, service: 'rebootless.builder.v1.BuildService' },
  { name: 'dispatcher', prefix: 'DISPATCHER', port: 7452, service: 'rebootless.dispatcher.v1.RolloutService' },
  { name: 'ledger', prefix: 'LEDGER', port: 7453, service: 'rebootless.ledger.v1.LedgerService' },
  { name: 'agent', prefix: 'AGENT', port: 7454, service: 'rebootless.agent.v1.AgentControl' },
];

class StackError extends Error {}

const flags = new Set(process.argv.slice(3));
const json = flags.has('--json');
const say = (line) => process.stderr.write(`stack: ${line}\n`);

function built(rel) {
  const file = path.join(ROOT, rel);
  if (!fs.existsSync(file)) throw new StackError(`${rel} is missing: run "npm run build" first`);
  return require(file);
}

const pidFile = (svc) => path.join(DATA, 'run', `${svc.name}.pid`);
const logFile = (svc) => path.join(DATA, 'logs', `${svc.name}.log`);
const dataDir = (svc) => path.join(DATA, svc.name);
const address = (svc) => `127.0.0.1:${svc.port}`;

function alive(pid) {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

function runningPid(svc) {
  try {
    const pid = Number(fs.readFileSync(pidFile(svc), 'utf8'));
    return Number.isInteger(pid) && alive(pid) ? pid : undefined;
  } catch {
    return undefined;
  }
}

function tail(file, lines = 15) {
  try {
    return fs.readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines).join('\n');
  } catch {
    return '(no log)';
  }
}

/** grpc.health.v1.Health/Check over a real socket; resolves with the status name or the error. */
let healthService; // loaded once: health() is polled while services start
function health(svc, service = '') {
  const grpc = require('@grpc/grpc-js');
  if (!healthService) {
    const loader = require('@grpc/proto-loader');
    const { protoPath } = require('grpc-health-check');
    const def = loader.loadSync(protoPath, { keepCase: true, enums: String, defaults: true });
    healthService = grpc.loadPackageDefinition(def).grpc.health.v1.Health;
  }
  const { loadTlsMaterial, channelCredentials } = built('libs/trust/dist/index.js');
  const client = new healthService(address(svc), channelCredentials(loadTlsMaterial(PKI, { kind: 'user', id: 'cli' })));
  return new Promise((resolve) => {
    client.check({ service }, { deadline: Date.now() + 2000 }, (err, res) => {
      client.close();
      resolve(err ? `UNREACHABLE (${err.details || err.message})` : res.status);
    });
  });
}

async function startKafka() {
  if (process.env.KAFKA_BROKERS?.trim()) {
    say(`using the Kafka cluster at ${process.env.KAFKA_BROKERS} (KAFKA_BROKERS)`);
    return { brokers: process.env.KAFKA_BROKERS.trim(), startedHere: false };
  }
  const started = await runtime.startBroker({ log: say });
  return { brokers: started.brokers, startedHere: !started.alreadyRunning };
}

async function startService(svc, brokers) {
  const pid = runningPid(svc);
  if (pid !== undefined) {
    say(`${svc.name}: already running (pid ${pid})`);
    return pid;
  }
  const main = path.join(ROOT, 'apps', svc.name, 'dist', 'main.js');
  if (!fs.existsSync(main)) throw new StackError(`apps/${svc.name}/dist/main.js is missing: run "npm run build" first`);
  await runtime.assertPortFree(svc.port, `${svc.prefix}_GRPC_PORT`);
  fs.mkdirSync(path.dirname(pidFile(svc)), { recursive: true });
  fs.mkdirSync(path.dirname(logFile(svc)), { recursive: true });
  const out = fs.openSync(logFile(svc), 'a');
  const child = spawn(process.execPath, [main], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', out, out],
    env: {
      ...process.env,
      KAFKA_BROKERS: brokers,
      REBOOTLESS_DATA_DIR: dataDir(svc),
      REBOOTLESS_PKI_DIR: PKI,
      [`${svc.prefix}_GRPC_PORT`]: String(svc.port),
      NO_COLOR: '1',
    },
  });
  fs.closeSync(out);
  child.unref();
  fs.writeFileSync(pidFile(svc), `${child.pid}\n`);
  say(`${svc.name}: started (pid ${child.pid}), log ${path.relative(ROOT, logFile(svc))}`);
  return child.pid;
}

async function waitHealthy(svc, pid, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await health(svc, svc.service);
    if (status === 'SERVING') return status;
    if (!alive(pid)) {
      throw new StackError(
        `${svc.name} exited before it was healthy. Last lines of ${logFile(svc)}:\n${tail(logFile(svc))}`,
      );
    }
    if (Date.now() > deadline) throw new StackError(`${svc.name} not healthy within ${timeoutMs / 1000} s: ${status}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

/** The producer id and raw public key of each service's chain, from its data dir. */
function serviceKeys(svc) {
  const { ChainStateFile } = built('libs/kafka/dist/index.js');
  return ChainStateFile.producersIn(path.join(dataDir(svc), 'chain')).map((chain) => ({
    producerId: chain.producerId,
    rawKey: chain.readKey().rawPublicKey,
  }));
}

/**
 * Reads the whole topic, verifies every chain against the services' keys, and finds each
 * service's ServiceStarted from the process running now.
 */
async function verifyLog(brokers, pids) {
  const { ChainVerifier, StaticKeyTrust, decodeEvent } = built('libs/events/dist/index.js');
  const { readRange, kafkaClient, EVENTS_TOPIC } = built('libs/kafka/dist/index.js');
  const trust = new StaticKeyTrust();
  const producerOf = new Map();
  for (const svc of SERVICES) {
    for (const k of serviceKeys(svc)) {
      trust.vouch(k.producerId, k.rawKey);
      producerOf.set(svc.name, k.producerId);
    }
  }
  const verifier = new ChainVerifier(trust);
  const started = new Map();
  await readRange({
    kafka: kafkaClient(brokers.split(','), 'rebootless-stack'),
    topic: process.env.EVENTS_TOPIC || EVENTS_TOPIC,
    onRecord: (r) => {
      verifier.ingest(r.value, { partition: r.partition, offset: r.offset });
      const body = decodeEvent(r.value).body;
      const svc = SERVICES.find((s) => producerOf.get(s.name) === body.producer?.producerId);
      if (svc && body.serviceStarted && body.serviceStarted.pid === pids.get(svc.name)) {
        started.set(svc.name, {
          partition: r.partition,
          offset: r.offset,
          seq: Number(body.producer.seq),
          eventId: body.eventId,
        });
      }
    },
  });
  const report = verifier.finish();
  // Chains of producers nobody vouched for here (other tools, earlier runs' deleted data dirs)
  // are reported, but only the services' own chains decide the outcome.
  const ours = new Set(producerOf.values());
  const findings = report.findings.filter((f) => ours.has(f.producerId));
  return {
    records: report.records,
    chains: report.chains.filter((c) => ours.has(c.producerId)),
    findings,
    started,
    producerOf,
    others: report.findings.length - findings.length,
  };
}

async function up() {
  const t0 = Date.now();
  const kafka = await startKafka();
  const { ensureEventsTopic } = built('libs/kafka/dist/index.js');
  const topic = await ensureEventsTopic({ brokers: kafka.brokers.split(',') });
  say(`topic ${topic.topic}: ${topic.created ? 'created' : 'present'}, ${topic.partitions} partitions`);

  const trust = built('libs/trust/dist/index.js');
  say(
    `pki: ${(await trust.ensureCertificateAuthority(PKI)) ? 'created a development CA' : 'using the CA'} in ${path.relative(ROOT, PKI) || PKI}`,
  );
  for (const id of [...SERVICES.map((svc) => svc.name)]) await trust.issueCertificate(PKI, { kind: 'service', id });
  await trust.issueCertificate(PKI, { kind: 'user', id: 'cli' });

  const pids = new Map();
  for (const svc of SERVICES) pids.set(svc.name, await startService(svc, kafka.brokers));
  const services = [];
  for (const svc of SERVICES) {
    await waitHealthy(svc, pids.get(svc.name));
    services.push({ name: svc.name, address: address(svc), pid: pids.get(svc.name), health: 'SERVING' });
    say(`${svc.name}: SERVING on ${address(svc)}`);
  }

  const log = await verifyLog(kafka.brokers, pids);
  for (const s of services) {
    s.producer = log.producerOf.get(s.name);
    s.service_started = log.started.get(s.name) ?? null;
    const chain = log.chains.filter((c) => c.producerId === s.producer).sort((a, b) => b.epoch - a.epoch)[0];
    s.chain = chain ? { epoch: chain.epoch, last_seq: chain.lastSeq, sealed: chain.sealed } : null;
  }
  const missing = services.filter((s) => !s.service_started).map((s) => s.name);
  const result = {
    ok: log.findings.length === 0 && missing.length === 0,
    brokers: kafka.brokers,
    kafka_started_here: kafka.startedHere,
    topic: topic.topic,
    records_verified: log.records,
    findings: log.findings,
    unvouched_findings: log.others,
    services,
    seconds: (Date.now() - t0) / 1000,
  };
  if (json) process.stdout.write(JSON.stringify(result) + '\n');
  else {
    for (const s of services) {
      const ev = s.service_started
        ? `ServiceStarted at partition ${s.service_started.partition} offset ${s.service_started.offset}`
        : 'no ServiceStarted found';
      process.stdout.write(
        `${s.name.padEnd(11)} ${s.address}  pid ${String(s.pid).padEnd(7)} ${s.health}  ${s.producer} epoch ${s.chain?.epoch} seq ${s.chain?.last_seq}  ${ev}\n`,
      );
    }
    process.stdout.write(
      `event log: ${log.records} records verified, ${log.findings.length} findings on the services' chains\n`,
    );
  }
  if (missing.length > 0)
    throw new StackError(`no ServiceStarted event of the running ${missing.join(', ')} in the log`);
  if (log.findings.length > 0)
    throw new StackError(`the event log has findings: ${log.findings.map((f) => f.detail).join('; ')}`);
  return result;
}

async function stopService(svc) {
  const pid = runningPid(svc);
  if (pid === undefined) return { name: svc.name, stopped: false };
  process.kill(pid, 'SIGTERM');
  const deadline = Date.now() + 15_000;
  while (alive(pid) && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
  const forced = alive(pid);
  if (forced) process.kill(pid, 'SIGKILL');
  fs.rmSync(pidFile(svc), { force: true });
  say(`${svc.name}: stopped (pid ${pid}${forced ? ', killed after 15 s' : ''})`);
  return { name: svc.name, stopped: true, forced };
}

async function down({ stopKafka = !process.env.KAFKA_BROKERS?.trim() } = {}) {
  const services = [];
  for (const svc of [...SERVICES].reverse()) services.push(await stopService(svc));
  const kafka = stopKafka ? await runtime.stopBroker({ log: say }) : { stopped: false };
  return { services, kafka };
}

async function status() {
  const services = [];
  for (const svc of SERVICES) {
    const pid = runningPid(svc);
    services.push({
      name: svc.name,
      address: address(svc),
      pid: pid ?? null,
      health: pid ? await health(svc, svc.service) : 'STOPPED',
    });
  }
  return { services };
}

async function main() {
  const command = process.argv[2];
  if (command === 'up') {
    let result;
    try {
      result = await up();
    } catch (err) {
      if (!flags.has('--detach')) await down().catch(() => undefined);
      throw err;
    }
    if (flags.has('--detach')) return;
    say('running; press Ctrl-C to stop everything');
    // Watching the services also keeps this process (and so `npm start`) in the foreground:
    // a pending signal handler alone would not hold Node's event loop open.
    const stopped = await new Promise((resolve) => {
      const watch = setInterval(() => {
        const dead = SERVICES.find((svc) => !alive(result.services.find((s) => s.name === svc.name).pid));
        if (dead) {
          clearInterval(watch);
          resolve(new StackError(`${dead.name} exited. Last lines of ${logFile(dead)}:\n${tail(logFile(dead))}`));
        }
      }, 1000);
      const onSignal = () => {
        clearInterval(watch);
        resolve(undefined);
      };
      process.once('SIGINT', onSignal);
      process.once('SIGTERM', onSignal);
    });
    await down({ stopKafka: result.kafka_started_here });
    if (stopped) throw stopped;
  } else if (command === 'down') {
    const r = await down();
    if (json) process.stdout.write(JSON.stringify(r) + '\n');
  } else if (command === 'status') {
    const r = await status();
    if (json) process.stdout.write(JSON.stringify(r) + '\n');
    else
      for (const s of r.services)
        process.stdout.write(`${s.name.padEnd(11)} ${s.address}  pid ${String(s.pid ?? '-').padEnd(7)} ${s.health}\n`);
  } else {
    throw new StackError('usage: node scripts/stack.mjs <up [--detach]|down|status> [--json]');
  }
}

main().catch((err) => {
  const message =
    err instanceof StackError || err instanceof runtime.KafkaRuntimeError ? err.message : err.stack || String(err);
  process.stderr.write(`stack: error: ${message}\n`);
  if (json) process.stdout.write(JSON.stringify({ ok: false, error: err.message }) + '\n');
  process.exit(1);
});
