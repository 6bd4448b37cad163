// The agent on the simulated kernel, over real gRPC (a FetchArtifact endpoint serving a real
// ArtifactStore, a small AgentGateway until the dispatcher's exists) and the real broker.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { ArtifactStore } from '@rebootless/artifacts';
import { dispatcher, events, toTimestamp } from '@rebootless/contracts';
import { decodeEvent, generateSigningKey, readEnvelope } from '@rebootless/events';
import { kafkaBrokersFromEnv, kafkaClient } from '@rebootless/kafka';
import { SimulatedKernel } from '@rebootless/kernel-model';
import { freePort, freshEventsTopic, readWholeTopic, testKafka } from '@rebootless/testing';
import { Agent, type AgentOptions } from './agent';
import { GatewayRelaySink, KafkaEventSink } from './talk/event-sink';
import { SharedArtifactDownloads } from './talk/shared-artifact-downloads';
import { startArtifactServer, startTestGateway, type ArtifactServer, type TestGateway } from './testing/agent-harness';
import { recordingKernel, storeSignedArtifact, TEST_RELEASE, type TestPatch } from './testing/fixtures';

const Outcome = dispatcher.CommandOutcome;
const builderKey = generateSigningKey();
const strangerKey = generateSigningKey();
const kafka = testKafka('agent-int');

let topic: string;
let sink: KafkaEventSink;
let store: ArtifactStore;
let builder: ArtifactServer;
let gateway: TestGateway;
let tmp: string;
let commandCounter = 0;
const running: Agent[] = [];

beforeAll(async () => {
  topic = await freshEventsTopic('agent', 3);
  sink = new KafkaEventSink({ kafka, topic });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-int-'));
  store = new ArtifactStore({ dir: path.join(tmp, 'builder-store') });
  builder = await startArtifactServer(store);
  gateway = await startTestGateway();
});

afterEach(async () => {
  for (const a of running.splice(0)) await a.stop();
  builder.hostile = undefined;
});

