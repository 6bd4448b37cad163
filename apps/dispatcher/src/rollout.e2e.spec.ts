// Rollouts as an operator runs them: the built builder and dispatcher as child processes on one
// fresh topic of the real broker, a livepatch module really compiled by the builder, and real
// agents (libs/agent-runtime) on simulated kernels, connected over real gRPC streams.
// Build first (`npm run build`); the kernel headers come from the builder's cache.
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { status, type ServiceError } from '@grpc/grpc-js';
import { dispatcher, events, grpcServices, ledger } from '@rebootless/contracts';
import * as grpc from '@grpc/grpc-js';
import { appendToChain, decodeEvent, generateSigningKey, startEpoch } from '@rebootless/events';
import { freshEventsTopic, readWholeTopic, testKafka } from '@rebootless/testing';
import {
  buildPatch,
  hostStates,
  readStream,
  rolloutClient,
  serviceClient,
  startBuilder,
  startDispatcher,
  startLedger,
  unary,
  freePort,
  type BuiltPatch,
  type Client,
  type ServiceProcess,
} from '@rebootless/testing';
import { SimulatedFleet, type SimulatedHostSpec } from '@rebootless/testing';
import { currentDebianCloudRelease } from '@rebootless/kernel-toolchain';

// The patch is really built, so its release is Debian's current cloud kernel, resolved when the
// tests run; the other release only names hosts the patch was not built for.
let RELEASE: string;
const OTHER_RELEASE = '6.1.0-1-cloud-amd64';
const R = dispatcher.RolloutState;
const H = dispatcher.HostRolloutState;

jest.setTimeout(10 * 60_000);

const brokers = process.env['KAFKA_BROKERS'] ?? '127.0.0.1:9092';
const kafka = testKafka('dispatcher-e2e');

let root: string;
let topic: string;
let builderProcess: ServiceProcess;
let builderAddress: string;
let builderKey: Buffer;
let patch: BuiltPatch;
let dispatcherDataDir: string;
let dispatcherProcess: ServiceProcess;
let dispatcherAddress: string;
let client: Client;
let ledgerProcess: ServiceProcess | undefined;
let builderDir: string;
let bigFleet: SimulatedFleet;
let ledgerAddress: string;
let ledgerClient: Client;
const fleets: SimulatedFleet[] = [];

async function restartDispatcher(kill: NodeJS.Signals = 'SIGTERM'): Promise<void> {
  client?.close();
  dispatcherProcess.kill(kill);
  await dispatcherProcess.exited;
  ({ process: dispatcherProcess } = await startDispatcher({
    topic,
    brokers,
    dataDir: dispatcherDataDir,
    address: dispatcherAddress,
    extra: { DISPATCHER_LEDGER_ADDRESS: ledgerAddress, DISPATCHER_TRUSTED_DATA_DIRS: builderDir },
  }));
  client = rolloutClient(dispatcherAddress);
}

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(tmpdir(), 'rebootless-dispatcher-e2e-'));
  topic = await freshEventsTopic('dispatcher', 6);
  builderDir = path.join(root, 'builder');
  RELEASE = await currentDebianCloudRelease();
  ({
    process: builderProcess,
    address: builderAddress,
    publicKey: builderKey,
  } = await startBuilder({
    topic,
    brokers,
    dataDir: builderDir,
  }));
  patch = await buildPatch(builderAddress, { patchName: 'cmdline-rollout', kernelReleases: [RELEASE] });
  dispatcherDataDir = path.join(root, 'dispatcher');
  ledgerAddress = `127.0.0.1:${await freePort()}`;
  ({ process: dispatcherProcess, address: dispatcherAddress } = await startDispatcher({
    topic,
    brokers,
    dataDir: dispatcherDataDir,
    extra: { DISPATCHER_LEDGER_ADDRESS: ledgerAddress, DISPATCHER_TRUSTED_DATA_DIRS: builderDir },
  }));
  client = rolloutClient(dispatcherAddress);
});

