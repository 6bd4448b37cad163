'use strict';
// A real Apache Kafka broker for development and tests, without Docker or a tarball
// (DESIGN.md section 6, /work/shared/KAFKA.md):
//   fetch  - resolve the Kafka 3.9.1 broker jars from Maven Central with Maven into a cache dir
//   start  - write server.properties, format KRaft storage once, start one broker+controller on
//            127.0.0.1 as a plain `java` process, wait until it answers, write a PID file
//   stop   - SIGTERM by PID, SIGKILL after a timeout
//   status - is the broker of a data dir running and answering
// CommonJS with node built-ins only, so that scripts/kafka.mjs (the CLI) and the Jest global setup
// (libs/testing/src/jest-global-setup.ts) share it without a build step.

const { spawn, spawnSync } = require('node:child_process');
const crypto = require('node:crypto');
const fs = require('node:fs');
const net = require('node:net');
const os = require('node:os');
const path = require('node:path');

const KAFKA_VERSION = '3.9.1';
const HOST = '127.0.0.1';
const REPO_ROOT = path.resolve(__dirname, '..');
const POM_FILE = path.join(__dirname, 'kafka', 'pom.xml');
const LOG4J_FILE = path.join(__dirname, 'kafka', 'log4j.properties');
const STARTED_LINE = 'Kafka Server started';
const DEFAULT_PORT = 9092;
const DEFAULT_CONTROLLER_PORT = 9093;
const DEFAULT_START_TIMEOUT_MS = 60_000;
const DEFAULT_STOP_TIMEOUT_MS = 20_000;
const MARKER = '.complete';

class KafkaRuntimeError extends Error {
  constructor(message, details) {
    super(message);
    this.name = 'KafkaRuntimeError';
    if (details !== undefined) this.details = details;
  }
}

const noop = () => undefined;
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const seconds = (ms) => `${(ms / 1000).toFixed(1)} s`;

function parsePort(value, name) {
  const text = String(value).trim();
  const port = Number(text);
  if (!/^\d+$/.test(text) || !Number.isInteger(port) || port < 1 || port > 65535) {
    throw new KafkaRuntimeError(`${name} must be a TCP port number (1-65535), got "${value}"`);
  }
  return port;
}

function envOr(env, name, fallback) {
  const value = env[name];
  return value === undefined || value.trim() === '' ? fallback : value;
}

/**
 * Resolves every path and port from explicit options, then the environment, then defaults:
 * REBOOTLESS_KAFKA_CACHE, KAFKA_DATA_DIR, KAFKA_PORT, KAFKA_CONTROLLER_PORT, KAFKA_START_TIMEOUT (seconds),
 * KAFKA_HEAP_OPTS.
 */
function resolveConfig(options = {}) {
  const env = options.env || process.env;
  const cacheDir = path.resolve(
    options.cacheDir ||
      envOr(env, 'REBOOTLESS_KAFKA_CACHE', path.join(os.homedir(), '.cache', 'rebootless', `kafka-${KAFKA_VERSION}`)),
  );
  const dataDir = path.resolve(options.dataDir || envOr(env, 'KAFKA_DATA_DIR', path.join(REPO_ROOT, '.data', 'kafka')));
  const port = parsePort(options.port ?? envOr(env, 'KAFKA_PORT', DEFAULT_PORT), 'KAFKA_PORT');
  const controllerPort = parsePort(
    options.controllerPort ?? envOr(env, 'KAFKA_CONTROLLER_PORT', DEFAULT_CONTROLLER_PORT),
    'KAFKA_CONTROLLER_PORT',
  );
  if (port === controllerPort) {
    throw new KafkaRuntimeError(`KAFKA_PORT and KAFKA_CONTROLLER_PORT must differ (both are ${port})`);
  }
  let timeoutMs = options.timeoutMs;
  if (timeoutMs === undefined) {
    const raw = envOr(env, 'KAFKA_START_TIMEOUT', String(DEFAULT_START_TIMEOUT_MS / 1000));
    const secs = Number(raw);
    if (!Number.isFinite(secs) || secs <= 0) {
      throw new KafkaRuntimeError(`KAFKA_START_TIMEOUT must be a positive number of seconds, got "${raw}"`);
    }
    timeoutMs = secs * 1000;
  }
  return {
    env,
    version: KAFKA_VERSION,
    host: HOST,
    cacheDir,
    libDir: path.join(cacheDir, 'lib'),
    dataDir,
    logDirs: path.join(dataDir, 'logs'),
    propsFile: path.join(dataDir, 'server.properties'),
    logFile: path.join(dataDir, 'kafka.log'),
    pidFile: path.join(dataDir, 'kafka.pid'),
    port,
    controllerPort,
    brokers: `${HOST}:${port}`,
    timeoutMs,
    stopTimeoutMs: options.stopTimeoutMs ?? DEFAULT_STOP_TIMEOUT_MS,
    heapOpts: envOr(env, 'KAFKA_HEAP_OPTS', '-Xms256m -Xmx512m').split(/\s+/).filter(Boolean),
    detached: options.detached ?? true,
    log: options.log || noop,
    node: options.node,
    clusterId: options.clusterId,
  };
}

