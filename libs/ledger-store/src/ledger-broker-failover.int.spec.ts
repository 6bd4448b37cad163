// Issue 19, "nothing lost when one dies": a ledger following the log live while a broker of a
// three-broker cluster is SIGKILLed, and another frozen, under a producer writing batches that
// span the partitions. A batch of which some partitions answered and some did not is settled by
// its producer from the log, its missing records (the seal among them) re-sent once the broker's
// grace has passed: the ledger must still project every record, as `ledger verify` folds them.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { randomUUID } from 'node:crypto';
import { EventDraft } from '@rebootless/events';
import { EventPublisher, ensureEventsTopic, replayLag } from '@rebootless/kafka';
import { type TestCluster, faultTestClient, startTestCluster } from '@rebootless/testing';
import { LedgerDatabase } from './database';
import { verifyLog } from './integrity';
import { LedgerConsumer } from './ledger-consumer';

jest.setTimeout(600_000);

const TOPIC = 'test.ledger-failover';
let cluster: TestCluster;
let dir: string;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A build requested: each on its own stream, so one batch spans the topic's partitions. */
function buildRequested(n: number): EventDraft {
  const buildId = `failover-${n}`;
  return {
    stream: `build/${buildId}`,
    payload: {
      type: 'BuildRequested',
      data: {
        buildId,
        patchId: `p-${n}`,
        patchName: `p-${n}`,
        version: 1,
        description: `build ${n}`,
        cves: [],
        replace: false,
        kernelReleases: ['6.1.0-18-cloud-amd64'],
        sourceKind: 1,
        sourceSha256: 'ab'.repeat(32),
      },
    },
  };
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-ledger-failover-'));
  cluster = await startTestCluster();
});

afterAll(async () => {
  await cluster?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

it('a ledger following the log while brokers die projects every acknowledged record: no unsealed finding, no row missing', async () => {
  const brokers = cluster.brokers;
  await ensureEventsTopic({ brokers, topic: TOPIC, durability: 'replicated', partitions: 12 });
  const settles: string[] = [];
  const builder = await EventPublisher.open({
    kafka: faultTestClient(brokers, 'failover-builder'),
    producerId: 'builder',
    stateDir: path.join(dir, 'builder'),
    topic: TOPIC,
    log: (line) => settles.push(line),
  });
  const serviceKeys = new Map([['builder', [builder.key.rawPublicKey]]]);
  const db = await LedgerDatabase.open({ sqliteFile: path.join(dir, `ledger-${randomUUID()}.sqlite`) });
  // The ledger's defaults: its unsealed-tail wait is the one under test.
  const ledger = new LedgerConsumer({
    kafka: faultTestClient(brokers, 'failover-ledger'),
    db,
    topic: TOPIC,
    serviceKeys,
  });
  await ledger.start();

  // Given a producer writing batches of 20 across the partitions, and the ledger keeping up
  const acked = new Set<string>();
  let n = 0;
  let writing = true;
  const writer = (async () => {
    while (writing) {
      try {
        for (const e of await builder.publish(Array.from({ length: 20 }, () => buildRequested(n++))))
          acked.add(e.eventId);
      } catch {
        await sleep(200);
      }
    }
  })();
  const ackedBy = async (count: number) => {
    while (acked.size < count) await sleep(50);
  };
  await ackedBy(1_000);

  // When one broker is SIGKILLed and comes back, then another is frozen longer than the clients wait
  cluster.signal(2, 'SIGKILL');
  await ackedBy(acked.size + 1_000);
  await cluster.restart(2);
  await ackedBy(acked.size + 500);
  cluster.signal(3, 'SIGSTOP');
  await sleep(12_000);
  cluster.signal(3, 'SIGCONT');
  await ackedBy(acked.size + 500);
  writing = false;
  await writer;
  await builder.publish([buildRequested(n++)]);
  await builder.close();

  // Then the ledger, once caught up, has projected what `ledger verify` folds from the log
  const kafka = faultTestClient(brokers, 'failover-check');
  const deadline = Date.now() + 180_000;
  while ((await replayLag(kafka, TOPIC, ledger.positions)).behind > 0n) {
    if (Date.now() > deadline) throw new Error(`the ledger did not catch up: ${JSON.stringify([...ledger.positions])}`);
    await sleep(200);
  }
  const stored = await db.query<{ kind: string; detail: string }>('SELECT kind, detail FROM integrity_findings');
  const verified = await verifyLog(kafka, TOPIC, serviceKeys, '', { stored: db });
  await ledger.stop();
  await db.close();
  process.stdout.write(
    `ledger failover: ${acked.size} events acknowledged, ${ledger.stats.projected} projected; the producer: ${settles.join(' | ') || 'nothing to settle'}\n`,
  );
  expect(stored.map((f) => `${f.kind}: ${f.detail}`)).toEqual([]);
  expect(verified.findings.map((f) => f.detail)).toEqual([]);
});
