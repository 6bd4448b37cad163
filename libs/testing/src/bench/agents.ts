// npm run bench:agents — N real agents (simulated kernels) in one process, each on its own
// AgentGateway stream, sharing one gRPC connection per address and one Kafka producer.
// Measures memory per connected agent and the rate of agent events delivered to Kafka while
// every agent applies one patch. Prints progress on stderr and one JSON object as the last line
// of stdout; writes it to bench/results/agents-<date>.json.
// Settings: BENCH_AGENTS (default 1000), BENCH_WAVE (applies under way at once, 200), BENCH_GATEWAY_ADDRESS (the dispatcher's AgentGateway;
// unset: an in-process test gateway that acknowledges and forwards commands), BENCH_DATA_DIR
// (where the agents' data dirs go; default the system temp dir), KAFKA_BROKERS.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { ArtifactStore } from '@rebootless/artifacts';
import { dispatcher, toTimestamp } from '@rebootless/contracts';
import { generateSigningKey } from '@rebootless/events';
import { ensureEventsTopic, kafkaBrokersFromEnv, kafkaClient } from '@rebootless/kafka';
import { SimulatedKernel } from '@rebootless/kernel-model';
import {
  Agent,
  KafkaEventSink,
  startArtifactServer,
  startTestGateway,
  storeSignedArtifact,
  TEST_RELEASE,
} from '@rebootless/agent-runtime';
import { REPO_ROOT } from '../process';
import { machineFacts } from './machine';

const AGENTS = Number(process.env['BENCH_AGENTS'] ?? 1_000);
const WAVE = Number(process.env['BENCH_WAVE'] ?? 200);
const say = (line: string) => process.stderr.write(`bench:agents: ${line}\n`);
const mib = (bytes: number) => Math.round((bytes / 2 ** 20) * 10) / 10;

function settle(): Promise<void> {
  global.gc?.();
  return new Promise((r) => setTimeout(r, 500));
}

