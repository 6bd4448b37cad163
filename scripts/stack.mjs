#!/usr/bin/env node
// The main job on one machine (npm start): Kafka, the events topic, the four services as real
// processes (each healthy, each run recorded in the verified event log), the web console (HTTPS,
// CONSOLE_HTTP_PORT, default 7455), a demo fleet of simulated
// hosts on two kernel releases, and the story told on them (libs/testing/src/demo/story.ts): a
// live patch built for a CVE, rolled out in waves, a stalled host, an undo, the PCI report before
// and after, the ledger verified. Then it stays up for the operator's CLI until Ctrl-C.
//
//   node scripts/stack.mjs up [--agents N] [--no-story] [--detach] [--tracing] [--json]
//                                      start what is not running, wait until healthy, verify the
//                                      log, start the demo fleet (N hosts, default 50) and tell the
//                                      story; stay in the foreground until Ctrl-C (then stop
//                                      everything), unless --detach. --tracing also starts Zipkin
//                                      (ZIPKIN_PORT, default 9411; scripts/zipkin-runtime.cjs), points
//                                      every process at it and tells the link to the rollout's trace
//   node scripts/stack.mjs down [--json]      stop the fleet, the services and the broker this script started
//   node scripts/stack.mjs status [--json]    each service's pid and health
//
// State lives under <repo>/.data (REBOOTLESS_STACK_DIR): one data dir per service, the fleet's
// hosts in fleet/, logs in logs/, pid files in run/. KAFKA_BROKERS points at an existing cluster
// instead of starting a broker (EVENTS_TOPIC names the topic); <PREFIX>_GRPC_PORT moves a service;
// REBOOTLESS_DEMO_RELEASES=a,b names the fleet's two kernel releases instead of asking Debian's archive.
// Progress goes to stderr, the story and results to stdout (--json: one JSON document instead).

import { spawn } from 'node:child_process';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import os from 'node:os';

const require = createRequire(import.meta.url);
const runtime = require('./kafka-runtime.cjs');
const zipkin = require('./zipkin-runtime.cjs');
const ROOT = runtime.REPO_ROOT;
const DATA = path.resolve(process.env.REBOOTLESS_STACK_DIR?.trim() || path.join(ROOT, '.data'));
const KAFKA_DATA = path.join(DATA, 'kafka');
// The development PKI every service and client of the local stack uses (scripts/pki.mjs).
const PKI = process.env.REBOOTLESS_PKI_DIR?.trim() || path.join(DATA, 'pki');
// Each party's own directory (ADR 0013): its key and certificate, ca.crt and the public keys it
// needs; the CA key and the token key stay in PKI, which only the pki tool and the story's
// operator (who mints tokens) read.
const partyDir = (name) => path.join(path.dirname(path.resolve(PKI)), 'identities', name);

// 7451-7454: below Linux's ephemeral range (32768-60999), so no outgoing connection's local port
// (e.g. a Kafka client's) can take a service's port before the service binds it.
const SERVICES = [
  { name: 'builder', prefix: 'BUILDER', port: 7451, service: 'rebootless.builder.v1.BuildService' },
  { name: 'dispatcher', prefix: 'DISPATCHER', port: 7452, service: 'rebootless.dispatcher.v1.RolloutService' },
  { name: 'ledger', prefix: 'LEDGER', port: 7453, service: 'rebootless.ledger.v1.LedgerService' },
  { name: 'agent', prefix: 'AGENT', port: 7454, service: 'rebootless.agent.v1.AgentControl' },
].map((svc) => ({ ...svc, port: Number(process.env[`${svc.prefix}_GRPC_PORT`]?.trim() || svc.port) }));
const byName = (name) => SERVICES.find((svc) => svc.name === name);
/** Where the stack's agent serves AgentControl for `rebootless-agent status`, as /run/rebootless/agent.sock on a host. */
const agentControlSocket = () => path.join(dataDir(byName('agent')), 'control', 'agent.sock');
/** The stack's own agent speaks for this machine, by the id it takes by default (machine id, else host name). */
function stackAgentHostId() {
  try {
    const id = fs.readFileSync('/etc/machine-id', 'utf8').trim();
    if (id) return id;
  } catch {
    // No machine id: the agent falls back to the host name too.
  }
  return os.hostname();
}
// The demo fleet is supervised like a service (pid file, log), but it serves nothing itself.
const FLEET = { name: 'fleet' };
const ZIPKIN = { name: 'zipkin' };
// The web console (apps/console) serves HTTPS, not gRPC, and writes no events: it starts once the
// services it calls are healthy, and stops first.
const CONSOLE = {
  name: 'console',
  prefix: 'CONSOLE',
  portVar: 'CONSOLE_HTTP_PORT',
  port: Number(process.env.CONSOLE_HTTP_PORT?.trim() || 7455),
};
const consoleUrl = () => `https://127.0.0.1:${CONSOLE.port}`;

