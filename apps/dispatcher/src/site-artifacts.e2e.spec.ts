// The dispatcher as a site's artifact cache (ADR 0026), as an operator checks it: the built
// builder and dispatcher as child processes on a fresh topic, a module really compiled and signed
// by the builder, real agents on simulated kernels over real gRPC. Builder fetches are counted
// where the builder serves (its rebootless_artifacts_served_total), the cache's own work on the
// dispatcher's /metrics. Build first (`npm run build`).
import * as fs from 'node:fs';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { Client, credentials as grpcCredentials, status, type ServiceError } from '@grpc/grpc-js';
import { builder, dispatcher, events } from '@rebootless/contracts';
import { currentDebianCloudRelease } from '@rebootless/kernel-toolchain';
import {
  SimulatedFleet,
  buildPatch,
  freePort,
  freshEventsTopic,
  hostStates,
  rolloutClient,
  scrapeMetric,
  serviceClient,
  startBuilder,
  startDispatcher,
  unary,
  type BuiltPatch,
  type ServiceProcess,
  type SimulatedHostSpec,
} from '@rebootless/testing';
import { grpcServices } from '@rebootless/contracts';

const R = dispatcher.RolloutState;
const H = dispatcher.HostRolloutState;

jest.setTimeout(10 * 60_000);

const brokers = process.env['KAFKA_BROKERS'] ?? '127.0.0.1:9092';

let RELEASE: string;
let root: string;
let topic: string;
let builderProcess: ServiceProcess;
let builderAddress: string;
let builderKey: Buffer;
let builderMetrics: string;
let dispatcherProcess: ServiceProcess;
let dispatcherAddress: string;
let dispatcherMetrics: string;
let dispatcherDir: string;
let patch: BuiltPatch;
let digest: string;
let rollouts: ReturnType<typeof rolloutClient>;
const fleets: SimulatedFleet[] = [];

beforeAll(async () => {
  root = fs.mkdtempSync(path.join(tmpdir(), 'rebootless-site-artifacts-'));
  topic = await freshEventsTopic('site-artifacts', 6);
  RELEASE = await currentDebianCloudRelease();
  const builderDir = path.join(root, 'builder');
  builderMetrics = `127.0.0.1:${await freePort()}`;
  ({
    process: builderProcess,
    address: builderAddress,
    publicKey: builderKey,
  } = await startBuilder({
    topic,
    brokers,
    dataDir: builderDir,
    extra: { REBOOTLESS_METRICS_ADDRESS: builderMetrics },
  }));
  patch = await buildPatch(builderAddress, { patchName: 'site-cache', kernelReleases: [RELEASE] });
  digest = patch.artifacts[RELEASE]!;
  dispatcherDir = path.join(root, 'dispatcher');
  dispatcherMetrics = `127.0.0.1:${await freePort()}`;
  ({ process: dispatcherProcess, address: dispatcherAddress } = await startDispatcher({
    topic,
    brokers,
    dataDir: dispatcherDir,
    extra: {
      DISPATCHER_TRUSTED_DATA_DIRS: builderDir,
      DISPATCHER_BUILDER_ADDRESS: builderAddress,
      REBOOTLESS_METRICS_ADDRESS: dispatcherMetrics,
    },
  }));
  rollouts = rolloutClient(dispatcherAddress);
});

afterAll(async () => {
  fs.writeFileSync(path.join(tmpdir(), 'rebootless-site-artifacts-dispatcher.log'), dispatcherProcess?.output ?? '');
  for (const fleet of fleets) await fleet.close();
  rollouts?.close();
  await dispatcherProcess?.stop();
  await builderProcess?.stop();
  if (root) fs.rmSync(root, { recursive: true, force: true });
});

/** Agents that each fetch for themselves (no download shared in the process), as real hosts do. */
async function fleetOf(group: string, n: number): Promise<SimulatedFleet> {
  const hosts: SimulatedHostSpec[] = Array.from({ length: n }, (_, i) => ({
    hostId: `${group}-${String(i).padStart(3, '0')}`,
    kernelRelease: RELEASE,
    labels: { group },
  }));
  const fleet = new SimulatedFleet(
    { root: path.join(root, 'hosts'), dispatcherAddress, builderAddress, builderPublicKey: builderKey },
    hosts,
  );
  fleets.push(fleet);
  await fleet.start();
  await until(() => fleet.connectedCount() === n, `the ${n} agents of ${group} connected`);
  await until(async () => {
    const dry = await unary<dispatcher.CreateRolloutResponse>(rollouts, 'createRollout', {
      ...rolloutOf(group),
      dryRun: true,
    }).catch(() => undefined);
    return (dry?.rollout?.waves ?? []).reduce((k, w) => k + w.hosts.length, 0) === n;
  }, `the dispatcher knows the ${n} hosts of ${group}`);
  return fleet;
}

