// A seal that lands as late as a live producer's re-send does (docs/adr/0012, addendum): a batch
// of which a lost broker took the last, sealed record is completed by its producer only once the
// settle grace has passed since the send. The ledger, caught up with the log all that while, must
// keep waiting and then project the batch whole (ledger-forgery.int.spec: a tail no seal covers
// still becomes a finding).
import * as path from 'node:path';
import * as fs from 'node:fs';
import * as os from 'node:os';
import { DEFAULT_SETTLE_GRACE_MS, replayLag } from '@rebootless/kafka';
import { EventDraft } from '@rebootless/events';
import { freshEventsTopic, testKafka } from '@rebootless/testing';
import { LedgerDatabase } from './database';
import { LedgerConsumer } from './ledger-consumer';
import { LogWriter, ScriptedProducer } from './scripted-log';

jest.setTimeout(120_000);

const kafka = testKafka('ledger-late-seal');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Builds requested, each on its own stream, so a batch spans the topic's partitions. */
function builds(from: number, count: number): EventDraft[] {
  return Array.from({ length: count }, (_, i) => {
    const buildId = `late-seal-${from + i}`;
    return {
      stream: `build/${buildId}`,
      payload: {
        type: 'BuildRequested' as const,
        data: {
          buildId,
          patchId: buildId,
          patchName: buildId,
          version: 1,
          description: 'a build',
          cves: [],
          replace: false,
          kernelReleases: ['6.1.0-18-cloud-amd64'],
          sourceKind: 1,
          sourceSha256: 'ab'.repeat(32),
        },
      },
    };
  });
}

it(`waits for a seal that lands ${DEFAULT_SETTLE_GRACE_MS / 1000} s (the settle grace) after its batch, and projects the batch whole`, async () => {
  const topic = await freshEventsTopic('late-seal');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-late-seal-'));
  const builder = new ScriptedProducer('builder');
  const writer = await LogWriter.open(kafka, topic);
  const db = await LedgerDatabase.open({ sqliteFile: path.join(dir, 'ledger.sqlite') });
  // The ledger's own default wait, the setting under test.
  const ledger = new LedgerConsumer({
    kafka,
    db,
    topic,
    serviceKeys: new Map([['builder', [builder.key.rawPublicKey]]]),
  });
  try {
    await ledger.start();
    await writer.send(builder.start(new Date()));
    const caughtUp = async () => {
      while ((await replayLag(kafka, topic, ledger.positions)).behind > 0n) await sleep(100);
    };
    await caughtUp();

    // Given a batch of ten whose last record, the one carrying the seal, is held back
    const batch = builder.write(builds(0, 10));
    await writer.send(batch.slice(0, -1));
    while (ledger.stats.records < 10) await sleep(50);
    // When it lands only after the producer's settle grace, the ledger read to the log's end meanwhile
    await sleep(DEFAULT_SETTLE_GRACE_MS + 1_000);
    await writer.send(batch.slice(-1));
    await caughtUp();

    // Then all ten are projected, and nothing was called unsealed
    const rows = await db.query<{ n: number | string }>(
      `SELECT COUNT(*) AS n FROM audit_log WHERE type = 'BuildRequested'`,
    );
    const findings = await db.query<{ kind: string; detail: string }>('SELECT kind, detail FROM integrity_findings');
    expect(findings.map((f) => `${f.kind}: ${f.detail}`)).toEqual([]);
    expect(Number(rows[0]!.n)).toBe(10);
  } finally {
    await ledger.stop();
    await db.close();
    await writer.close();
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
