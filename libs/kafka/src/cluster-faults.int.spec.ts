// The event log on a three-broker KRaft cluster (DESIGN.md section 9, issue "Past one machine"):
// real JVMs on loopback, SIGKILLed and frozen while producers write and a reader replays. What a
// user checks: every event Kafka acknowledged is in the log exactly once, every chain is whole
// (no gap, no fork, all sealed), and a replay interrupted by a lost broker still reads all of it.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ChainVerifier, StaticKeyTrust, readEnvelope } from '@rebootless/events';
import { EventPublisher } from './publisher';
import { LogRecord, readRange } from './log-reader';
import { EventsTopicMismatchError, ensureEventsTopic } from './topic';
import { type TestCluster, faultTestClient, startTestCluster } from '@rebootless/testing';

jest.setTimeout(600_000);

const TOPIC = 'rebootless.events.v1';
let cluster: TestCluster;
let brokers: string[];
let dir: string;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

const client = (id: string) => faultTestClient(brokers, id);

function draft(n: number) {
  const hostId = `h${n % 40}`;
  return {
    stream: `host/${hostId}`,
    payload: {
      type: 'DriftDetected' as const,
      data: { hostId, kind: 'fault-test', detail: `event ${n}`, expected: [], observed: [] },
    },
  };
}

beforeAll(async () => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-cluster-faults-'));
  cluster = await startTestCluster();
  brokers = cluster.brokers;
});

afterAll(async () => {
  await cluster?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

describe('the topic bootstrap on a three-broker cluster', () => {
  it('creates the events topic with 3 replicas and min.insync.replicas=2, and refuses a weaker existing topic', async () => {
    const made = await ensureEventsTopic({ brokers, partitions: 12, durability: 'replicated' });
    expect([made.created, made.replicationFactor, made.configs['min.insync.replicas']]).toEqual([true, 3, '2']);

    // A topic someone created by hand with one copy is named, not used.
    const admin = client('weak-topic').admin();
    await admin.connect();
    await admin.createTopics({
      waitForLeaders: false,
      topics: [
        {
          topic: 'weak',
          numPartitions: 2,
          replicationFactor: 1,
          configEntries: [{ name: 'min.insync.replicas', value: '1' }],
        },
      ],
    });
    await admin.disconnect();
    const error = await ensureEventsTopic({ brokers, topic: 'weak', partitions: 2, durability: 'replicated' }).catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(EventsTopicMismatchError);
    expect((error as Error).message).toMatch(/replication factor is 1 \(expected >= 3\)/);
    expect((error as Error).message).toMatch(/min\.insync\.replicas is 1 \(expected >= 2\)/);
  });
});

describe('the event log when brokers die', () => {
  it('loses no acknowledged event and keeps every chain whole through a SIGKILL, a restart, a freeze and a replay cut short', async () => {
    const stateDir = path.join(dir, 'chains');
    const producers = ['dispatcher', 'agent/web-01'];
    const trust = new StaticKeyTrust();
    const publishers = new Map<string, EventPublisher>();
    for (const id of producers) {
      const pub = await EventPublisher.open({
        kafka: client(`fault-${id}`),
        producerId: id,
        stateDir: path.join(stateDir, id.replace('/', '_')),
        topic: TOPIC,
      });
      trust.vouch(id, pub.key.rawPublicKey);
      publishers.set(id, pub);
    }

    // Each producer writes batches of 20 in a loop until told to stop; what Kafka acknowledged
    // is remembered by event id; a publish rejects only for a batch its settling withdrew.
    const acked = new Map<string, string>();
    let refused = 0;
    let n = 0;
    let writing = true;
    const writers = producers.map(async (id) => {
      const pub = publishers.get(id)!;
      while (writing) {
        const batch = Array.from({ length: 20 }, () => draft(n++));
        try {
          for (const e of await pub.publish(batch)) acked.set(e.eventId, `${id} seq ${e.seq}`);
        } catch {
          refused += 1;
          await sleep(200);
        }
      }
    });
    const ackedBy = async (count: number) => {
      while (acked.size < count) await sleep(50);
    };

    // Given the producers are writing
    await ackedBy(2_000);
    // When node 2 is SIGKILLed, the others carry on; then it comes back
    cluster.signal(2, 'SIGKILL');
    const atKill = acked.size;
    await ackedBy(atKill + 2_000);
    await cluster.restart(2);
    await ackedBy(acked.size + 1_000);
    // When node 3 is frozen for longer than the clients' timeouts, then thawed
    cluster.signal(3, 'SIGSTOP');
    const atFreeze = acked.size;
    await sleep(12_000);
    cluster.signal(3, 'SIGCONT');
    await ackedBy(acked.size + 1_000);
    writing = false;
    await Promise.all(writers);
    // A clean close publishes nothing further; one last publish settles a batch left refused.
    for (const pub of publishers.values()) {
      for (const e of await pub.publish([draft(n++)])) acked.set(e.eventId, `final seq ${e.seq}`);
      await pub.close();
    }
    // Writes went on while a broker was dead and while one was frozen.
    expect(acked.size).toBeGreaterThan(atKill + 2_000);
    expect(acked.size).toBeGreaterThan(atFreeze + 1_000);

    // When a reader replays the log and node 1 is SIGKILLed halfway through
    const records: LogRecord[] = [];
    let half = 0;
    const admin = client('watermarks').admin();
    await admin.connect();
    const total = (await admin.fetchTopicOffsets(TOPIC)).reduce((s, w) => s + Number(w.high) - Number(w.low), 0);
    await admin.disconnect();
    await readRange({
      kafka: client('replay'),
      topic: TOPIC,
      timeoutMs: 300_000,
      onRecord: (r) => {
        records.push(r);
        if (records.length === Math.floor(total / 2)) {
          half = records.length;
          cluster.signal(1, 'SIGKILL');
        }
      },
    });

    // Then the replay was cut at half and still read every record once
    expect(half).toBe(Math.floor(total / 2));
    expect(records).toHaveLength(total);
    expect(new Set(records.map((r) => `${r.partition}/${r.offset}`)).size).toBe(total);

    // And every acknowledged event is there exactly once, and every chain is whole and sealed
    const inLog = new Set(records.map((r) => readEnvelope(r.value!).eventId));
    const verifier = new ChainVerifier(trust);
    for (const r of records) verifier.ingest(r.value, { partition: r.partition, offset: r.offset });
    const report = verifier.finish();
    const lost = [...acked].filter(([id]) => !inLog.has(id));
    expect(lost.map(([, where]) => where)).toEqual([]);
    // A batch whose fate the producer could not see is settled from the log; a copy that still
    // landed late is byte for byte the same event (a `duplicate`, kept out of every read model),
    // never a second event in the same place (`conflict`) nor a hole (`gap`).
    const copies = report.findings.filter((f) => f.kind === 'duplicate');
    expect(report.findings.filter((f) => f.kind !== 'duplicate')).toEqual([]);
    expect(records.length - inLog.size).toBe(copies.length);
    for (const chain of report.chains) expect(chain.sealed).toBe(chain.lastSeq);
    expect(report.chains.map((c) => c.producerId).sort()).toEqual([...producers].sort());
    process.stdout.write(
      `cluster faults: ${acked.size} events acknowledged, ${refused} batch(es) refused and settled, ${total} records replayed, ${copies.length} late copies\n`,
    );
  });
});