function rolloutOf(group: string) {
  return {
    patchId: patch.patchId,
    version: patch.version,
    selector: { kernelReleases: [], labels: { group }, hostIds: [] },
    strategy: {
      canaryHostIds: [],
      canaryCount: 1,
      waves: [{ percent: 100 }],
      soakSeconds: 0,
      onFailure: events.FailurePolicy.FAILURE_POLICY_PAUSE,
      applyTimeoutSeconds: 60,
      offlineDeadlineSeconds: 600,
    },
    skipApproval: true,
  };
}

async function rollOut(group: string): Promise<dispatcher.Rollout> {
  const { rollout } = await unary<dispatcher.CreateRolloutResponse>(rollouts, 'createRollout', rolloutOf(group));
  let last: dispatcher.Rollout | undefined;
  await until(
    async () => {
      last = (await unary<dispatcher.GetRolloutResponse>(rollouts, 'getRollout', { rolloutId: rollout!.rolloutId }))
        .rollout;
      return last?.state === R.ROLLOUT_STATE_COMPLETED || last?.state === R.ROLLOUT_STATE_PAUSED;
    },
    `rollout ${rollout!.rolloutId} completed or paused (last: ${last && R[last.state]})`,
  );
  return last!;
}

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 120_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Times the builder served this module in full, to anyone: what a site cache exists to keep at one. */
async function builderServes(): Promise<number> {
  const samples = await scrapeMetric(builderMetrics, 'rebootless_artifacts_served_total');
  return samples.filter((s) => s.labels['digest'] === digest).reduce((n, s) => n + s.value, 0);
}

async function cacheMetric(name: string, label?: [string, string]): Promise<number> {
  const samples = await scrapeMetric(dispatcherMetrics, name);
  return samples.filter((s) => !label || s.labels[label[0]] === label[1]).reduce((n, s) => n + s.value, 0);
}

function cachedModule(): string {
  return path.join(dispatcherDir, 'artifact-cache', 'objects', digest.slice(0, 2), digest, 'module.ko');
}

/** FetchArtifact on the gateway as an agent calls it; the messages or the refusal. */
function fetchFromDispatcher(): Promise<{ messages: builder.FetchArtifactResponse[]; error?: ServiceError }> {
  const client = new Client(dispatcherAddress, grpcCredentials.createInsecure());
  return new Promise((resolve) => {
    const messages: builder.FetchArtifactResponse[] = [];
    const call = client.makeServerStreamRequest(
      '/rebootless.dispatcher.v1.AgentGateway/FetchArtifact',
      (m: dispatcher.FetchArtifactRequest) => Buffer.from(dispatcher.FetchArtifactRequest.encode(m).finish()),
      (b: Buffer) => builder.FetchArtifactResponse.decode(b),
      { artifactDigest: digest },
      { deadline: Date.now() + 30_000 },
    );
    call.on('data', (m: builder.FetchArtifactResponse) => messages.push(m));
    call.on('error', (error: ServiceError) => {
      client.close();
      resolve({ messages, error });
    });
    call.on('end', () => {
      client.close();
      resolve({ messages });
    });
  });
}

describe('a rollout to 40 hosts behind one dispatcher', () => {
  it('fetches the module from the builder once; the dispatcher serves all 40 copies', async () => {
    const fleet = await fleetOf('site', 40);
    expect(await builderServes()).toBe(0);
    const done = await rollOut('site');
    expect([done.state, done.stateReason]).toEqual([R.ROLLOUT_STATE_COMPLETED, '']);
    expect([...hostStates(done).values()].every((s) => s === H.HOST_ROLLOUT_STATE_SUCCEEDED)).toBe(true);
    for (const host of fleet.hosts.values()) expect(host.kernel.loads).toEqual([patch.moduleName]);

    expect(await builderServes()).toBe(1);
    const size = fs.statSync(cachedModule()).size;
    expect(await cacheMetric('rebootless_artifact_cache_builder_fetches_total')).toBe(1);
    expect(await cacheMetric('rebootless_artifact_cache_requests_total', ['result', 'miss'])).toBe(1);
    expect(await cacheMetric('rebootless_artifact_cache_requests_total', ['result', 'hit'])).toBe(39);
    expect(await cacheMetric('rebootless_artifact_cache_bytes_total', ['direction', 'served'])).toBe(40 * size);
  });
});

