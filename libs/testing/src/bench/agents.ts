// npm run bench:agents — BENCH_AGENTS (default 1,000) real agents (libs/agent-runtime on
// simulated kernels) in this process, each on its own stream to the REAL dispatcher's
// AgentGateway (the built service, a child process, on a real broker), sharing one HTTP/2
// connection per address. Every agent relays its events through the gateway (RelayEvents), as a
// deployed agent does: the gateway binds each agent's key, and no reader counts a key it did not
// bind (docs/adr/0012), so events written straight to Kafka would count for nothing. The dispatcher sends the commands: a rollout of
// a module really compiled and signed by the builder, to every agent.
// Measures the memory each connected agent costs this process, the agents' event rate while they
// start (ChainEpochStarted, HostEnrolled, HostBooted) and while they apply (PatchApplyStarted,
// PatchApplied), counted until every event is in Kafka, and while every agent reports drift at
// once (DriftDetected, HostInventoryReported: the events path without an apply's work).
// Prints progress on stderr and one JSON object as the last line of stdout; writes it to
// bench/results/agents-<date>.json. Settings: BENCH_AGENTS, BENCH_MAX_IN_FLIGHT (applies under way
// at once, default 2,000), BENCH_DIR (the agents' data dirs; default /dev/shm), KAFKA_BROKERS.
import { randomUUID } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { dispatcher } from '@rebootless/contracts';
import { ensureEventsTopic, kafkaBrokersFromEnv, kafkaClient } from '@rebootless/kafka';
import { devTopicDurability } from '../kafka';
import { buildPatch, rolloutClient, startBuilder, startDispatcher, unary, type ServiceProcess } from '../fleet/rig';
import { SimulatedFleet } from '../fleet/simulated-fleet';
import { currentDebianCloudRelease } from '@rebootless/kernel-toolchain';
import { deleteBenchTopic, machineFacts, reportBenchResult, storedModuleBytes } from './machine';

const AGENTS = Number(process.env['BENCH_AGENTS'] ?? 1_000);
const MAX_IN_FLIGHT = Number(process.env['BENCH_MAX_IN_FLIGHT'] ?? 2_000);
// Debian's current cloud kernel, resolved in main() (the patch is really built for it).
let RELEASE = process.env['BENCH_KERNEL_RELEASE'] ?? '';
const say = (line: string) => process.stderr.write(`bench:agents: ${line}\n`);
const mib = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;

async function settle(): Promise<NodeJS.MemoryUsage> {
  for (let i = 0; i < 3; i++) {
    global.gc?.();
    await new Promise((r) => setTimeout(r, 300));
  }
  return process.memoryUsage();
}