afterAll(async () => {
  // Kept for whoever reads a failure: the services' own account of what happened.
  fs.writeFileSync(path.join(tmpdir(), 'rebootless-dispatcher-e2e.log'), dispatcherProcess?.output ?? '');
  fs.writeFileSync(path.join(tmpdir(), 'rebootless-dispatcher-e2e-ledger.log'), ledgerProcess?.output ?? '');
  ledgerClient?.close();
  await ledgerProcess?.stop();
  for (const fleet of fleets) await fleet.close();
  client?.close();
  await dispatcherProcess?.stop();
  await builderProcess?.stop();
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

function specs(prefix: string, n: number, overrides: Partial<SimulatedHostSpec> = {}): SimulatedHostSpec[] {
  return Array.from({ length: n }, (_, i) => ({
    hostId: `${prefix}-${String(i).padStart(3, '0')}`,
    kernelRelease: RELEASE,
    labels: { group: prefix },
    ...overrides,
  }));
}

async function fleetOf(hosts: SimulatedHostSpec[], start = true): Promise<SimulatedFleet> {
  const fleet = new SimulatedFleet(
    {
      root: path.join(root, 'hosts'),
      dispatcherAddress,
      builderAddress,
      builderPublicKey: builderKey,
      agentTransitionTimeoutMs: 3_000,
    },
    hosts,
  );
  fleets.push(fleet);
  if (start) {
    await fleet.start();
    await until(() => fleet.connectedCount() === hosts.length, 'every agent connected');
    await untilDispatcherKnows(hosts);
  }
  return fleet;
}

/**
 * A connected agent is not yet a host the dispatcher may target: its enrolment becomes a fact
 * only once its seal has been read (ADR 0012). A dry run shows when every host of each group is.
 */
async function untilDispatcherKnows(hosts: readonly SimulatedHostSpec[]): Promise<void> {
  const groups = new Map<string, number>();
  for (const h of hosts) {
    const g = h.labels?.['group'];
    if (g !== undefined) groups.set(g, (groups.get(g) ?? 0) + 1);
  }
  for (const [group, count] of groups) {
    await until(async () => {
      try {
        const { rollout } = await unary<dispatcher.CreateRolloutResponse>(client, 'createRollout', {
          patchId: patch.patchId,
          version: patch.version,
          selector: selector(group),
          strategy: strategy({}),
          dryRun: true,
          skipApproval: true,
        });
        return (rollout?.waves ?? []).reduce((n, w) => n + w.hosts.length, 0) >= count;
      } catch (error) {
        // Any refusal but "no host" (a host on a kernel the patch was not built for) means the
        // dispatcher sees the group's hosts: the test itself asserts that refusal.
        return !String((error as Error).message).includes('matches no host');
      }
    }, `the dispatcher knows the ${count} host(s) of group ${group}`);
  }
}

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

function selector(group: string): events.HostSelector {
  return { kernelReleases: [], labels: { group }, hostIds: [] };
}

function strategy(overrides: Partial<events.RolloutStrategy>): Partial<events.RolloutStrategy> {
  return {
    canaryHostIds: [],
    canaryCount: 1,
    waves: [{ percent: 100 }],
    soakSeconds: 0,
    onFailure: events.FailurePolicy.FAILURE_POLICY_PAUSE,
    applyTimeoutSeconds: 60,
    offlineDeadlineSeconds: 600,
    ...overrides,
  };
}

/** A rollout; unless its strategy asks for the first approval, it opts out of it explicitly (ADR 0013). */
async function create(group: string, s: Partial<events.RolloutStrategy>): Promise<dispatcher.Rollout> {
  const { rollout } = await unary<dispatcher.CreateRolloutResponse>(client, 'createRollout', {
    patchId: patch.patchId,
    version: patch.version,
    selector: selector(group),
    strategy: strategy(s),
    skipApproval: !s.approvalBeforeFirstWave,
  });
  return rollout!;
}

/** The RolloutCreated the dispatcher wrote for a rollout. */
async function rolloutCreated(rolloutId: string): Promise<events.RolloutCreated> {
  const records = await readWholeTopic(kafka, topic);
  const found = records
    .filter((r) => r.key === `rollout/${rolloutId}`)
    .map((r) => decodeEvent(r.value!).body.rolloutCreated)
    .find((c) => c !== undefined);
  if (!found) throw new Error(`no RolloutCreated for ${rolloutId}`);
  return found;
}

async function get(rolloutId: string): Promise<dispatcher.Rollout> {
  return (await unary<dispatcher.GetRolloutResponse>(client, 'getRollout', { rolloutId })).rollout!;
}

async function untilState(rolloutId: string, states: dispatcher.RolloutState[], timeoutMs = 120_000) {
  let last: dispatcher.Rollout | undefined;
  await until(
    async () => {
      last = await get(rolloutId);
      return states.includes(last.state);
    },
    `rollout ${rolloutId} is ${states.map((s) => R[s]).join(' or ')} (last: ${last && R[last.state]} ${last?.stateReason})`,
    timeoutMs,
  );
  return last!;
}

/** The dispatcher's and the agents' events about some hosts, from the log. */
async function logOf(hostIds: Set<string>) {
  const records = await readWholeTopic(kafka, topic);
  const out: { type: string; hostId: string; body: events.EventBody }[] = [];
  // A producer killed (or whose relay was killed) after Kafka took an event but before the
  // acknowledgement came back sends it again: the same event at the same (producer, epoch, seq).
  // Readers drop such copies, and so does this check; a different event at a seen position fails.
  const seen = new Map<string, string>();
  for (const r of records) {
    if (!r.key?.startsWith('host/') || !hostIds.has(r.key.slice(5))) continue;
    const { body } = decodeEvent(r.value!);
    const at = `${body.producer?.producerId}/${body.producer?.epoch}/${body.producer?.seq}`;
    const earlier = seen.get(at);
    if (earlier !== undefined) {
      expect(body.eventId).toBe(earlier);
      continue;
    }
    seen.set(at, body.eventId);
    out.push({ type: body.type, hostId: r.key.slice(5), body });
  }
  return out;
}

/** The hosts of a group whose stack, as the ledger tells it, carries the patch. */
async function carriers(group: string): Promise<Set<string>> {
  const found = new Set<string>();
  let pageToken = '';
  do {
    const page = await unary<ledger.ListHostsResponse>(ledgerClient, 'listHosts', {
      pageSize: 500,
      pageToken,
      labels: { group },
      carriesPatchId: patch.patchId,
    });
    for (const h of page.hosts) found.add(h.facts!.hostId);
    pageToken = page.nextPageToken;
  } while (pageToken);
  return found;
}

function count<T>(items: T[], key: (t: T) => string): Map<string, number> {
  const m = new Map<string, number>();
  for (const item of items) m.set(key(item), (m.get(key(item)) ?? 0) + 1);
  return m;
}

describe('bad input', () => {
  beforeAll(async () => {
    const hosts = [
      ...specs('bad', 2),
      { hostId: 'bad-other', kernelRelease: OTHER_RELEASE, labels: { group: 'bad-other' } },
    ];
    await fleetOf(hosts);
  });

  async function refused(request: Record<string, unknown>): Promise<ServiceError> {
    const error = await unary(client, 'createRollout', {
      patchId: patch.patchId,
      version: patch.version,
      selector: selector('bad'),
      strategy: strategy({}),
      ...request,
    }).then(
      () => undefined,
      (e: ServiceError) => e,
    );
    if (!error) throw new Error(`CreateRollout ${JSON.stringify(request)} was accepted`);
    return error;
  }

  it('refuses to skip the approval of a rollout that may force or downgrade', async () => {
    for (const [flag, named] of [
      [{ allowForce: true }, 'allow_force'],
      [{ allowDowngrade: true }, 'allow_downgrade'],
    ] as const) {
      const error = await refused({ ...flag, skipApproval: true });
      expect(error.code).toBe(status.INVALID_ARGUMENT);
      expect(error.details).toBe(
        `skip_approval: a rollout with ${named} always needs an approver other than its creator`,
      );
    }
  });

  it('refuses an unknown patch', async () => {
    const e = await refused({ patchId: 'no-such-patch' });
    expect(e.code).toBe(status.FAILED_PRECONDITION);
    expect(e.details).toBe('patch no-such-patch is not published (the log has no PatchPublished for it)');
  });

  it('refuses a selector that matches nothing', async () => {
    const e = await refused({ selector: selector('nobody') });
    expect(e.code).toBe(status.FAILED_PRECONDITION);
    expect(e.details).toBe('the selector matches no host (labels group=nobody)');
  });

  it('refuses a patch that was not built for the selected kernels', async () => {
    const e = await refused({ selector: selector('bad-other') });
    expect(e.code).toBe(status.FAILED_PRECONDITION);
    expect(e.details).toContain(
      `was not built for the selected hosts' kernels: they run ${OTHER_RELEASE}; it was built for ${RELEASE}`,
    );
    const named = await refused({ selector: { kernelReleases: [OTHER_RELEASE], labels: {}, hostIds: [] } });
    expect(named.code).toBe(status.FAILED_PRECONDITION);
    expect(named.details).toContain(
      `was not built for kernel release(s) ${OTHER_RELEASE} named in selector.kernel_releases`,
    );
  });

  it('refuses a wave plan that does not add up', async () => {
    const e = await refused({ strategy: strategy({ canaryCount: 0, waves: [{ percent: 30 }, { percent: 30 }] }) });
    expect(e.code).toBe(status.INVALID_ARGUMENT);
    expect(e.details).toBe('strategy.waves: wave percentages add up to 60, not 100');
  });

  it('refuses a retracted patch', async () => {
    const retracted = await buildPatch(builderAddress, { patchName: 'cmdline-retracted', kernelReleases: [RELEASE] });
    const builderClient = serviceClient(grpcServices.build, builderAddress);
    await unary(builderClient, 'retractPatch', {
      patchId: retracted.patchId,
      version: retracted.version,
      reason: 'breaks nfs',
    });
    builderClient.close();
    await until(async () => {
      const e = await refused({ patchId: retracted.patchId, version: retracted.version });
      return e.code === status.FAILED_PRECONDITION && e.details.includes('was retracted');
    }, 'the dispatcher saw the retraction');
    const e = await refused({ patchId: retracted.patchId, version: retracted.version });
    expect(e.details).toBe(`patch ${retracted.patchId} version ${retracted.version} was retracted: breaks nfs`);
  });
});

describe("an operator's commands", () => {
  it('waits for an approval before the first wave unless the request opts out, and records the opt-out', async () => {
    const hosts = specs('gate', 2);
    const fleet = await fleetOf(hosts);
    // Nothing said about approval: the canary waits, and no host is asked to load anything.
    const { rollout: waiting } = await unary<dispatcher.CreateRolloutResponse>(client, 'createRollout', {
      patchId: patch.patchId,
      version: patch.version,
      selector: selector('gate'),
      strategy: strategy({ canaryCount: 1 }),
      allowForce: true,
    });
    expect(waiting!.state).toBe(R.ROLLOUT_STATE_AWAITING_APPROVAL);
    expect(waiting!.waves[0]!.state).toBe(dispatcher.WaveState.WAVE_STATE_AWAITING_APPROVAL);
    const created = await rolloutCreated(waiting!.rolloutId);
    expect([created.strategy?.approvalBeforeFirstWave, created.approvalWaived, created.allowForce]).toEqual([
      true,
      false,
      true,
    ]);
    for (const h of hosts) expect(fleet.get(h.hostId).kernel.loads).toEqual([]);
    await unary(client, 'abortRollout', { rolloutId: waiting!.rolloutId, reason: 'not today' });

    const waived = await create('gate', { canaryCount: 1 });
    expect(waived.state).not.toBe(R.ROLLOUT_STATE_AWAITING_APPROVAL);
    const recorded = await rolloutCreated(waived.rolloutId);
    expect([recorded.strategy?.approvalBeforeFirstWave, recorded.approvalWaived]).toEqual([false, true]);
    await untilState(waived.rolloutId, [R.ROLLOUT_STATE_COMPLETED]);
    await fleet.stop();
  });

  it('approval gates, pause, resume, abort and listing, each answering the rollout as it stands', async () => {
    const hosts = specs('ops', 6);
    const fleet = await fleetOf(hosts);
    const created = await create('ops', {
      canaryCount: 1,
      approvalBeforeFirstWave: true,
      approvalBetweenWaves: true,
      waves: [{ count: 2 }, { count: 3 }],
    });
    expect(created.state).toBe(R.ROLLOUT_STATE_AWAITING_APPROVAL);
    const rolloutId = created.rolloutId;
    const call = (method: string, request: Record<string, unknown>) =>
      unary<{ rollout: dispatcher.Rollout }>(client, method, { rolloutId, ...request }).then(
        (r) => r.rollout,
        (e: ServiceError) => e,
      );

    const stale = (await call('approveRollout', { waveIndex: 1 })) as ServiceError;
    expect(stale.code).toBe(status.FAILED_PRECONDITION);
    expect(stale.details).toBe('wave_index 1 is not the wave waiting for approval: canary (index 0) is');
    expect(((await call('approveRollout', { waveIndex: 0 })) as dispatcher.Rollout).state).toBe(
      R.ROLLOUT_STATE_RUNNING,
    );
    await until(
      async () => (await get(rolloutId)).waves[1]!.state === dispatcher.WaveState.WAVE_STATE_AWAITING_APPROVAL,
      'the canary is done and wave 1 waits for its approver',
    );
    expect((await get(rolloutId)).state).toBe(R.ROLLOUT_STATE_AWAITING_APPROVAL);
    await call('approveRollout', { waveIndex: 1 });

    const paused = (await call('pauseRollout', { reason: 'change freeze' })) as dispatcher.Rollout;
    expect([paused.state, paused.stateReason]).toEqual([R.ROLLOUT_STATE_PAUSED, 'change freeze']);
    const again = (await call('pauseRollout', { reason: 'twice' })) as ServiceError;
    expect(again.code).toBe(status.FAILED_PRECONDITION);
    expect(((await call('resumeRollout', {})) as dispatcher.Rollout).state).toBe(R.ROLLOUT_STATE_RUNNING);
    await until(
      async () => (await get(rolloutId)).waves[2]!.state === dispatcher.WaveState.WAVE_STATE_AWAITING_APPROVAL,
      'wave 1 is done and wave 2 waits for its approver',
    );
    const aborted = (await call('abortRollout', { reason: 'enough for today' })) as dispatcher.Rollout;
    expect([aborted.state, aborted.stateReason]).toEqual([R.ROLLOUT_STATE_ABORTED, 'enough for today']);
    // Wave 2 never ran; the hosts of the canary and wave 1 keep the patch.
    expect(aborted.waves[2]!.hosts.every((h) => h.state === H.HOST_ROLLOUT_STATE_SKIPPED)).toBe(true);
    for (const h of aborted.waves[2]!.hosts) expect(fleet.get(h.hostId).kernel.loads).toEqual([]);
    for (const h of [...aborted.waves[0]!.hosts, ...aborted.waves[1]!.hosts]) {
      expect(await fleet.liveModules(h.hostId)).toHaveLength(1);
    }

    const listed = await unary<dispatcher.ListRolloutsResponse>(client, 'listRollouts', {
      states: [R.ROLLOUT_STATE_ABORTED],
      patchId: patch.patchId,
    });
    expect(listed.rollouts.map((r) => r.rolloutId)).toContain(rolloutId);
    const missing = (await unary(client, 'getRollout', { rolloutId: 'no-such-rollout' }).catch(
      (e: ServiceError) => e,
    )) as ServiceError;
    expect([missing.code, missing.details]).toEqual([status.NOT_FOUND, 'no rollout no-such-rollout']);
    await fleet.stop();
  });
});

describe('the agent gateway', () => {
  /** A bare stream, speaking the protocol by hand. */
  function openStream() {
    const gateway = serviceClient(grpcServices.agentGateway, dispatcherAddress);
    const call = (gateway['connect'] as () => grpc.ClientDuplexStream<unknown, dispatcher.ConnectResponse>).call(
      gateway,
    );
    const received: dispatcher.ConnectResponse[] = [];
    let failure: grpc.ServiceError | undefined;
    call.on('data', (m: dispatcher.ConnectResponse) => received.push(m));
    call.on('error', (e: grpc.ServiceError) => (failure = e));
    return { gateway, call, received, failed: () => failure };
  }

  /** A new epoch of `producerId` on the host's stream: its key, its head, and its start as relayed. */
  function epochStarted(producerId: string, hostId: string) {
    const key = generateSigningKey();
    const { events: chained, head } = appendToChain(
      startEpoch(producerId, 1),
      [
        {
          stream: `host/${hostId}`,
          payload: {
            type: 'ChainEpochStarted',
            data: { publicKey: key.rawPublicKey, previousEpoch: 0, reason: 1, detail: 'gateway e2e' },
          },
        },
      ],
      key,
    );
    return { key, head, envelopes: chained.map((e) => Buffer.from(e.envelope)) };
  }

  const signedEnvelopes = (producerId: string, hostId: string): Buffer[] => epochStarted(producerId, hostId).envelopes;

  it('writes relayed envelopes to the log byte for byte under host/<id>, then acknowledges them', async () => {
    const { gateway, call, received } = openStream();
    call.write({
      messageId: '1',
      hello: { facts: { hostId: 'gw-1', kernelRelease: RELEASE, labels: {} }, agentPublicKey: Buffer.alloc(32) },
    });
    const envelopes = signedEnvelopes('agent/gw-1', 'gw-1');
    call.write({ messageId: '2', relayEvents: { envelopes } });
    await until(() => received.some((m) => m.ack?.messageId === '2'), 'the relay was acknowledged');
    const records = await readWholeTopic(kafka, topic);
    const written = records.filter((r) => r.value && Buffer.compare(r.value, envelopes[0]!) === 0);
    expect(written.map((r) => r.key)).toEqual(['host/gw-1']);
    call.end();
    gateway.close();
  });

  it('does not write twice what an agent sends again after the instance that wrote it died unanswered', async () => {
    // Given an agent connected to this instance, and 2,000 of its events another instance has
    // just written to the log and died before acknowledging: the agent's last 200 come to this
    // instance again at once, marked as sent before
    const drift = (n: number) => ({
      stream: 'host/gw-3',
      payload: {
        type: 'DriftDetected' as const,
        data: { hostId: 'gw-3', kind: 'e2e', detail: `drift ${n}`, expected: [], observed: [] },
      },
    });
    const { key, head, envelopes: started } = epochStarted('agent/gw-3', 'gw-3');
    const chain = appendToChain(
      head,
      Array.from({ length: 2_000 }, (_, i) => drift(i)),
      key,
    ).events.map((e) => Buffer.from(e.envelope));
    const { gateway, call, received } = openStream();
    call.write({
      messageId: '1',
      hello: { facts: { hostId: 'gw-3', kernelRelease: RELEASE, labels: {} }, agentPublicKey: key.rawPublicKey },
    });
    // The epoch's start goes through this instance, which binds the agent's key
    call.write({ messageId: '2', relayEvents: { envelopes: started } });
    await until(() => received.some((m) => m.ack?.messageId === '2'), 'the epoch start was acknowledged');
    const writer = kafka.producer({ idempotent: true, maxInFlightRequests: 1 });
    await writer.connect();
    await writer.send({ topic, acks: -1, messages: chain.map((value) => ({ key: 'host/gw-3', value })) });
    const again = chain.slice(-200);
    call.write({ messageId: '3', relayEvents: { envelopes: again, sentBefore: true } });
    // When the instance acknowledges them
    await until(() => received.some((m) => m.ack?.messageId === '3'), 'the relay was acknowledged');
    // Then each is in the log once: none was written again
    const records = await readWholeTopic(kafka, topic);
    const copies = again.map((e) => records.filter((r) => r.value && Buffer.compare(r.value, e) === 0).length);
    expect(copies.filter((n) => n !== 1)).toEqual([]);
    await writer.disconnect();
    call.end();
    gateway.close();
  });

  it("refuses to relay another producer's events (PERMISSION_DENIED) and acknowledges nothing", async () => {
    const { gateway, call, received, failed } = openStream();
    call.write({
      messageId: '1',
      hello: { facts: { hostId: 'gw-2', kernelRelease: RELEASE, labels: {} }, agentPublicKey: Buffer.alloc(32) },
    });
    call.write({ messageId: '2', relayEvents: { envelopes: signedEnvelopes('agent/gw-other', 'gw-other') } });
    await until(() => failed() !== undefined, 'the stream was refused');
    expect(failed()!.code).toBe(status.PERMISSION_DENIED);
    expect(failed()!.details).toBe(
      'relay_events.envelopes[0] belongs to producer agent/gw-other; the agent of gw-2 may relay only agent/gw-2',
    );
    expect(received.map((m) => m.ack?.messageId)).toEqual(['1']);
    gateway.close();
  });

  it('wants a hello first', async () => {
    const { gateway, call, failed } = openStream();
    call.write({ messageId: '1', inventory: { patches: [] } });
    await until(() => failed() !== undefined, 'the stream was refused');
    expect(failed()!.code).toBe(status.FAILED_PRECONDITION);
    expect(failed()!.details).toBe('the agent must say hello first');
    gateway.close();
  });
});

describe('a rollout to 200 hosts in a canary and 3 waves', () => {
  it('completes, every host patched exactly once, and the kernels show the patch', async () => {
    const hosts = specs('fleet', 200);
    const fleet = await fleetOf(hosts);
    const created = await create('fleet', {
      canaryCount: 2,
      waves: [{ percent: 20 }, { percent: 30 }, { percent: 50 }],
    });
    expect(created.waves.map((w) => [w.name, w.hosts.length])).toEqual([
      ['canary', 2],
      ['wave 1', 40],
      ['wave 2', 59],
      ['wave 3', 99],
    ]);
    const watched = readStream<dispatcher.WatchRolloutResponse>(client, 'watchRollout', {
      rolloutId: created.rolloutId,
    });
    // A console at 100,000 hosts follows counts, not hosts (ROLLOUT_VIEW_SUMMARY).
    const summarized = readStream<dispatcher.WatchRolloutResponse>(client, 'watchRollout', {
      rolloutId: created.rolloutId,
      view: dispatcher.RolloutView.ROLLOUT_VIEW_SUMMARY,
    });
    const done = await untilState(created.rolloutId, [R.ROLLOUT_STATE_COMPLETED, R.ROLLOUT_STATE_PAUSED]);
    expect(done.stateReason).toBe('');
    expect(done.state).toBe(R.ROLLOUT_STATE_COMPLETED);
    expect([...hostStates(done).values()].every((s) => s === H.HOST_ROLLOUT_STATE_SUCCEEDED)).toBe(true);

    // The watch streamed progress wave by wave and ended with the rollout.
    const updates = await watched;
    expect(updates.at(-1)!.rollout!.state).toBe(R.ROLLOUT_STATE_COMPLETED);
    expect(updates.map((u) => u.eventType)).toEqual(expect.arrayContaining(['WaveStarted', 'PatchApplied']));
    const summaries = await summarized;
    expect(summaries.every((u) => u.rollout!.waves.every((w) => w.hosts.length === 0))).toBe(true);
    expect(summaries.at(-1)!.rollout!.waves.map((w) => w.hostCounts)).toEqual(
      [2, 40, 59, 99].map((n) => [{ state: H.HOST_ROLLOUT_STATE_SUCCEEDED, hosts: n }]),
    );
    // The summary answered by GetRollout: the same counts, in a small fraction of the bytes.
    const summary = (
      await unary<dispatcher.GetRolloutResponse>(client, 'getRollout', {
        rolloutId: created.rolloutId,
        view: dispatcher.RolloutView.ROLLOUT_VIEW_SUMMARY,
      })
    ).rollout!;
    expect(summary.waves.map((w) => w.hostCounts)).toEqual(done.waves.map((w) => w.hostCounts));
    expect(summary.waves.map((w) => [w.name, w.state, w.hosts.length])).toEqual(
      done.waves.map((w) => [w.name, w.state, 0]),
    );
    const size = (r: dispatcher.Rollout) => JSON.stringify(r).length;
    expect(size(summary) * 10).toBeLessThan(size(done));
    // A view this server does not know is refused, naming the field.
    const refused = (await unary(client, 'getRollout', { rolloutId: created.rolloutId, view: 7 }).catch(
      (e: unknown) => e,
    )) as { code: number; details: string };
    expect(refused.code).toBe(status.INVALID_ARGUMENT);
    expect(refused.details).toMatch(/^view: 7 is not a RolloutView/);

    for (const h of hosts) {
      expect(fleet.get(h.hostId).kernel.loads).toHaveLength(1);
      expect(await fleet.liveModules(h.hostId)).toHaveLength(1);
    }
    const log = await logOf(new Set(hosts.map((h) => h.hostId)));
    const requests = count(
      log.filter((e) => e.type === 'HostApplyRequested'),
      (e) => e.hostId,
    );
    const applied = count(
      log.filter((e) => e.type === 'PatchApplied'),
      (e) => e.hostId,
    );
    expect(requests.size).toBe(200);
    expect([...requests.values()].every((n) => n === 1)).toBe(true);
    expect(applied.size).toBe(200);
    // The canary's hosts were patched before any host of wave 1 was asked.
    const canary = new Set(done.waves[0]!.hosts.map((h) => h.hostId));
    const firstWave1Ask = log.findIndex((e) => e.type === 'HostApplyRequested' && !canary.has(e.hostId));
    expect(firstWave1Ask).toBeGreaterThan(-1);

    bigFleet = fleet;
  });
});

const PATCHED_FUNCTION = { object: 'vmlinux', name: 'cmdline_proc_show', sympos: 0 };

describe('a rollout whose canary stalls', () => {
  it('pauses itself and patches no one else', async () => {
    const hosts = specs('stall', 20);
    const fleet = await fleetOf(hosts);
    // A task sleeps in the function the patch replaces: the canary's transition cannot finish.
    fleet.get('stall-007').kernel.addSleepingTask({ comm: 'nfsd', sleepsIn: PATCHED_FUNCTION });
    const created = await create('stall', { canaryHostIds: ['stall-007'], canaryCount: 1 });
    const paused = await untilState(created.rolloutId, [R.ROLLOUT_STATE_PAUSED, R.ROLLOUT_STATE_COMPLETED]);
    expect(paused.state).toBe(R.ROLLOUT_STATE_PAUSED);
    expect(paused.stateReason).toMatch(
      /^canary: 1 host\(s\) failed, over its failure budget of 0 \(stall-007: transition stalled \(1 task\(s\)\)/,
    );
    expect(hostStates(paused).get('stall-007')).toBe(H.HOST_ROLLOUT_STATE_FAILED);

    // Time passes; nobody else is asked, and no other kernel was touched.
    await new Promise((r) => setTimeout(r, 2_000));
    const log = await logOf(new Set(hosts.map((h) => h.hostId)));
    expect(log.filter((e) => e.type === 'HostApplyRequested').map((e) => e.hostId)).toEqual(['stall-007']);
    for (const h of hosts) {
      expect(fleet.get(h.hostId).kernel.loads).toHaveLength(h.hostId === 'stall-007' ? 1 : 0);
      expect(await fleet.liveModules(h.hostId)).toEqual([]);
    }
    expect((await get(created.rolloutId)).state).toBe(R.ROLLOUT_STATE_PAUSED);
    await fleet.stop();
  });
});

describe('a rollout that rolls back', () => {
  it('reverts exactly the hosts it patched', async () => {
    const hosts = specs('rb', 20);
    const fleet = await fleetOf(hosts);
    // Sorted by host id: canary rb-000, wave 1 rb-001..005, wave 2 rb-006..010, wave 3 the rest.
    fleet.get('rb-008').kernel.addSleepingTask({ comm: 'nfsd', sleepsIn: PATCHED_FUNCTION });
    const created = await create('rb', {
      canaryCount: 1,
      waves: [{ count: 5 }, { count: 5 }, { count: 9 }],
      onFailure: events.FailurePolicy.FAILURE_POLICY_ROLL_BACK,
    });
    const done = await untilState(created.rolloutId, [R.ROLLOUT_STATE_ROLLED_BACK, R.ROLLOUT_STATE_COMPLETED]);
    expect(done.state).toBe(R.ROLLOUT_STATE_ROLLED_BACK);
    expect(done.stateReason).toContain('rb-008: transition stalled');

    const log = await logOf(new Set(hosts.map((h) => h.hostId)));
    const patched = new Set(log.filter((e) => e.type === 'PatchApplied').map((e) => e.hostId));
    const revertAsked = log.filter((e) => e.type === 'HostRevertRequested').map((e) => e.hostId);
    const reverted = new Set(log.filter((e) => e.type === 'PatchReverted').map((e) => e.hostId));
    expect(patched.has('rb-008')).toBe(false);
    expect(patched.size).toBeGreaterThanOrEqual(6);
    expect([...revertAsked].sort()).toEqual([...patched].sort());
    expect(reverted).toEqual(patched);
    for (const h of hosts) expect(await fleet.liveModules(h.hostId)).toEqual([]);
    // Wave 3 was never started: its kernels were never touched.
    for (const h of done.waves[3]!.hosts) {
      expect(h.state).toBe(H.HOST_ROLLOUT_STATE_SKIPPED);
      expect(fleet.get(h.hostId).kernel.loads).toEqual([]);
    }
    for (const id of patched) expect(hostStates(done).get(id)).toBe(H.HOST_ROLLOUT_STATE_REVERTED);
    await fleet.stop();
  });
});

describe('hosts offline during the rollout', () => {
  it('are patched once they reconnect', async () => {
    const hosts = specs('off', 40);
    const fleet = await fleetOf(hosts);
    const offline = hosts.filter((_, i) => i % 10 === 3).map((h) => h.hostId);
    expect(offline).toHaveLength(4);
    await fleet.stop(offline);
    const created = await create('off', { canaryCount: 2, waves: [{ percent: 50 }, { percent: 50 }] });

    // Every wave ran; the rollout waits for the absent hosts instead of failing them.
    await until(async () => {
      const r = await get(created.rolloutId);
      return r.waves.every((w) => w.completedAt);
    }, 'every wave completed');
    const waiting = await get(created.rolloutId);
    expect(waiting.state).toBe(R.ROLLOUT_STATE_RUNNING);
    for (const id of offline) expect(hostStates(waiting).get(id)).toBe(H.HOST_ROLLOUT_STATE_PENDING);

    await fleet.start(offline);
    const done = await untilState(created.rolloutId, [R.ROLLOUT_STATE_COMPLETED, R.ROLLOUT_STATE_PAUSED]);
    expect(done.state).toBe(R.ROLLOUT_STATE_COMPLETED);
    expect([...hostStates(done).values()].every((s) => s === H.HOST_ROLLOUT_STATE_SUCCEEDED)).toBe(true);
    for (const id of offline) {
      expect(fleet.get(id).kernel.loads).toHaveLength(1);
      expect(await fleet.liveModules(id)).toHaveLength(1);
    }
    await fleet.stop();
  });
});

describe('the dispatcher killed mid-wave', () => {
  it('resumes after a restart without applying any host twice or forgetting one', async () => {
    // Slow transitions and few hosts in flight, so the kill lands in the middle of a wave.
    const hosts = specs('kill', 60, { transitionMs: 400 });
    const fleet = await fleetOf(hosts);
    const created = await create('kill', { canaryCount: 2, waves: [{ percent: 100 }], maxInFlight: 8 });
    await until(async () => {
      const states = [...hostStates(await get(created.rolloutId)).values()];
      return states.filter((s) => s === H.HOST_ROLLOUT_STATE_SUCCEEDED).length >= 12;
    }, 'a dozen hosts patched');
    const before = await get(created.rolloutId);
    expect(before.state).toBe(R.ROLLOUT_STATE_RUNNING);
    const pid = dispatcherProcess.pid;
    await restartDispatcher('SIGKILL');
    expect(dispatcherProcess.pid).not.toBe(pid);

    const done = await untilState(created.rolloutId, [R.ROLLOUT_STATE_COMPLETED, R.ROLLOUT_STATE_PAUSED]);
    expect(done.stateReason).toBe('');
    expect(done.state).toBe(R.ROLLOUT_STATE_COMPLETED);
    for (const h of hosts) expect(fleet.get(h.hostId).kernel.loads).toHaveLength(1);
    const log = await logOf(new Set(hosts.map((h) => h.hostId)));
    const applied = count(
      log.filter((e) => e.type === 'PatchApplied'),
      (e) => e.hostId,
    );
    expect(applied.size).toBe(60);
    expect([...applied.values()].every((n) => n === 1)).toBe(true);
    const requested = count(
      log.filter((e) => e.type === 'HostApplyRequested'),
      (e) => e.hostId,
    );
    expect([...requested.values()].every((n) => n === 1)).toBe(true);
    await fleet.stop();
  });
});

describe("the ledger's view of the rollout, and Undo", () => {
  beforeAll(async () => {
    // The ledger vouches for the builder's and the dispatcher's chains by their data dirs' keys.
    ({ process: ledgerProcess } = await startLedger({
      topic,
      brokers,
      dataDir: path.join(root, 'ledger'),
      address: ledgerAddress,
      trustedDataDirs: [builderDir, dispatcherDataDir],
    }));
    ledgerClient = serviceClient(grpcServices.ledger, ledgerAddress);
  });

  it('shows the patch in the stack of every host of the 200, and an undo planned by the ledger removes it from one', async () => {
    // The ledger, from the agents' facts, shows the patch in every host's stack.
    await until(
      async () => (await carriers('fleet')).size === 200,
      'the ledger shows the patch on all 200 hosts',
      120_000,
    );
    const stack = (await unary<ledger.GetHostResponse>(ledgerClient, 'getHost', { hostId: 'fleet-123' })).host!.stack!;
    expect(stack.entries.map((e) => [e.patch?.patchId, e.patch?.version])).toEqual([[patch.patchId, patch.version]]);

    // Undo on one host: the ledger plans it, the dispatcher carries it out as a rollout of kind UNDO.
    const { rollout: undo } = await unary<dispatcher.UndoResponse>(client, 'undo', {
      hostId: 'fleet-123',
      patchId: patch.patchId,
      reason: 'e2e undo',
      strategy: strategy({ canaryCount: 0 }),
    });
    expect(undo!.kind).toBe(dispatcher.RolloutKind.ROLLOUT_KIND_UNDO);
    const undone = await untilState(undo!.rolloutId, [R.ROLLOUT_STATE_COMPLETED, R.ROLLOUT_STATE_PAUSED]);
    expect(undone.stateReason).toBe('');
    expect(await bigFleet.liveModules('fleet-123')).toEqual([]);
    await until(async () => (await carriers('fleet')).size === 199, 'the ledger shows the undo');
  });

  it('Undo answers UNAVAILABLE naming the ledger address when the ledger is down', async () => {
    await ledgerProcess!.stop();
    const error = await unary(client, 'undo', { hostId: 'fleet-000', patchId: patch.patchId }).then(
      () => undefined,
      (e: ServiceError) => e,
    );
    expect(error?.code).toBe(status.UNAVAILABLE);
    expect(error?.details).toContain(`the ledger at ${ledgerAddress} (DISPATCHER_LEDGER_ADDRESS) is not reachable`);
  });
});
