// Zipkin for `npm start -- --tracing` and the tests that read traces where people read them:
// the io.zipkin:zipkin-server exec jar from Maven Central (fetched with Maven, as the Kafka jars
// are, and cached), run with `java -jar` on a loopback port with in-memory storage. Zipkin 3.5
// takes no OTLP: the services send it spans with OTEL_TRACES_EXPORTER=zipkin (ADR 0008).
'use strict';

const { spawn } = require('node:child_process');
const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');
const path = require('node:path');
const kafka = require('./kafka-runtime.cjs');

const ZIPKIN_VERSION = '3.5.1';
const HOST = '127.0.0.1';
const JAR = `zipkin-server-${ZIPKIN_VERSION}-exec.jar`;

class ZipkinError extends Error {}

/** REBOOTLESS_ZIPKIN_CACHE (~/.cache/rebootless/zipkin-3.5.1), ZIPKIN_PORT (9411), ZIPKIN_START_TIMEOUT (s, 120). */
function resolveConfig(options = {}, env = process.env) {
  const cacheDir = path.resolve(
    options.cacheDir ||
      env.REBOOTLESS_ZIPKIN_CACHE?.trim() ||
      path.join(os.homedir(), '.cache', 'rebootless', `zipkin-${ZIPKIN_VERSION}`),
  );
  const port = Number(options.port ?? (env.ZIPKIN_PORT?.trim() || 9411));
  if (!Number.isInteger(port) || port < 1 || port > 65535)
    throw new ZipkinError(`ZIPKIN_PORT must be a TCP port 1-65535, got "${env.ZIPKIN_PORT}"`);
  const timeoutMs = Number(options.timeoutMs ?? Number(env.ZIPKIN_START_TIMEOUT?.trim() || 120) * 1000);
  return { env, cacheDir, jar: path.join(cacheDir, JAR), port, timeoutMs, log: options.log ?? (() => undefined) };
}

/** The exec jar in the cache, resolved with Maven the first time. Concurrent runs each copy to a temp name. */
async function fetchJar(options = {}) {
  const config = resolveConfig(options, options.env);
  if (fs.existsSync(config.jar)) return { fetched: false, jar: config.jar };
  const mvn = kafka.which('mvn', config.env);
  if (!mvn)
    throw new ZipkinError(
      'mvn not found on PATH: Zipkin is resolved from Maven Central with Maven (apt-get install maven)',
    );
  fs.mkdirSync(config.cacheDir, { recursive: true });
  const tmpDir = fs.mkdtempSync(path.join(config.cacheDir, 'fetch-'));
  config.log(`zipkin: resolving io.zipkin:zipkin-server:${ZIPKIN_VERSION}:exec from Maven Central (first run only)`);
  const args = [
    '-q',
    '-B',
    'org.apache.maven.plugins:maven-dependency-plugin:3.8.1:copy',
    `-Dartifact=io.zipkin:zipkin-server:${ZIPKIN_VERSION}:jar:exec`,
    `-DoutputDirectory=${tmpDir}`,
  ];
  const result = await new Promise((resolve) => {
    // dependency:copy needs no project: run it where no pom.xml is found.
    const child = spawn(mvn, args, { cwd: tmpDir, env: config.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('exit', (code) => resolve({ code, output }));
  });
  try {
    if (result.code !== 0)
      throw new ZipkinError(
        `mvn dependency:copy of zipkin-server ${ZIPKIN_VERSION} failed (exit ${result.code}):\n${result.output.trim()}`,
      );
    fs.renameSync(path.join(tmpDir, JAR), config.jar);
  } finally {
    fs.rmSync(tmpDir, { recursive: true, force: true });
  }
  return { fetched: true, jar: config.jar };
}

function get(url, timeoutMs = 2000) {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('timeout', () => req.destroy(new Error(`no answer from ${url} in ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** UP when /health says so. */
async function healthy(port) {
  try {
    const { status, body } = await get(`http://${HOST}:${port}/health`);
    return status === 200 && JSON.parse(body).status === 'UP';
  } catch {
    return false;
  }
}

/**
 * Starts Zipkin (detached, its output in `logFile`) and waits until /health says UP. Returns the
 * pid and the URLs: the UI, and the spans endpoint the services send to.
 */
async function startZipkin(options = {}) {
  const config = resolveConfig(options, options.env);
  const java = kafka.which('java', config.env);
  if (!java)
    throw new ZipkinError('java not found on PATH: Zipkin runs on Java 17 (apt-get install openjdk-17-jre-headless)');
  await kafka.assertPortFree(config.port, 'ZIPKIN_PORT');
  const { jar } = await fetchJar(options);
  const logFile = options.logFile ?? path.join(os.tmpdir(), `rebootless-zipkin-${config.port}.log`);
  fs.mkdirSync(path.dirname(logFile), { recursive: true });
  const out = fs.openSync(logFile, 'a');
  const child = spawn(
    java,
    [
      '-Xms64m',
      '-Xmx512m',
      '-jar',
      jar,
      // Loopback only: the spans and the UI are for whoever runs the stack on this machine.
      `--armeria.ports[0].ip=${HOST}`,
      `--armeria.ports[0].port=${config.port}`,
      '--armeria.ports[0].protocols=http',
    ],
    {
      detached: options.detached ?? true,
      stdio: ['ignore', out, out],
      env: { ...config.env, STORAGE_TYPE: 'mem', SELF_TRACING_ENABLED: 'false' },
    },
  );
  fs.closeSync(out);
  if (options.detached ?? true) child.unref();
  const deadline = Date.now() + config.timeoutMs;
  while (!(await healthy(config.port))) {
    if (child.exitCode !== null || child.signalCode !== null)
      throw new ZipkinError(
        `zipkin exited (${child.exitCode ?? child.signalCode}) before answering /health; see ${logFile}`,
      );
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new ZipkinError(`zipkin did not answer /health within ${config.timeoutMs / 1000} s; see ${logFile}`);
    }
    await new Promise((r) => setTimeout(r, 500));
  }
  return { pid: child.pid, child, ...urls(config.port), logFile };
}

function urls(port) {
  const base = `http://${HOST}:${port}`;
  return { port, url: `${base}/zipkin/`, spansEndpoint: `${base}/api/v2/spans` };
}

/** Where a person looks at one trace. */
function traceLink(port, traceId) {
  return `http://${HOST}:${port}/zipkin/traces/${traceId}`;
}

/** One trace's spans through Zipkin's API ([] while Zipkin has none of it). */
async function fetchTrace(port, traceId) {
  const { status, body } = await get(`http://${HOST}:${port}/api/v2/trace/${traceId}`);
  if (status === 404) return [];
  if (status !== 200) throw new ZipkinError(`GET /api/v2/trace/${traceId}: HTTP ${status}: ${body}`);
  return JSON.parse(body);
}

/** The environment that points a service (or the CLI, or an agent) at this Zipkin. */
function tracingEnv(port) {
  return {
    OTEL_TRACES_EXPORTER: 'zipkin',
    OTEL_EXPORTER_ZIPKIN_ENDPOINT: urls(port).spansEndpoint,
    // Spans show up within a second rather than the default five.
    OTEL_BSP_SCHEDULE_DELAY: '1000',
  };
}

module.exports = {
  ZIPKIN_VERSION,
  ZipkinError,
  resolveConfig,
  fetchJar,
  startZipkin,
  healthy,
  traceLink,
  fetchTrace,
  tracingEnv,
  urls,
};