// ---------------------------------------------------------------------------------------------
// Tools

/** Absolute path of an executable on PATH (or null). */
function which(command, env = process.env) {
  const dirs = (env.PATH || '').split(path.delimiter).filter(Boolean);
  const exts = process.platform === 'win32' ? (env.PATHEXT || '.EXE;.CMD;.BAT').split(';') : [''];
  for (const dir of dirs) {
    for (const ext of exts) {
      const candidate = path.join(dir, command + ext);
      try {
        fs.accessSync(candidate, fs.constants.X_OK);
        if (fs.statSync(candidate).isFile()) return candidate;
      } catch {
        // not here
      }
    }
  }
  return null;
}

function requireTool(command, env, why) {
  const found = which(command, env);
  if (!found) {
    throw new KafkaRuntimeError(
      `${command} not found on PATH: ${why}. Install it (Debian: ${
        command === 'java' ? 'apt-get install openjdk-17-jre-headless' : 'apt-get install maven'
      }) or set KAFKA_BROKERS to use an existing Kafka cluster instead.`,
    );
  }
  return found;
}

function requireJava(env) {
  const java = requireTool('java', env, 'the Kafka broker runs on Java 17 (11 at least)');
  const result = spawnSync(java, ['-version'], { encoding: 'utf8', env });
  const text = `${result.stderr || ''}${result.stdout || ''}`;
  const match = /version "(\d+)(?:\.(\d+))?/.exec(text);
  if (result.status !== 0 || !match) {
    throw new KafkaRuntimeError(`${java} -version failed: ${text.trim() || result.error?.message || 'no output'}`);
  }
  const major = match[1] === '1' ? Number(match[2]) : Number(match[1]);
  if (major < 11) {
    throw new KafkaRuntimeError(
      `Kafka ${KAFKA_VERSION} needs Java 11 or newer (17 recommended); ${java} is Java ${major}`,
    );
  }
  return java;
}

// ---------------------------------------------------------------------------------------------
// fetch

function pomHash() {
  return crypto.createHash('sha256').update(fs.readFileSync(POM_FILE)).digest('hex');
}

function readMarker(cacheDir) {
  try {
    return JSON.parse(fs.readFileSync(path.join(cacheDir, MARKER), 'utf8'));
  } catch {
    return null;
  }
}

function isFetched(config) {
  const marker = readMarker(config.cacheDir);
  return Boolean(marker && marker.pom === pomHash() && fs.existsSync(config.libDir));
}

function listJars(libDir) {
  return fs.readdirSync(libDir).filter((name) => name.endsWith('.jar'));
}

/**
 * Resolves the broker's runtime jars with Maven into <cacheDir>/lib. Idempotent: a marker file
 * (holding the pom's hash) says a previous fetch completed. Safe against concurrent runs: Maven
 * writes into a private temporary directory that is renamed into place.
 */
