// One rollout, one trace (issue 8), as an operator's collector sees it. Every part runs as a real
// process exporting OTLP to a receiver this test runs (Jest's module sandbox would stop the
// instrumentations): the builder, the dispatcher, the ledger, two agent daemons (apps/agent, each
// on a simulated kernel served from this test over a Unix socket; one sends its events to Kafka
// itself, the other relays them through the dispatcher) and the CLI (apps/cli/dist/main.js). The
// story goes through the CLI: build, rollout in two waves, undo on one host. The rollout's trace
// must start at the CLI's command span and hold, with every parent in it: the dispatcher's
// CreateRollout call, one `rollout wave` per wave, each agent's `agent verify` and `agent
// transition` under its wave, the Kafka producer spans of every event and the ledger's `ledger
// projection` of each event under the span that sent it. Build first (`npm run build`).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import { createServer } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { serveKernelPort, type KernelServer } from '@rebootless/agent-runtime';
import { ChainStateFile } from '@rebootless/kafka';
import { SimulatedKernel } from '@rebootless/kernel-model';
import { currentDebianCloudRelease, livepatchSample } from '@rebootless/kernel-toolchain';
import {
  OtlpReceiver,
  TraceView,
  builtEntry,
  describeSpan,
  freshEventsTopic,
  startNode,
  type ReceivedSpan,
  type RunningProcess,
} from '@rebootless/testing';

jest.setTimeout(12 * 60_000);

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

const EVERY_DAY = 'Mon,Tue,Wed,Thu,Fri,Sat,Sun 00:00-23:59';
/**
 * host → how its agent sends its events. Both relay through the dispatcher's gateway: an agent
 * writing straight to Kafka has no key the gateway bound, so no reader counts what it says
 * (docs/adr/0012), and a rollout on it would never end.
 */
