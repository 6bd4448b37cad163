// npm run bench:telemetry — what tracing costs a service: process start-up (loading the SDK and
// the instrumented modules), publishing signed events with EventPublisher, and consuming them
// with runConsumer, each with tracing off (no OTEL_EXPORTER_OTLP_ENDPOINT) and on (exporting
// http/protobuf to an OTLP receiver in this process), and the ledger's projection span per
// record. Each measurement runs in a fresh child process: instrumentation patches modules as
// they load, so one process cannot hold both.
// Prints progress on stderr and one JSON object as the last line of stdout; writes it to
// bench/results/telemetry-<date>.json. Settings: BENCH_EVENTS (default 20000), BENCH_ROUNDS (5),
// KAFKA_BROKERS (default the development broker, `npm run kafka:start`).
import { execFile } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { ensureEventsTopic, kafkaBrokersFromEnv } from '@rebootless/kafka';
import { devTopicDurability } from '../kafka';
import { OtlpReceiver } from '../otlp-receiver';
import { REPO_ROOT } from '../process';
import { machineFacts } from './machine';

const EVENTS = Number(process.env['BENCH_EVENTS'] ?? 20_000);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 5);
const BATCH = 1_000;

const say = (line: string) => process.stderr.write(`bench:telemetry: ${line}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

// Loads what a service loads, in a service's order, and says how long it took.
const STARTUP = `
const t0 = process.hrtime.bigint();
require('@rebootless/telemetry').startTelemetry('bench');
require('@grpc/grpc-js'); require('kafkajs'); require('@nestjs/core'); require('@nestjs/microservices');
process.stdout.write(JSON.stringify({ ms: Number(process.hrtime.bigint() - t0) / 1e6 }));
`;

// Publishes EVENTS signed events in batches of BATCH, two batches under way at a time.
const PUBLISH = `
const { startTelemetry, shutdownTelemetry } = require('@rebootless/telemetry');
startTelemetry('bench');
const { EventPublisher, kafkaClient } = require('@rebootless/kafka');
(async () => {
  const kafka = kafkaClient(process.env.BROKERS.split(','), 'bench-telemetry');
  const publisher = await EventPublisher.open({ kafka, producerId: 'bench', stateDir: process.env.STATE_DIR, topic: process.env.TOPIC });
  const total = Number(process.env.EVENTS), batch = ${BATCH};
  const drafts = (from) => Array.from({ length: Math.min(batch, total - from) }, (_, i) => ({
    stream: 'host/h' + ((from + i) % 500),
    payload: { type: 'PatchApplied', data: {
      hostId: 'h' + ((from + i) % 500), commandId: 'c' + (from + i), patchId: 'cve-2024-1086-fix', version: '1.0.0',
      moduleName: 'livepatch_cve_2024_1086', transitionMs: '1200', forced: false, replace: true,
      functions: [{ object: 'vmlinux', name: 'nft_verdict_init', sympos: 0 }], stack: [],
    } },
  }));
  const t0 = process.hrtime.bigint();
  const running = new Set();
  for (let i = 0; i < total; i += batch) {
    const p = publisher.publish(drafts(i)).then(() => running.delete(p));
    running.add(p);
    if (running.size >= 2) await Promise.race(running);
  }
  await Promise.all(running);
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  await publisher.close();
  await shutdownTelemetry();
  process.stdout.write(JSON.stringify({ ms }));
})().catch((e) => { console.error(e); process.exit(1); });
`;

// Consumes the topic from the beginning with runConsumer until EVENTS records arrived.
const CONSUME = `
const { startTelemetry, shutdownTelemetry } = require('@rebootless/telemetry');
startTelemetry('bench');
const { runConsumer, kafkaClient } = require('@rebootless/kafka');
(async () => {
  const kafka = kafkaClient(process.env.BROKERS.split(','), 'bench-telemetry');
  const total = Number(process.env.EVENTS);
  let seen = 0, t0, consumer;
  const done = new Promise((resolve) => {
    t0 = process.hrtime.bigint();
    runConsumer({
      kafka, topic: process.env.TOPIC, groupId: 'bench-' + process.pid + '-' + Date.now(),
      handleBatch: async (records) => { seen += records.length; if (seen >= total) resolve(Number(process.hrtime.bigint() - t0) / 1e6); },
    }).then((c) => (consumer = c));
  });
  const ms = await done;
  await consumer.stop();
  await shutdownTelemetry();
  process.stdout.write(JSON.stringify({ ms }));
})().catch((e) => { console.error(e); process.exit(1); });
`;

// The ledger's per-record span (withSpanFromSync around each projection, under the record's
// traceparent header), around a projection that does nothing: what a span costs a record.
const PROJECT = `
const { startTelemetry, shutdownTelemetry, withSpan, withSpanFromSync, traceFields, SPAN, ATTR } = require('@rebootless/telemetry');
startTelemetry('bench');
(async () => {
  const total = Number(process.env.EVENTS);
  const headers = [];
  await withSpan('producer', {}, () => { for (let i = 0; i < 100; i++) headers.push({ traceparent: Buffer.from(traceFields().traceparent || '') }); });
  let sum = 0;
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < total; i++) {
    sum += withSpanFromSync(headers[i % 100], SPAN.ledgerProjection,
      { [ATTR.eventType]: 'PatchApplied', [ATTR.eventId]: 'e' + i, [ATTR.producerId]: 'agent/h' + (i % 500), [ATTR.seq]: i }, () => i);
  }
  const ms = Number(process.hrtime.bigint() - t0) / 1e6;
  await shutdownTelemetry();
  process.stdout.write(JSON.stringify({ ms, sum }));
})().catch((e) => { console.error(e); process.exit(1); });
`;

async function child(code: string, env: Record<string, string>): Promise<number> {
  const { stdout } = await promisify(execFile)(process.execPath, ['-e', code], {
    cwd: REPO_ROOT,
    env: { ...process.env, ...env },
    maxBuffer: 16 * 2 ** 20,
  });
  return (JSON.parse(stdout.trim().split('\n').pop()!) as { ms: number }).ms;
}

/** Resolves once no span arrived for half a second. */
async function quiet(receiver: OtlpReceiver): Promise<void> {
  let last = -1;
  while (receiver.spans().length !== last) {
    last = receiver.spans().length;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

async function main(): Promise<void> {
  const brokers = kafkaBrokersFromEnv();
  const loadBefore = Math.round(os.loadavg()[0]! * 100) / 100;
  const receiver = await OtlpReceiver.start();
  const stateRoot = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-bench-telemetry-'));
  const modes = { off: {}, on: { OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint } } as const;
  const samples = {
    startup: { off: [] as number[], on: [] as number[] },
    publish: { off: [] as number[], on: [] as number[] },
    consume: { off: [] as number[], on: [] as number[] },
    project: { off: [] as number[], on: [] as number[] },
  };
  try {
    for (let round = 1; round <= ROUNDS; round += 1) {
      for (const mode of ['off', 'on'] as const) {
        await quiet(receiver);
        samples.startup[mode].push(await child(STARTUP, modes[mode]));
        const topic = `bench.telemetry.${mode}.${Date.now()}`;
        await ensureEventsTopic({ brokers, topic, partitions: 6, durability: devTopicDurability() });
        const common = { ...modes[mode], BROKERS: brokers.join(','), TOPIC: topic, EVENTS: String(EVENTS) };
        const stateDir = path.join(stateRoot, `${mode}-${round}`);
        samples.publish[mode].push(await child(PUBLISH, { ...common, STATE_DIR: stateDir }));
        // The receiver shares this machine's cores: let it finish decoding before the next run.
        await quiet(receiver);
        samples.consume[mode].push(await child(CONSUME, common));
        await quiet(receiver);
        samples.project[mode].push(await child(PROJECT, common));
        say(
          `round ${round} tracing ${mode}: start-up ${samples.startup[mode].at(-1)!.toFixed(0)} ms, ` +
            `publish ${samples.publish[mode].at(-1)!.toFixed(0)} ms, consume ${samples.consume[mode].at(-1)!.toFixed(0)} ms, ` +
            `project spans ${samples.project[mode].at(-1)!.toFixed(0)} ms`,
        );
      }
    }
  } finally {
    await receiver.close();
    fs.rmSync(stateRoot, { recursive: true, force: true });
  }
  const eps = (ms: number) => Math.round((EVENTS / ms) * 1000);
  const startup = { off_ms: Math.round(median(samples.startup.off)), on_ms: Math.round(median(samples.startup.on)) };
  const publish = { off_eps: eps(median(samples.publish.off)), on_eps: eps(median(samples.publish.on)) };
  const consume = { off_eps: eps(median(samples.consume.off)), on_eps: eps(median(samples.consume.on)) };
  const perRecord = (ms: number) => Math.round(((ms * 1000) / EVENTS) * 10) / 10;
  // The ledger's `ledger projection` span per record (LedgerConsumer), projection left out.
  const project = {
    off_us_per_record: perRecord(median(samples.project.off)),
    on_us_per_record: perRecord(median(samples.project.on)),
  };
  const out = {
    bench: 'telemetry',
    date: new Date().toISOString(),
    machine: machineFacts(),
    // This machine's cores are shared: the load says how much the figures can be trusted.
    load_average_1m: { before: loadBefore, after: Math.round(os.loadavg()[0]! * 100) / 100 },
    settings: { events: EVENTS, batch: BATCH, rounds: ROUNDS, partitions: 6, exporter: 'otlp http/protobuf, loopback' },
    startup,
    publish: { ...publish, ratio: Math.round((publish.on_eps / publish.off_eps) * 100) / 100 },
    consume: { ...consume, ratio: Math.round((consume.on_eps / consume.off_eps) * 100) / 100 },
    project,
    spans_received: receiver.spans().length,
    samples,
  };
  const dir = path.join(REPO_ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `telemetry-${out.date.replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  say(`wrote ${path.relative(REPO_ROOT, file)}`);
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err: Error) => {
  process.stderr.write(`bench:telemetry: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