async function fetchJars(options = {}) {
  const config = resolveConfig(options);
  const { log, env, cacheDir, libDir } = config;
  if (isFetched(config)) {
    const jars = listJars(libDir);
    return { fetched: false, cacheDir, libDir, jars: jars.length, ms: 0 };
  }
  const mvn = requireTool('mvn', env, `the Kafka ${KAFKA_VERSION} jars are resolved from Maven Central with Maven`);
  const started = Date.now();
  fs.mkdirSync(cacheDir, { recursive: true });
  const tmpDir = path.join(cacheDir, `lib.tmp-${process.pid}-${Date.now()}`);
  log(
    `kafka: resolving Apache Kafka ${KAFKA_VERSION} jars from Maven Central with Maven (first run only) into ${libDir}`,
  );
  const args = [
    '-B',
    '-q',
    '-f',
    POM_FILE,
    'dependency:copy-dependencies',
    '-DincludeScope=runtime',
    `-DoutputDirectory=${tmpDir}`,
  ];
  const result = await new Promise((resolve) => {
    const child = spawn(mvn, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    const collect = (chunk) => {
      output = (output + chunk.toString()).slice(-20_000);
    };
    child.stdout.on('data', collect);
    child.stderr.on('data', collect);
    const ticker = setInterval(() => log(`kafka: still resolving jars (${seconds(Date.now() - started)})`), 10_000);
    child.on('error', (error) => {
      clearInterval(ticker);
      resolve({ code: -1, output: `${output}\n${error.message}` });
    });
    child.on('close', (code) => {
      clearInterval(ticker);
      resolve({ code, output });
    });
  });
  if (result.code !== 0) {
    fs.rmSync(tmpDir, { recursive: true, force: true });
    throw new KafkaRuntimeError(
      `mvn dependency:copy-dependencies failed (exit ${result.code}) resolving Kafka ${KAFKA_VERSION} from ${POM_FILE}:\n${result.output.trim()}`,
    );
  }
  const jars = listJars(tmpDir);
  if (!jars.some((name) => name.startsWith('kafka_2.13-')) || !jars.some((name) => name.startsWith('reload4j-'))) {
    fs.rmSync(tmpDir, { recursive: true, force: true });
    throw new KafkaRuntimeError(`mvn finished but ${tmpDir} lacks the kafka_2.13 or reload4j jar: ${jars.join(', ')}`);
  }
  if (isFetched(config)) {
    // Another process finished first; keep its copy.
    fs.rmSync(tmpDir, { recursive: true, force: true });
  } else {
    fs.rmSync(libDir, { recursive: true, force: true });
    fs.renameSync(tmpDir, libDir);
    fs.writeFileSync(
      path.join(cacheDir, MARKER),
      `${JSON.stringify({ version: KAFKA_VERSION, pom: pomHash(), jars: jars.length, at: new Date().toISOString() })}\n`,
    );
  }
  const ms = Date.now() - started;
  log(`kafka: ${jars.length} jars in ${libDir} (${seconds(ms)})`);
  return { fetched: true, cacheDir, libDir, jars: jars.length, ms };
}

// ---------------------------------------------------------------------------------------------
// Processes and ports

function processState(pid) {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return error.code === 'EPERM' ? 'alive' : 'dead';
  }
  try {
    // A zombie (exited, not yet reaped) still answers kill(pid, 0).
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    if (/\) Z /.test(stat)) return 'dead';
  } catch {
    // no /proc: trust kill(pid, 0)
  }
  return 'alive';
}

/** True when pid is alive and (where /proc exists) is a Kafka broker JVM, not a reused PID. */
function isKafkaProcess(pid) {
  if (processState(pid) !== 'alive') return false;
  try {
    return fs.readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes('kafka.Kafka');
  } catch {
    return true;
  }
}

function readPid(pidFile) {
  try {
    const pid = Number(fs.readFileSync(pidFile, 'utf8').trim());
    return Number.isInteger(pid) && pid > 0 ? pid : null;
  } catch {
    return null;
  }
}