const HOSTS = { 'trace-01': 'gateway', 'trace-02': 'gateway' } as const;
const MODULE = 'lp_trace_e2e__v1';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('one rollout, one trace: CLI, dispatcher, agents, Kafka and ledger as processes', () => {
  const cliMain = builtEntry('apps/cli/dist/main.js');
  let work: string;
  let receiver: OtlpReceiver;
  let release: string;
  const env: Record<string, string> = {};
  const processes: RunningProcess[] = [];
  const kernels: KernelServer[] = [];

  function cli(args: string[]): Promise<Run> {
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REBOOTLESS_')));
    const child = spawn(process.execPath, [cliMain, ...args], {
      env: { ...inherited, ...env, REBOOTLESS_INSECURE: 'true' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async function json(args: string[]): Promise<any> {
    const run = await cli([...args, '--json']);
    if (run.code !== 0) throw new Error(`rebootless ${args.join(' ')}: exit ${run.code}\n${run.stderr}`);
    return JSON.parse(run.stdout);
  }

  async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 90_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe();
      if (value !== undefined) return value;
      if (Date.now() > deadline) {
        const logs = processes.map((p) => p.output().split('\n').slice(-15).join('\n')).join('\n---\n');
        throw new Error(`${what}: not within ${timeoutMs} ms\n${logs}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** The trace of rollout `rolloutId` (its waves name it), once `done` holds for it. */
  async function traceOf(rolloutId: string, done: (view: TraceView) => boolean): Promise<TraceView> {
    const traceIdOf = (spans: readonly ReceivedSpan[]) =>
      spans.find((s) => s.name === 'rollout wave' && s.attributes['rebootless.rollout.id'] === rolloutId)?.traceId;
    const spans = await receiver.waitFor((all) => {
      const traceId = traceIdOf(all);
      return traceId !== undefined && done(new TraceView(all, traceId));
    }, 120_000);
    // Spans still in the processes' export queues (200 ms) arrive before the view is taken.
    await new Promise((r) => setTimeout(r, 1_500));
    return new TraceView(receiver.spans(), traceIdOf(spans)!);
  }

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-trace-e2e-'));
    const [topic, current, receiving, ports] = await Promise.all([
      freshEventsTopic('rollout-trace', 3),
      currentDebianCloudRelease(),
      OtlpReceiver.start(),
      Promise.all([freePort(), freePort(), freePort(), freePort(), freePort()]),
    ]);
    release = current;
    receiver = receiving;
    const [builderAddress, dispatcherAddress, ledgerAddress, ...agentAddresses] = ports.map((p) => `127.0.0.1:${p}`);
    Object.assign(env, {
      REBOOTLESS_BUILDER: builderAddress!,
      REBOOTLESS_DISPATCHER: dispatcherAddress!,
      REBOOTLESS_LEDGER: ledgerAddress!,
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
    });
    const dataDir = (name: string) => path.join(work, name);
    const common = {
      EVENTS_TOPIC: topic,
      NO_COLOR: '1',
      OTEL_EXPORTER_OTLP_ENDPOINT: receiver.endpoint,
      // Small batches: the test does not wait the default 5 s for each.
      OTEL_BSP_SCHEDULE_DELAY: '200',
    };
    const start = (name: string, vars: Record<string, string>) => {
      const running = startNode(builtEntry(`apps/${name}/dist/main.js`), { ...common, ...vars });
      processes.push(running);
      return running;
    };
    const builder = start('builder', {
      BUILDER_GRPC_ADDRESS: builderAddress!,
      REBOOTLESS_DATA_DIR: dataDir('builder'),
    });
    const dispatcher = start('dispatcher', {
      DISPATCHER_GRPC_ADDRESS: dispatcherAddress!,
      DISPATCHER_LEDGER_ADDRESS: ledgerAddress!,
      DISPATCHER_TICK_INTERVAL_MS: '200',
      DISPATCHER_TRUSTED_DATA_DIRS: dataDir('builder'),
      DISPATCHER_BUILDER_ADDRESS: builderAddress!,
      REBOOTLESS_DATA_DIR: dataDir('dispatcher'),
    });
    await Promise.all([builder.waitFor(/builder ready on/), dispatcher.waitFor(/dispatcher ready on/)]);
    const ledger = start('ledger', {
      LEDGER_GRPC_ADDRESS: ledgerAddress!,
      LEDGER_TRUSTED_DATA_DIRS: `${dataDir('builder')},${dataDir('dispatcher')}`,
      REBOOTLESS_DATA_DIR: dataDir('ledger'),
    });
    await ledger.waitFor(/ledger ready on/);

    const builderKey = new ChainStateFile(path.join(dataDir('builder'), 'chain'), 'builder').readKey().rawPublicKey;
    for (const [i, [hostId, sink]] of Object.entries(HOSTS).entries()) {
      const socket = path.join(work, `${hostId}.sock`);
      kernels.push(await serveKernelPort(new SimulatedKernel({ release, transitionMs: 50 }), socket));
      const agent = start('agent', {
        AGENT_HOST_ID: hostId,
        AGENT_LABELS: `env=${i === 0 ? 'canary' : 'prod'}`,
        AGENT_GRPC_ADDRESS: agentAddresses[i]!,
        AGENT_DISPATCHER_ADDRESS: dispatcherAddress!,
        AGENT_BUILDER_ADDRESS: builderAddress!,
        AGENT_BUILDER_PUBLIC_KEY: Buffer.from(builderKey).toString('hex'),
        AGENT_KERNEL_SOCKET: socket,
        AGENT_EVENT_SINK: sink,
        REBOOTLESS_DATA_DIR: dataDir(hostId),
      });
      await agent.waitFor(/agent ready on/, 60_000);
    }
    fs.writeFileSync(
      path.join(work, 'fix.c'),
      livepatchSample({ moduleName: 'lp_trace_e2e', replacementText: 'traced by the rebootless e2e' }),
    );
  });

  afterAll(async () => {
    for (const p of processes.reverse()) {
      if (p.child.exitCode !== null) continue;
      p.child.kill('SIGTERM');
      await p.exited();
    }
    for (const k of kernels) await k.close();
    await receiver?.close();
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  let rolloutTrace: TraceView;

  it('builds the patch and rolls it out in two waves (CLI), the ledger showing it live on both hosts', async () => {
    const built = await json([
      'build',
      'submit',
      '--name',
      'trace-e2e',
      '--version',
      '1',
      '--source',
      path.join(work, 'fix.c'),
      '--kernel',
      release,
      '--cve',
      'CVE-2024-1086:high',
      '--watch',
    ]);
    expect(built.build.state).toBe('BUILD_STATE_SUCCEEDED');

    // Both agents said hello to the dispatcher: its plan covers them.
    const create = ['rollout', 'create', '--patch', 'trace-e2e', '--version', '1', '--kernel', release];
    const strategy = ['--canary-host', 'trace-01', '--waves', '100%', '--soak', '1s', '--window', EVERY_DAY];
    await eventually('the dispatcher knows both hosts', async () => {
      const plan = await json([...create, ...strategy, '--dry-run']);
      const planned = plan.waves.flatMap((w: { hosts: { hostId: string }[] }) => w.hosts.map((h) => h.hostId));
      return planned.length === 2 ? planned : undefined;
    });

    // Not about approvals: it opts out explicitly (ADR 0013; the test services run without tokens).
    const rollout = await json([...create, ...strategy, '--skip-approval', '--watch']);
    expect(rollout).toMatchObject({ patchId: 'trace-e2e', state: 'ROLLOUT_STATE_COMPLETED' });

    for (const hostId of Object.keys(HOSTS)) {
      const host = await eventually(`${hostId} carries the patch in the ledger`, async () => {
        const shown = await json(['hosts', 'show', hostId]);
        return shown.stack.entries.length === 1 ? shown : undefined;
      });
      expect(host.stack.entries).toEqual([
        expect.objectContaining({ moduleName: MODULE, patch: expect.objectContaining({ patchId: 'trace-e2e' }) }),
      ]);
    }

    rolloutTrace = await traceOf(rollout.rolloutId, (view) => {
      const projected = new Set(view.find('ledger projection').map((s) => s.attributes['rebootless.event.type']));
      return (
        [
          'RolloutCreated',
          'WaveStarted',
          'HostApplyRequested',
          'PatchApplied',
          'WaveCompleted',
          'RolloutCompleted',
        ].every((t) => projected.has(t)) &&
        view.find('ledger projection').filter((s) => s.attributes['rebootless.event.type'] === 'PatchApplied')
          .length === 2
      );
    });
  });

  it('makes the rollout one trace: CLI → CreateRollout → rollout waves → agent verify/transition → Kafka → ledger projection', () => {
    const view = rolloutTrace;
    const tree = view.describe();
    // Every span's parent is in the trace, but for the CLI's command span: the one root.
    expect({ orphans: view.orphans().map(describeSpan), tree }).toEqual({ orphans: [], tree });
    const roots = view.spans.filter((s) => !s.parentSpanId);
    expect(roots.map((s) => `${s.service} ${s.name}`)).toEqual(['cli rebootless rollout create']);
    expect(receiver.rejected).toEqual([]);
    for (const service of ['cli', 'dispatcher', 'agent', 'ledger', 'builder']) {
      expect({ service, present: view.services().has(service), tree }).toEqual({ service, present: true, tree });
    }

    const [root] = roots;
    const created = view.find(
      (s) => s.service === 'dispatcher' && s.kind === 'SERVER' && s.name.endsWith('RolloutService/CreateRollout'),
    );
    expect(created).toHaveLength(1);
    expect(view.ancestorsOf(created[0]!).map((s) => s.service)).toEqual(['cli', 'cli']);
    expect(view.ancestorsOf(created[0]!).at(-1)).toBe(root);

    // One wave span per wave, children of the CreateRollout call although they ran after it returned.
    const waves = view
      .find('rollout wave')
      .sort(
        (a, b) => Number(a.attributes['rebootless.rollout.wave']) - Number(b.attributes['rebootless.rollout.wave']),
      );
    expect(waves.map((w) => [w.service, w.parentSpanId, w.attributes['rebootless.rollout.wave']])).toEqual([
      ['dispatcher', created[0]!.spanId, 0],
      ['dispatcher', created[0]!.spanId, 1],
    ]);
    const rolloutId = waves[0]!.attributes['rebootless.rollout.id'];

    // Each agent's spans under the wave that sent it its command.
    const servedByCache: ReceivedSpan[] = [];
    for (const [i, hostId] of Object.keys(HOSTS).entries()) {
      for (const name of ['agent verify', 'agent transition']) {
        const found = view.find((s) => s.name === name && s.attributes['rebootless.host.id'] === hostId);
        expect({
          hostId,
          name,
          found: found.map((s) => [s.service, s.parentSpanId, s.attributes['rebootless.rollout.id'], s.status.code]),
        }).toEqual({
          hostId,
          name,
          found: [['agent', waves[i]!.spanId, rolloutId, 0]],
        });
      }
      // The artifact fetched during verification, from the dispatcher's site cache (ADR 0026).
      const verify = view.find((s) => s.name === 'agent verify' && s.attributes['rebootless.host.id'] === hostId)[0]!;
      const fetched = view.childrenOf(verify).filter((s) => s.kind === 'CLIENT' && s.name.endsWith('FetchArtifact'));
      expect(fetched.map((s) => s.name.split('/').at(-2))).toEqual(['grpc.rebootless.dispatcher.v1.AgentGateway']);
      expect(view.childrenOf(fetched[0]!).map((s) => `${s.service} ${s.kind}`)).toEqual(['dispatcher SERVER']);
      servedByCache.push(view.childrenOf(fetched[0]!)[0]!);
    }
    // The cache asked the builder once, in the trace of the first agent's fetch; the other was served its copy.
    const fromBuilder = view.find(
      (s) =>
        s.kind === 'CLIENT' &&
        s.name.endsWith('BuildService/FetchArtifact') &&
        view.ancestorsOf(s).some((a) => servedByCache.includes(a)),
    );
    expect(fromBuilder.map((s) => s.service)).toEqual(['dispatcher']);
    expect(view.childrenOf(fromBuilder[0]!).map((s) => `${s.service} ${s.kind}`)).toEqual(['builder SERVER']);
    expect(view.find((s) => s.service === 'agent' && s.name.endsWith('BuildService/FetchArtifact'))).toEqual([]);

    // Every event of the rollout projected by the ledger under the producer span that sent it,
    // and that producer under the work that recorded the event.
    const projections = view.find('ledger projection');
    expect(projections.every((s) => s.service === 'ledger')).toBe(true);
    /** The `count` projections of `type` (of `hostId`'s agent), each with its producer span and that one's parent. */
    const sent = (type: string, count: number, hostId?: string) => {
      const found = projections.filter(
        (s) =>
          s.attributes['rebootless.event.type'] === type &&
          (!hostId || s.attributes['rebootless.event.producer'] === `agent/${hostId}`),
      );
      expect({ type, hostId, found: found.length }).toEqual({ type, hostId, found: count });
      return found.map((s) => {
        const producer = view.parentOf(s)!;
        expect(producer).toMatchObject({ kind: 'PRODUCER' });
        return { producer, recordedIn: view.parentOf(producer)! };
      });
    };
    expect(sent('RolloutCreated', 1)[0]!.recordedIn).toBe(created[0]);
    for (const type of ['WaveStarted', 'HostApplyRequested', 'WaveCompleted']) {
      expect(sent(type, 2).map((s) => s.recordedIn.name)).toEqual(['rollout wave', 'rollout wave']);
    }
    expect(sent('RolloutCompleted', 1)[0]!.recordedIn).toBe(created[0]);
    for (const [hostId, sink] of Object.entries(HOSTS)) {
      for (const type of ['PatchApplyStarted', 'PatchApplied']) {
        const { producer, recordedIn } = sent(type, 1, hostId)[0]!;
        // Relayed: the dispatcher's producer span, under the agent's transition span.
        expect({ type, hostId, producer: producer.service, recordedIn: [recordedIn.service, recordedIn.name] }).toEqual(
          {
            type,
            hostId,
            producer: sink === 'gateway' ? 'dispatcher' : 'agent',
            recordedIn: ['agent', 'agent transition'],
          },
        );
      }
    }
  });

  it('undoes it on one host (CLI): the ledger shows the stack without it, and the undo is one trace of its own', async () => {
    const undone = await json(['undo', 'trace-02', 'trace-e2e', '--reason', 'trace e2e', '--watch']);
    expect(undone).toMatchObject({ kind: 'ROLLOUT_KIND_UNDO', state: 'ROLLOUT_STATE_COMPLETED' });

    const after = await eventually('trace-02 no longer carries the patch', async () => {
      const shown = await json(['hosts', 'show', 'trace-02']);
      return shown.stack.entries.length === 0 ? shown : undefined;
    });
    expect(after).toMatchObject({ stack: { entries: [] } });
    expect((await json(['hosts', 'show', 'trace-01'])).stack.entries).toEqual([
      expect.objectContaining({ moduleName: MODULE }),
    ]);

    const view = await traceOf(undone.rolloutId, (v) =>
      v.find('ledger projection').some((s) => s.attributes['rebootless.event.type'] === 'RolloutCompleted'),
    );
    const tree = view.describe();
    expect({ orphans: view.orphans().map(describeSpan), tree }).toEqual({ orphans: [], tree });
    expect(view.spans.filter((s) => !s.parentSpanId).map((s) => `${s.service} ${s.name}`)).toEqual([
      'cli rebootless undo',
    ]);
    expect(view.traceId).not.toBe(rolloutTrace.traceId);
    const undo = view.find(
      (s) => s.service === 'dispatcher' && s.kind === 'SERVER' && s.name.endsWith('RolloutService/Undo'),
    );
    expect(undo).toHaveLength(1);
    // The dispatcher asked the ledger for the plan within the call.
    expect(
      view.find((s) => s.service === 'ledger' && s.kind === 'SERVER' && s.name.endsWith('PlanUndo')).length,
    ).toBeGreaterThan(0);
    const [wave] = view.find('rollout wave');
    expect(wave).toMatchObject({ service: 'dispatcher', parentSpanId: undo[0]!.spanId });
    const transition = view.find('agent transition');
    expect(transition.map((s) => [s.attributes['rebootless.host.id'], s.parentSpanId])).toEqual([
      ['trace-02', wave!.spanId],
    ]);
    const reverted = view.find(
      (s) => s.name === 'ledger projection' && s.attributes['rebootless.event.type'] === 'PatchReverted',
    );
    expect(reverted).toHaveLength(1);
    expect(view.ancestorsOf(reverted[0]!).map((s) => s.name)).toContain('agent transition');
  });
});
