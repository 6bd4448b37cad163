// A database administrator (who can write the ledger's PostgreSQL but holds no producer's key)
// edits the checkpoint a restarted ledger resumes from (docs/adr/0028). Planting an agent key, or
// bringing back one an operator revoked, must not make the ledger believe events signed by it:
// the restarted ledger names the rows it refused, reads the log again from offset 0, and the
// forged events are findings. An honest restart still resumes from its checkpoint.
// Real Kafka, real PostgreSQL (and SQLite, once).
import { events, ledger } from '@rebootless/contracts';
import { EventDraft, generateSigningKey } from '@rebootless/events';
import { freshEventsTopic, testKafka } from '@rebootless/testing';
import { LedgerDatabase } from './database';
import { verifyLog } from './integrity';
import { LedgerConsumer, replayLag } from './ledger-consumer';
import { READ_MODEL_TABLES } from './migrations/0001-read-models';
import { LedgerQueries } from './queries';
import {
  LogWriter,
  ScriptedProducer,
  agentKeyBound,
  agentKeyRevoked,
  createScratchDatabase,
  writeFleetHistory,
} from './scripted-log';

const kafka = testKafka('ledger-checkpoint-trust');
const T0 = Date.UTC(2026, 0, 1);
const day = (d: number) => new Date(T0 + d * 86_400_000);
const ledgerKey = generateSigningKey();

const onHost = (hostId: string, payload: EventDraft['payload'], at = day(5)): EventDraft => ({
  stream: `host/${hostId}`,
  occurredAt: at,
  actor: { kind: events.ActorKind.ACTOR_KIND_HOST, id: hostId, origin: hostId },
  payload,
});

const patchApplied = (hostId: string, patchId: string): EventDraft['payload'] => ({
  type: 'PatchApplied',
  data: {
    hostId,
    commandId: `c-${patchId}`,
    patchId,
    version: '1',
    moduleName: `lp_${patchId}`,
    transitionMs: '800',
    forced: false,
    replace: false,
    functions: [{ object: 'vmlinux', name: 'tcp_ack', sympos: 0 }],
    stack: [
      {
        moduleName: `lp_${patchId}`,
        enabled: true,
        transition: false,
        replace: false,
        stackOrder: 1,
        functions: [{ object: 'vmlinux', name: 'tcp_ack', sympos: 0 }],
        objectsPatched: { vmlinux: true },
      },
    ],
  },
});

