// Two dispatcher instances as real processes over TLS, sharing one PostgreSQL for their rollout
// leases and one topic (docs/adr/0025), with real agents spread over both. What an operator
// checks: a rollout is written by one instance at a time; commands reach agents connected to the
// other instance through the log; when the driving instance is SIGKILLed mid-wave its agents move
// to the other, which takes the rollout over and completes it, no host is asked or patched twice,
// and the ledger finds every chain whole.
// Build first (`npm run build`); the kernel headers come from the builder's cache.
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { Client as PgClient } from 'pg';
import { dispatcher, events, grpcServices, ledger } from '@rebootless/contracts';
import { decodeEvent } from '@rebootless/events';
import { currentDebianCloudRelease } from '@rebootless/kernel-toolchain';
import {
  REPO_ROOT,
  SimulatedFleet,
  buildPatch,
  freePort,
  freshEventsTopic,
  readWholeTopic,
  serviceClient,
  startBuilder,
  startDispatcher,
  startLedger,
  testKafka,
  unary,
  type BuiltPatch,
  type Client,
  type ServiceProcess,
} from '@rebootless/testing';
import {
  channelCredentials,
  ensureCertificateAuthority,
  issueCertificate,
  loadTlsMaterial,
  mintToken,
  readTokenPrivateKey,
  type Identity,
} from '@rebootless/trust';

jest.setTimeout(10 * 60_000);

const R = dispatcher.RolloutState;
const H = dispatcher.HostRolloutState;
const brokers = process.env['KAFKA_BROKERS'] ?? '127.0.0.1:9092';
const PG_ADMIN = process.env['DATABASE_ADMIN_URL'] ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const DATABASE = `rebootless_dispatchers_${process.pid}`;
const kafka = testKafka('dispatcher-instances-e2e');
const SERVICES: Identity[] = [
  { kind: 'service', id: 'builder' },
  { kind: 'service', id: 'dispatcher' },
  { kind: 'service', id: 'ledger' },
];

let root: string;
let pki: string;
let topic: string;
let databaseUrl: string;
let release: string;
let patch: BuiltPatch;
let builderProcess: ServiceProcess;
let builderAddress: string;
let builderKey: Buffer;
let ledgerProcess: ServiceProcess;
let ledgerAddress: string;
const instances = new Map<string, { process: ServiceProcess; address: string; client: Client; dataDir: string }>();
const fleets: SimulatedFleet[] = [];

function operator(): grpc.ChannelCredentials {
  const token = mintToken(readTokenPrivateKey(pki), {
    sub: 'alice',
    roles: ['operator', 'auditor', 'release-manager'],
    ttlSeconds: 3600,
  });
  const bearer = grpc.credentials.createFromMetadataGenerator((_params, callback) => {
    const metadata = new grpc.Metadata();
    metadata.set('authorization', `Bearer ${token}`);
    callback(null, metadata);
  });
  return grpc.credentials.combineChannelCredentials(
    channelCredentials(loadTlsMaterial(pki, { kind: 'user', id: 'cli' }), SERVICES),
    bearer,
  );
}

const TLS = () => ({ REBOOTLESS_PKI_DIR: pki, REBOOTLESS_INSECURE: '' });

/** Where the test holds a write of instance A (libs/testing/src/faults/held-command-write.ts). */
const holdDir = () => path.join(root, 'hold-a');
const HELD_WRITE_FAULT = path.join(REPO_ROOT, 'libs', 'testing', 'dist', 'faults', 'held-command-write.js');