async function until(check: () => boolean | Promise<boolean>, what: string, timeoutMs = 600_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

async function main(): Promise<void> {
  RELEASE ||= await currentDebianCloudRelease();
  if (!global.gc) say('run with --expose-gc (npm run bench:agents does) for steadier memory figures');
  const brokers = kafkaBrokersFromEnv();
  const topic = `bench.agents.${randomUUID().slice(0, 8)}`;
  await ensureEventsTopic({ brokers, topic, partitions: 12, durability: devTopicDurability() });
  const base = process.env['BENCH_DIR'] ?? (fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir());
  const root = fs.mkdtempSync(path.join(base, 'rebootless-bench-agents-'));
  const env = { topic, brokers: brokers.join(',') };
  const kafka = kafkaClient(brokers, 'rebootless-bench-agents');
  const processes: ServiceProcess[] = [];
  let fleet: SimulatedFleet | undefined;
  try {
    const builderDir = path.join(root, 'builder');
    const built = await startBuilder({ ...env, dataDir: builderDir });
    processes.push(built.process);
    const patch = await buildPatch(built.address, { patchName: 'bench-agents', kernelReleases: [RELEASE] });
    const disp = await startDispatcher({
      ...env,
      dataDir: path.join(root, 'dispatcher'),
      extra: { DISPATCHER_TRUSTED_DATA_DIRS: builderDir, LOG_LEVEL: 'warn' },
    });
    processes.push(disp.process);

    const hostIds = Array.from({ length: AGENTS }, (_, i) => `bench-${String(i).padStart(5, '0')}`);
    const before = await settle();
    fleet = new SimulatedFleet(
      {
        root: path.join(root, 'hosts'),
        dispatcherAddress: disp.address,
        builderAddress: built.address,
        builderPublicKey: built.publicKey,
        // Thousands of hosts share one disk here; a real host fsyncs (the default).
        syncWrites: false,
        agentFetchTimeoutMs: 600_000,
        sharedArtifacts: true,
      },
      hostIds.map((hostId) => ({ hostId, kernelRelease: RELEASE, labels: { fleet: 'bench' } })),
    );
    const f = fleet;
    const agents = [...f.hosts.values()].map((h) => h.agent);
    const pending = () => agents.reduce((n, a) => n + a.pendingEvents, 0);
    say(`starting ${AGENTS} agents against the dispatcher at ${disp.address} (events relayed)`);
    const t0 = Date.now();
    await f.start(undefined, 200);
    await until(() => f.connectedCount() === AGENTS, 'every agent connected');
    const connectedMs = Date.now() - t0;
    await until(() => pending() === 0, 'the start events are in Kafka');
    const startMs = Date.now() - t0;
    const after = await settle();
    say(`${AGENTS} connected in ${connectedMs} ms, start events delivered in ${startMs} ms`);

    const client = rolloutClient(disp.address);
    const selector = { kernelReleases: [], labels: { fleet: 'bench' }, hostIds: [] };
    const strategy = {
      canaryCount: Math.min(100, Math.max(1, Math.floor(AGENTS / 100))),
      waves: [{ percent: 100 }],
      soakSeconds: 0,
      onFailure: 1,
      applyTimeoutSeconds: 900,
      maxInFlight: MAX_IN_FLIGHT,
    };
    // The dispatcher learns hosts from their hellos: wait until it knows all of them.
    await until(async () => {
      const dry = await unary<dispatcher.CreateRolloutResponse>(client, 'createRollout', {
        patchId: patch.patchId,
        version: patch.version,
        selector,
        strategy,
        dryRun: true,
        skipApproval: true,
      }).catch(() => undefined);
      return (dry?.rollout?.waves.reduce((n, w) => n + w.hosts.length, 0) ?? 0) === AGENTS;
    }, 'the dispatcher knows every host');

    const a0 = Date.now();
    const { rollout } = await unary<dispatcher.CreateRolloutResponse>(client, 'createRollout', {
      patchId: patch.patchId,
      version: patch.version,
      selector,
      strategy,
      // What is measured is the rollout, not the wait for a second person (ADR 0013).
      skipApproval: true,
    });
    // Applied on every kernel, every PatchApplied in Kafka: the agents' side of the rollout.
    const live = () => [...f.hosts.values()].filter((h) => h.kernel.loads.length > 0).length;
    await until(() => live() === AGENTS && pending() === 0, 'every agent applied and delivered its events', 900_000);
    const applyMs = Date.now() - a0;
    let state: dispatcher.RolloutState | undefined;
    await until(async () => {
      const got = await unary<dispatcher.GetRolloutResponse>(client, 'getRollout', { rolloutId: rollout!.rolloutId });
      state = got.rollout?.state;
      return (
        state === dispatcher.RolloutState.ROLLOUT_STATE_COMPLETED ||
        state === dispatcher.RolloutState.ROLLOUT_STATE_PAUSED
      );
    }, 'the rollout ended');
    client.close();
    if (state !== dispatcher.RolloutState.ROLLOUT_STATE_COMPLETED) throw new Error('the rollout paused');
    say(`${AGENTS} applied in ${applyMs} ms`);

    // The events path alone: someone loads a module by hand on every host and a fleet-wide drift
    // check runs (Agent.checkDrift): each agent signs DriftDetected + HostInventoryReported,
    // appends them to its outbox, sends its inventory to the dispatcher, and the events go to Kafka.
    for (const h of f.hosts.values()) {
      await h.kernel.loadModule({
        path: '/tmp/by_hand.ko',
        moduleName: 'by_hand',
        functions: [{ object: 'vmlinux', name: 'by_hand_fix', sympos: 0 }],
        replace: false,
      });
    }
    const d0 = Date.now();
    await Promise.all(agents.map((a) => a.checkDrift()));
    await until(() => pending() === 0, 'the drift events are in Kafka');
    const driftMs = Date.now() - d0;
    say(`${AGENTS} drift reports delivered in ${driftMs} ms`);

    const startEvents = AGENTS * 3; // ChainEpochStarted, HostEnrolled, HostBooted
    const applyEvents = AGENTS * 2; // PatchApplyStarted, PatchApplied
    const result = {
      bench: 'agents',
      date: new Date().toISOString(),
      machine: machineFacts(),
      agents: AGENTS,
      gateway: 'the dispatcher (apps/dispatcher, a child process) AgentGateway, one stream per agent',
      events_path: 'RelayEvents through the dispatcher',
      sync_writes: false,
      shared_artifacts: 'one store and one FetchArtifact per digest; each agent verifies and hashes itself',
      data_dir: base,
      module_bytes: storedModuleBytes(path.join(root, 'hosts', 'shared-artifacts')),
      connect_all_ms: connectedMs,
      start_all_delivered_ms: startMs,
      start_events_per_s: Math.round((startEvents / startMs) * 1000),
      max_in_flight: MAX_IN_FLIGHT,
      apply_all_ms: applyMs,
      applies_per_s: Math.round((AGENTS / applyMs) * 1000),
      apply_events_per_s: Math.round((applyEvents / applyMs) * 1000),
      drift_all_delivered_ms: driftMs,
      drift_events_per_s: Math.round(((AGENTS * 2) / driftMs) * 1000),
      heap_per_agent_kib: Math.round((after.heapUsed - before.heapUsed) / AGENTS / 1024),
      rss_per_agent_kib: Math.round((after.rss - before.rss) / AGENTS / 1024),
      rss_total_mib: mib(after.rss),
      downloads: f.downloads?.fetches ?? null,
      // Runnable tasks on the machine (all users) over the last minute: the neighbours' share.
      load_average_1m: Math.round(os.loadavg()[0]! * 100) / 100,
    };
    reportBenchResult('agents', result);
  } finally {
    await fleet?.close().catch(() => undefined);
    for (const p of processes.reverse()) await p.stop().catch(() => undefined);
    await deleteBenchTopic(kafka, topic);
    fs.rmSync(root, { recursive: true, force: true });
  }
}

main().then(
  () => process.exit(0),
  (error: unknown) => {
    process.stderr.write(`bench:agents: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
    process.exit(1);
  },
);