describe('a cached module with one byte changed on disk', () => {
  it('is refused by the agent it reaches (nothing loaded, the host failed with the reason), then dropped and fetched again', async () => {
    const fleet = await fleetOf('tamper', 2);
    const servesBefore = await builderServes();
    const module = fs.readFileSync(cachedModule());
    module[Math.floor(module.length / 2)] ^= 0x01;
    fs.writeFileSync(cachedModule(), module);

    const paused = await rollOut('tamper');
    expect(paused.state).toBe(R.ROLLOUT_STATE_PAUSED);
    const canary = paused.waves[0]!.hosts[0]!;
    expect(canary.state).toBe(H.HOST_ROLLOUT_STATE_FAILED);
    expect(canary.error).toMatch(
      new RegExp(
        `^failed at verify: digest-mismatch: artifact ${digest} is tampered or corrupt \\(module-digest-mismatch\\): ` +
          `the module's sha256 is [0-9a-f]{64}, the manifest pins ${digest} \\(as served by the dispatcher's artifact cache\\)$`,
      ),
    );
    expect(paused.stateReason).toContain(`${canary.hostId}: failed at verify: digest-mismatch`);
    for (const host of fleet.hosts.values()) {
      expect(host.kernel.loads).toEqual([]);
      expect(await fleet.liveModules(host.spec.hostId)).toEqual([]);
    }

    // The cache found its copy altered while serving it, and dropped it.
    await until(() => !fs.existsSync(cachedModule()), 'the damaged copy is gone');
    expect(await cacheMetric('rebootless_artifact_cache_dropped_total', ['why', 'damaged'])).toBe(1);
    expect(await builderServes()).toBe(servesBefore);

    // The next request fetches a good copy from the builder, and the other host is patched.
    const other = [...fleet.hosts.keys()].find((id) => id !== canary.hostId)!;
    await unary(rollouts, 'abortRollout', { rolloutId: paused.rolloutId, reason: 'the canary refused the module' });
    const { rollout } = await unary<dispatcher.CreateRolloutResponse>(rollouts, 'createRollout', {
      ...rolloutOf('tamper'),
      selector: { kernelReleases: [], labels: {}, hostIds: [other] },
    });
    await until(async () => {
      const r = (await unary<dispatcher.GetRolloutResponse>(rollouts, 'getRollout', { rolloutId: rollout!.rolloutId }))
        .rollout!;
      return r.state === R.ROLLOUT_STATE_COMPLETED;
    }, 'the second rollout completed');
    expect(fleet.get(other).kernel.loads).toEqual([patch.moduleName]);
    expect(await builderServes()).toBe(servesBefore + 1);
    expect(fs.readFileSync(cachedModule()).equals(module)).toBe(false);
  });
});

describe('a retracted patch', () => {
  it('is not served by the dispatcher, even from the copy it keeps, and the builder is not asked', async () => {
    const before = await fetchFromDispatcher();
    expect(before.error).toBeUndefined();
    expect(before.messages[0]!.header).toBeDefined();
    const servesBefore = await builderServes();

    const build = serviceClient(grpcServices.build, builderAddress);
    try {
      await unary(build, 'retractPatch', { patchId: patch.patchId, version: patch.version, reason: 'breaks nfs' });
    } finally {
      build.close();
    }
    let after: Awaited<ReturnType<typeof fetchFromDispatcher>> | undefined;
    await until(async () => {
      after = await fetchFromDispatcher();
      return after.error !== undefined;
    }, 'the dispatcher has read the retraction');
    expect(after!.error!.code).toBe(status.FAILED_PRECONDITION);
    expect(after!.error!.details).toBe(
      `artifact ${digest} belongs to patch ${patch.patchId} version ${patch.version}, retracted: breaks nfs`,
    );
    expect(after!.messages).toEqual([]);
    expect(fs.existsSync(cachedModule())).toBe(true);
    expect(await builderServes()).toBe(servesBefore);
  });
});