class StackError extends Error {}

const args = process.argv.slice(3);
const flags = new Set(args);
const json = flags.has('--json');
const agentsFlag = args.indexOf('--agents');
const AGENTS = agentsFlag >= 0 ? Number(args[agentsFlag + 1]) : 50;
const TRACING = flags.has('--tracing');
const say = (line) => process.stderr.write(`stack: ${line}\n`);
// The story is for people on stdout; with --json stdout holds only the final document.
const tell = (line) => (json ? process.stderr : process.stdout).write(`${line}\n`);

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

function readOr(file, fallback) {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch {
    return fallback;
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
  // The certificates name localhost too: a TLS server name that is not an IP address, as RFC 6066 wants.
  const client = new healthService(
    address(svc),
    channelCredentials(loadTlsMaterial(partyDir('user-cli'), { kind: 'user', id: 'cli' }), {
      kind: 'service',
      id: svc.name,
    }),
    {
      'grpc.ssl_target_name_override': 'localhost',
    },
  );
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
  const started = await runtime.startBroker({ log: say, dataDir: KAFKA_DATA });
  return { brokers: started.brokers, startedHere: !started.alreadyRunning };
}

async function startService(svc, brokers, extraEnv = {}) {
  const pid = runningPid(svc);
  if (pid !== undefined) {
    say(`${svc.name}: already running (pid ${pid})`);
    return pid;
  }
  const main = path.join(ROOT, 'apps', svc.name, 'dist', 'main.js');
  if (!fs.existsSync(main)) throw new StackError(`apps/${svc.name}/dist/main.js is missing: run "npm run build" first`);
  await runtime.assertPortFree(svc.port, svc.portVar ?? `${svc.prefix}_GRPC_PORT`);
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
      REBOOTLESS_PKI_DIR: partyDir(`service-${svc.name}`),
      [`${svc.prefix}_GRPC_PORT`]: String(svc.port),
      NO_COLOR: '1',
      ...extraEnv,
    },
  });
  fs.closeSync(out);
  child.unref();
  fs.writeFileSync(pidFile(svc), `${child.pid}\n`);
  say(`${svc.name}: started (pid ${child.pid}), log ${path.relative(ROOT, logFile(svc))}`);
  return child.pid;
}

/** The console answers its OpenAPI document over HTTPS with a certificate of the stack's CA. */
function consoleHealth() {
  const https = require('node:https');
  return new Promise((resolve) => {
    const req = https.get(
      `${consoleUrl()}/api/v1/openapi.json`,
      { ca: fs.readFileSync(path.join(PKI, 'ca.crt')), servername: 'localhost', timeout: 2000 },
      (res) => {
        res.resume();
        resolve(res.statusCode === 200 ? 'SERVING' : `HTTP ${res.statusCode}`);
      },
    );
    req.on('error', (err) => resolve(`UNREACHABLE (${err.message})`));
    req.on('timeout', () => req.destroy(new Error('no answer within 2 s')));
  });
}

