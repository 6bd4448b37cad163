import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChainVerifier, KeyTrust, decodeEvent, readEnvelope } from '@rebootless/events';
import { builtEntry, freshEventsTopic, readWholeTopic, startNode, testKafka } from '@rebootless/testing';
import { events } from '@rebootless/contracts';
import { ChainStateFile } from './chain-state';

const kafka = testKafka('publisher-restart-test');

describe('a producer that is killed and restarted', () => {
  it('continues its chain without a gap; with its state deleted it starts a new epoch, announced by an event', async () => {
    const script = builtEntry('libs/testing/dist/publisher-process.js');
    const topic = await freshEventsTopic('restart');
    const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'restart-'));
    const env = { TOPIC: topic, PRODUCER_ID: 'dispatcher', STATE_DIR: stateDir, BATCH: '40' };
    const files = new ChainStateFile(stateDir, 'dispatcher');

    // Given a producer publishing without pause
    const first = startNode(script, env);
    await first.waitFor(/acked (1[0-9]{3})/);
    // When it is killed with SIGKILL in the middle of its work
    first.child.kill('SIGKILL');
    expect((await first.exited()).signal).toBe('SIGKILL');
    const killedAt = Math.max(...[...first.output().matchAll(/acked (\d+)/g)].map((m) => Number(m[1])));

    // And started again on the same state
    const second = startNode(script, { ...env, LIMIT: '400' });
    await second.waitFor(/closed/);
    const reopened = Number(second.output().match(/opened epoch \d+ at seq (\d+)/)![1]);
    expect(reopened).toBeGreaterThanOrEqual(killedAt);

    // Then the log holds one chain, seq 1 to the end, with no gap, duplicate or fork
    const key = files.readKey();
    const trust: KeyTrust = { keysFor: (id) => (id === 'dispatcher' ? [key.rawPublicKey] : []) };
    const verify = async () => {
      const v = new ChainVerifier(trust);
      const records = await readWholeTopic(kafka, topic);
      records.forEach((r) => v.ingest(r.value, { partition: r.partition, offset: r.offset }));
      return { report: v.finish(), records };
    };
    let { report } = await verify();
    expect(report.findings).toEqual([]);
    expect(report.chains).toEqual([
      expect.objectContaining({ producerId: 'dispatcher', lastSeq: reopened + 400, events: reopened + 400 }),
    ]);
    const firstEpoch = report.chains[0]!.epoch;

    // When its state file is deleted (a new disk) and it starts again
    fs.rmSync(files.statePath);
    await new Promise((r) => setTimeout(r, 1100)); // epochs are numbered by the second they start in
    const third = startNode(script, { ...env, LIMIT: '10' });
    await third.waitFor(/closed/);

    // Then it writes a new epoch that opens with ChainEpochStarted, saying the state was lost
    const after = await verify();
    report = after.report;
    expect(report.findings).toEqual([]);
    const epochs = report.chains.map((c) => [c.epoch, c.lastSeq]);
    expect(epochs).toHaveLength(2);
    const secondEpoch = report.chains.find((c) => c.epoch !== firstEpoch)!;
    expect(secondEpoch.epoch).toBeGreaterThan(firstEpoch);
    expect(secondEpoch.lastSeq).toBe(11);
    const opening = after.records
      .map((r) => r.value!)
      .find((v) => {
        const e = readEnvelope(v);
        return e.epoch === secondEpoch.epoch && e.seq === 1;
      })!;
    const { body } = decodeEvent(opening);
    expect(body.type).toBe('ChainEpochStarted');
    expect(body.chainEpochStarted!.reason).toBe(events.EpochReason.EPOCH_REASON_STATE_LOST);
    expect(Buffer.from(body.chainEpochStarted!.publicKey)).toEqual(key.rawPublicKey);
  });
});