/** Fails with a clear message when something already listens on host:port. */
function assertPortFree(port, name, host = HOST) {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', (error) => {
      if (error.code === 'EADDRINUSE') {
        reject(
          new KafkaRuntimeError(
            `port ${port} on ${host} is already in use (${name}): another process is listening there. ` +
              `Stop it, choose another port with ${name}=<port>, or set KAFKA_BROKERS to use an existing cluster.`,
          ),
        );
      } else {
        reject(new KafkaRuntimeError(`cannot listen on ${host}:${port} (${name}): ${error.message}`));
      }
    });
    server.listen({ port, host, exclusive: true }, () => server.close(() => resolve()));
  });
}

/** `count` distinct free TCP ports on 127.0.0.1 (held open together so they differ). */
async function findFreePorts(count = 1, host = HOST) {
  const servers = [];
  try {
    for (let i = 0; i < count; i += 1) {
      const server = net.createServer();
      await new Promise((resolve, reject) => {
        server.once('error', reject);
        server.listen({ port: 0, host, exclusive: true }, resolve);
      });
      servers.push(server);
    }
    return servers.map((server) => server.address().port);
  } finally {
    await Promise.all(servers.map((server) => new Promise((resolve) => server.close(() => resolve()))));
  }
}

/**
 * Sends a Kafka ApiVersions v0 request and resolves true when the broker answers it without an
 * error code: the broker's request handling works, not just its socket.
 */
function probeApiVersions(port, host = HOST, timeoutMs = 2000) {
  return new Promise((resolve) => {
    const correlationId = crypto.randomInt(1, 2 ** 31 - 1);
    const clientId = Buffer.from('rebootless-kafka-probe');
    const header = Buffer.alloc(2 + 2 + 4 + 2);
    header.writeInt16BE(18, 0); // api_key ApiVersions
    header.writeInt16BE(0, 2); // api_version 0
    header.writeInt32BE(correlationId, 4);
    header.writeInt16BE(clientId.length, 8);
    const body = Buffer.concat([header, clientId]);
    const size = Buffer.alloc(4);
    size.writeInt32BE(body.length, 0);

    let received = Buffer.alloc(0);
    let settled = false;
    const socket = net.connect({ port, host });
    const finish = (ok) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => finish(false), timeoutMs);
    socket.once('error', () => finish(false));
    socket.once('close', () => finish(false));
    socket.once('connect', () => socket.write(Buffer.concat([size, body])));
    socket.on('data', (chunk) => {
      received = Buffer.concat([received, chunk]);
      if (received.length < 4) return;
      const length = received.readInt32BE(0);
      if (received.length < 4 + length) return;
      // Response header v0 (correlation_id), then error_code and the api_keys array.
      const ok =
        length >= 10 &&
        received.readInt32BE(4) === correlationId &&
        received.readInt16BE(8) === 0 &&
        received.readInt32BE(10) > 0;
      finish(ok);
    });
  });
}

function logTail(logFile, lines = 40) {
  try {
    const text = fs.readFileSync(logFile, 'utf8').trimEnd().split('\n');
    return text.slice(-lines).join('\n');
  } catch {
    return '(no broker log)';
  }
}

function logSaysStarted(logFile) {
  try {
    return fs.readFileSync(logFile, 'utf8').includes(STARTED_LINE);
  } catch {
    return false;
  }
}

function readConfiguredPort(propsFile) {
  try {
    const match = /^listeners=PLAINTEXT:\/\/[^:]+:(\d+)/m.exec(fs.readFileSync(propsFile, 'utf8'));
    return match ? Number(match[1]) : null;
  } catch {
    return null;
  }
}

// ---------------------------------------------------------------------------------------------
// start

/**
 * A node's place in a cluster: its id, every controller (`id@host:port`) and how many replicas
 * internal topics get. A lone development broker is node 1 of 1.
 */
function nodeOf(config) {
  return config.node || { id: 1, voters: `1@${config.host}:${config.controllerPort}`, size: 1 };
}

