// npm run bench:events — the signed event spine against raw kafkajs on the same broker, same run.
// Prints progress on stderr and one JSON object as the last line of stdout; writes it to
// bench/results/events-<date>.json. Settings: BENCH_EVENTS (default 200000), BENCH_BATCH (1000),
// BENCH_ROUNDS (3), BENCH_PARTITIONS (6), BENCH_INFLIGHT (batches under way at once, both sides; 2),
// KAFKA_BROKERS (else a private broker is started).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Kafka } from 'kafkajs';
import { ChainVerifier, ChainedEvent, EventDraft, StaticKeyTrust } from '@rebootless/events';
import { EventPublisher, ensureEventsTopic, kafkaBrokersFromEnv, kafkaClient, readRange } from '@rebootless/kafka';
import { devTopicDurability } from '../kafka';
import { REPO_ROOT } from '../process';
import { machineFacts } from './machine';

const EVENTS = Number(process.env['BENCH_EVENTS'] ?? 200_000);
const BATCH = Number(process.env['BENCH_BATCH'] ?? 1_000);
const ROUNDS = Number(process.env['BENCH_ROUNDS'] ?? 3);
const PARTITIONS = Number(process.env['BENCH_PARTITIONS'] ?? 6);
const INFLIGHT = Number(process.env['BENCH_INFLIGHT'] ?? 2);

/** Runs `step` for every batch start with at most INFLIGHT under way, in order of start. */
async function batches(total: number, step: (from: number, to: number) => Promise<void>): Promise<void> {
  const running = new Set<Promise<void>>();
  for (let i = 0; i < total; i += BATCH) {
    const p: Promise<void> = step(i, Math.min(total, i + BATCH)).then(() => void running.delete(p));
    running.add(p);
    if (running.size >= INFLIGHT) await Promise.race(running);
  }
  await Promise.all(running);
}

const say = (line: string) => process.stderr.write(`bench:events: ${line}\n`);
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const rate = (n: number, ms: number) => Math.round((n / ms) * 1000);

function drafts(round: number): EventDraft[] {
  return Array.from({ length: EVENTS }, (_, i) => ({
    stream: `host/h${i % 500}`,
    correlationId: `rollout-${round}`,
    payload: {
      type: 'PatchApplied',
      data: {
        hostId: `h${i % 500}`,
        commandId: `c${i}`,
        patchId: 'cve-2024-1086-fix',
        version: '1.0.0',
        moduleName: 'livepatch_cve_2024_1086',
        transitionMs: '1200',
        forced: false,
        replace: true,
        functions: [{ object: 'vmlinux', name: 'nft_verdict_init', sympos: 0 }],
        stack: [],
      },
    },
  }));
}

async function topic(brokers: string[], name: string): Promise<string> {
  const t = `bench.${name}.${Date.now()}`;
  await ensureEventsTopic({ brokers, topic: t, partitions: PARTITIONS, durability: devTopicDurability() });
  return t;
}

async function publishEnvelopes(kafka: Kafka, brokers: string[], round: number) {
  const t = await topic(brokers, `envelopes${round}`);
  const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-events-'));
  const pub = await EventPublisher.open({ kafka, producerId: `bench-${round}`, stateDir, topic: t });
  const input = drafts(round);
  const written: ChainedEvent[][] = [];
  const started = performance.now();
  await batches(input.length, async (from, to) => {
    written[from / BATCH] = await pub.publish(input.slice(from, to));
  });
  const ms = performance.now() - started;
  await pub.close();
  fs.rmSync(stateDir, { recursive: true, force: true });
  // The raw side's messages are made off the clock: the raw side does not pay for making them either.
  const values = written.flat().map((e) => ({ key: e.stream, value: e.envelope }));
  return { topic: t, ms, values, key: pub.key.rawPublicKey, producerId: `bench-${round}` };
}

async function publishRaw(kafka: Kafka, brokers: string[], round: number, values: { key: string; value: Buffer }[]) {
  const t = await topic(brokers, `raw${round}`);
  const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
  await producer.connect();
  const started = performance.now();
  await batches(values.length, async (from, to) => {
    await producer.send({ topic: t, acks: -1, messages: values.slice(from, to) });
  });
  const ms = performance.now() - started;
  await producer.disconnect();
  return { topic: t, ms };
}