async function waitConsole(pid, timeoutMs = 60_000) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const status = await consoleHealth();
    if (status === 'SERVING') return;
    if (!alive(pid)) {
      throw new StackError(
        `the console exited before it served. Last lines of ${logFile(CONSOLE)}:\n${tail(logFile(CONSOLE))}`,
      );
    }
    if (Date.now() > deadline)
      throw new StackError(`the console did not serve within ${timeoutMs / 1000} s: ${status}`);
    await new Promise((r) => setTimeout(r, 250));
  }
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

/**
 * Zipkin, started (or found running) before anything that sends spans, and every process started
 * from here on pointed at it through the OpenTelemetry variables they inherit.
 */
async function startTracing() {
  const { port } = zipkin.resolveConfig();
  let pid = runningPid(ZIPKIN);
  if (pid !== undefined && (await zipkin.healthy(port))) say(`zipkin: already running (pid ${pid})`);
  else {
    say(
      `zipkin: starting on 127.0.0.1:${port} with in-memory storage (ZIPKIN_PORT), log ${path.relative(ROOT, logFile(ZIPKIN))}`,
    );
    const started = await zipkin.startZipkin({ port, log: say, logFile: logFile(ZIPKIN) });
    pid = started.pid;
    fs.mkdirSync(path.dirname(pidFile(ZIPKIN)), { recursive: true });
    fs.writeFileSync(pidFile(ZIPKIN), `${pid}\n`);
  }
  Object.assign(process.env, zipkin.tracingEnv(port));
  say(`zipkin: ${zipkin.urls(port).url} receives every process's spans`);
  return { pid, port, url: zipkin.urls(port).url };
}