function serverProperties(config) {
  const { host, port, controllerPort, logDirs } = config;
  const node = nodeOf(config);
  // A cluster keeps 3 copies and refuses a write that fewer than 2 replicas hold (acks=all);
  // a single node can only keep one.
  const replicas = Math.min(node.size, 3);
  const minIsr = node.size >= 3 ? 2 : 1;
  return [
    '# Written by scripts/kafka.mjs on every start; edit the script, not this file.',
    node.size === 1
      ? '# Single combined KRaft broker+controller on loopback for development and tests.'
      : `# Node ${node.id} of a ${node.size}-node KRaft cluster on loopback (each node broker+controller).`,
    'process.roles=broker,controller',
    `node.id=${node.id}`,
    `controller.quorum.voters=${node.voters}`,
    `listeners=PLAINTEXT://${host}:${port},CONTROLLER://${host}:${controllerPort}`,
    `advertised.listeners=PLAINTEXT://${host}:${port}`,
    'controller.listener.names=CONTROLLER',
    'inter.broker.listener.name=PLAINTEXT',
    'listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT',
    `log.dirs=${logDirs}`,
    '',
    '# Event sourcing: topics are created explicitly (scripts/kafka.mjs topic), history is kept forever.',
    'auto.create.topics.enable=false',
    'log.retention.ms=-1',
    'log.retention.bytes=-1',
    'log.cleanup.policy=delete',
    '# Idle consumer groups keep their committed offsets (10 years).',
    'offsets.retention.minutes=5256000',
    '',
    `# Replication: ${replicas} replica(s), writes need ${minIsr} in sync.`,
    'num.partitions=1',
    `default.replication.factor=${replicas}`,
    `min.insync.replicas=${minIsr}`,
    `offsets.topic.replication.factor=${replicas}`,
    `transaction.state.log.replication.factor=${replicas}`,
    `transaction.state.log.min.isr=${minIsr}`,
    '# An out-of-sync replica never becomes leader: an acknowledged event is never lost.',
    'unclean.leader.election.enable=false',
    // A replica silent for 10 s leaves the in-sync set, so acks=all writes go on without it.
    ...(node.size > 1 ? ['replica.lag.time.max.ms=10000'] : []),
    'group.initial.rebalance.delay.ms=0',
    '',
  ].join('\n');
}

function formatStorage(config, java, classpath) {
  if (fs.existsSync(path.join(config.logDirs, 'meta.properties'))) return false;
  // base64url may start with '-', which kafka-storage's argument parser takes for an option.
  let clusterId = config.clusterId;
  while (!clusterId || clusterId.startsWith('-')) clusterId = crypto.randomBytes(16).toString('base64url');
  config.log(`kafka: formatting KRaft storage in ${config.logDirs} (cluster id ${clusterId})`);
  const result = spawnSync(
    java,
    [
      `-Dlog4j.configuration=file:${LOG4J_FILE}`,
      '-cp',
      classpath,
      'kafka.tools.StorageTool',
      'format',
      '--cluster-id',
      clusterId,
      '--config',
      config.propsFile,
      '--ignore-formatted',
    ],
    { encoding: 'utf8', env: config.env },
  );
  if (result.status !== 0) {
    const output = `${result.stdout || ''}${result.stderr || ''}`.trim().split('\n').slice(-30).join('\n');
    throw new KafkaRuntimeError(`kafka.tools.StorageTool format failed (exit ${result.status}):\n${output}`);
  }
  return true;
}

function javaArgs(config, classpath) {
  return [
    ...config.heapOpts,
    '-server',
    '-XX:+UseG1GC',
    '-XX:MaxGCPauseMillis=20',
    '-XX:InitiatingHeapOccupancyPercent=35',
    '-XX:+ExplicitGCInvokesConcurrent',
    '-XX:MaxInlineLevel=15',
    '-Djava.awt.headless=true',
    `-Dlog4j.configuration=file:${LOG4J_FILE}`,
    `-Dkafka.logs.dir=${config.dataDir}`,
    '-cp',
    classpath,
    'kafka.Kafka',
    config.propsFile,
  ];
}