async function main(): Promise<void> {
  const brokers = kafkaBrokersFromEnv();
  const topic = `bench.agents.${Date.now()}`;
  await ensureEventsTopic({ brokers, topic, partitions: 6 });
  const base = process.env['BENCH_DATA_DIR'] ?? os.tmpdir();
  const tmp = fs.mkdtempSync(path.join(base, 'bench-agents-'));
  const builderKey = generateSigningKey();
  const store = new ArtifactStore({ dir: path.join(tmp, 'builder') });
  const artifact = await storeSignedArtifact(store, builderKey, { patchId: 'bench', version: '1' });
  const builder = await startArtifactServer(store);
  const external = process.env['BENCH_GATEWAY_ADDRESS'];
  const gateway = external ? undefined : await startTestGateway();
  const gatewayAddress = external ?? gateway!.address;
  // One artifact store for every simulated host (content-addressed), so the bench measures the
  // agents rather than thousands of copies of one module being fsynced to one disk.
  const kept = new ArtifactStore({ dir: path.join(tmp, 'kept'), builderKey: builderKey.rawPublicKey });
  const sink = new KafkaEventSink({ kafka: kafkaClient(brokers, 'bench-agents'), topic });

  await settle();
  const before = process.memoryUsage();
  say(`starting ${AGENTS} agents against ${external ? `the gateway at ${external}` : 'an in-process test gateway'}`);
  const startedAt = Date.now();
  const agents: Agent[] = [];
  for (let i = 0; i < AGENTS; i++) {
    const agent = new Agent({
      kernel: new SimulatedKernel({ release: TEST_RELEASE }),
      dataDir: path.join(tmp, `h${i}`),
      hostId: `bench-${i}`,
      dispatcherAddress: gatewayAddress,
      builderAddress: builder.address,
      builderPublicKey: builderKey.rawPublicKey,
      sink,
      // Thousands of hosts share one disk here; a real host fsyncs (the default).
      syncWrites: false,
      artifacts: kept,
      facts: { hostname: `bench-${i}`, machineId: `m${i}`, distro: 'Debian GNU/Linux 12 (bookworm)' },
      reconnect: { minMs: 1_000, maxMs: 10_000 },
    });
    agents.push(agent);
  }
  for (let i = 0; i < agents.length; i += 200) await Promise.all(agents.slice(i, i + 200).map((a) => a.start()));
  if (gateway)
    await gateway.waitFor(() => agents.every((a) => gateway.connected(a.hostId)), 600_000, 'every agent connected');
  else await waitFor(() => agents.every((a) => a.connected), 600_000);
  const connectedMs = Date.now() - startedAt;
  await Promise.all(agents.map((a) => a.drain(600_000)));
  await settle();
  const after = process.memoryUsage();
  say(`${AGENTS} connected in ${connectedMs} ms; heap ${mib(after.heapUsed - before.heapUsed)} MiB more`);

  let applyMs: number | undefined;
  let applyEvents = 0;
  if (gateway) {
    // In waves, as the dispatcher rolls out: at most WAVE commands under way at once.
    const t0 = Date.now();
    const { SUCCEEDED, FAILED, REJECTED } = {
      SUCCEEDED: dispatcher.CommandOutcome.COMMAND_OUTCOME_SUCCEEDED,
      FAILED: dispatcher.CommandOutcome.COMMAND_OUTCOME_FAILED,
      REJECTED: dispatcher.CommandOutcome.COMMAND_OUTCOME_REJECTED,
    };
    const ended = () => gateway.countResults(SUCCEEDED) + gateway.countResults(FAILED) + gateway.countResults(REJECTED);
    for (const [i, a] of agents.entries()) {
      if (i - ended() >= WAVE) await gateway.waitFor(() => i - ended() < WAVE, 600_000, 'a free slot in the wave');
      gateway.send(a.hostId, {
        apply: {
          commandId: `bench-cmd-${i}`,
          expiresAt: toTimestamp(new Date(Date.now() + 600_000)),
          rolloutId: 'bench',
          patchId: 'bench',
          version: '1',
          kernelRelease: TEST_RELEASE,
          artifactDigest: artifact.digest,
          allowForce: false,
          allowDowngrade: false,
        },
      });
    }
    await gateway.waitFor(() => ended() >= AGENTS, 600_000, 'every apply ended');
    const failed = gateway.countResults(FAILED) + gateway.countResults(REJECTED);
    if (failed > 0) throw new Error(`${failed} of ${AGENTS} applies did not succeed`);
    await Promise.all(agents.map((a) => a.drain(600_000)));
    applyMs = Date.now() - t0;
    applyEvents = AGENTS * 2; // PatchApplyStarted + PatchApplied, each delivered to Kafka
  }
  const startEvents = AGENTS * 3; // ChainEpochStarted, HostEnrolled, HostBooted
  const result = {
    bench: 'agents',
    date: new Date().toISOString(),
    machine: machineFacts(),
    agents: AGENTS,
    gateway: external ? `dispatcher at ${external}` : 'in-process test gateway (the dispatcher gateway was not used)',
    sync_writes: false,
    shared_artifact_store: true,
    data_dir: base,
    connect_all_ms: connectedMs,
    start_events_per_s: Math.round((startEvents / connectedMs) * 1000),
    apply_wave: WAVE,
    apply_all_ms: applyMs ?? null,
    apply_events_per_s: applyMs ? Math.round((applyEvents / applyMs) * 1000) : null,
    heap_per_agent_kib: Math.round((after.heapUsed - before.heapUsed) / AGENTS / 1024),
    rss_per_agent_kib: Math.round((after.rss - before.rss) / AGENTS / 1024),
    rss_total_mib: mib(after.rss),
  };
  for (const a of agents) await a.stop();
  await sink.close();
  await builder.close();
  await gateway?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
  const dir = path.join(REPO_ROOT, 'bench', 'results');
  fs.mkdirSync(dir, { recursive: true });
  fs.writeFileSync(
    path.join(dir, `agents-${result.date.replace(/[:.]/g, '-')}.json`),
    JSON.stringify(result, null, 2) + '\n',
  );
  process.stdout.write(JSON.stringify(result) + '\n');
  process.exit(0);
}

async function waitFor(check: () => boolean, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`bench:agents: ${error instanceof Error ? (error.stack ?? error.message) : String(error)}\n`);
  process.exit(1);
});
