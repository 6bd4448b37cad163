// A Kafka writer against the dispatcher (docs/threat-model.md, "Kafka writer"): rollouts the
// dispatcher never wrote, appended to the real log, must not be run after its next restart. The
// built dispatcher runs as a real process; the forger writes with kafkajs only.
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { dispatcher, events } from '@rebootless/contracts';
import {
  ChainHead,
  ChainedEvent,
  EventDraft,
  appendToChain,
  decodeEvent,
  generateSigningKey,
  startEpoch,
} from '@rebootless/events';
import {
  freshEventsTopic,
  readWholeTopic,
  rolloutClient,
  startDispatcher,
  testKafka,
  unary,
  type Client,
  type ServiceProcess,
} from '@rebootless/testing';

jest.setTimeout(5 * 60_000);

const brokers = process.env['KAFKA_BROKERS'] ?? '127.0.0.1:9092';
const forger = generateSigningKey();
let topic: string;
let dataDir: string;
let proc: ServiceProcess;
let address: string;
let client: Client;

function rolloutCreated(rolloutId: string): EventDraft {
  return {
    stream: `rollout/${rolloutId}`,
    payload: {
      type: 'RolloutCreated',
      data: {
        rolloutId,
        patchId: 'nft-verdict',
        version: '1',
        selector: { kernelReleases: [], labels: {}, hostIds: ['web-02'] },
        waves: [{ index: 0, name: 'all', hostIds: ['web-02'] }],
        skippedHostIds: [],
        undo: true,
        reason: 'forged',
        allowForce: false,
        allowDowngrade: true,
        undoModules: {},
        undoPlans: {},
      } as unknown as events.RolloutCreated,
    },
  };
}

async function send(records: ChainedEvent[]): Promise<void> {
  const producer = testKafka().producer({ allowAutoTopicCreation: false });
  await producer.connect();
  await producer.send({ topic, acks: -1, messages: records.map((e) => ({ key: e.stream, value: e.envelope })) });
  await producer.disconnect();
}

/** The dispatcher's chain head as the log shows it: what a forger can read. */
async function dispatcherHead(): Promise<ChainHead> {
  let head: ChainHead | undefined;
  for (const r of await readWholeTopic(testKafka(), topic)) {
    if (!r.value) continue;
    const { envelope, body } = decodeEvent(r.value);
    const p = body.producer;
    if (p?.producerId === 'dispatcher' && (!head || Number(p.seq) > head.seq))
      head = { producerId: 'dispatcher', epoch: p.epoch, seq: Number(p.seq), hash: Buffer.from(envelope.hash) };
  }
  if (!head) throw new Error('the dispatcher wrote nothing to the log');
  return head;
}

beforeAll(async () => {
  topic = await freshEventsTopic('dispatcher-forged', 3);
  dataDir = fs.mkdtempSync(path.join(tmpdir(), 'rebootless-dispatcher-forged-'));
  ({ process: proc, address } = await startDispatcher({
    topic,
    brokers,
    dataDir,
    extra: { DISPATCHER_UNSEALED_TAIL_TIMEOUT_MS: '500' },
  }));
  proc.kill('SIGTERM');
  await proc.exited;
});

afterAll(async () => {
  client?.close();
  await proc?.stop();
  fs.rmSync(dataDir, { recursive: true, force: true });
});

describe('the dispatcher, restarted with forged rollouts in the log', () => {
  it('runs none of them and sends no command', async () => {
    // Given: an undo rollout appended unsealed to the dispatcher's own chain at head+1 ...
    const head = await dispatcherHead();
    const unsealed = appendToChain(head, [rolloutCreated('r-unsealed'), rolloutCreated('r-unsealed-2')], forger);
    await send([unsealed.events[0]!]);
    // ... one sealed in a new epoch of "dispatcher" under a key nobody vouches for ...
    const epoch = appendToChain(
      startEpoch('dispatcher', head.epoch + 1),
      [
        {
          stream: 'producer/dispatcher',
          payload: {
            type: 'ChainEpochStarted',
            data: { publicKey: forger.rawPublicKey, previousEpoch: head.epoch, reason: 1, detail: '' },
          },
        },
        rolloutCreated('r-new-epoch'),
      ],
      forger,
    );
    await send(epoch.events);
    // ... and one sealed by a producer that may not create rollouts at all.
    const agentStart = appendToChain(
      startEpoch('agent/evil-01', 1),
      [
        {
          stream: 'host/evil-01',
          payload: {
            type: 'ChainEpochStarted',
            data: { publicKey: forger.rawPublicKey, previousEpoch: 0, reason: 1, detail: '' },
          },
        },
        rolloutCreated('r-by-agent'),
      ],
      forger,
    );
    await send(agentStart.events);

    // When the dispatcher starts again (ready = rebuilt from the whole log)
    ({ process: proc, address } = await startDispatcher({
      topic,
      brokers,
      dataDir,
      extra: { DISPATCHER_UNSEALED_TAIL_TIMEOUT_MS: '500' },
    }));
    client = rolloutClient(address);

    // Then it knows none of those rollouts
    const listed = await unary<dispatcher.ListRolloutsResponse>(client, 'listRollouts', { states: [], patchId: '' });
    expect(listed.rollouts).toEqual([]);
    for (const rolloutId of ['r-unsealed', 'r-new-epoch', 'r-by-agent']) {
      const e = (await unary(client, 'getRollout', { rolloutId }).catch((err: ServiceError) => err)) as ServiceError;
      expect([e.code, e.details]).toEqual([status.NOT_FOUND, `no rollout ${rolloutId}`]);
    }
    // and says why in its log
    expect(proc.output).toMatch(
      new RegExp(`event log: unsealed: dispatcher epoch ${head.epoch}: seq ${head.seq + 1} .* not acted on`),
    );
    expect(proc.output).toMatch(
      new RegExp(`event log: unknown-producer-key: dispatcher epoch ${head.epoch + 1} .* not acted on`),
    );
    expect(proc.output).toMatch(
      /event log: unauthorized: agent\/evil-01 seq 2 \(RolloutCreated\): an agent may not emit RolloutCreated/,
    );
    // and the log holds no command it sent
    const commands = (await readWholeTopic(testKafka(), topic)).filter((r) => {
      const type = r.value ? decodeEvent(r.value).body.type : '';
      return type === 'HostApplyRequested' || type === 'HostRevertRequested' || type === 'WaveStarted';
    });
    expect(commands).toEqual([]);
  });
});