/** Waits until the log says started and an ApiVersions request is answered; fails early if the JVM exits. */
async function waitUntilReady(config, pid, exited) {
  const deadline = Date.now() + config.timeoutMs;
  let lastNote = Date.now();
  while (Date.now() < deadline) {
    if (exited.code !== undefined || processState(pid) === 'dead') {
      throw new KafkaRuntimeError(
        `Kafka broker (pid ${pid}) exited during startup${
          exited.code !== undefined ? ` with ${exited.signal ? `signal ${exited.signal}` : `code ${exited.code}`}` : ''
        }; last lines of ${config.logFile}:\n${logTail(config.logFile)}`,
      );
    }
    if (logSaysStarted(config.logFile) && (await probeApiVersions(config.port, config.host, 1000))) return;
    if (Date.now() - lastNote >= 10_000) {
      lastNote = Date.now();
      config.log(`kafka: still waiting for the broker on ${config.brokers}`);
    }
    await sleep(200);
  }
  throw new KafkaRuntimeError(
    `Kafka broker (pid ${pid}) was not ready on ${config.brokers} within ${seconds(config.timeoutMs)} ` +
      `(KAFKA_START_TIMEOUT); it was stopped. Last lines of ${config.logFile}:\n${logTail(config.logFile)}`,
  );
}

/**
 * Starts the broker of a data dir and resolves when it serves. If this data dir's broker is
 * already running and answering, resolves with alreadyRunning: true.
 * Options (all optional): port, controllerPort, dataDir, cacheDir, timeoutMs, detached (default true;
 * false keeps the JVM in the caller's process group, so Ctrl-C of a test run also stops it), log, env.
 */
async function startBroker(options = {}) {
  const config = resolveConfig(options);
  const { log } = config;
  const started = Date.now();

  const existing = readPid(config.pidFile);
  if (existing !== null) {
    if (isKafkaProcess(existing)) {
      const runningPort = readConfiguredPort(config.propsFile);
      if (runningPort !== null && runningPort !== config.port) {
        throw new KafkaRuntimeError(
          `the broker of ${config.dataDir} is already running (pid ${existing}) on port ${runningPort}, not ${config.port}; stop it first`,
        );
      }
      log(`kafka: a broker started by this script is already running (pid ${existing}); checking it answers`);
      await waitUntilReady(config, existing, {});
      return { ...summary(config, existing), alreadyRunning: true, ms: Date.now() - started };
    }
    fs.rmSync(config.pidFile, { force: true }); // stale
  }

  const java = requireJava(config.env);
  await assertPortFree(config.port, 'KAFKA_PORT');
  await assertPortFree(config.controllerPort, 'KAFKA_CONTROLLER_PORT');
  await fetchJars(config);

  fs.mkdirSync(config.logDirs, { recursive: true });
  fs.writeFileSync(config.propsFile, serverProperties(config));
  const classpath = `${config.libDir}${path.sep}*`;
  formatStorage(config, java, classpath);

  if (fs.existsSync(config.logFile)) fs.renameSync(config.logFile, `${config.logFile}.prev`);
  const out = fs.openSync(config.logFile, 'a');
  log(
    `kafka: starting Kafka ${KAFKA_VERSION} on ${config.brokers} (controller ${config.host}:${config.controllerPort}), log ${config.logFile}`,
  );
  const exited = {};
  let child;
  try {
    child = spawn(java, javaArgs(config, classpath), {
      cwd: config.dataDir,
      env: config.env,
      detached: config.detached,
      stdio: ['ignore', out, out],
    });
  } finally {
    fs.closeSync(out);
  }
  const spawnError = await new Promise((resolve) => {
    child.once('error', resolve);
    child.once('spawn', () => resolve(null));
  });
  if (spawnError) throw new KafkaRuntimeError(`could not start ${java}: ${spawnError.message}`);
  child.once('exit', (code, signal) => Object.assign(exited, { code, signal }));
  child.unref();
  fs.writeFileSync(config.pidFile, `${child.pid}\n`);

  try {
    await waitUntilReady(config, child.pid, exited);
  } catch (error) {
    await stopPid(config, child.pid);
    fs.rmSync(config.pidFile, { force: true });
    throw error;
  }
  const ms = Date.now() - started;
  log(`kafka: ready on ${config.brokers} (pid ${child.pid}, ${seconds(ms)})`);
  return { ...summary(config, child.pid), alreadyRunning: false, ms };
}

