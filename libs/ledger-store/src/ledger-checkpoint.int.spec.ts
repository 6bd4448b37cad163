// Issue 19: a ledger restart resumes from the checkpoint stored with its read models instead of
// reading the log again, and ends where one uninterrupted replay ends, row by row. A database
// administrator who moves a checkpoint forward to skip events does not hide them silently.
// Real Kafka, real PostgreSQL.
import { generateSigningKey } from '@rebootless/events';
import { freshEventsTopic, testKafka } from '@rebootless/testing';
import { LedgerDatabase } from './database';
import { LedgerConsumer, replayLag } from './ledger-consumer';
import { READ_MODEL_TABLES } from './migrations/0001-read-models';
import { LogWriter, createScratchDatabase, writeFleetHistory } from './scripted-log';

const kafka = testKafka('ledger-checkpoint');
const EVENTS = 30_000;
const HOSTS = 60;
/** The ledger's own key, which seals its checkpoints (docs/adr/0028). */
const ledgerKey = generateSigningKey();

describe('a ledger restarted on PostgreSQL', () => {
  let topic: string;
  let serviceKeys: Map<string, Uint8Array[]>;
  const cleanup: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    topic = await freshEventsTopic('ledger-checkpoint', 6);
    const writer = await LogWriter.open(kafka, topic);
    ({ serviceKeys } = await writeFleetHistory(writer, { events: EVENTS, hosts: HOSTS }));
    serviceKeys.set('ledger', [ledgerKey.rawPublicKey]);
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
    new LedgerConsumer({
      kafka,
      db,
      topic,
      serviceKeys,
      unsealedTailTimeoutMs,
      fetchBytesPerPartition: 32 * 1024,
      checkpointSigner: { producerId: 'ledger', key: ledgerKey },
    });

  /**
   * Stops the ledger once it has read a third of the log and checkpointed every host's agent key:
   * which partition is read first is Kafka's to choose, and on a loaded machine a third of the
   * records read could all come before the partitions holding the bindings (seen once in a full
   * run: no key in the checkpoint, so none read again at resume).
   */
  async function stopAThirdOfTheWay(c: LedgerConsumer, db: LedgerDatabase): Promise<void> {
    await c.start();
    while (c.stats.records < EVENTS / 3) await new Promise((r) => setTimeout(r, 2));
    for (;;) {
      const [keys] = await db.query<{ n: number }>('SELECT count(*)::int AS n FROM checkpoint_agent_keys');
      if ((keys?.n ?? 0) >= HOSTS) break;
      await new Promise((r) => setTimeout(r, 20));
    }
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
    await stopAThirdOfTheWay(first, db);
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

    // Then it resumed where the checkpoint stood (its seal and each agent key's record checked)
    // and read only the rest of the log
    expect(second.resumed).toMatchObject({ fromCheckpoint: true, refused: [] });
    expect(second.resumed?.keyRecords.read).toBeGreaterThanOrEqual(HOSTS);
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

  it('when a database administrator moves a checkpoint forward to skip events, the checkpoint is refused and the skipped events are projected from the log', async () => {
    // Given a ledger stopped a third of the way through the log
    const db = await database('ledger_skipped');
    const first = consumer(db, 500);
    await stopAThirdOfTheWay(first, db);
    // When the administrator moves a partition's checkpoint 20 records on (and drops what it held there)
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
    const second = consumer(db, 500);
    await second.start();
    await untilCaughtUp(second);
    await second.stop();

    // Then the checkpoint's seal no longer matches its rows: refused, a stored finding says so,
    // and the log is read again from offset 0 (docs/adr/0028)
    expect(second.resumed).toMatchObject({ fromCheckpoint: false, readFrom: new Map() });
    expect(second.resumed?.refused).toEqual([
      'checkpoint_seal: the rows of the checkpoint do not digest to what ledger sealed ' +
        '(a row was added, changed or deleted, or rolled back, since it wrote them)',
    ]);
    const altered = await db.query<{ detail: string }>(
      `SELECT detail FROM integrity_findings WHERE kind = 'checkpoint-altered'`,
    );
    expect(altered.map((f) => f.detail)).toEqual([expect.stringContaining('checkpoint_seal: the rows')]);
    // And nothing was skipped: the records the administrator meant to hide are projected
    const [{ n }] = (await db.query<{ n: string }>(
      'SELECT COUNT(*)::text AS n FROM audit_log WHERE partition_no = $1 AND record_offset >= $2 AND record_offset < $3',
      [partition, from, to.toString()],
    )) as [{ n: string }];
    expect(n).toBe('20');
  }, 600_000);
});