async function startInstance(name: string, others: string[]): Promise<void> {
  const dataDir = path.join(root, `dispatcher-${name}`);
  // A carries the fault that can hold one of its writes, inert until the test arms it.
  const fault = name === 'a';
  if (fault) fs.mkdirSync(holdDir(), { recursive: true });
  const { process: proc, address } = await startDispatcher({
    topic,
    brokers,
    dataDir,
    ...(fault ? { nodeArgs: ['--require', HELD_WRITE_FAULT] } : {}),
    extra: {
      ...TLS(),
      ...(fault ? { FAULT_HOLD_DIR: holdDir() } : {}),
      DISPATCHER_INSTANCE: name,
      DISPATCHER_DATABASE_URL: databaseUrl,
      // The builder's key and the other instances' (their chains are dispatchers' too).
      DISPATCHER_TRUSTED_DATA_DIRS: [
        path.join(root, 'builder'),
        ...others.map((o) => path.join(root, `dispatcher-${o}`)),
      ].join(','),
      DISPATCHER_SILENCE_GRACE_SECONDS: '60',
      // Each instance is its agents' artifact cache (ADR 0026).
      DISPATCHER_BUILDER_ADDRESS: builderAddress,
    },
  });
  instances.set(name, {
    process: proc,
    address,
    client: serviceClient(grpcServices.rollout, address, operator()),
    dataDir,
  });
}

function instance(name: string) {
  const found = instances.get(name);
  if (!found) throw new Error(`no instance ${name}`);
  return found;
}

async function until(
  check: () => boolean | Promise<boolean>,
  what: string | (() => string),
  timeoutMs = 90_000,
): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${typeof what === 'string' ? what : what()}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

async function pg<T>(work: (c: PgClient) => Promise<T>, url = databaseUrl): Promise<T> {
  const c = new PgClient({ connectionString: url });
  await c.connect();
  try {
    return await work(c);
  } finally {
    await c.end();
  }
}

/** Where each connected host's agent is, as the instances recorded it. */
async function agentsByInstance(): Promise<Map<string, string[]>> {
  const { rows } = await pg((c) =>
    c.query<{ host_id: string; instance: string }>(
      'SELECT host_id, instance FROM dispatcher_agent_presence WHERE connected ORDER BY host_id',
    ),
  );
  const by = new Map<string, string[]>();
  for (const r of rows) by.set(r.instance, [...(by.get(r.instance) ?? []), r.host_id]);
  return by;
}

function specs(group: string, n: number, transitionMs?: number) {
  return Array.from({ length: n }, (_, i) => ({
    hostId: `${group}-${String(i).padStart(2, '0')}`,
    kernelRelease: release,
    labels: { group },
    // Transitions of different lengths: a wave's hosts answer over several seconds.
    transitionMs: transitionMs ?? 300 + (i % 6) * 400,
  }));
}

async function fleetOn(group: string, n: number, addresses: string[], transitionMs?: number): Promise<SimulatedFleet> {
  // Each agent speaks as its host: its certificate names it.
  for (const spec of specs(group, n, transitionMs)) await issueCertificate(pki, { kind: 'host', id: spec.hostId });
  const fleet = new SimulatedFleet(
    {
      root: path.join(root, 'hosts'),
      dispatcherAddress: addresses,
      builderAddress,
      builderPublicKey: builderKey,
      agentTransitionTimeoutMs: 20_000,
      credentials: (hostId) =>
        channelCredentials(loadTlsMaterial(pki, { kind: 'host', id: hostId }), [
          { kind: 'service', id: 'dispatcher' },
          { kind: 'service', id: 'builder' },
        ]),
    },
    specs(group, n, transitionMs),
  );
  fleets.push(fleet);
  await fleet.start();
  await until(() => fleet.connectedCount() === n, `the ${n} agents of ${group} are connected`);
  return fleet;
}

function strategy(): Partial<events.RolloutStrategy> {
  return {
    canaryHostIds: [],
    canaryCount: 2,
    waves: [{ percent: 50 }, { percent: 50 }],
    soakSeconds: 0,
    onFailure: events.FailurePolicy.FAILURE_POLICY_PAUSE,
    applyTimeoutSeconds: 60,
    offlineDeadlineSeconds: 600,
  };
}