function summary(config, pid) {
  return {
    brokers: config.brokers,
    pid,
    port: config.port,
    controllerPort: config.controllerPort,
    dataDir: config.dataDir,
    logFile: config.logFile,
    pidFile: config.pidFile,
  };
}

// ---------------------------------------------------------------------------------------------
// stop and status

async function waitForExit(pid, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (processState(pid) === 'dead') return true;
    await sleep(100);
  }
  return processState(pid) === 'dead';
}

async function stopPid(config, pid) {
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    return { forced: false };
  }
  if (await waitForExit(pid, config.stopTimeoutMs)) return { forced: false };
  config.log(`kafka: broker (pid ${pid}) did not stop within ${seconds(config.stopTimeoutMs)}; sending SIGKILL`);
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // already gone
  }
  if (!(await waitForExit(pid, 5000))) throw new KafkaRuntimeError(`Kafka broker (pid ${pid}) survived SIGKILL`);
  return { forced: true };
}

/** Stops the broker of a data dir by its PID file; quietly succeeds when none is running. */
async function stopBroker(options = {}) {
  const config = resolveConfig(options);
  const pid = readPid(config.pidFile);
  if (pid === null || !isKafkaProcess(pid)) {
    fs.rmSync(config.pidFile, { force: true });
    return { stopped: false, pid: null, forced: false, dataDir: config.dataDir, ms: 0 };
  }
  const started = Date.now();
  config.log(`kafka: stopping broker (pid ${pid})`);
  const { forced } = await stopPid(config, pid);
  fs.rmSync(config.pidFile, { force: true });
  return { stopped: true, pid, forced, dataDir: config.dataDir, ms: Date.now() - started };
}

/** Whether the broker of a data dir is running (PID file + live JVM) and answering on its port. */
async function brokerStatus(options = {}) {
  const config = resolveConfig(options);
  const pid = readPid(config.pidFile);
  const running = pid !== null && isKafkaProcess(pid);
  const port = (running && readConfiguredPort(config.propsFile)) || config.port;
  const ready = running ? await probeApiVersions(port, config.host) : false;
  return {
    running,
    ready,
    pid: running ? pid : null,
    port,
    brokers: `${config.host}:${port}`,
    dataDir: config.dataDir,
    logFile: config.logFile,
    fetched: isFetched(config),
    cacheDir: config.cacheDir,
  };
}

// ---------------------------------------------------------------------------------------------
// A three-node cluster on loopback (DESIGN.md section 9): the fault tests' and the scale-out
// stack's Kafka. Every node is broker and controller; node i listens on base+i-1 and its
// controller on base+100+i-1, with its own data dir under one cluster dir.

const DEFAULT_CLUSTER_BASE_PORT = 19092;

/**
 * Where each node of the cluster lives. Options: size (3), basePort or KAFKA_CLUSTER_BASE_PORT
 * (19092), ports ([{ port, controllerPort }], overrides basePort), dataDir or KAFKA_CLUSTER_DATA_DIR
 * (<repo>/.data/kafka-cluster).
 */