async function consume(kafka: Kafka, t: string, verify?: { producerId: string; key: Buffer }) {
  const verifier = verify && new ChainVerifier(new StaticKeyTrust().vouch(verify.producerId, verify.key));
  let n = 0;
  const started = performance.now();
  await readRange({
    kafka,
    topic: t,
    timeoutMs: 300_000,
    // A LogRecord is a RecordPosition already (partition, offset): no object per record for it.
    onRecord: verifier ? (r) => void verifier.ingest(r.value, r) : () => void (n += 1),
  });
  const report = verifier?.finish();
  const ms = performance.now() - started;
  if (report && (report.findings.length > 0 || report.records !== EVENTS + 1)) {
    throw new Error(
      `verification failed: ${report.records} records, findings: ${JSON.stringify(report.findings.slice(0, 3))}`,
    );
  }
  return { ms, records: report?.records ?? n };
}

async function withBroker<T>(run: (brokers: string[]) => Promise<T>): Promise<T> {
  if (process.env['KAFKA_BROKERS']?.trim()) return run(kafkaBrokersFromEnv());
  const runtime = require(path.join(REPO_ROOT, 'scripts', 'kafka-runtime.cjs'));
  const [port, controllerPort] = await runtime.findFreePorts(2);
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-kafka-'));
  say(`starting a private broker on 127.0.0.1:${port}`);
  const started = await runtime.startBroker({ port, controllerPort, dataDir, log: say });
  try {
    return await run([started.brokers]);
  } finally {
    await runtime.stopBroker({ dataDir, port, controllerPort });
    fs.rmSync(dataDir, { recursive: true, force: true });
  }
}

async function main() {
  const result = await withBroker(async (brokers) => {
    const kafka = kafkaClient(brokers, 'bench-events');
    const rounds = [];
    for (let round = 1; round <= ROUNDS; round++) {
      // Each round runs both sides back to back on the same bytes, alternating which goes first.
      say(`round ${round}/${ROUNDS}: publishing ${EVENTS} events in batches of ${BATCH}`);
      let env, raw;
      if (round % 2 === 1) {
        env = await publishEnvelopes(kafka, brokers, round);
        raw = await publishRaw(kafka, brokers, round, env.values);
      } else {
        // The raw side needs the envelope bytes first: make them off the clock on a scratch run.
        const scratch = await publishEnvelopes(kafka, brokers, round + 1000);
        raw = await publishRaw(kafka, brokers, round, scratch.values);
        env = await publishEnvelopes(kafka, brokers, round);
      }
      say(
        `round ${round}: publish envelopes ${rate(EVENTS + 1, env.ms)}/s, raw ${rate(env.values.length, raw.ms)}/s; consuming`,
      );
      const rawRead = await consume(kafka, raw.topic);
      const verified = await consume(kafka, env.topic, { producerId: env.producerId, key: env.key });
      say(
        `round ${round}: consume+verify ${rate(verified.records, verified.ms)}/s, raw consume ${rate(rawRead.records, rawRead.ms)}/s`,
      );
      rounds.push({
        envelope_publish_eps: rate(EVENTS + 1, env.ms),
        raw_publish_eps: rate(env.values.length, raw.ms),
        verify_consume_eps: rate(verified.records, verified.ms),
        raw_consume_eps: rate(rawRead.records, rawRead.ms),
      });
    }
    return rounds;
  });

  const pick = (k: keyof (typeof result)[number]) => median(result.map((r) => r[k]));
  const publish = { envelope_eps: pick('envelope_publish_eps'), raw_kafkajs_eps: pick('raw_publish_eps') };
  const consumeRates = { verify_eps: pick('verify_consume_eps'), raw_kafkajs_eps: pick('raw_consume_eps') };
  const out = {
    bench: 'events',
    date: new Date().toISOString(),
    machine: machineFacts(),
    settings: {
      events: EVENTS,
      batch: BATCH,
      inflight: INFLIGHT,
      rounds: ROUNDS,
      partitions: PARTITIONS,
      acks: 'all',
      idempotent: true,
    },
    publish,
    consume: consumeRates,
    publish_ratio: Math.round((publish.envelope_eps / publish.raw_kafkajs_eps) * 100) / 100,
    consume_ratio: Math.round((consumeRates.verify_eps / consumeRates.raw_kafkajs_eps) * 100) / 100,
    targets: { publish_ratio: 0.8, consume_ratio: 0.8, envelope_publish_eps: 50_000 },
    rounds: result,
  };
  const dir = path.join(REPO_ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  const file = path.join(dir, `events-${out.date.replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  say(`wrote ${path.relative(REPO_ROOT, file)}`);
  process.stdout.write(JSON.stringify(out) + '\n');
}

main().catch((err: Error) => {
  process.stderr.write(`bench:events: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