async function createOn(
  name: string,
  group: string,
  hosts: number,
  overrides: Partial<events.RolloutStrategy> = {},
): Promise<dispatcher.Rollout> {
  const { client } = instance(name);
  const request = {
    patchId: patch.patchId,
    version: patch.version,
    selector: { kernelReleases: [], labels: { group }, hostIds: [] },
    strategy: { ...strategy(), ...overrides },
    skipApproval: true,
  };
  // The instance knows hosts connected to the other one from their facts in the log.
  let last = '';
  await until(
    async () => {
      const { rollout } = await unary<dispatcher.CreateRolloutResponse>(client, 'createRollout', {
        ...request,
        dryRun: true,
      }).catch((e: Error) => ((last = e.message), { rollout: undefined }));
      const known = (rollout?.waves ?? []).reduce((n, w) => n + w.hosts.length, 0);
      if (rollout) last = `it plans ${known} host(s)`;
      return known === hosts;
    },
    () => `instance ${name} knows the ${hosts} hosts of ${group} (last: ${last})`,
  );
  const { rollout } = await unary<dispatcher.CreateRolloutResponse>(client, 'createRollout', request);
  return rollout!;
}

async function get(name: string, rolloutId: string): Promise<dispatcher.Rollout> {
  return (await unary<dispatcher.GetRolloutResponse>(instance(name).client, 'getRollout', { rolloutId })).rollout!;
}

/** As `get`, undefined while the instance has not read the rollout's creation in the log yet. */
async function getOnceKnown(name: string, rolloutId: string): Promise<dispatcher.Rollout | undefined> {
  return get(name, rolloutId).catch((e: grpc.ServiceError) => {
    if (e.code === grpc.status.NOT_FOUND) return undefined;
    throw e;
  });
}

/** Every record of the rollout and its hosts' answers, decoded. */
async function logOf(rolloutId: string) {
  const records = await readWholeTopic(kafka, topic);
  const bodies = records.map((r) => decodeEvent(r.value!).body);
  const rolloutEvents = bodies.filter(
    (b) => b.correlationId === rolloutId && b.producer?.producerId.startsWith('dispatcher'),
  );
  const applyRequests = bodies.filter((b) => b.hostApplyRequested?.rolloutId === rolloutId);
  const commandIds = new Set(applyRequests.map((b) => b.hostApplyRequested!.commandId));
  const applied = bodies.filter((b) => b.patchApplied && commandIds.has(b.patchApplied.commandId));
  return { rolloutEvents, applyRequests, applied };
}

function countBy<T>(items: T[], key: (t: T) => string): Map<string, number> {
  const m = new Map<string, number>();
  for (const i of items) m.set(key(i), (m.get(key(i)) ?? 0) + 1);
  return m;
}

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(tmpdir(), 'rebootless-dispatchers-e2e-'));
  pki = path.join(root, 'pki');
  await ensureCertificateAuthority(pki);
  for (const identity of [...SERVICES, { kind: 'user', id: 'cli' } as const]) await issueCertificate(pki, identity);
  topic = await freshEventsTopic('dispatchers', 6);
  await pg(
    (c) => c.query(`DROP DATABASE IF EXISTS ${DATABASE}`).then(() => c.query(`CREATE DATABASE ${DATABASE}`)),
    PG_ADMIN,
  );
  const admin = new URL(PG_ADMIN);
  admin.pathname = `/${DATABASE}`;
  databaseUrl = admin.toString();
  release = await currentDebianCloudRelease();
  ({
    process: builderProcess,
    address: builderAddress,
    publicKey: builderKey,
  } = await startBuilder({ topic, brokers, dataDir: path.join(root, 'builder'), extra: TLS() }));
  patch = await buildPatch(builderAddress, {
    patchName: 'cmdline-instances',
    kernelReleases: [release],
    credentials: operator(),
  });
  await startInstance('a', ['b']);
  await startInstance('b', ['a']);
  ledgerAddress = `127.0.0.1:${await freePort()}`;
  ({ process: ledgerProcess } = await startLedger({
    topic,
    brokers,
    dataDir: path.join(root, 'ledger'),
    address: ledgerAddress,
    trustedDataDirs: [path.join(root, 'builder'), instance('a').dataDir, instance('b').dataDir],
    extra: TLS(),
  }));
});