async function up() {
  const t0 = Date.now();
  freshStart();
  const kafka = await startKafka();
  const { ensureEventsTopic } = built('libs/kafka/dist/index.js');
  const topic = await ensureEventsTopic({
    brokers: kafka.brokers.split(','),
    // The broker started here is one development node; a cluster named by KAFKA_BROKERS is held
    // to KAFKA_DURABILITY (replicated unless it says otherwise).
    ...(process.env.KAFKA_BROKERS?.trim() ? {} : { durability: 'single-broker' }),
    ...(process.env.EVENTS_TOPIC?.trim() ? { topic: process.env.EVENTS_TOPIC.trim() } : {}),
  });
  say(`topic ${topic.topic}: ${topic.created ? 'created' : 'present'}, ${topic.partitions} partitions`);
  const tracing = TRACING ? await startTracing() : undefined;

  const trust = built('libs/trust/dist/index.js');
  say(
    `pki: ${(await trust.ensureCertificateAuthority(PKI)) ? 'created a development CA' : 'using the CA'} in ${path.relative(ROOT, PKI) || PKI}`,
  );
  for (const id of [...SERVICES.map((svc) => svc.name)]) {
    await trust.issueCertificate(PKI, { kind: 'service', id });
    // The agent also holds its host's certificate: it relays its events through the dispatcher's
    // gateway, which binds its key (no reader counts an agent key the gateway did not bind).
    const host = id === 'agent' ? [{ kind: 'host', id: stackAgentHostId() }] : [];
    for (const h of host) await trust.issueCertificate(PKI, h);
    trust.exportParty(PKI, partyDir(`service-${id}`), [{ kind: 'service', id }, ...host]);
  }
  await trust.issueCertificate(PKI, { kind: 'user', id: 'cli' });
  trust.exportParty(PKI, partyDir('user-cli'), [{ kind: 'user', id: 'cli' }]);
  await trust.issueCertificate(PKI, { kind: 'service', id: CONSOLE.name });
  trust.exportParty(PKI, partyDir(`service-${CONSOLE.name}`), [{ kind: 'service', id: CONSOLE.name }]);

  // The ledger vouches for the other services' chains by the keys in their data dirs, which exist
  // once they are healthy: so the ledger starts last.
  const pids = new Map();
  const services = [];
  const ledger = byName('ledger');
  const waves = [SERVICES.filter((svc) => svc !== ledger), [ledger]];
  for (const wave of waves) {
    for (const svc of wave) {
      const env =
        svc === ledger
          ? {
              LEDGER_TRUSTED_DATA_DIRS: SERVICES.filter((o) => o !== ledger)
                .map(dataDir)
                .join(','),
            }
          : svc.name === 'dispatcher'
            ? {
                DISPATCHER_LEDGER_ADDRESS: address(ledger),
                // The demo fleet's modules come from the dispatcher's site cache (ADR 0026).
                DISPATCHER_BUILDER_ADDRESS: address(byName('builder')),
                // The dispatcher acts only on what vouched producers sealed (ADR 0012): the builder's key.
                DISPATCHER_TRUSTED_DATA_DIRS: SERVICES.filter((o) => o.name === 'builder')
                  .map(dataDir)
                  .join(','),
              }
            : svc.name === 'agent'
              ? {
                  AGENT_CONTROL_SOCKET: agentControlSocket(),
                  AGENT_HOST_ID: stackAgentHostId(),
                  AGENT_DISPATCHER_ADDRESS: address(byName('dispatcher')),
                }
              : {};
      pids.set(svc.name, await startService(svc, kafka.brokers, env));
    }
    for (const svc of wave) {
      await waitHealthy(svc, pids.get(svc.name));
      services.push({ name: svc.name, address: address(svc), pid: pids.get(svc.name), health: 'SERVING' });
      say(`${svc.name}: SERVING on ${address(svc)}`);
    }
  }
  services.sort((a, b) => SERVICES.indexOf(byName(a.name)) - SERVICES.indexOf(byName(b.name)));
  const consolePid = await startService(CONSOLE, kafka.brokers, {
    CONSOLE_HTTP_ADDRESS: `127.0.0.1:${CONSOLE.port}`,
    CONSOLE_LEDGER_ADDRESS: address(ledger),
    CONSOLE_DISPATCHER_ADDRESS: address(byName('dispatcher')),
    CONSOLE_BUILDER_ADDRESS: address(byName('builder')),
  });
  await waitConsole(consolePid);
  say(`console: serving on ${consoleUrl()}`);

  // The agent's ServiceStarted reaches the log once the dispatcher it relays through is up.
  let log = await verifyLog(kafka.brokers, pids);
  for (const until = Date.now() + 30_000; log.started.size < SERVICES.length && Date.now() < until;) {
    await new Promise((r) => setTimeout(r, 500));
    log = await verifyLog(kafka.brokers, pids);
  }
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
    stack_dir: DATA,
    records_verified: log.records,
    findings: log.findings,
    unvouched_findings: log.others,
    services,
    console: { url: consoleUrl(), pid: consolePid },
    ...(tracing ? { zipkin: tracing } : {}),
    seconds: (Date.now() - t0) / 1000,
  };
  if (!json) {
    for (const s of services) {
      const ev = s.service_started
        ? `ServiceStarted at partition ${s.service_started.partition} offset ${s.service_started.offset}`
        : 'no ServiceStarted found';
      process.stdout.write(
        `${s.name.padEnd(11)} ${s.address}  pid ${String(s.pid).padEnd(7)} ${s.health}  ${s.producer} epoch ${s.chain?.epoch} seq ${s.chain?.last_seq}  ${ev}\n`,
      );
    }
    process.stdout.write(`${'console'.padEnd(11)} ${consoleUrl()}  pid ${consolePid}\n`);
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

/**
 * The story starts from a clean slate: a previous run's rollouts would otherwise re-apply their
 * patch to the fleet's rebooted hosts before this run's story begins. So when nothing of a
 * previous run is running, its state moves to <stack dir>.previous (one run is kept); the pki
 * stays. With KAFKA_BROKERS the old events stay in that cluster: use a fresh EVENTS_TOPIC there.
 */
function freshStart() {
  const marker = path.join(DATA, 'story.json');
  if (flags.has('--no-story') || !fs.existsSync(marker)) return;
  if ([...SERVICES, FLEET, CONSOLE].some((svc) => runningPid(svc) !== undefined)) return;
  const brokerPid = Number.parseInt(readOr(runtime.resolveConfig({ dataDir: KAFKA_DATA }).pidFile, ''), 10);
  if (Number.isInteger(brokerPid) && alive(brokerPid)) return;
  const previous = `${DATA}.previous`;
  fs.rmSync(previous, { recursive: true, force: true });
  fs.renameSync(DATA, previous);
  fs.mkdirSync(DATA, { recursive: true });
  if (fs.existsSync(path.join(previous, 'pki'))) fs.renameSync(path.join(previous, 'pki'), PKI);
  say(`the previous run's state moved to ${path.relative(ROOT, previous) || previous}: the story starts afresh`);
}

/** Debian's current cloud kernel and the previous one, as the archive has them today. */
async function demoReleases() {
  if (process.env.REBOOTLESS_DEMO_RELEASES?.trim()) {
    const [a, b] = process.env.REBOOTLESS_DEMO_RELEASES.split(',').map((r) => r.trim());
    if (a && b) return [a, b];
  }
  const { currentAndPreviousCloudReleases } = built('libs/kernel-toolchain/dist/index.js');
  return currentAndPreviousCloudReleases();
}

/** The demo fleet: its hosts' certificates, then its process, until every host is connected. */
async function startFleet(kafka, topic, plan) {
  const trust = built('libs/trust/dist/index.js');
  const pending = [...plan.hosts];
  // openssl runs per certificate; a few at a time keeps 50 hosts to a couple of seconds.
  await Promise.all(
    Array.from({ length: 4 }, async () => {
      for (let h = pending.shift(); h; h = pending.shift())
        await trust.issueCertificate(PKI, { kind: 'host', id: h.hostId });
    }),
  );
  const builderKey = serviceKeys(byName('builder'))[0]?.rawKey;
  if (!builderKey) throw new StackError(`no builder key in ${dataDir(byName('builder'))}/chain`);
  // The simulator stands in for every host at once: its directory holds their keys, no CA key.
  const fleetPki = trust.exportParty(
    PKI,
    partyDir('fleet'),
    plan.hosts.map((h) => ({ kind: 'host', id: h.hostId })),
    { 'builder.pub': `${Buffer.from(builderKey).toString('hex')}\n` },
  ).dir;
  const root = path.join(DATA, 'fleet');
  fs.mkdirSync(root, { recursive: true });
  const config = {
    root,
    pkiDir: fleetPki,
    dispatcherAddress: address(byName('dispatcher')),
    builderAddress: address(byName('builder')),
    builderPublicKey: Buffer.from(builderKey).toString('hex'),
    brokers: kafka.brokers,
    topic,
    hosts: plan.hosts,
    stallHostId: plan.stallHostId,
    transitionTimeoutMs: 5_000,
  };
  const configFile = path.join(root, 'fleet.json');
  fs.writeFileSync(configFile, JSON.stringify(config, null, 2));
  let pid = runningPid(FLEET);
  if (pid !== undefined) {
    say(`fleet: already running (pid ${pid})`);
    return pid;
  }
  const main = path.join(ROOT, 'libs', 'testing', 'dist', 'demo', 'demo-fleet.js');
  if (!fs.existsSync(main)) throw new StackError(`${path.relative(ROOT, main)} is missing: run "npm run build" first`);
  fs.mkdirSync(path.dirname(logFile(FLEET)), { recursive: true });
  fs.mkdirSync(path.dirname(pidFile(FLEET)), { recursive: true });
  fs.writeFileSync(logFile(FLEET), '');
  const out = fs.openSync(logFile(FLEET), 'a');
  const child = spawn(process.execPath, [main, configFile], {
    cwd: ROOT,
    detached: true,
    stdio: ['ignore', out, out],
    env: { ...process.env, NO_COLOR: '1' },
  });
  fs.closeSync(out);
  child.unref();
  pid = child.pid;
  fs.writeFileSync(pidFile(FLEET), `${pid}\n`);
  say(`fleet: started ${plan.hosts.length} simulated hosts (pid ${pid}), log ${path.relative(ROOT, logFile(FLEET))}`);
  const deadline = Date.now() + 180_000;
  for (;;) {
    const text = fs.readFileSync(logFile(FLEET), 'utf8');
    const ready = /demo fleet: ready: .*/.exec(text);
    if (ready) {
      say(`fleet: ${ready[0].replace('demo fleet: ', '')}`);
      return pid;
    }
    if (!alive(pid))
      throw new StackError(`the demo fleet exited. Last lines of ${logFile(FLEET)}:\n${tail(logFile(FLEET))}`);
    if (Date.now() > deadline)
      throw new StackError(`the demo fleet did not connect within 180 s:\n${tail(logFile(FLEET))}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

async function story(kafka, topic) {
  const running = runningPid(FLEET);
  const previous = readOr(path.join(DATA, 'story.json'), '');
  if (running !== undefined && previous) {
    // Told on this very fleet already: its hosts carry the patch, a second telling would not be true.
    say(
      `the story was already told on the running system (fleet pid ${running}); "npm run stop" first to hear it again`,
    );
    return { ...JSON.parse(previous), fleet_pid: running, retold: false };
  }
  const { demoPlan } = built('libs/testing/dist/demo/demo-plan.js');
  const { tellStory } = built('libs/testing/dist/demo/story.js');
  const releases = await demoReleases();
  say(`kernel releases of the demo fleet: ${releases.join(' (current) and ')} (previous)`);
  const plan = demoPlan(AGENTS, releases);
  const fleetPid = await startFleet(kafka, topic, plan);
  const told = await tellStory({
    pkiDir: PKI,
    builderAddress: address(byName('builder')),
    dispatcherAddress: address(byName('dispatcher')),
    ledgerAddress: address(byName('ledger')),
    releases,
    plan,
    say: tell,
    consoleUrl: consoleUrl(),
    ...(TRACING
      ? {
          tracing: {
            link: (traceId) => zipkin.traceLink(zipkin.resolveConfig().port, traceId),
          },
        }
      : {}),
  });
  const result = { ...told, stall_host: plan.stallHostId, undo_host: plan.undoHostId };
  fs.writeFileSync(path.join(DATA, 'story.json'), JSON.stringify(result, null, 2));
  tell(`\n== The story ended in ${told.seconds.toFixed(0)} s.`);
  return { ...result, fleet_pid: fleetPid };
}

/** What the operator can try now, with the environment the CLI needs to reach this stack. */
function cliHints(told) {
  // Relative to where the operator stands when that is shorter, e.g. .data/pki from the repository.
  const rel = (p) => {
    const r = path.relative(process.cwd(), p) || '.';
    return r.startsWith('..') ? p : r;
  };
  const env = [
    `export REBOOTLESS_PKI_DIR=${rel(partyDir('user-cli'))}`,
    `export REBOOTLESS_TOKEN=$(node ${rel(path.join(ROOT, 'scripts', 'pki.mjs'))} token --sub alice --roles operator,auditor --dir ${rel(PKI)})`,
  ];
  for (const svc of ['builder', 'dispatcher', 'ledger']) {
    if (byName(svc).port !== { builder: 7451, dispatcher: 7452, ledger: 7453 }[svc]) {
      env.push(`export REBOOTLESS_${svc.toUpperCase()}=${address(byName(svc))}`);
    }
  }
  const cli = `node ${rel(path.join(ROOT, 'apps', 'cli', 'dist', 'main.js'))}`;
  const commands = [
    `${cli} hosts list --label fleet=demo`,
    ...(told
      ? [
          `${cli} hosts show ${told.undo_host} --history`,
          `${cli} rollout show ${told.rollout.rolloutId} --timeline`,
          `${cli} hosts list --exposed-to CVE-2024-1086`,
          `${cli} report pci --as-of ${told.pciAfter.asOf}`,
        ]
      : []),
    `${cli} audit --from -1h`,
    `${cli} ledger verify`,
    `AGENT_CONTROL_SOCKET=${rel(agentControlSocket())} node ${rel(path.join(ROOT, 'apps', 'agent', 'dist', 'cli.js'))} status`,
  ];
  return { env, commands };
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
  // The fleet first: its agents would otherwise keep reconnecting to a dispatcher that is gone.
  for (const svc of [FLEET, CONSOLE, ...[...SERVICES].reverse(), ZIPKIN]) services.push(await stopService(svc));
  const kafka = stopKafka ? await runtime.stopBroker({ log: say, dataDir: KAFKA_DATA }) : { stopped: false };
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
  const consolePid = runningPid(CONSOLE);
  services.push({
    name: CONSOLE.name,
    address: consoleUrl(),
    pid: consolePid ?? null,
    health: consolePid ? await consoleHealth() : 'STOPPED',
  });
  const fleet = runningPid(FLEET);
  return { services, fleet: { pid: fleet ?? null, running: fleet !== undefined } };
}

async function main() {
  const command = process.argv[2];
  if (command === 'up') {
    if (!Number.isInteger(AGENTS) || AGENTS < 5) throw new StackError('--agents takes a number of hosts, 5 or more');
    let result;
    try {
      result = await up();
      if (!flags.has('--no-story')) result.story = await story({ brokers: result.brokers }, result.topic);
    } catch (err) {
      if (!flags.has('--detach'))
        await down({ stopKafka: result?.kafka_started_here ?? !process.env.KAFKA_BROKERS?.trim() }).catch(
          () => undefined,
        );
      throw err;
    }
    const hints = cliHints(result.story);
    result.cli = hints;
    if (json) process.stdout.write(JSON.stringify(result) + '\n');
    else {
      tell(`\nThe web console: ${consoleUrl()} (sign in with the token below; the CA is ${path.join(PKI, 'ca.crt')})`);
      if (result.zipkin) {
        const trace = result.story?.rollout?.trace;
        tell(`Traces: ${result.zipkin.url}${trace ? ` (the rollout's: ${trace.link})` : ''}`);
      }
      tell('\nThe system stays up for you to explore. In another terminal, from here:');
      for (const line of hints.env) tell(`  ${line}`);
      for (const line of hints.commands) tell(`  ${line}`);
    }
    if (flags.has('--detach')) return;
    say('running; press Ctrl-C to stop everything');
    // Watching the services also keeps this process (and so `npm start`) in the foreground:
    // a pending signal handler alone would not hold Node's event loop open.
    const watched = [...SERVICES, CONSOLE, ...(result.story ? [FLEET] : [])];
    const pidOf = (svc) =>
      svc === FLEET
        ? result.story.fleet_pid
        : svc === CONSOLE
          ? result.console.pid
          : result.services.find((s) => s.name === svc.name).pid;
    const stopped = await new Promise((resolve) => {
      const watch = setInterval(() => {
        const dead = watched.find((svc) => !alive(pidOf(svc)));
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
    say('everything stopped');
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
    if (!json)
      process.stdout.write(`demo fleet  pid ${r.fleet.pid ?? '-'} ${r.fleet.running ? 'RUNNING' : 'STOPPED'}\n`);
  } else {
    throw new StackError('usage: node scripts/stack.mjs <up [--detach] [--tracing]|down|status> [--json]');
  }
}

main().catch((err) => {
  const message =
    err instanceof StackError || err instanceof runtime.KafkaRuntimeError ? err.message : err.stack || String(err);
  process.stderr.write(`stack: error: ${message}\n`);
  if (json) process.stdout.write(JSON.stringify({ ok: false, error: err.message }) + '\n');
  process.exit(1);
});