afterAll(async () => {
  await sink.close();
  await builder.close();
  await gateway.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function newHost(
  kernel = new SimulatedKernel({ release: TEST_RELEASE, transitionMs: 20 }),
  over: Partial<AgentOptions> = {},
) {
  const hostId = `host-${Math.random().toString(36).slice(2, 8)}`;
  const dataDir = path.join(tmp, hostId);
  const make = (k = kernel, more: Partial<AgentOptions> = {}) => {
    const agent = new Agent({
      kernel: k,
      dataDir,
      hostId,
      labels: { env: 'test' },
      dispatcherAddress: gateway.address,
      builderAddress: builder.address,
      builderPublicKey: builderKey.rawPublicKey,
      sink,
      timeouts: { transitionMs: 400, pollMs: 10 },
      facts: { hostname: hostId, machineId: hostId, distro: 'Debian GNU/Linux 12 (bookworm)' },
      reconnect: { minMs: 50, maxMs: 200 },
      ...over,
      ...more,
    });
    running.push(agent);
    return agent;
  };
  return { hostId, dataDir, kernel, make };
}

async function publish(patch: TestPatch, key = builderKey) {
  return storeSignedArtifact(store, key, patch);
}

function applyCommand(
  artifact: { digest: string; manifest: { patchId: string; version: string } },
  over: Partial<dispatcher.ApplyCommand> = {},
): dispatcher.ApplyCommand {
  return {
    commandId: `cmd-${++commandCounter}`,
    expiresAt: toTimestamp(new Date(Date.now() + 60_000)),
    rolloutId: 'rollout-1',
    patchId: artifact.manifest.patchId,
    version: artifact.manifest.version,
    kernelRelease: TEST_RELEASE,
    artifactDigest: artifact.digest,
    allowForce: false,
    allowDowngrade: false,
    ...over,
  };
}

async function send(hostId: string, command: dispatcher.ConnectResponse): Promise<dispatcher.CommandResult> {
  await gateway.waitFor(() => gateway.connected(hostId), 15_000, `${hostId} connected`);
  const id = command.apply?.commandId ?? command.revert?.commandId ?? '';
  gateway.send(hostId, command);
  await gateway.waitFor(
    () =>
      gateway
        .received(hostId)
        .some((m) => m.commandResult?.commandId === id && m.commandResult.outcome !== Outcome.COMMAND_OUTCOME_ACCEPTED),
    15_000,
    `final result of ${id}`,
  );
  return gateway
    .received(hostId)
    .find((m) => m.commandResult?.commandId === id && m.commandResult.outcome !== Outcome.COMMAND_OUTCOME_ACCEPTED)!
    .commandResult!;
}

/** The host's events in the topic, decoded, in log order. */
async function hostEvents(agent: Agent): Promise<events.EventBody[]> {
  await agent.drain();
  const records = await readWholeTopic(kafka, topic);
  return records.filter((r) => r.key === `host/${agent.hostId}`).map((r) => decodeEvent(r.value!).body);
}

describe('Agent on the simulated kernel', () => {
  it('enrolls on first start: ChainEpochStarted with its key, HostEnrolled, HostBooted, then hello with the same key', async () => {
    const host = newHost();
    const agent = host.make();
    await agent.start();
    const types = (await hostEvents(agent)).map((e) => e.type);
    expect(types).toEqual(['ChainEpochStarted', 'HostEnrolled', 'HostBooted']);
    const all = await readWholeTopic(kafka, topic);
    const epoch = all
      .map((r) => decodeEvent(r.value!).body)
      .find((b) => b.type === 'ChainEpochStarted' && b.producer?.producerId === `agent/${host.hostId}`);
    expect(Buffer.from(epoch!.chainEpochStarted!.publicKey)).toEqual(agent.publicKey);
    await gateway.waitFor(() => gateway.received(host.hostId).length >= 2);
    const [hello, inventory] = gateway.received(host.hostId);
    expect(Buffer.from(hello!.hello!.agentPublicKey)).toEqual(agent.publicKey);
    expect(inventory!.inventory!.facts!.kernelRelease).toBe(TEST_RELEASE);
  });

  it('applies a verified patch: ACCEPTED then SUCCEEDED, the kernel runs it, PatchApplyStarted and PatchApplied are in the log', async () => {
    const host = newHost();
    const agent = host.make();
    await agent.start();
    const artifact = await publish({ patchId: 'cve-a', version: '1' });
    const cmd = applyCommand(artifact);
    const result = await send(host.hostId, { apply: cmd });
    expect(result).toMatchObject({ outcome: Outcome.COMMAND_OUTCOME_SUCCEEDED, forced: false });
    const outcomes = gateway
      .received(host.hostId)
      .filter((m) => m.commandResult?.commandId === cmd.commandId)
      .map((m) => m.commandResult!.outcome);
    expect(outcomes).toEqual([Outcome.COMMAND_OUTCOME_ACCEPTED, Outcome.COMMAND_OUTCOME_SUCCEEDED]);
    expect(await host.kernel.listPatches()).toMatchObject([
      { moduleName: artifact.manifest.moduleName, enabled: true, transition: false },
    ]);
    const evs = await hostEvents(agent);
    const applied = evs.find((e) => e.type === 'PatchApplied')!.patchApplied!;
    expect(applied).toMatchObject({ commandId: cmd.commandId, patchId: 'cve-a', version: '1', forced: false });
    expect(applied.functions).toHaveLength(1);
    expect(applied.stack.map((p) => p.moduleName)).toEqual([artifact.manifest.moduleName]);
    expect(evs.map((e) => e.type)).toEqual([
      'ChainEpochStarted',
      'HostEnrolled',
      'HostBooted',
      'PatchApplyStarted',
      'PatchApplied',
    ]);
    expect(evs.find((e) => e.type === 'PatchApplied')!.causationId).toBe(cmd.commandId);
  });

  it('stacks a second patch, then an atomic replace supersedes both and their modules are removed', async () => {
    const host = newHost();
    const agent = host.make();
    await agent.start();
    const a = await publish({ patchId: 'stack-a', version: '1' });
    const b = await publish({ patchId: 'stack-b', version: '1' });
    const r = await publish({
      patchId: 'cumulative',
      version: '1',
      replace: true,
      functions: [
        { object: 'vmlinux', name: 'fix_stack_a', sympos: 0 },
        { object: 'vmlinux', name: 'fix_stack_b', sympos: 0 },
      ],
    });
    expect((await send(host.hostId, { apply: applyCommand(a) })).outcome).toBe(Outcome.COMMAND_OUTCOME_SUCCEEDED);
    expect((await send(host.hostId, { apply: applyCommand(b) })).outcome).toBe(Outcome.COMMAND_OUTCOME_SUCCEEDED);
    expect((await host.kernel.listPatches()).map((p) => p.moduleName)).toEqual([
      a.manifest.moduleName,
      b.manifest.moduleName,
    ]);
    const replaced = await send(host.hostId, { apply: applyCommand(r) });
    expect(replaced.outcome).toBe(Outcome.COMMAND_OUTCOME_SUCCEEDED);
    expect((await host.kernel.listPatches()).map((p) => p.moduleName)).toEqual([r.manifest.moduleName]);
    expect(host.kernel.loadedModules()).toEqual([r.manifest.moduleName]);
    expect(agent.desiredPatches().map((d) => d.patchId)).toEqual(['cumulative']);
  });

  // A task stuck in the initial state is already in the reversed target state, so it blocks the
  // enable but not its reversal (kernel/livepatch/transition.c, klp_reverse_transition()).
  it('reverses a stalled transition: reports the blocking task, the kernel is as before, nothing forced', async () => {
    const host = newHost();
    const agent = host.make();
    await agent.start();
    const artifact = await publish({ patchId: 'stall', version: '1' });
    host.kernel.addSleepingTask({ comm: 'nft-worker', sleepsIn: artifact.manifest.functions[0]! });
    const result = await send(host.hostId, { apply: applyCommand(artifact) });
    expect(result).toMatchObject({ outcome: Outcome.COMMAND_OUTCOME_FAILED, stage: 'transition', forced: false });
    expect(await host.kernel.listPatches()).toEqual([]);
    expect(host.kernel.loadedModules()).toEqual([]);
    const failed = (await hostEvents(agent)).find((e) => e.type === 'PatchApplyFailed')!.patchApplyFailed!;
    expect(failed).toMatchObject({ stage: 'transition', reverted: true });
    expect(failed.stalledTasks.map((t) => t.comm)).toEqual(['nft-worker']);
  });

  it('forces a stalled transition only when the command allows it, records the debt and refuses to revert it', async () => {
    const host = newHost();
    const agent = host.make();
    await agent.start();
    const artifact = await publish({ patchId: 'forceme', version: '1' });
    host.kernel.addSleepingTask({ comm: 'stuck', sleepsIn: artifact.manifest.functions[0]! });
    const result = await send(host.hostId, { apply: applyCommand(artifact, { allowForce: true }) });
    expect(result).toMatchObject({ outcome: Outcome.COMMAND_OUTCOME_SUCCEEDED, forced: true });
    expect((await agent.status()).forcedModules).toEqual([artifact.manifest.moduleName]);
    const applied = (await hostEvents(agent)).find((e) => e.type === 'PatchApplied')!.patchApplied!;
    expect(applied.forced).toBe(true);
    const refused = await send(host.hostId, {
      revert: {
        commandId: `cmd-${++commandCounter}`,
        expiresAt: toTimestamp(new Date(Date.now() + 60_000)),
        rolloutId: 'rollout-1',
        patchId: 'forceme',
        version: '1',
        moduleName: '',
        reason: 'undo',
      },
    });
    expect(refused.outcome).toBe(Outcome.COMMAND_OUTCOME_REJECTED);
    expect(refused.error).toMatch(/forced this boot/);
    expect(host.kernel.loadedModules()).toEqual([artifact.manifest.moduleName]);
  });

  it('reverts a patch: disable, wait, remove the module, PatchReverted', async () => {
    const host = newHost();
    const agent = host.make();
    await agent.start();
    const artifact = await publish({ patchId: 'revertme', version: '1' });
    await send(host.hostId, { apply: applyCommand(artifact) });
    const result = await send(host.hostId, {
      revert: {
        commandId: `cmd-${++commandCounter}`,
        expiresAt: toTimestamp(new Date(Date.now() + 60_000)),
        rolloutId: 'rollout-1',
        patchId: 'revertme',
        version: '1',
        moduleName: '',
        reason: 'roll-back',
      },
    });
    expect(result.outcome).toBe(Outcome.COMMAND_OUTCOME_SUCCEEDED);
    expect(host.kernel.loadedModules()).toEqual([]);
    expect((await hostEvents(agent)).map((e) => e.type)).toContain('PatchReverted');
  });

  describe('refuses before the kernel is touched', () => {
    const cases: [
      string,
      () => Promise<{ cmd: dispatcher.ApplyCommand; setup?: (agent: Agent, hostId: string) => Promise<void> }>,
      string,
    ][] = [
      [
        'a tampered module',
        async () => {
          builder.hostile = 'flip-byte';
          return { cmd: applyCommand(await publish({ patchId: 'tamper', version: '1' })) };
        },
        'digest-mismatch',
      ],
      [
        'a module signed by another key',
        async () => ({ cmd: applyCommand(await publish({ patchId: 'stranger', version: '1' }, strangerKey)) }),
        'bad-signature',
      ],
      [
        'a module for another kernel release',
        async () => ({
          cmd: applyCommand(
            await publish({ patchId: 'other-kernel', version: '1', kernelRelease: '6.1.0-18-cloud-amd64' }),
            { kernelRelease: '' },
          ),
        }),
        'wrong-kernel-release',
      ],
      [
        'a retracted patch',
        async () => {
          const artifact = await publish({ patchId: 'retracted', version: '1' });
          store.retract({ patchId: 'retracted', version: '1', reason: 'breaks nf_tables' });
          return { cmd: applyCommand(artifact) };
        },
        'retracted',
      ],
      [
        'a truncated download',
        async () => {
          builder.hostile = 'truncate';
          return { cmd: applyCommand(await publish({ patchId: 'trunc', version: '1' })) };
        },
        'truncated',
      ],
      [
        'an oversized download',
        async () => {
          builder.hostile = 'extra-bytes';
          return { cmd: applyCommand(await publish({ patchId: 'oversize', version: '1' })) };
        },
        'oversized',
      ],
      [
        'an expired command',
        async () => ({
          cmd: applyCommand(await publish({ patchId: 'expired', version: '1' }), {
            expiresAt: toTimestamp(new Date(Date.now() - 1000)),
          }),
        }),
        'expired',
      ],
      [
        'a downgrade',
        async () => {
          const v2 = await publish({ patchId: 'down', version: '2' });
          const v1 = await publish({ patchId: 'down', version: '1' });
          return {
            cmd: applyCommand(v1),
            setup: async (_agent, hostId) =>
              void expect((await send(hostId, { apply: applyCommand(v2) })).outcome).toBe(
                Outcome.COMMAND_OUTCOME_SUCCEEDED,
              ),
          };
        },
        'downgrade',
      ],
    ];
    it.each(cases)('%s', async (_name, make, reason) => {
      const { kernel, changes } = recordingKernel(new SimulatedKernel({ release: TEST_RELEASE, transitionMs: 10 }));
      const host = newHost(kernel);
      const agent = host.make();
      await agent.start();
      const { cmd, setup } = await make();
      if (setup) await setup(agent, host.hostId);
      const before = changes.length;
      const result = await send(host.hostId, { apply: cmd });
      expect(result.outcome).toBe(Outcome.COMMAND_OUTCOME_REJECTED);
      expect(result.error).toMatch(new RegExp(`^${reason}:`));
      expect(changes.slice(before)).toEqual([]);
      const failed = (await hostEvents(agent)).filter((e) => e.type === 'PatchApplyFailed').pop()!.patchApplyFailed!;
      expect(failed).toMatchObject({ commandId: cmd.commandId, stage: 'verify' });
    });
  });

  describe('a command that comes again (same id)', () => {
    /** Every final answer the agent gave to `commandId`, once `n` came. */
    async function finalAnswers(hostId: string, commandId: string, n: number): Promise<dispatcher.CommandResult[]> {
      const answers = () =>
        gateway
          .received(hostId)
          .flatMap((m) => (m.commandResult ? [m.commandResult] : []))
          .filter((r) => r.commandId === commandId && r.outcome !== Outcome.COMMAND_OUTCOME_ACCEPTED);
      await gateway.waitFor(() => answers().length >= n, 15_000, `${n} answers to ${commandId}`);
      return answers();
    }

    it('once applied: is answered as applied again, with what the kernel shows; nothing is loaded or recorded again', async () => {
      const { kernel, changes } = recordingKernel(new SimulatedKernel({ release: TEST_RELEASE, transitionMs: 10 }));
      const host = newHost(kernel);
      const agent = host.make();
      await agent.start();
      const artifact = await publish({ patchId: 'replay', version: '1' });
      const cmd = applyCommand(artifact);
      expect((await send(host.hostId, { apply: cmd })).outcome).toBe(Outcome.COMMAND_OUTCOME_SUCCEEDED);
      const before = changes.length;
      // The dispatcher sends it again: its instance restarted, or the agent reconnected to
      // another before its answer reached the log.
      gateway.send(host.hostId, { apply: cmd });
      const [, again] = await finalAnswers(host.hostId, cmd.commandId, 2);
      expect(again).toMatchObject({ outcome: Outcome.COMMAND_OUTCOME_SUCCEEDED, stage: 'done', error: '' });
      expect(again!.stack.map((p) => [p.moduleName, p.enabled])).toEqual([[artifact.manifest.moduleName, true]]);
      expect(changes.slice(before)).toEqual([]);
      const mine = (await hostEvents(agent)).filter((e) => e.causationId === cmd.commandId);
      expect(mine.map((e) => e.type)).toEqual(['PatchApplyStarted', 'PatchApplied']);
    });

    it('once refused: is refused again as the first time, and the refusal is recorded once', async () => {
      const host = newHost();
      const agent = host.make();
      await agent.start();
      const cmd = applyCommand(await publish({ patchId: 'refused-twice', version: '1' }));
      store.retract({ patchId: 'refused-twice', version: '1', reason: 'breaks nf_tables' });
      const first = await send(host.hostId, { apply: cmd });
      expect(first.outcome).toBe(Outcome.COMMAND_OUTCOME_REJECTED);
      gateway.send(host.hostId, { apply: cmd });
      const [, again] = await finalAnswers(host.hostId, cmd.commandId, 2);
      expect(again).toMatchObject({ outcome: first.outcome, stage: first.stage, error: first.error });
      const mine = (await hostEvents(agent)).filter((e) => e.causationId === cmd.commandId);
      expect(mine.map((e) => e.type)).toEqual(['PatchApplyFailed']);
    });
  });

  it('dies after recording the end of an apply, before the state write that closes it: on restart the state catches up from the outbox, and nothing is recorded twice', async () => {
    // Its events stay in the outbox (the sink's broker is a port where nothing listens), and the
    // state write after the kernel loaded the module fails (a directory where its temp file goes),
    // as if the process died between recording PatchApplied and writing its state.
    const port = await freePort();
    const deadSink = new KafkaEventSink({ kafka: kafkaClient([`127.0.0.1:${port}`], 'agent-dead', 0), topic });
    const simulated = new SimulatedKernel({ release: TEST_RELEASE, transitionMs: 10 });
    const host = newHost(simulated, { sink: deadSink, dispatcherAddress: undefined });
    const blockStateWrites = () => fs.mkdirSync(path.join(host.dataDir, `agent-state.json.${process.pid}.tmp`));
    const failing = new Proxy(simulated, {
      get(target, prop, receiver) {
        const value = Reflect.get(target, prop, receiver) as unknown;
        if (prop !== 'loadModule' || typeof value !== 'function') return value;
        return async (...args: unknown[]) => {
          await (value as (...a: unknown[]) => Promise<void>).apply(target, args);
          blockStateWrites();
        };
      },
    });
    const first = host.make(failing);
    await first.start();
    const artifact = await publish({ patchId: 'end-first', version: '1' });
    const cmd = applyCommand(artifact);
    await expect(first.handle({ apply: cmd })).rejects.toThrow(/EISDIR|directory/);
    await first.stop({ clean: false });
    await deadSink.close();
    fs.rmdirSync(path.join(host.dataDir, `agent-state.json.${process.pid}.tmp`));
    const onDisk = JSON.parse(fs.readFileSync(path.join(host.dataDir, 'agent-state.json'), 'utf8'));
    expect(onDisk.applying?.commandId).toBe(cmd.commandId);

    const logged: string[] = [];
    const { kernel, changes } = recordingKernel(simulated);
    const second = host.make(kernel, { sink, log: (m) => logged.push(m) });
    await second.start();
    expect(logged.some((m) => m.includes(`PatchApplied of command ${cmd.commandId} was recorded before`))).toBe(true);
    expect(second.desiredPatches().map((p) => [p.patchId, p.version])).toEqual([['end-first', '1']]);
    // Sent again: the answer the fact gave, nothing done again.
    expect((await second.handle({ apply: cmd })).outcome).toBe(Outcome.COMMAND_OUTCOME_SUCCEEDED);
    expect(changes).toEqual([]);
    const mine = (await hostEvents(second)).filter((e) => e.causationId === cmd.commandId);
    expect(mine.map((e) => e.type)).toEqual(['PatchApplyStarted', 'PatchApplied']);
  });

  it('after a reboot reports HostBooted and re-applies the desired patches (policy at-start)', async () => {
    const host = newHost();
    const first = host.make();
    await first.start();
    const artifact = await publish({ patchId: 'persist', version: '1' });
    await send(host.hostId, { apply: applyCommand(artifact) });
    await first.drain();
    await first.stop();
    host.kernel.reboot();
    expect(await host.kernel.listPatches()).toEqual([]);
    const second = host.make();
    await second.start();
    expect((await host.kernel.listPatches()).map((p) => [p.moduleName, p.enabled])).toEqual([
      [artifact.manifest.moduleName, true],
    ]);
    const types = (await hostEvents(second)).map((e) => e.type);
    expect(types.slice(-3)).toEqual(['HostBooted', 'PatchApplyStarted', 'PatchApplied']);
  });

  it('quarantines a patch the host went down soon after, and does not apply it again', async () => {
    const host = newHost();
    const first = host.make();
    await first.start();
    const artifact = await publish({ patchId: 'crashy', version: '1' });
    await send(host.hostId, { apply: applyCommand(artifact) });
    await first.drain();
    await first.stop({ clean: false }); // the host dies with it
    host.kernel.reboot();
    const { kernel, changes } = recordingKernel(host.kernel);
    const second = host.make(kernel);
    await second.start();
    expect(changes).toEqual([]);
    expect(await host.kernel.listPatches()).toEqual([]);
    const status = await second.status();
    expect(status.quarantined.map((q) => q.patch)).toEqual([{ patchId: 'crashy', version: '1' }]);
    const failed = (await hostEvents(second)).filter((e) => e.type === 'PatchApplyFailed').pop()!.patchApplyFailed!;
    expect(failed).toMatchObject({ patchId: 'crashy', stage: 'crash-loop-guard' });
  });

  it('clears a quarantine on an operator’s command, once, and records it with the reason (issue 21)', async () => {
    const host = newHost();
    const first = host.make();
    await first.start();
    const artifact = await publish({ patchId: 'crashy-2', version: '1' });
    await send(host.hostId, { apply: applyCommand(artifact) });
    await first.drain();
    await first.stop({ clean: false });
    host.kernel.reboot();
    const second = host.make();
    await second.start();
    const clear = (over: Partial<dispatcher.ClearQuarantineCommand> = {}) =>
      second.handle({
        clearQuarantine: {
          commandId: `clear-${++commandCounter}`,
          expiresAt: toTimestamp(new Date(Date.now() + 60_000)),
          patchId: 'crashy-2',
          version: '1',
          reason: 'PSU fault, not the patch',
          ...over,
        },
      });
    const expired = await clear({ expiresAt: toTimestamp(new Date(Date.now() - 1000)) });
    expect(expired).toMatchObject({ outcome: dispatcher.CommandOutcome.COMMAND_OUTCOME_REJECTED, stage: 'verify' });
    const other = await clear({ version: '2' });
    expect(other.error).toBe('patch crashy-2 2 is not quarantined on this host');
    expect((await second.status()).quarantined).toHaveLength(1);

    const done = await clear({ commandId: 'clear-once' });
    expect(done.outcome).toBe(dispatcher.CommandOutcome.COMMAND_OUTCOME_SUCCEEDED);
    expect((await second.status()).quarantined).toEqual([]);
    // Sent again (same id): the same answer, nothing cleared or recorded again.
    const again = await clear({ commandId: 'clear-once' });
    expect(again.outcome).toBe(dispatcher.CommandOutcome.COMMAND_OUTCOME_SUCCEEDED);
    await second.drain();
    const cleared = (await hostEvents(second)).filter((e) => e.type === 'PatchQuarantineCleared');
    expect(cleared.map((e) => [e.causationId, e.patchQuarantineCleared])).toEqual([
      [
        'clear-once',
        expect.objectContaining({
          hostId: host.hostId,
          commandId: 'clear-once',
          patchId: 'crashy-2',
          version: '1',
          reason: 'PSU fault, not the patch',
          quarantineReason: expect.stringMatching(/^the host went down/),
        }),
      ],
    ]);
  });

  it('reports drift: a transition nobody asked for, stuck for long', async () => {
    const host = newHost();
    const agent = host.make(host.kernel, { timeouts: { transitionMs: 400, pollMs: 10, stuckTransitionMs: 100 } });
    await agent.start();
    const fn = { object: 'vmlinux', name: 'do_sys_poll', sympos: 0 };
    host.kernel.addSleepingTask({ comm: 'poller', sleepsIn: fn });
    await host.kernel.loadModule({
      path: '/root/stuck.ko',
      moduleName: 'livepatch_stuck',
      functions: [fn],
      replace: false,
    });
    await agent.checkDrift(); // seen loaded by hand, in transition since now
    await new Promise((r) => setTimeout(r, 150));
    await agent.checkDrift();
    const drift = (await hostEvents(agent)).filter((e) => e.type === 'DriftDetected').map((e) => e.driftDetected!);
    expect(drift.map((d) => d.kind)).toEqual(['loaded-by-hand', 'transition-stuck']);
    expect(drift[1]!.detail).toMatch(/^livepatch_stuck in transition for/);
  });

  it('reports drift: a patch loaded by hand, then removed by hand', async () => {
    const host = newHost();
    const agent = host.make();
    await agent.start();
    await host.kernel.loadModule({
      path: '/root/hand.ko',
      moduleName: 'livepatch_by_hand',
      functions: [{ object: 'vmlinux', name: 'cmdline_proc_show', sympos: 0 }],
      replace: false,
    });
    await new Promise((r) => setTimeout(r, 30));
    await agent.checkDrift();
    await host.kernel.setEnabled('livepatch_by_hand', false);
    await new Promise((r) => setTimeout(r, 30));
    await host.kernel.removeModule('livepatch_by_hand');
    await agent.checkDrift();
    const drift = (await hostEvents(agent)).filter((e) => e.type === 'DriftDetected').map((e) => e.driftDetected!.kind);
    expect(drift).toEqual(['loaded-by-hand', 'removed-by-hand']);
  });
});

describe('Agents sharing downloads (SharedArtifactDownloads)', () => {
  it('fetch the module once, and each verifies it: the one pinning another builder key refuses, its kernel untouched', async () => {
    const downloads = new SharedArtifactDownloads();
    const shared = new ArtifactStore({ dir: path.join(tmp, 'shared-kept'), builderKey: builderKey.rawPublicKey });
    const trusting = [newHost(), newHost(), newHost()];
    const agents = trusting.map((h) => h.make(h.kernel, { sharedDownloads: downloads, artifacts: shared }));
    const wary = newHost();
    const recorded = recordingKernel(wary.kernel);
    const waryAgent = wary.make(recorded.kernel, {
      sharedDownloads: downloads,
      artifacts: shared,
      builderPublicKey: strangerKey.rawPublicKey,
    });
    for (const a of [...agents, waryAgent]) await a.start();
    const artifact = await publish({ patchId: 'shared-dl', version: '1' });
    const results = await Promise.all(
      [...trusting, wary].map((h) => send(h.hostId, { apply: applyCommand(artifact) })),
    );
    // This gateway serves no artifacts (as a dispatcher without DISPATCHER_BUILDER_ADDRESS): the builder once.
    expect(downloads.fetchesFrom.builder).toBe(1);
    expect(results.slice(0, 3).map((r) => r.outcome)).toEqual(Array(3).fill(Outcome.COMMAND_OUTCOME_SUCCEEDED));
    expect(results[3]).toMatchObject({ outcome: Outcome.COMMAND_OUTCOME_REJECTED, stage: 'verify' });
    expect(results[3]!.error).toMatch(/^bad-signature/);
    expect(recorded.changes).toEqual([]);
    for (const h of trusting) {
      expect((await h.kernel.listPatches()).map((p) => p.moduleName)).toEqual([artifact.manifest.moduleName]);
    }
  });

  it('each refuses a module altered on the way, though one download served them all', async () => {
    const downloads = new SharedArtifactDownloads();
    const hosts = [newHost(), newHost()];
    const agents = hosts.map((h) => h.make(h.kernel, { sharedDownloads: downloads }));
    for (const a of agents) await a.start();
    const artifact = await publish({ patchId: 'shared-tamper', version: '1' });
    builder.hostile = 'flip-byte';
    const results = await Promise.all(hosts.map((h) => send(h.hostId, { apply: applyCommand(artifact) })));
    // This gateway serves no artifacts (as a dispatcher without DISPATCHER_BUILDER_ADDRESS): the builder once.
    expect(downloads.fetchesFrom.builder).toBe(1);
    for (const r of results) {
      expect(r).toMatchObject({ outcome: Outcome.COMMAND_OUTCOME_REJECTED, stage: 'verify' });
      expect(r.error).toMatch(/^digest-mismatch/);
    }
    for (const h of hosts) expect(await h.kernel.listPatches()).toEqual([]);
  });
});

describe('Where an agent fetches artifacts (ADR 0026)', () => {
  it('with a dispatcher that cannot serve and no builder configured, fails the apply at fetch naming the dispatcher, its kernel untouched', async () => {
    const host = newHost();
    const recorded = recordingKernel(host.kernel);
    // This gateway has no FetchArtifact (a dispatcher of before ADR 0026): UNIMPLEMENTED.
    const agent = host.make(recorded.kernel, { builderAddress: '' });
    await agent.start();
    const artifact = await publish({ patchId: 'no-fallback', version: '1' });
    const result = await send(host.hostId, { apply: applyCommand(artifact) });
    expect(result).toMatchObject({ outcome: Outcome.COMMAND_OUTCOME_FAILED, stage: 'fetch' });
    expect(result.error).toBe(
      `FetchArtifact ${artifact.digest} from the dispatcher: UNIMPLEMENTED The server does not implement the method /rebootless.dispatcher.v1.AgentGateway/FetchArtifact`,
    );
    expect(recorded.changes).toEqual([]);
  });
});

describe('Agent events relayed through the gateway', () => {
  it('reach Kafka through the dispatcher stream, in chain order, once each', async () => {
    const producer = kafka.producer({ idempotent: true, maxInFlightRequests: 1, allowAutoTopicCreation: false });
    await producer.connect();
    const relayTopic = await freshEventsTopic('agent-relay', 3);
    const relaying = await startTestGateway({ relayTo: { producer, topic: relayTopic } });
    try {
      const host = newHost(undefined, { sink: new GatewayRelaySink(), dispatcherAddress: relaying.address });
      const agent = host.make();
      await agent.start();
      const artifact = await publish({ patchId: 'relayed', version: '1' });
      await relaying.waitFor(() => relaying.connected(host.hostId));
      relaying.send(host.hostId, { apply: applyCommand(artifact, { commandId: 'relay-cmd' }) });
      await relaying.result(host.hostId, 'relay-cmd', Outcome.COMMAND_OUTCOME_SUCCEEDED);
      await agent.drain();
      const records = (await readWholeTopic(kafka, relayTopic)).filter((r) => r.key === `host/${host.hostId}`);
      expect(records.map((r) => readEnvelope(r.value!).seq)).toEqual([1, 2, 3, 4, 5]);
      expect(records.map((r) => readEnvelope(r.value!).type)).toEqual([
        'ChainEpochStarted',
        'HostEnrolled',
        'HostBooted',
        'PatchApplyStarted',
        'PatchApplied',
      ]);
      await agent.stop();
    } finally {
      await relaying.close();
      await producer.disconnect();
    }
  });
});

describe('Agent events with Kafka unreachable', () => {
  it('keeps them in the outbox and delivers them once Kafka is reachable, in order, none lost, none doubled', async () => {
    // The sink's seed broker is a port where nothing listens yet; later a TCP relay to the real
    // broker opens there (the broker then advertises its own address, as a real cluster does).
    const port = await freePort();
    const lateSink = new KafkaEventSink({ kafka: kafkaClient([`127.0.0.1:${port}`], 'agent-late', 0), topic });
    const host = newHost(undefined, { sink: lateSink, dispatcherAddress: undefined });
    const agent = host.make();
    await agent.start();
    const artifact = await publish({ patchId: 'offline', version: '1' });
    expect((await agent.handle({ apply: applyCommand(artifact) })).outcome).toBe(Outcome.COMMAND_OUTCOME_SUCCEEDED);
    await new Promise((r) => setTimeout(r, 500));
    expect(agent.pendingEvents).toBe(5);

    const [brokerHost, brokerPort] = kafkaBrokersFromEnv()[0]!.split(':');
    const back = net.createServer((client) => {
      const upstream = net.connect(Number(brokerPort), brokerHost);
      client.pipe(upstream).pipe(client);
      client.on('error', () => upstream.destroy());
      upstream.on('error', () => client.destroy());
    });
    await new Promise<void>((resolve) => back.listen(port, '127.0.0.1', resolve));
    try {
      await agent.drain(60_000);
      const records = (await readWholeTopic(kafka, topic)).filter(
        (r) => readEnvelope(r.value!).producerId === `agent/${host.hostId}`,
      );
      const seqs = records.map((r) => readEnvelope(r.value!).seq);
      expect(seqs).toEqual([1, 2, 3, 4, 5]);
      expect(records.map((r) => readEnvelope(r.value!).type)).toEqual([
        'ChainEpochStarted',
        'HostEnrolled',
        'HostBooted',
        'PatchApplyStarted',
        'PatchApplied',
      ]);
    } finally {
      await agent.stop();
      await lateSink.close();
      await new Promise<void>((resolve) => back.close(() => resolve()));
    }
  });
});
