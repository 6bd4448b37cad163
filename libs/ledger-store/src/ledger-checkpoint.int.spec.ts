// Issue 19: a ledger restart resumes from the checkpoint stored with its read models instead of
// reading the log again, and ends where one uninterrupted replay ends, row by row. A database
// administrator who moves a checkpoint forward to skip events does not hide them silently.
// Real Kafka, real PostgreSQL.
import { freshEventsTopic, testKafka } from '@rebootless/testing';
import { LedgerDatabase } from './database';
import { LedgerConsumer, replayLag } from './ledger-consumer';
import { READ_MODEL_TABLES } from './migrations/0001-read-models';
import { LogWriter, createScratchDatabase, writeFleetHistory } from './scripted-log';

const kafka = testKafka('ledger-checkpoint');
const EVENTS = 30_000;

describe('a ledger restarted on PostgreSQL', () => {
  let topic: string;
  let serviceKeys: Map<string, Uint8Array[]>;
  const cleanup: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    topic = await freshEventsTopic('ledger-checkpoint', 6);
    const writer = await LogWriter.open(kafka, topic);
    ({ serviceKeys } = await writeFleetHistory(writer, { events: EVENTS, hosts: 60 }));
    await writer.close();
  }, 300_000);

  afterAll(async () => {
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  });

  async function database(prefix: string): Promise<LedgerDatabase> {
    const scratch = await createScratchDatabase(prefix);
    const db = await LedgerDatabase.open({ databaseUrl: scratch.url });
    cleanup.push(scratch.drop, () => db.close());
    return db;
  }

  // Small fetches, so that a ledger stopped a third of the way has read only about a third.
  const consumer = (db: LedgerDatabase, unsealedTailTimeoutMs = 5_000) =>
    new LedgerConsumer({ kafka, db, topic, serviceKeys, unsealedTailTimeoutMs, fetchBytesPerPartition: 32 * 1024 });

  /** Stops the ledger once it has read a third of the log. */
  async function stopAThirdOfTheWay(c: LedgerConsumer): Promise<void> {
    await c.start();
    while (c.stats.records < EVENTS / 3) await new Promise((r) => setTimeout(r, 2));
    await c.stop();
  }

  async function untilCaughtUp(c: LedgerConsumer): Promise<void> {
    const deadline = Date.now() + 240_000;
    while ((await replayLag(kafka, topic, c.positions)).behind > 0n) {
      if (Date.now() > deadline) throw new Error('the ledger did not catch up');
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  /** Every row of every read model, in key order, as text. */
  async function dump(db: LedgerDatabase): Promise<Record<string, string[]>> {
    const out: Record<string, string[]> = {};
    for (const table of READ_MODEL_TABLES) {
      const rows = await db.query<{ row: string }>(`SELECT t::text AS row FROM ${table} t ORDER BY t::text`);
      out[table] = rows.map((r) => r.row);
    }
    return out;
  }

  it(`stopped mid-replay of ${EVENTS} events and started again, reads on from its checkpoint and ends with the rows of one uninterrupted replay`, async () => {
    // Given a ledger stopped a third of the way through the log
    const db = await database('ledger_resume');
    const first = consumer(db);
    await stopAThirdOfTheWay(first);
    expect(first.resumed).toMatchObject({ fromCheckpoint: false, readFrom: new Map() });
    const stoppedAt = await db.query<{ partition_no: number; read_to: string }>(
      'SELECT partition_no, read_to::text AS read_to FROM checkpoint_partitions ORDER BY partition_no',
    );
    const stoppedRecords = first.stats.records;
    expect(stoppedRecords).toBeLessThan(EVENTS);

    // When a new ledger starts on the same database
    const second = consumer(db);
    await second.start();
    await untilCaughtUp(second);
    await second.stop();

    // Then it resumed where the checkpoint stood and read only the rest of the log
    expect(second.resumed?.fromCheckpoint).toBe(true);
    expect([...second.resumed!.readFrom].sort(([a], [b]) => a - b)).toEqual(
      stoppedAt.map((p) => [p.partition_no, BigInt(p.read_to)]),
    );
    const total = Number((await replayLag(kafka, topic, new Map())).end);
    expect(second.stats.records).toBe(total - stoppedAt.reduce((n, p) => n + Number(p.read_to), 0));

    // And a restart once caught up reads nothing again
    const third = consumer(db);
    await third.start();
    await new Promise((r) => setTimeout(r, 2_000));
    await untilCaughtUp(third);
    await third.stop();
    expect(third.resumed?.fromCheckpoint).toBe(true);
    expect(third.stats.records).toBe(0);

    // And the read models equal those of one replay into another database, row by row
    const rebuilt = await database('ledger_rebuilt');
    const whole = consumer(rebuilt);
    await whole.start();
    await untilCaughtUp(whole);
    await whole.stop();
    expect(whole.stats.records).toBe(total);
    const [resumedRows, rebuiltRows] = [await dump(db), await dump(rebuilt)];
    expect(resumedRows['audit_log']!.length).toBe(total);
    expect(resumedRows['integrity_findings']).toEqual([]);
    for (const table of READ_MODEL_TABLES)
      expect({ table, rows: resumedRows[table] }).toEqual({ table, rows: rebuiltRows[table] });
  }, 600_000);

  it('when a database administrator moves a checkpoint forward to skip events, the chains that lost them are findings', async () => {
    // Given a ledger stopped a third of the way through the log
    const db = await database('ledger_skipped');
    const first = consumer(db, 500);
    await stopAThirdOfTheWay(first);
    // When the administrator moves a partition's checkpoint (and its offset) 20 records on
    const admin = kafka.admin();
    await admin.connect();
    const ends = new Map((await admin.fetchTopicOffsets(topic)).map((w) => [w.partition, BigInt(w.high)]));
    await admin.disconnect();
    const stood = await db.query<{ partition_no: number; read_to: string }>(
      `SELECT partition_no, read_to::text AS read_to FROM checkpoint_partitions ORDER BY partition_no`,
    );
    const { partition_no: partition, read_to: from } = stood.find(
      (p) => BigInt(p.read_to) + 40n < (ends.get(p.partition_no) ?? 0n),
    )!;
    const to = BigInt(from) + 20n;
    await db.query(`UPDATE checkpoint_partitions SET read_to = $1 WHERE partition_no = $2`, [to.toString(), partition]);
    await db.query(`DELETE FROM checkpoint_held WHERE partition_no = $1`, [partition]);
    await db.query(`UPDATE consumer_offsets SET next_offset = $1 WHERE partition_no = $2`, [to.toString(), partition]);
    const second = consumer(db, 500);
    await second.start();
    await untilCaughtUp(second);

    // Then the skipped records are in no read model, and each chain that had one there is a finding
    // once the ledger is live (what follows the hole waits for it, then is given up on)
    const skippedChains = new Set<string>();
    const whole = await database('ledger_whole');
    const reference = consumer(whole);
    await reference.start();
    await untilCaughtUp(reference);
    await reference.stop();
    for (const r of await whole.query<{ producer_id: string }>(
      'SELECT producer_id FROM audit_log WHERE partition_no = $1 AND record_offset >= $2 AND record_offset < $3',
      [partition, from, to.toString()],
    ))
      skippedChains.add(r.producer_id);
    expect(skippedChains.size).toBeGreaterThan(0);
    const deadline = Date.now() + 60_000;
    let found = new Set<string>();
    while (Date.now() < deadline) {
      const rows = await db.query<{ producer_id: string }>(
        `SELECT DISTINCT producer_id FROM integrity_findings WHERE kind IN ('unsealed', 'gap')`,
      );
      found = new Set(rows.map((r) => r.producer_id));
      if ([...skippedChains].every((c) => found.has(c))) break;
      await new Promise((r) => setTimeout(r, 200));
    }
    await second.stop();
    expect([...skippedChains].filter((c) => !found.has(c))).toEqual([]);
    const [{ n }] = (await db.query<{ n: string }>(
      'SELECT COUNT(*)::text AS n FROM audit_log WHERE partition_no = $1 AND record_offset >= $2 AND record_offset < $3',
      [partition, from, to.toString()],
    )) as [{ n: string }];
    expect(n).toBe('0');
  }, 600_000);
});
