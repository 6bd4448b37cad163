// A Kafka writer enrolling a host of its own (docs/adr/0012, "Agent keys are vouched for"): agent
// keys count only as bound by the dispatcher's gateway, so an agent chain written straight to the log, epoch start
// and all, properly sealed, is a stored finding and never a host; the agent the dispatcher bound
// is projected; after its key is revoked its later events are findings; a new key bound counts.
import { events } from '@rebootless/contracts';
import { EventDraft } from '@rebootless/events';
import { freshEventsTopic, testKafka } from '@rebootless/testing';
import { LedgerDatabase } from './database';
import { LedgerConsumer, replayLag } from './ledger-consumer';
import { LedgerQueries } from './queries';
import { LogWriter, ScriptedProducer, agentKeyBound, agentKeyRevoked, createScratchDatabase } from './scripted-log';

const kafka = testKafka('ledger-agent-keys-test');
const T0 = Date.UTC(2026, 0, 1);
const day = (d: number) => new Date(T0 + d * 86_400_000);
const UNSEALED_TIMEOUT_MS = 1_000;

function facts(hostId: string, bootId = 'boot-1'): events.HostFacts {
  return {
    hostId,
    hostname: hostId,
    machineId: `m-${hostId}`,
    kernelRelease: '6.1.0-18-cloud-amd64',
    kernelVersion: '#1 SMP Debian',
    arch: 'x86_64',
    distro: 'debian 12',
    bootId,
    labels: {},
    agentVersion: '0.1.0',
    tainted: '0',
    taintFlags: [],
  };
}

const onHost = (hostId: string, at: Date, payload: EventDraft['payload']): EventDraft => ({
  stream: `host/${hostId}`,
  occurredAt: at,
  actor: { kind: events.ActorKind.ACTOR_KIND_HOST, id: hostId, origin: hostId },
  payload,
});

const enrolled = (agent: ScriptedProducer, hostId: string, at: Date) =>
  agent.write([
    onHost(hostId, at, {
      type: 'HostEnrolled',
      data: { facts: facts(hostId), agentPublicKey: agent.key.rawPublicKey },
    }),
  ]);

const booted = (agent: ScriptedProducer, hostId: string, at: Date, bootId: string) =>
  agent.write([
    onHost(hostId, at, {
      type: 'HostBooted',
      data: { hostId, bootId, kernelRelease: '6.1.0-18-cloud-amd64', previousBootId: '' },
    }),
  ]);

describe.each(['sqlite', 'postgres'] as const)(
  'the ledger on %s, with agent keys bound by the dispatcher',
  (dialect) => {
    let db: LedgerDatabase;
    let consumer: LedgerConsumer;
    let q: LedgerQueries;
    let dropDb: (() => Promise<void>) | undefined;
    let topic = '';
    let writer: LogWriter;
    const dispatcher = new ScriptedProducer('dispatcher');
    const web2 = new ScriptedProducer('agent/web-02');
    const rogue = new ScriptedProducer('agent/rogue-01');

    const caughtUp = async () => {
      const guard = Date.now() + 90_000;
      while ((await replayLag(kafka, topic, consumer.positions)).behind > 0n) {
        if (Date.now() > guard) throw new Error('the ledger did not catch up');
        await new Promise((r) => setTimeout(r, 100));
      }
    };
    const findingsOf = async (producerId: string) =>
      (await q.integrityFindings()).filter((f) => f.producerId === producerId).map((f) => [f.kind, f.epoch, f.seq]);
    const waitForFindings = async (producerId: string, count: number) => {
      // Stored by the ledger on its own once the timeout passed; the deadline only guards the test.
      const guard = Date.now() + 60_000;
      for (;;) {
        const found = await findingsOf(producerId);
        if (found.length >= count) return found;
        if (Date.now() > guard) throw new Error(`fewer than ${count} finding(s) for ${producerId} were stored`);
        await new Promise((r) => setTimeout(r, 100));
      }
    };

    beforeAll(async () => {
      topic = await freshEventsTopic('ledger-agent-keys', 3);
      writer = await LogWriter.open(kafka, topic);
      await writer.send(dispatcher.start(day(0)));
      // The genuine agent, as the gateway relays it: its binding first, on its host's stream.
      await writer.send(agentKeyBound(dispatcher, web2, day(1)));
      await writer.send([...web2.start(day(1), 'host/web-02'), ...enrolled(web2, 'web-02', day(1))]);
      if (dialect === 'postgres') {
        const scratch = await createScratchDatabase('ledger_agent_keys');
        dropDb = scratch.drop;
        db = await LedgerDatabase.open({ databaseUrl: scratch.url });
      } else {
        const fs = await import('node:fs');
        const os = await import('node:os');
        const path = await import('node:path');
        db = await LedgerDatabase.open({ dataDir: fs.mkdtempSync(path.join(os.tmpdir(), 'ledger-agent-keys-')) });
      }
      consumer = new LedgerConsumer({
        kafka,
        db,
        topic,
        serviceKeys: new Map([['dispatcher', [dispatcher.key.rawPublicKey]]]),
        unsealedTailTimeoutMs: UNSEALED_TIMEOUT_MS,
      });
      await consumer.start();
      await caughtUp();
      q = new LedgerQueries(db, { onlineWindowMs: 600_000, now: () => T0 + 40 * 86_400_000 });
    });

    afterAll(async () => {
      await writer?.close();
      await consumer?.stop();
      await db?.close();
      await dropDb?.();
    });

    it('projects the agent whose key the dispatcher bound', async () => {
      expect((await q.getHost('web-02')).host?.facts?.hostname).toBe('web-02');
      expect(await findingsOf('agent/web-02')).toEqual([]);
    });

    it('keeps a host enrolled straight to Kafka with a key nobody bound out, as a stored finding', async () => {
      await writer.send([...rogue.start(day(2), 'host/rogue-01'), ...enrolled(rogue, 'rogue-01', day(2))]);
      expect(await waitForFindings('agent/rogue-01', 1)).toEqual([['unknown-producer-key', 1, 0]]);
      await expect(q.getHost('rogue-01')).rejects.toThrow(/rogue-01/);
    });

    it("makes a revoked key's later events findings, and counts the new key the dispatcher binds", async () => {
      await writer.send(agentKeyRevoked(dispatcher, web2, 1, day(3)));
      await writer.send(booted(web2, 'web-02', day(3), 'boot-revoked'));
      expect(await waitForFindings('agent/web-02', 1)).toEqual([['unknown-producer-key', 1, 3]]);

      // Rotation (or a rebuilt host): a new epoch, a new key, bound over the host's certificate.
      const rotated = new ScriptedProducer('agent/web-02', { epoch: 2 });
      await writer.send(agentKeyBound(dispatcher, rotated, day(4)));
      await writer.send([
        ...rotated.start(day(4), 'host/web-02'),
        ...booted(rotated, 'web-02', day(4), 'boot-rotated'),
      ]);
      // Projected once the ledger reads it (a refused tail elsewhere holds back its partition's stored offset).
      const guard = Date.now() + 60_000;
      while ((await q.getHost('web-02')).host?.facts?.bootId !== 'boot-rotated') {
        if (Date.now() > guard) throw new Error("the rotated key's event was not projected");
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(await findingsOf('agent/web-02')).toEqual([['unknown-producer-key', 1, 3]]);
    });
  },
);