function clusterLayout(options = {}) {
  const env = options.env || process.env;
  const size = options.size ?? 3;
  if (!Number.isInteger(size) || size < 1)
    throw new KafkaRuntimeError(`a cluster needs a positive node count, got ${size}`);
  const base = parsePort(
    options.basePort ?? envOr(env, 'KAFKA_CLUSTER_BASE_PORT', DEFAULT_CLUSTER_BASE_PORT),
    'KAFKA_CLUSTER_BASE_PORT',
  );
  const ports =
    options.ports ?? Array.from({ length: size }, (_, i) => ({ port: base + i, controllerPort: base + 100 + i }));
  if (ports.length !== size) throw new KafkaRuntimeError(`${size} nodes need ${size} port pairs, got ${ports.length}`);
  const dataDir = path.resolve(
    options.dataDir || envOr(env, 'KAFKA_CLUSTER_DATA_DIR', path.join(REPO_ROOT, '.data', 'kafka-cluster')),
  );
  const nodes = ports.map((p, i) => ({ id: i + 1, ...p, dataDir: path.join(dataDir, `node-${i + 1}`) }));
  return {
    size,
    dataDir,
    nodes,
    voters: nodes.map((n) => `${n.id}@${HOST}:${n.controllerPort}`).join(','),
    brokers: nodes.map((n) => `${HOST}:${n.port}`).join(','),
  };
}

/** The cluster's id, chosen once and kept beside the nodes' data dirs: all nodes format with it. */
function clusterId(layout) {
  const file = path.join(layout.dataDir, 'cluster-id');
  if (!fs.existsSync(file)) {
    let id;
    do id = crypto.randomBytes(16).toString('base64url');
    while (id.startsWith('-'));
    fs.mkdirSync(layout.dataDir, { recursive: true });
    fs.writeFileSync(file, `${id}\n`);
  }
  return fs.readFileSync(file, 'utf8').trim();
}

function nodeOptions(layout, node, options) {
  return {
    ...options,
    port: node.port,
    controllerPort: node.controllerPort,
    dataDir: node.dataDir,
    node: { id: node.id, voters: layout.voters, size: layout.size },
    clusterId: clusterId(layout),
  };
}

/** Starts (or restarts) one node of the cluster by its id (1-based) and resolves when it serves. */
async function startClusterNode(options, id) {
  const layout = clusterLayout(options);
  const node = layout.nodes.find((n) => n.id === id);
  if (!node) throw new KafkaRuntimeError(`the cluster has nodes 1..${layout.size}, not ${id}`);
  return { id, ...(await startBroker(nodeOptions(layout, node, options))) };
}

/**
 * Starts every node at once (a node's broker is not ready before a majority of controllers is
 * up) and resolves when all serve; on any failure stops the ones that started.
 */
async function startCluster(options = {}) {
  const layout = clusterLayout(options);
  const started = Date.now();
  await fetchJars(resolveConfig(options)); // once, before the nodes race for the cache
  const results = await Promise.allSettled(layout.nodes.map((n) => startClusterNode(options, n.id)));
  const failed = results.find((r) => r.status === 'rejected');
  if (failed) {
    await stopCluster(options).catch(() => undefined);
    throw failed.reason;
  }
  const ms = Date.now() - started;
  (options.log || noop)(`kafka: ${layout.size}-node cluster ready on ${layout.brokers} (${seconds(ms)})`);
  return { brokers: layout.brokers, dataDir: layout.dataDir, nodes: results.map((r) => r.value), ms };
}

/** Stops every node that runs (SIGTERM, SIGKILL after a timeout); quietly succeeds when none does. */
async function stopCluster(options = {}) {
  const layout = clusterLayout(options);
  const nodes = await Promise.all(
    layout.nodes.map(async (n) => ({ id: n.id, ...(await stopBroker(nodeOptions(layout, n, options))) })),
  );
  return { dataDir: layout.dataDir, nodes };
}

async function clusterStatus(options = {}) {
  const layout = clusterLayout(options);
  const nodes = await Promise.all(
    layout.nodes.map(async (n) => ({ id: n.id, ...(await brokerStatus(nodeOptions(layout, n, options))) })),
  );
  return { brokers: layout.brokers, dataDir: layout.dataDir, nodes };
}

module.exports = {
  KAFKA_VERSION,
  REPO_ROOT,
  KafkaRuntimeError,
  resolveConfig,
  fetchJars,
  startBroker,
  stopBroker,
  brokerStatus,
  clusterLayout,
  startCluster,
  startClusterNode,
  stopCluster,
  clusterStatus,
  probeApiVersions,
  findFreePorts,
  assertPortFree,
  which,
};
