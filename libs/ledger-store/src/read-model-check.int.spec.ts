// Issue 16: a database administrator who edits the read models is caught. A signed fleet history
// is projected into PostgreSQL; `verifyLog` with the read models re-folds the log into a scratch
// database and compares row by row. A real UPDATE of audit_log and a real DELETE of a stack
// interval are each reported as a finding naming the table, the row and what the log says.
import { ledger } from '@rebootless/contracts';
import { freshEventsTopic, testKafka } from '@rebootless/testing';
import { LedgerDatabase } from './database';
import { LedgerConsumer, replayLag } from './ledger-consumer';
import { verifyLog } from './integrity';
import { LogWriter, createScratchDatabase, writeFleetHistory } from './scripted-log';

const kafka = testKafka('ledger-read-model-check');
const ALTERED = ledger.IntegrityFindingKind.INTEGRITY_FINDING_KIND_READ_MODEL_ALTERED;

describe('ledger verify on PostgreSQL: read models checked against the log', () => {
  let db: LedgerDatabase;
  let drop: () => Promise<void>;
  let consumer: LedgerConsumer;
  let topic: string;
  let serviceKeys: Map<string, Uint8Array[]>;

  const verify = () => verifyLog(kafka, topic, serviceKeys, '', { stored: db });

  beforeAll(async () => {
    topic = await freshEventsTopic('ledger-check', 3);
    const writer = await LogWriter.open(kafka, topic);
    ({ serviceKeys } = await writeFleetHistory(writer, { events: 3_000, hosts: 12 }));
    await writer.close();
    const scratch = await createScratchDatabase('ledger_check');
    drop = scratch.drop;
    db = await LedgerDatabase.open({ databaseUrl: scratch.url });
    consumer = new LedgerConsumer({ kafka, db, topic, serviceKeys });
    await consumer.start();
    const deadline = Date.now() + 120_000;
    while ((await replayLag(kafka, topic, consumer.positions)).behind > 0n) {
      if (Date.now() > deadline) throw new Error('the ledger did not catch up');
      await new Promise((r) => setTimeout(r, 100));
    }
    await consumer.flushGaps();
  }, 300_000);

  afterAll(async () => {
    await consumer?.stop();
    await db?.close();
    await drop?.();
  });

  it('finds nothing when the read models are what the log says', async () => {
    const report = await verify();
    expect(report.findings).toEqual([]);
  }, 300_000);

  it('reports an UPDATE of audit_log and a DELETE of a stack interval, each as a finding naming the row', async () => {
    const [audit] = await db.query<{ partition_no: number; record_offset: string; summary: string }>(
      `SELECT partition_no, record_offset, summary FROM audit_log WHERE type = 'PatchApplied' ORDER BY partition_no, record_offset LIMIT 1`,
    );
    const [interval] = await db.query<{ host_id: string; interval_id: string }>(
      `SELECT host_id, interval_id FROM stack_intervals WHERE removal_reason = 'replaced' ORDER BY host_id, interval_id LIMIT 1`,
    );
    await db.query(`UPDATE audit_log SET summary = 'nothing happened' WHERE partition_no = $1 AND record_offset = $2`, [
      audit!.partition_no,
      audit!.record_offset,
    ]);
    await db.query('DELETE FROM stack_intervals WHERE host_id = $1 AND interval_id = $2', [
      interval!.host_id,
      interval!.interval_id,
    ]);

    const report = await verify();
    expect(report.findings.map((f) => [f.kind, f.detail]).sort()).toEqual(
      [
        [
          ALTERED,
          `read model audit_log: row partition_no=${audit!.partition_no},record_offset=${audit!.record_offset}, column summary is "nothing happened"; the log says ${JSON.stringify(audit!.summary)}`,
        ],
        [
          ALTERED,
          `read model stack_intervals: row host_id=${interval!.host_id},interval_id=${interval!.interval_id} is missing; the log has it`,
        ],
      ].sort(),
    );
  }, 300_000);
});
