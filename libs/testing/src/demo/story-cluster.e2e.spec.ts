// `npm start` on a three-broker KRaft cluster (issue "Past one machine"): the stack is pointed at
// the cluster with KAFKA_BROKERS and creates its topic replicated (3 copies, min.insync.replicas
// 2); when the story's rollout begins, one broker is SIGKILLed, and restarted 5 s later. The
// story must end as it does on one broker, the ledger must verify every chain with no finding,
// and no host may have been asked twice to apply a patch in a rollout.
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { decodeEvent } from '@rebootless/events';
import { kafkaClient } from '@rebootless/kafka';
import { readWholeTopic } from '../kafka';
import { type TestCluster, startTestCluster } from '../kafka-cluster';
import { type StoryStack, startStoryStack } from './story-stack';

jest.setTimeout(20 * 60_000);

const AGENTS = 6;

describe('npm start on a three-broker cluster, a broker SIGKILLed mid-rollout', () => {
  let cluster: TestCluster;
  let brokers: string;
  let stack: StoryStack;
  const topic = `test.cluster-story.${randomUUID().slice(0, 8)}`;
  let killedAt = '';
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let story: any;

  beforeAll(async () => {
    cluster = await startTestCluster();
    brokers = cluster.brokers.join(',');

    stack = await startStoryStack({
      name: 'cluster-story',
      agents: AGENTS,
      topic,
      env: { KAFKA_BROKERS: brokers, KAFKA_DURABILITY: 'replicated' },
    });
    // When the rollout begins, broker 2 dies; 5 s later it is back.
    const begun = Date.now();
    while (!stack.stderr().includes('== 4. Rollout in waves')) {
      if (stack.child.exitCode !== null)
        throw new Error(`the stack exited (${stack.child.exitCode}):\n${stack.stderr()}`);
      if (Date.now() - begun > 12 * 60_000) throw new Error(`no rollout within 12 minutes:\n${stack.stderr()}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    cluster.signal(2, 'SIGKILL');
    killedAt = stack.stderr().split('\n').slice(-3).join(' | ');
    await new Promise((r) => setTimeout(r, 5_000));
    await cluster.restart(2);
    const result = await stack.result().catch((error: unknown) => ({ ok: false, error: String(error) }));
    if (!result.ok) {
      const tail = (name: string) => {
        const log = path.join(stack.dir, 'data', 'logs', `${name}.log`);
        const lines = fs.existsSync(log) ? fs.readFileSync(log, 'utf8').split('\n') : [];
        return `${name} log:\n${lines
          .filter((l) => !l.includes('ECONNREFUSED'))
          .slice(-25)
          .join('\n')}`;
      };
      throw new Error(`the stack failed: ${result.error}\n${stack.stderr()}\n${tail('dispatcher')}\n${tail('ledger')}`);
    }
    story = result['story'];
  });

  afterAll(async () => {
    await stack?.stop();
    await cluster?.stop();
    if (stack?.dir && !process.env.KEEP_STACK) fs.rmSync(stack.dir, { recursive: true, force: true });
  });

  it('tells the whole story: the rollout completes but for the stalled host, the undo, the PCI report after', () => {
    expect(killedAt).not.toBe('');
    expect(stack.stderr()).toContain(`topic ${topic}: created`);
    expect(story.rollout.state).toBe('completed');
    expect(story.rollout.succeeded).toBe(AGENTS - 1);
    expect(story.undo).toMatchObject({ hostId: story.undo_host, state: 'completed' });
    expect(story.pciAfter).toMatchObject({ hostsInScope: AGENTS, hostsCompliant: AGENTS - 2 });
  });

  it('verifies the ledger with 0 findings: no chain has a gap, a fork or an unsealed tail', async () => {
    // Each finding names the record it is about: shown with what that record is.
    const named = (story.verify.details as string[]).flatMap((d) => {
      const m = /partition_no=(\d+),record_offset=(\d+)/.exec(d);
      return m ? [{ detail: d, partition: Number(m[1]), offset: m[2]! }] : [];
    });
    if (named.length > 0) {
      const records = await readWholeTopic(kafkaClient(brokers.split(','), 'cluster-story-findings'), topic);
      for (const n of named) {
        const r = records.find((x) => x.partition === n.partition && x.offset === n.offset);
        const body = r?.value ? decodeEvent(r.value).body : undefined;
        process.stdout.write(
          `${n.detail}: ${body ? `${body.producer?.producerId} seq ${body.producer?.seq} ${body.type} on ${body.stream}` : 'not found'}\n`,
        );
      }
    }
    expect(story.verify.details).toEqual([]);
    expect(story.verify.findings).toBe(0);
  });

  it('keeps the log on 3 replicas, and asks no host twice to apply a patch in one rollout', async () => {
    const kafka = kafkaClient(brokers.split(','), 'cluster-story-check');
    const admin = kafka.admin();
    await admin.connect();
    const { topics } = await admin.fetchTopicMetadata({ topics: [topic] });
    await admin.disconnect();
    expect(topics[0]!.partitions.every((p) => p.replicas.length === 3)).toBe(true);

    const asks = new Map<string, Set<string>>();
    const applied = new Map<string, number>();
    for (const r of await readWholeTopic(kafka, topic)) {
      const { body } = decodeEvent(r.value!);
      const ask = body.hostApplyRequested;
      if (ask) {
        const key = `${ask.rolloutId} ${ask.hostId} ${ask.patchId} step ${ask.undoStep}`;
        asks.set(key, (asks.get(key) ?? new Set()).add(ask.commandId));
      }
      if (body.patchApplied)
        applied.set(body.patchApplied.commandId, (applied.get(body.patchApplied.commandId) ?? 0) + 1);
    }
    expect(asks.size).toBeGreaterThanOrEqual(AGENTS);
    expect([...asks].filter(([, ids]) => ids.size !== 1)).toEqual([]);
    expect([...applied].filter(([, n]) => n !== 1)).toEqual([]);
  });
});