describe('a ledger on PostgreSQL whose checkpoint a database administrator edited', () => {
  let topic: string;
  let writer: LogWriter;
  let serviceKeys: Map<string, Uint8Array[]>;
  let dispatcher: ScriptedProducer;
  const cleanup: (() => Promise<void>)[] = [];

  beforeAll(async () => {
    topic = await freshEventsTopic('ledger-checkpoint-trust', 3);
    writer = await LogWriter.open(kafka, topic);
    // A fleet's history (its dispatcher binds every host's key), then the dispatcher that binds
    // the hosts the attacks are about.
    ({ serviceKeys } = await writeFleetHistory(writer, { events: 1_500, hosts: 12 }));
    dispatcher = new ScriptedProducer('dispatcher/edge');
    await writer.send(dispatcher.start(day(0)));
    serviceKeys.set('dispatcher/edge', [dispatcher.key.rawPublicKey]);
    serviceKeys.set('ledger', [ledgerKey.rawPublicKey]);
  }, 300_000);

  afterAll(async () => {
    await writer?.close();
    for (const c of cleanup.reverse()) await c().catch(() => undefined);
  });

  async function database(prefix: string): Promise<LedgerDatabase> {
    const scratch = await createScratchDatabase(prefix);
    const db = await LedgerDatabase.open({ databaseUrl: scratch.url });
    cleanup.push(scratch.drop, () => db.close());
    return db;
  }

  const ledgerOn = (db: LedgerDatabase) =>
    new LedgerConsumer({
      kafka,
      db,
      topic,
      serviceKeys,
      unsealedTailTimeoutMs: 1_000,
      checkpointSigner: { producerId: 'ledger', key: ledgerKey },
    });

  /** Runs a ledger until it has projected the whole log (what waits is judged), then stops it. */
  async function runToEnd(db: LedgerDatabase): Promise<LedgerConsumer> {
    const c = ledgerOn(db);
    await c.start();
    const deadline = Date.now() + 120_000;
    while ((await replayLag(kafka, topic, c.positions)).behind > 0n) {
      if (Date.now() > deadline)
        throw new Error(
          `the ledger did not catch up: ${JSON.stringify({ resumed: c.resumed, stats: c.stats, failure: c.lastFailure?.message })}`,
        );
      await new Promise((r) => setTimeout(r, 100));
    }
    await c.stop();
    return c;
  }

  const findings = async (db: LedgerDatabase, kind: string) =>
    (
      await db.query<{ producer_id: string; epoch: string; detail: string }>(
        'SELECT producer_id, epoch::text AS epoch, detail FROM integrity_findings WHERE kind = $1 ORDER BY record_offset',
        [kind],
      )
    ).map((f) => ({ producer: f.producer_id, epoch: Number(f.epoch), detail: f.detail }));

  const stackOf = async (db: LedgerDatabase, hostId: string) => {
    const q = new LedgerQueries(db, { onlineWindowMs: 600_000, now: () => T0 + 40 * 86_400_000 });
    return ((await q.getHost(hostId)).host?.stack?.entries ?? []).map((e) => e.patch?.patchId);
  };

  const agentKeysRow = async (db: LedgerDatabase, producerId: string) => {
    const [row] = await db.query<{ state: string }>('SELECT state FROM checkpoint_agent_keys WHERE producer_id = $1', [
      producerId,
    ]);
    return JSON.parse(row!.state) as { bound: unknown[][]; revoked: string[]; revokedEpochs: number[] };
  };

  it("when a binding of the administrator's own key to a host is planted, then after a restart the host's forged PatchApplied is a finding and the row is named", async () => {
    // Given a host whose agent the dispatcher bound, and a ledger that projected it and stopped
    const agent = new ScriptedProducer('agent/web-02');
    await writer.send(agentKeyBound(dispatcher, agent, day(1)));
    await writer.send([
      ...agent.start(day(1), 'host/web-02'),
      ...agent.write([onHost('web-02', patchApplied('web-02', 'genuine'), day(1))]),
    ]);
    const db = await database('ckpt_planted');
    await runToEnd(db);
    expect(await stackOf(db, 'web-02')).toEqual(['genuine']);

    // When the administrator binds a key of their own to the host's next epoch in the checkpoint
    const dba = new ScriptedProducer('agent/web-02', { key: generateSigningKey(), epoch: 2 });
    const row = await agentKeysRow(db, 'agent/web-02');
    row.bound.push([2, dba.key.rawPublicKey.toString('hex')]);
    await db.query('UPDATE checkpoint_agent_keys SET state = $1 WHERE producer_id = $2', [
      JSON.stringify(row),
      'agent/web-02',
    ]);
    // and a Kafka writer publishes, signed by that key, a patch the host never applied
    await writer.send([
      ...dba.start(day(2), 'host/web-02'),
      ...dba.write([onHost('web-02', patchApplied('web-02', 'planted'), day(2))]),
    ]);
    const restarted = await runToEnd(db);

    // Then the forged event is a finding, the host's stack what its real agent reported
    expect(await findings(db, 'unknown-producer-key')).toContainEqual(
      expect.objectContaining({ producer: 'agent/web-02', epoch: 2 }),
    );
    expect(await stackOf(db, 'web-02')).toEqual(['genuine']);
    // And the restarted ledger refused the checkpoint, naming the planted row, and read the log again
    expect(restarted.resumed?.fromCheckpoint).toBe(false);
    expect(restarted.resumed?.refused).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^checkpoint_seal: the rows of the checkpoint do not digest to what ledger sealed/),
        `checkpoint_agent_keys agent/web-02: the binding of epoch 2 to key ${dba.key.rawPublicKey.toString('hex').slice(0, 16)} names no record of the log that bound it`,
      ]),
    );
    const [altered] = await findings(db, 'checkpoint-altered');
    expect(altered?.detail).toContain('checkpoint_agent_keys agent/web-02: the binding of epoch 2');
    // And `ledger verify` trusts no key the checkpoint held either
    const verified = await verifyLog(kafka, topic, serviceKeys, 'agent/web-02');
    expect(verified.findings.map((f) => [f.kind, f.position?.epoch])).toEqual([
      [ledger.IntegrityFindingKind.INTEGRITY_FINDING_KIND_UNVOUCHED_KEY, 2],
    ]);
  }, 300_000);

  it("when the revocation of a host's key is rolled back or deleted in the checkpoint, then the revoked key's later events stay findings after a restart", async () => {
    // Given a host whose key an operator revoked, and a ledger that projected it and stopped
    const agent = new ScriptedProducer('agent/web-03');
    await writer.send(agentKeyBound(dispatcher, agent, day(1)));
    await writer.send([
      ...agent.start(day(1), 'host/web-03'),
      ...agent.write([onHost('web-03', patchApplied('web-03', 'genuine'), day(1))]),
    ]);
    const db = await database('ckpt_unrevoked');
    await runToEnd(db);
    // (the administrator keeps a copy of the row from before the revocation)
    const before = await db.query<{ state: string }>(
      "SELECT state FROM checkpoint_agent_keys WHERE producer_id = 'agent/web-03'",
    );
    await writer.send(agentKeyRevoked(dispatcher, agent, 1, day(3)));
    await runToEnd(db);
    expect((await agentKeysRow(db, 'agent/web-03')).revokedEpochs).toEqual([1]);

    for (const edit of ['rolled back', 'deleted'] as const) {
      // When the administrator brings the binding back (the row as it was), or deletes the row
      if (edit === 'rolled back')
        await db.query("UPDATE checkpoint_agent_keys SET state = $1 WHERE producer_id = 'agent/web-03'", [
          before[0]!.state,
        ]);
      else await db.query("DELETE FROM checkpoint_agent_keys WHERE producer_id = 'agent/web-03'");
      // and the stolen key signs a patch the host never applied
      await writer.send(agent.write([onHost('web-03', patchApplied('web-03', `after-revocation-${edit}`), day(4))]));
      const restarted = await runToEnd(db);

      // Then the checkpoint is refused (its seal sees what was changed) and the log read again
      expect({ edit, resumed: restarted.resumed?.fromCheckpoint }).toEqual({ edit, resumed: false });
      expect(restarted.resumed?.refused[0]).toMatch(
        /^checkpoint_seal: the rows of the checkpoint do not digest to what ledger sealed/,
      );
      if (edit === 'deleted')
        expect(restarted.resumed?.refused).toContainEqual(
          expect.stringMatching(
            /^checkpoint_chains agent\/web-03@1: its key [0-9a-f]{16} is held vouched, but no binding/,
          ),
        );
      // And the revoked key's event is a finding; the host's stack is what it was
      expect(await stackOf(db, 'web-03')).toEqual(['genuine']);
      const revokedFindings = (await findings(db, 'unknown-producer-key')).filter(
        (f) => f.producer === 'agent/web-03' && /was revoked before it/.test(f.detail),
      );
      expect(revokedFindings.length).toBe(edit === 'rolled back' ? 1 : 2);
      // And the checkpoint the ledger wrote again holds the revocation
      expect((await agentKeysRow(db, 'agent/web-03')).revokedEpochs).toEqual([1]);
    }
  }, 300_000);

  it('when nobody edited it, then a restart resumes from the checkpoint, reads only what is new and ends with the rows of a rebuild', async () => {
    // Given a ledger that projected the log and stopped
    const db = await database('ckpt_honest');
    await runToEnd(db);
    const stood = await db.query<{ n: string }>('SELECT SUM(read_to)::text AS n FROM checkpoint_partitions');
    // When a host writes more and the ledger restarts
    const agent = new ScriptedProducer('agent/web-04');
    await writer.send(agentKeyBound(dispatcher, agent, day(6)));
    await writer.send([
      ...agent.start(day(6), 'host/web-04'),
      ...agent.write([onHost('web-04', patchApplied('web-04', 'honest'), day(6))]),
    ]);
    const restarted = await runToEnd(db);

    // Then it resumed from its checkpoint (its seal and every key it holds checked) and read only the rest
    expect(restarted.resumed).toMatchObject({ fromCheckpoint: true, refused: [] });
    const total = (await replayLag(kafka, topic, new Map())).end;
    expect(BigInt(restarted.stats.records)).toBe(total - BigInt(stood[0]!.n));
    expect(await stackOf(db, 'web-04')).toEqual(['honest']);
    expect(await findings(db, 'checkpoint-altered')).toEqual([]);

    // And its read models equal those of one replay into another database, row by row (a
    // finding's sentence says how long its record waited, which is the clock's, not the log's)
    const rebuilt = await database('ckpt_rebuilt');
    const whole = await runToEnd(rebuilt);
    expect(BigInt(whole.stats.records)).toBe(total);
    for (const table of READ_MODEL_TABLES) {
      const columns =
        table === 'integrity_findings' ? '(partition_no, record_offset, kind, producer_id, epoch, seq, to_seq)' : 't';
      const dump = async (d: LedgerDatabase) =>
        (await d.query<{ row: string }>(`SELECT ${columns}::text AS row FROM ${table} t ORDER BY 1`)).map((r) => r.row);
      expect({ table, rows: await dump(db) }).toEqual({ table, rows: await dump(rebuilt) });
    }
  }, 300_000);

  it('on SQLite too: an honest restart resumes from the sealed checkpoint, a planted binding is refused', async () => {
    const fs = await import('node:fs');
    const os = await import('node:os');
    const path = await import('node:path');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ckpt-sqlite-'));
    const db = await LedgerDatabase.open({ dataDir: dir });
    cleanup.push(
      () => db.close(),
      async () => fs.rmSync(dir, { recursive: true, force: true }),
    );
    await runToEnd(db);
    const agent = new ScriptedProducer('agent/web-05');
    await writer.send(agentKeyBound(dispatcher, agent, day(7)));
    await writer.send([...agent.start(day(7), 'host/web-05')]);
    expect((await runToEnd(db)).resumed).toMatchObject({ fromCheckpoint: true, refused: [] });

    const row = await agentKeysRow(db, 'agent/web-05');
    row.bound.push([2, generateSigningKey().rawPublicKey.toString('hex')]);
    await db.query('UPDATE checkpoint_agent_keys SET state = $1 WHERE producer_id = $2', [
      JSON.stringify(row),
      'agent/web-05',
    ]);
    const refused = (await runToEnd(db)).resumed;
    expect(refused?.fromCheckpoint).toBe(false);
    expect(refused?.refused).toContainEqual(
      expect.stringMatching(
        /^checkpoint_agent_keys agent\/web-05: the binding of epoch 2 to key [0-9a-f]{16} names no record/,
      ),
    );
  }, 300_000);
});