afterAll(async () => {
  for (const [name, i] of instances)
    fs.writeFileSync(path.join(tmpdir(), `rebootless-dispatchers-e2e-${name}.log`), i.process.output);
  for (const fleet of fleets) await fleet.close();
  for (const i of instances.values()) {
    i.client.close();
    await i.process.stop();
  }
  await ledgerProcess?.stop();
  await builderProcess?.stop();
  if (databaseUrl)
    await pg((c) => c.query(`DROP DATABASE IF EXISTS ${DATABASE} WITH (FORCE)`), PG_ADMIN).catch(() => undefined);
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

describe('two live dispatcher instances', () => {
  it('drive each rollout from one instance, and deliver its commands to agents connected to either', async () => {
    const fleet = await fleetOn('both', 8, [instance('a').address, instance('b').address]);
    await until(async () => (await agentsByInstance()).size === 2, 'both instances hold agents');
    const spread = await agentsByInstance();
    expect(spread.get('a')?.length ?? 0).toBeGreaterThan(0);
    expect(spread.get('b')?.length ?? 0).toBeGreaterThan(0);

    const created = await createOn('a', 'both', 8);
    // While A drives it, B answers queries about it but refuses to write any of its events.
    const refused = await unary(instance('b').client, 'pauseRollout', {
      rolloutId: created.rolloutId,
      reason: 'from the other instance',
    }).then(
      () => undefined,
      (e: grpc.ServiceError) => e,
    );
    expect(refused?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(refused?.details).toContain('driven by dispatcher instance "a"');

    await until(
      async () => (await getOnceKnown('b', created.rolloutId))?.state === R.ROLLOUT_STATE_COMPLETED,
      'the rollout completed (as B sees it)',
    );
    const done = await get('a', created.rolloutId);
    expect(done.waves.flatMap((w) => w.hosts.map((h) => h.state))).toEqual(
      Array(8).fill(H.HOST_ROLLOUT_STATE_SUCCEEDED),
    );

    // Every event of the rollout is A's: B, alive all along, wrote none of them.
    const { rolloutEvents, applyRequests, applied } = await logOf(created.rolloutId);
    expect(new Set(rolloutEvents.map((b) => b.producer!.producerId))).toEqual(new Set(['dispatcher/a']));
    expect([...countBy(applyRequests, (b) => b.hostApplyRequested!.hostId).values()]).toEqual(Array(8).fill(1));
    // B's agents got A's commands through the log: each host applied once, and only once.
    expect([...countBy(applied, (b) => b.patchApplied!.commandId).values()]).toEqual(Array(8).fill(1));
    for (const host of fleet.hosts.values()) expect(host.kernel.loads).toEqual([patch.moduleName]);
  });
});

describe('an agent that reconnects to the other instance in the middle of an apply', () => {
  it('is sent the unanswered command again, and answers it as applied: no false failure in the log or the ledger', async () => {
    // Slow transitions: the driving instance dies while its agents are still applying.
    const fleet = await fleetOn('again', 6, [instance('a').address, instance('b').address], 6_000);
    await until(async () => {
      const by = await agentsByInstance();
      return (by.get('a') ?? []).some((h) => h.startsWith('again-'));
    }, 'some of the group is connected to A');
    const onA = ((await agentsByInstance()).get('a') ?? []).filter((h) => h.startsWith('again-'));
    const created = await createOn('a', 'again', 6);
    const transitioning = async (hostId: string) =>
      (await fleet.get(hostId).kernel.listPatches()).some((p) => p.transition);
    await until(
      async () => (await Promise.all(onA.map(transitioning))).some(Boolean),
      'an agent connected to A is in the middle of its transition',
      120_000,
    );

    // A dies; its agents reconnect to B, which sends what they have not answered yet again.
    instance('a').process.kill('SIGKILL');
    await instance('a').process.exited;
    await until(async () => {
      const onB = (await agentsByInstance()).get('b') ?? [];
      return onA.every((h) => onB.includes(h));
    }, "A's agents reconnected to B");
    await until(
      async () => (await get('b', created.rolloutId)).state === R.ROLLOUT_STATE_COMPLETED,
      'B completed the rollout',
      180_000,
    );
    // A comes back, for what follows.
    await startInstance('a', ['b']);

    // Every host applied once and says so once; none is said to have failed.
    const records = await readWholeTopic(kafka, topic);
    const bodies = records.map((r) => decodeEvent(r.value!).body);
    const commands = new Set(
      bodies
        .filter((b) => b.hostApplyRequested?.rolloutId === created.rolloutId)
        .map((b) => b.hostApplyRequested!.commandId),
    );
    const failed = bodies.filter((b) => b.patchApplyFailed && commands.has(b.patchApplyFailed.commandId));
    expect(failed.map((b) => `${b.patchApplyFailed!.hostId}: ${b.patchApplyFailed!.error}`)).toEqual([]);
    const applied = countBy(
      bodies.filter((b) => b.patchApplied && commands.has(b.patchApplied.commandId)),
      (b) => b.patchApplied!.hostId,
    );
    expect([...applied.values()]).toEqual(Array(6).fill(1));
    for (const host of fleet.hosts.values()) expect(host.kernel.loads).toEqual([patch.moduleName]);
    const done = await get('b', created.rolloutId);
    expect(done.waves.flatMap((w) => w.hosts.map((h) => h.state))).toEqual(
      Array(6).fill(H.HOST_ROLLOUT_STATE_SUCCEEDED),
    );

    // The ledger's audit of those hosts holds no failure either.
    const ledgerClient = serviceClient(grpcServices.ledger, ledgerAddress, operator());
    try {
      for (const hostId of onA) {
        await until(async () => {
          const host = await unary<ledger.GetHostResponse>(ledgerClient, 'getHost', { hostId }).catch(() => undefined);
          return (host?.host?.stack?.entries ?? []).some((p) => p.patch?.patchId === patch.patchId);
        }, `the ledger shows the patch on ${hostId}`);
        const history = await unary<ledger.GetHostHistoryResponse>(ledgerClient, 'getHostHistory', {
          hostId,
          pageSize: 1000,
        });
        expect(history.records.filter((r) => r.body?.type === 'PatchApplyFailed').map((r) => r.summary)).toEqual([]);
      }
    } finally {
      ledgerClient.close();
    }
  });
});

describe("an operator's ClearQuarantine called on an instance the host's agent is not connected to", () => {
  it('reaches the agent through the log: the clear is done, a refusal comes back in its words, a host connected nowhere is refused', async () => {
    const fleet = await fleetOn('quar', 3, [instance('b').address]);
    const created = await createOn('b', 'quar', 3);
    await until(
      async () => (await get('b', created.rolloutId)).state === R.ROLLOUT_STATE_COMPLETED,
      'the patch is on the three hosts',
    );
    // quar-00 and quar-02 go down moments later: at the next boot their agents quarantine the patch.
    for (const hostId of ['quar-00', 'quar-02']) {
      await fleet.crash(hostId);
      await until(
        async () => (await fleet.get(hostId).agent.status()).quarantined.length === 1,
        `the agent of ${hostId} quarantined the patch`,
      );
      await until(
        async () => fleet.get(hostId).agent.connected && ((await agentsByInstance()).get('b') ?? []).includes(hostId),
        `${hostId} is connected to B again`,
      );
    }
    const clear = (hostId: string, reason: string) =>
      unary<dispatcher.ClearQuarantineResponse>(instance('a').client, 'clearQuarantine', {
        hostId,
        patchId: patch.patchId,
        version: patch.version,
        reason,
      });
    const refusal = (hostId: string) =>
      clear(hostId, 'checked').then(
        () => undefined,
        (e: grpc.ServiceError) => e,
      );

    // Called on A: quar-01 quarantined nothing, and its agent (on B) says so.
    let refused = await refusal('quar-01');
    // A learns where agents are every 250 ms: at first it may not know quar-01 is on B.
    await until(async () => {
      if (refused?.details.includes('not connected to any dispatcher instance')) refused = await refusal('quar-01');
      return !refused?.details.includes('not connected to any dispatcher instance');
    }, 'A knows where quar-01 is');
    expect(refused?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(refused?.details).toContain(
      `the agent of quar-01 refused: patch ${patch.patchId} ${patch.version} is not quarantined on this host`,
    );

    // Called on A: quar-00's agent, on B, clears it; A answers once the agent's fact is in the log.
    // quar-00 came back to B after quar-01 did, and A may learn that a poll later: until then A
    // refuses at once, writing nothing, and says to try again (asserted for quar-01 below).
    let cleared: dispatcher.ClearQuarantineResponse | undefined;
    await until(async () => {
      cleared = await clear('quar-00', 'the host lost power, not the patch').catch((e: grpc.ServiceError) => {
        if (e.details.includes('not connected to any dispatcher instance')) return undefined;
        throw e;
      });
      return cleared !== undefined;
    }, 'A cleared quar-00 through B');
    const { commandId } = cleared!;
    expect((await fleet.get('quar-00').agent.status()).quarantined).toEqual([]);
    const bodies = (await readWholeTopic(kafka, topic)).map((r) => decodeEvent(r.value!).body);
    expect(
      bodies.filter((b) => b.quarantineClearRequested?.commandId === commandId).map((b) => b.producer?.producerId),
    ).toEqual(['dispatcher/a']);
    expect(
      bodies.filter((b) => b.patchQuarantineCleared?.commandId === commandId).map((b) => b.producer?.producerId),
    ).toEqual(['agent/quar-00']);

    // Called on A while quar-02 is on B, but its agent goes away before A's request is in the log
    // (A's write held until then): B reads it with the agent gone, and sends it when the agent
    // comes back, within the command's five minutes.
    fs.writeFileSync(path.join(holdDir(), 'armed'), '1 quar-02');
    const moving = clear('quar-02', 'the host lost power, not the patch').then(
      (response) => ({ response }),
      (error: grpc.ServiceError) => ({ error }),
    );
    try {
      await until(() => fs.existsSync(path.join(holdDir(), 'held')), "A holds the write of quar-02's clear");
      await fleet.stop(['quar-02']);
      await until(
        async () => !((await agentsByInstance()).get('b') ?? []).includes('quar-02'),
        'B saw the agent of quar-02 go',
      );
      fs.writeFileSync(path.join(holdDir(), 'release'), '');
      await until(
        async () =>
          (await readWholeTopic(kafka, topic)).some(
            (r) => decodeEvent(r.value!).body.quarantineClearRequested?.hostId === 'quar-02',
          ),
        "A's request to quar-02 is in the log",
      );
    } finally {
      for (const file of ['armed', 'held', 'release']) fs.rmSync(path.join(holdDir(), file), { force: true });
    }
    await fleet.start(['quar-02']);
    const moved = await moving;
    expect(moved).toEqual({ response: { commandId: expect.any(String) } });
    expect((await fleet.get('quar-02').agent.status()).quarantined).toEqual([]);

    // An agent connected to no instance: refused at once, nothing written. (Until A learns the
    // agent left, a request is written and waits for an answer that cannot come.)
    await fleet.stop(['quar-01']);
    await until(async () => {
      const e = await refusal('quar-01');
      return e?.details.includes('not connected to any dispatcher instance') === true;
    }, 'A refuses quar-01, connected nowhere');
    const requestsFor = async (hostId: string) =>
      (await readWholeTopic(kafka, topic))
        .map((r) => decodeEvent(r.value!).body)
        .filter((b) => b.quarantineClearRequested?.hostId === hostId).length;
    const before = await requestsFor('quar-01');
    const nowhere = await refusal('quar-01');
    expect(nowhere?.code).toBe(grpc.status.FAILED_PRECONDITION);
    expect(nowhere?.details).toContain('the agent of quar-01 is not connected to any dispatcher instance');
    expect(await requestsFor('quar-01')).toBe(before);
  });
});

describe('a write of the driving instance held until after it lost its lease', () => {
  // Whatever happens in the test, A's later writes are not held.
  afterAll(() => {
    fs.writeFileSync(path.join(holdDir(), 'release'), '');
    fs.rmSync(path.join(holdDir(), 'armed'), { force: true });
  });

  it('names the same commands as the instance that took over: each host asked once, patched once, every reader agreeing', async () => {
    // All on B, so that every command A decides reaches its host through B.
    const fleet = await fleetOn('late', 6, [instance('b').address]);
    // A holds its first write of a command to late-05 (the wave after the canary late-00), after
    // confirming its lease.
    fs.writeFileSync(path.join(holdDir(), 'armed'), '1 late-05');
    const created = await createOn('a', 'late', 6, {
      canaryHostIds: ['late-00'],
      canaryCount: 1,
      waves: [{ percent: 100 }],
    });
    await until(() => fs.existsSync(path.join(holdDir(), 'held')), 'A holds the write of the next wave');
    const held = JSON.parse(fs.readFileSync(path.join(holdDir(), 'held'), 'utf8')) as string[];
    expect(held.length).toBeGreaterThan(0);

    // A's session ends on the server (a network cut, a DBA): the lease is B's to take, and B
    // decides the wave from a log without A's write in it.
    await pg((c) =>
      c.query(
        `SELECT pg_terminate_backend(a.pid) FROM pg_stat_activity a
          WHERE a.pid IN (SELECT pid FROM dispatcher_instances WHERE instance = 'a')`,
      ),
    );
    await instance('b').process.waitFor(`driving rollout ${created.rolloutId}`, 60_000);
    await until(
      async () => (await get('b', created.rolloutId)).state === R.ROLLOUT_STATE_COMPLETED,
      'B completed the rollout',
      180_000,
    );

    // Then A's write goes on, late: it lands after B's.
    fs.writeFileSync(path.join(holdDir(), 'release'), '');
    await until(async () => {
      const byA = (await logOf(created.rolloutId)).applyRequests.filter(
        (b) => b.producer?.producerId === 'dispatcher/a',
      );
      return held.every((id) => byA.some((b) => b.hostApplyRequested!.commandId === id));
    }, "A's held write reached the log");
    const records = await readWholeTopic(kafka, topic);
    const requests = records
      .map((r) => ({ r, body: decodeEvent(r.value!).body }))
      .filter(({ body }) => body.hostApplyRequested?.rolloutId === created.rolloutId);
    for (const id of held) {
      const copies = requests.filter(({ body }) => body.hostApplyRequested!.commandId === id);
      // B named the command A had decided: one command, written twice, B's copy first.
      expect(copies.map(({ body }) => body.producer?.producerId)).toEqual(['dispatcher/b', 'dispatcher/a']);
      expect(copies[0]!.r.partition).toBe(copies[1]!.r.partition);
    }
    // Each host was asked one command, answered it once, and loaded the module once.
    const idsPerHost = new Map<string, Set<string>>();
    for (const { body } of requests) {
      const { hostId, commandId } = body.hostApplyRequested!;
      idsPerHost.set(hostId, (idsPerHost.get(hostId) ?? new Set()).add(commandId));
    }
    expect([...idsPerHost.values()].map((ids) => ids.size)).toEqual(Array(6).fill(1));
    const { applied } = await logOf(created.rolloutId);
    expect([...countBy(applied, (b) => b.patchApplied!.commandId).values()]).toEqual(Array(6).fill(1));
    for (const host of fleet.hosts.values())
      expect([host.spec.hostId, host.kernel.loads]).toEqual([host.spec.hostId, [patch.moduleName]]);

    // A, having folded its late copy, agrees with B: nothing undone, nothing to ask again.
    await until(async () => {
      const r = await get('a', created.rolloutId);
      return r.waves.flatMap((w) => w.hosts).every((h) => h.state === H.HOST_ROLLOUT_STATE_SUCCEEDED);
    }, 'A shows every host succeeded');
    expect((await get('a', created.rolloutId)).state).toBe(R.ROLLOUT_STATE_COMPLETED);
    // So does the ledger, which finds every chain whole.
    const ledgerClient = serviceClient(grpcServices.ledger, ledgerAddress, operator());
    try {
      await until(async () => {
        const r = await unary<ledger.GetRolloutResponse>(ledgerClient, 'getRollout', {
          rolloutId: created.rolloutId,
        }).catch(() => undefined);
        const hosts = r?.rollout?.waves.flatMap((w) => w.hosts) ?? [];
        return hosts.length === 6 && hosts.every((h) => h.state === H.HOST_ROLLOUT_STATE_SUCCEEDED);
      }, 'the ledger shows every host succeeded');
      const verified = await unary<ledger.VerifyIntegrityResponse>(ledgerClient, 'verifyIntegrity', { producerId: '' });
      expect(verified.findings).toEqual([]);
    } finally {
      ledgerClient.close();
    }
  });
});

describe('the driving instance SIGKILLed mid-wave', () => {
  it('leaves its agents to the other instance, which completes the rollout: no host asked or patched twice, every chain whole', async () => {
    const fleet = await fleetOn('kill', 12, [instance('a').address, instance('b').address]);
    await until(async () => {
      const by = await agentsByInstance();
      const hosts = (name: string) => (by.get(name) ?? []).filter((h) => h.startsWith('kill-'));
      return hosts('a').length + hosts('b').length === 12 && hosts('a').length > 0 && hosts('b').length > 0;
    }, 'the kill group is spread over both instances');
    const onA = ((await agentsByInstance()).get('a') ?? []).filter((h) => h.startsWith('kill-'));

    const created = await createOn('a', 'kill', 12);
    // Mid-wave: the wave after the canary is running, some of its hosts have answered and some not.
    await until(
      async () => {
        // B may not have read the rollout's creation (written by A a moment ago) yet.
        const wave = (await getOnceKnown('b', created.rolloutId))?.waves[1];
        if (!wave || wave.state !== dispatcher.WaveState.WAVE_STATE_RUNNING) return false;
        const succeeded = wave.hosts.filter((h) => h.state === H.HOST_ROLLOUT_STATE_SUCCEEDED).length;
        return succeeded > 0 && succeeded < wave.hosts.length;
      },
      'the second wave is half done',
      120_000,
    );
    instance('a').process.kill('SIGKILL');
    await instance('a').process.exited;

    // Its agents move to B, and B takes the rollout over and completes it.
    await until(async () => {
      const by = await agentsByInstance();
      return onA.every((h) => (by.get('b') ?? []).includes(h));
    }, "A's agents reconnected to B");
    await until(
      async () => (await get('b', created.rolloutId)).state === R.ROLLOUT_STATE_COMPLETED,
      'B completed the rollout',
      180_000,
    );
    const done = await get('b', created.rolloutId);
    expect(done.waves.flatMap((w) => w.hosts.map((h) => h.state))).toEqual(
      Array(12).fill(H.HOST_ROLLOUT_STATE_SUCCEEDED),
    );
    expect(instance('b').process.output).toContain(`driving rollout ${created.rolloutId}`);

    const { rolloutEvents, applyRequests, applied } = await logOf(created.rolloutId);
    // A wrote its start, B its end.
    expect(rolloutEvents.find((b) => b.rolloutCreated)?.producer?.producerId).toBe('dispatcher/a');
    expect(rolloutEvents.find((b) => b.rolloutCompleted)?.producer?.producerId).toBe('dispatcher/b');
    // One apply request per host and patch, one PatchApplied per command, one module load per kernel.
    const perHost = countBy(
      applyRequests,
      (b) =>
        `${b.hostApplyRequested!.hostId}/${b.hostApplyRequested!.undoStep}/${b.hostApplyRequested!.patchId}@${b.hostApplyRequested!.version}`,
    );
    expect(perHost.size).toBe(12);
    expect([...perHost.entries()].filter(([, n]) => n !== 1)).toEqual([]);
    const perCommand = countBy(applied, (b) => b.patchApplied!.commandId);
    expect(perCommand.size).toBe(12);
    expect([...perCommand.entries()].filter(([, n]) => n !== 1)).toEqual([]);
    for (const host of fleet.hosts.values())
      expect([host.spec.hostId, host.kernel.loads]).toEqual([host.spec.hostId, [patch.moduleName]]);

    // The ledger, reading the same log, finds every chain whole: A's, B's, every agent's.
    const ledgerClient = serviceClient(grpcServices.ledger, ledgerAddress, operator());
    try {
      await until(async () => {
        const host = await unary<ledger.GetHostResponse>(ledgerClient, 'getHost', { hostId: 'kill-11' }).catch(
          () => undefined,
        );
        return (host?.host?.stack?.entries ?? []).some((p) => p.patch?.patchId === patch.patchId);
      }, 'the ledger has projected the rollout');
      const verified = await unary<ledger.VerifyIntegrityResponse>(ledgerClient, 'verifyIntegrity', { producerId: '' });
      expect(verified.findings).toEqual([]);
      expect(verified.producersChecked).toBeGreaterThanOrEqual(2 + 12 + 8);
    } finally {
      ledgerClient.close();
    }
  });
});
