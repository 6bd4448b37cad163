// npm run bench:ledger [-- --events N --hosts N --partitions N [--no-sqlite]] — replaying the event
// log into the ledger's read models, PostgreSQL and SQLite, beside the raw kafkajs consume rate of
// the same topic on the same broker in the same run, and a ledger restarted on the replayed
// PostgreSQL database: the time until it stands at its checkpoint, ready to project what comes
// next (docs/adr/0024). Progress on stderr; the last stdout line is one JSON
// object, also written to bench/results/ledger-<date>.json. Needs KAFKA_BROKERS (a running broker)
// and PostgreSQL (DATABASE_ADMIN_URL, default postgres://postgres@127.0.0.1:5432/postgres).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Kafka } from 'kafkajs';
import { ensureEventsTopic, kafkaBrokersFromEnv, kafkaClient } from '@rebootless/kafka';
import { generateSigningKey } from '@rebootless/events';
import { devTopicDurability } from '../kafka';
import {
  LedgerConsumer,
  LedgerDatabase,
  LogWriter,
  createScratchDatabase,
  writeFleetHistory,
} from '@rebootless/ledger-store';
import { REPO_ROOT } from '../process';
import { machineFacts } from './machine';

function flag(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const raw = i >= 0 ? process.argv[i + 1] : undefined;
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new Error(`--${name} wants a positive whole number, got ${raw}`);
  return n;
}

const EVENTS = flag('events', 1_000_000);
const HOSTS = flag('hosts', 2_000);
const PARTITIONS = flag('partitions', 6);
const SQLITE = !process.argv.includes('--no-sqlite');

/** The ledger's own key: it seals each checkpoint, and the restart checks the seal (docs/adr/0028). */
const ledgerKey = generateSigningKey();
const checkpointSigner = { producerId: 'ledger', key: ledgerKey };

const say = (line: string) => process.stderr.write(`bench:ledger: ${line}\n`);
const rate = (n: number, ms: number) => Math.round((n / ms) * 1000);

async function endOffsets(kafka: Kafka, topic: string): Promise<Map<number, bigint>> {
  const admin = kafka.admin();
  await admin.connect();
  try {
    return new Map((await admin.fetchTopicOffsets(topic)).map((w) => [w.partition, BigInt(w.high)]));
  } finally {
    await admin.disconnect();
  }
}

/** kafkajs alone: a new group reading every partition to its end, doing nothing with the records. */
async function rawConsume(kafka: Kafka, topic: string, total: number): Promise<number> {
  const consumer = kafka.consumer({
    groupId: `bench-ledger-raw-${Date.now()}`,
    maxWaitTimeInMs: 200,
    maxBytesPerPartition: 4 * 1024 * 1024,
    maxBytes: 16 * 1024 * 1024,
  });
  await consumer.connect();
  await consumer.subscribe({ topic, fromBeginning: true });
  let seen = 0;
  const started = performance.now();
  await new Promise<void>((resolve) => {
    void consumer.run({
      autoCommit: false,
      eachBatch: async ({ batch }) => {
        seen += batch.messages.length;
        if (seen >= total) resolve();
      },
    });
  });
  const ms = performance.now() - started;
  await consumer.disconnect();
  return ms;
}

/** CPU ms of this process's main thread alone (Linux): what bounds the replay, worker threads aside. */
function mainThreadCpuMs(): number {
  try {
    const f = fs.readFileSync(`/proc/self/task/${process.pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
    return (Number(f[11]) + Number(f[12])) * 10;
  } catch {
    return NaN;
  }
}

async function replay(
  kafka: Kafka,
  topic: string,
  ends: Map<number, bigint>,
  db: LedgerDatabase,
  serviceKeys: Map<string, Uint8Array[]>,
  label: string,
): Promise<{
  ms: number;
  projected: number;
  findings: number;
  nodeCpuMs: number;
  mainCpuMs: number;
  backendCpuMs: number;
}> {
  const tableTiming = new Map<string, number>();
  const consumer = new LedgerConsumer({
    kafka,
    db,
    topic,
    serviceKeys,
    checkpointSigner,
    onTableWritten: (table, ms) => tableTiming.set(table, (tableTiming.get(table) ?? 0) + ms),
  });
  // CPU time beside wall time: on a shared machine the wall time mostly says how busy the others
  // were; the CPU time of this process and of its PostgreSQL backends (from /proc, Linux only) is
  // what the replay costs.
  const cpu0 = process.cpuUsage();
  const main0 = mainThreadCpuMs();
  const backendTicks = new Map<number, [number, number]>();
  const sampleBackends = async () => {
    if (db.dialect !== 'postgres') return;
    const rows = await db.query<{ pid: number }>('SELECT pid FROM pg_stat_activity WHERE datname = current_database()');
    for (const { pid } of rows) {
      try {
        const f = fs.readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1]!.split(' ');
        const t = (Number(f[11]) + Number(f[12])) * 10;
        const had = backendTicks.get(pid);
        backendTicks.set(pid, [had ? had[0] : t, t]);
      } catch {
        // A backend that ended meanwhile, or no /proc: its last sample stands.
      }
    }
  };
  await sampleBackends();
  const started = performance.now();
  await consumer.start();
  let lastSaid = started;
  for (;;) {
    let behind = 0n;
    for (const [p, end] of ends) {
      const at = consumer.positions.get(p) ?? 0n;
      if (end > at) behind += end - at;
    }
    if (behind === 0n) break;
    if (consumer.lastFailure) say(`${label}: the database refused a batch: ${consumer.lastFailure.message}`);
    if (performance.now() - lastSaid > 5000) {
      say(`${label}: ${consumer.stats.projected} projected, ${behind} to go`);
      lastSaid = performance.now();
    }
    await sampleBackends();
    await new Promise((r) => setTimeout(r, 50));
  }
  const ms = performance.now() - started;
  await sampleBackends();
  const cpu = process.cpuUsage(cpu0);
  const nodeCpuMs = Math.round((cpu.user + cpu.system) / 1000);
  const mainCpuMs = mainThreadCpuMs() - main0;
  let backendCpuMs = 0;
  for (const [a, b] of backendTicks.values()) backendCpuMs += b - a;
  say(
    `${label}: cpu ${nodeCpuMs} ms in this process (${mainCpuMs} in its main thread), ${backendCpuMs} ms in PostgreSQL backends, wall ${Math.round(ms)} ms`,
  );
  say(
    `${label}: ${JSON.stringify(consumer.timing)} ${JSON.stringify([...tableTiming].map(([t, v]) => [t, Math.round(v)]))}`,
  );
  await consumer.stop();
  return {
    ms,
    projected: consumer.stats.projected,
    findings: consumer.stats.findings,
    nodeCpuMs,
    mainCpuMs,
    backendCpuMs,
  };
}

/**
 * A ledger started on a database that already holds the whole log's read models and checkpoint:
 * milliseconds until it has taken the projection over and stands at the log's end, and where
 * it said it resumed.
 */
async function restart(
  kafka: Kafka,
  topic: string,
  ends: Map<number, bigint>,
  db: LedgerDatabase,
  serviceKeys: Map<string, Uint8Array[]>,
): Promise<{
  ms: number;
  loadMs: number;
  recordsRead: number;
  fromCheckpoint: boolean;
  refused: string[];
  keyRecords: { read: number; ms: number };
}> {
  const consumer = new LedgerConsumer({ kafka, db, topic, serviceKeys, checkpointSigner });
  const started = performance.now();
  await consumer.start();
  for (;;) {
    const caughtUp = [...ends].every(([p, end]) => (consumer.positions.get(p) ?? 0n) >= end);
    if (consumer.resumed && caughtUp) break;
    if (performance.now() - started > 600_000) throw new Error('the restarted ledger did not resume in 10 min');
    await new Promise((r) => setTimeout(r, 5));
  }
  const ms = performance.now() - started;
  await consumer.stop();
  return {
    ms,
    loadMs: consumer.resumed!.loadMs,
    recordsRead: consumer.stats.records,
    fromCheckpoint: consumer.resumed!.fromCheckpoint,
    refused: consumer.resumed!.refused,
    keyRecords: consumer.resumed!.keyRecords,
  };
}

async function main() {
  const brokers = kafkaBrokersFromEnv();
  const kafka = kafkaClient(brokers, 'bench-ledger');
  const topic = `bench.ledger.${Date.now()}`;
  await ensureEventsTopic({ brokers, topic, partitions: PARTITIONS, durability: devTopicDurability() });
  say(`writing ${EVENTS} events of ${HOSTS} hosts (signed chains) to ${topic}`);
  const writer = await LogWriter.open(kafka, topic);
  const writeStarted = performance.now();
  let said = 0;
  const { serviceKeys, records } = await writeFleetHistory(writer, {
    events: EVENTS,
    hosts: HOSTS,
    onProgress: (n) => {
      if (n - said >= 100_000) {
        say(`${n} written`);
        said = n;
      }
    },
  });
  const writeMs = performance.now() - writeStarted;
  serviceKeys.set('ledger', [ledgerKey.rawPublicKey]);
  await writer.close();
  const ends = await endOffsets(kafka, topic);
  const total = Number([...ends.values()].reduce((a, b) => a + b, 0n));
  say(`${total} records written in ${Math.round(writeMs / 1000)} s; raw kafkajs consume`);

  const rawMs = await rawConsume(kafka, topic, total);
  say(`raw kafkajs consume: ${rate(total, rawMs)} records/s; replay into PostgreSQL`);

  const scratch = await createScratchDatabase('ledger_bench');
  let pg;
  let restarted;
  try {
    const db = await LedgerDatabase.open({ databaseUrl: scratch.url });
    pg = await replay(kafka, topic, ends, db, serviceKeys, 'postgres');
    say(`PostgreSQL: ${rate(total, pg.ms)} records/s; a ledger restarted on it`);
    restarted = await restart(kafka, topic, ends, db, serviceKeys);
    say(
      `restart: at its checkpoint in ${Math.round(restarted.ms)} ms (state loaded in ${restarted.loadMs} ms, ` +
        `${restarted.keyRecords.read} key record(s) read again in ${restarted.keyRecords.ms} ms), ` +
        `${restarted.recordsRead} record(s) read again` +
        (restarted.refused.length > 0 ? `; the checkpoint was REFUSED: ${restarted.refused.join('; ')}` : ''),
    );
    await db.close();
  } finally {
    await scratch.drop();
  }

  let sqlite;
  if (SQLITE) {
    say('replay into SQLite');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'bench-ledger-'));
    try {
      const db = await LedgerDatabase.open({ dataDir: dir });
      sqlite = await replay(kafka, topic, ends, db, serviceKeys, 'sqlite');
      await db.close();
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
    say(`SQLite: ${rate(total, sqlite.ms)} records/s`);
  }

  const out = {
    bench: 'ledger',
    date: new Date().toISOString(),
    machine: machineFacts(),
    settings: { events: total, hosts: HOSTS, partitions: PARTITIONS, records_written_by_script: records },
    raw_kafkajs_consume_eps: rate(total, rawMs),
    replay_postgres_eps: rate(total, pg.ms),
    replay_sqlite_eps: sqlite ? rate(total, sqlite.ms) : null,
    postgres_ratio_to_raw: Math.round((rawMs / pg.ms) * 100) / 100,
    sqlite_ratio_to_raw: sqlite ? Math.round((rawMs / sqlite.ms) * 100) / 100 : null,
    // The full replay into PostgreSQL beside a restart on its result (resume from the checkpoint).
    replay_postgres_ms: Math.round(pg.ms),
    restart_postgres: {
      ms_to_resumed_at_log_end: Math.round(restarted.ms),
      state_load_ms: restarted.loadMs,
      records_read_again: restarted.recordsRead,
      from_checkpoint: restarted.fromCheckpoint,
      // docs/adr/0028: the agent keys' records read again from the log, and the seal checked.
      key_records_read: restarted.keyRecords.read,
      key_records_ms: restarted.keyRecords.ms,
      refused: restarted.refused,
    },
    projected: { postgres: pg.projected, sqlite: sqlite?.projected ?? null },
    // CPU microseconds an event: the ledger process (all its threads: V8's GC helpers, the seal
    // worker), its main thread alone (what bounds the replay), PostgreSQL's backends for it.
    cpu_us_per_event: {
      postgres: {
        ledger: Math.round((pg.nodeCpuMs * 1000) / total),
        ledger_main_thread: Math.round((pg.mainCpuMs * 1000) / total),
        backend: Math.round((pg.backendCpuMs * 1000) / total),
      },
      sqlite: sqlite
        ? {
            ledger: Math.round((sqlite.nodeCpuMs * 1000) / total),
            ledger_main_thread: Math.round((sqlite.mainCpuMs * 1000) / total),
          }
        : null,
    },
    integrity_findings: { postgres: pg.findings, sqlite: sqlite?.findings ?? null },
    targets: { replay_postgres_eps: 25_000, restart_postgres_ms: 5_000 },
  };
  const resultsDir = path.join(REPO_ROOT, 'bench', 'results');
  fs.mkdirSync(resultsDir, { recursive: true });
  const file = path.join(resultsDir, `ledger-${out.date.replace(/[:.]/g, '-')}.json`);
  fs.writeFileSync(file, JSON.stringify(out, null, 2) + '\n');
  say(`wrote ${path.relative(REPO_ROOT, file)}`);
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
}

main().catch((err: Error) => {
  process.stderr.write(`bench:ledger: ${err.stack ?? err.message}\n`);
  process.exit(1);
});
