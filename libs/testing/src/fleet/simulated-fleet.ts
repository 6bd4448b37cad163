// Many real agents (libs/agent-runtime) in one process, each on its own simulated kernel and data
// dir, talking to the dispatcher over real gRPC streams and to the builder for artifacts. Every
// agent relays its events through the dispatcher's gateway, as a deployed agent does: the gateway
// binds each agent's key (AgentKeyBound) and no reader counts an agent key it did not bind.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ChannelCredentials } from '@grpc/grpc-js';
import { Agent, GatewayRelaySink, SharedArtifactDownloads } from '@rebootless/agent-runtime';
import { ArtifactStore } from '@rebootless/artifacts';
import { SimulatedKernel, type LoadModuleRequest, type StackingRule } from '@rebootless/kernel-model';

export interface SimulatedHostSpec {
  hostId: string;
  kernelRelease: string;
  labels?: Record<string, string>;
  /** How long the host's patch transitions take. */
  transitionMs?: number;
  /** The kernel's disable rule regardless of its release ('top-only': before 5.1). */
  stacking?: StackingRule;
}

export interface SimulatedFleetOptions {
  root: string;
  /** One dispatcher, or several instances (each agent starts on one by its host id, moves on when it drops). */
  dispatcherAddress: string | readonly string[];
  builderAddress: string;
  builderPublicKey: Uint8Array;
  /** The agent gives up on a transition (and reverses it) after this long. */
  agentTransitionTimeoutMs?: number;
  /** How long one artifact fetch may take (thousands of agents in one process fetch slowly). */
  agentFetchTimeoutMs?: number;
  syncWrites?: boolean;
  /** How long PatchApplyStarted waits to share the seal of the fact that ends the apply (the agent's default when absent). */
  startedHoldMs?: number;
  /**
   * One content-addressed module store and one FetchArtifact per digest (SharedArtifactDownloads)
   * for every agent of the process instead of one each: each agent still verifies the signed
   * manifest with its own pinned key and hashes the module itself; only the bytes are shared.
   */
  sharedArtifacts?: boolean;
  /** TLS toward the dispatcher and the builder, per host (its host certificate); plaintext when absent. */
  credentials?: (hostId: string) => ChannelCredentials;
}

/** A kernel that counts module loads: a host patched twice shows up here whatever the log says. */
class CountingKernel extends SimulatedKernel {
  readonly loads: string[] = [];

  override loadModule(request: LoadModuleRequest): Promise<void> {
    this.loads.push(request.moduleName);
    return super.loadModule(request);
  }
}

export interface SimulatedHost {
  spec: SimulatedHostSpec;
  kernel: CountingKernel;
  agent: Agent;
  running: boolean;
}

export class SimulatedFleet {
  readonly hosts = new Map<string, SimulatedHost>();
  private readonly relaySink = new GatewayRelaySink();
  private readonly artifacts: ArtifactStore | undefined;
  readonly downloads: SharedArtifactDownloads | undefined;

  constructor(
    private readonly options: SimulatedFleetOptions,
    specs: readonly SimulatedHostSpec[],
  ) {
    this.artifacts = options.sharedArtifacts
      ? new ArtifactStore({ dir: path.join(options.root, 'shared-artifacts'), builderKey: options.builderPublicKey })
      : undefined;
    this.downloads = options.sharedArtifacts ? new SharedArtifactDownloads() : undefined;
    for (const spec of specs) this.add(spec);
  }

  add(spec: SimulatedHostSpec): SimulatedHost {
    const kernel = new CountingKernel({
      release: spec.kernelRelease,
      transitionMs: spec.transitionMs ?? 0,
      ...(spec.stacking ? { stacking: spec.stacking } : {}),
    });
    const host: SimulatedHost = { spec, kernel, agent: this.agentFor(spec, kernel), running: false };
    this.hosts.set(spec.hostId, host);
    return host;
  }

  private agentFor(spec: SimulatedHostSpec, kernel: SimulatedKernel): Agent {
    const dataDir = path.join(this.options.root, spec.hostId);
    fs.mkdirSync(dataDir, { recursive: true });
    return new Agent({
      kernel,
      dataDir,
      hostId: spec.hostId,
      labels: spec.labels ?? {},
      dispatcherAddress: this.options.dispatcherAddress,
      builderAddress: this.options.builderAddress,
      builderPublicKey: this.options.builderPublicKey,
      sink: this.relaySink,
      ...(this.options.credentials ? { credentials: this.options.credentials(spec.hostId) } : {}),
      ...(this.artifacts ? { artifacts: this.artifacts } : {}),
      ...(this.downloads ? { sharedDownloads: this.downloads } : {}),
      syncWrites: this.options.syncWrites ?? false,
      reconnect: { minMs: 100, maxMs: 1_000 },
      timeouts: {
        transitionMs: this.options.agentTransitionTimeoutMs ?? 30_000,
        fetchMs: this.options.agentFetchTimeoutMs ?? 60_000,
        pollMs: 50,
        ...(this.options.startedHoldMs !== undefined ? { startedHoldMs: this.options.startedHoldMs } : {}),
      },
      facts: { hostname: spec.hostId, machineId: spec.hostId.padEnd(32, '0').slice(0, 32), distro: 'debian' },
      log: () => undefined,
    });
  }

  get(hostId: string): SimulatedHost {
    const host = this.hosts.get(hostId);
    if (!host) throw new Error(`no simulated host ${hostId}`);
    return host;
  }

  async start(hostIds: Iterable<string> = this.hosts.keys(), concurrency = 64): Promise<void> {
    const list = [...hostIds].map((id) => this.get(id)).filter((h) => !h.running);
    for (let i = 0; i < list.length; i += concurrency) {
      await Promise.all(
        list.slice(i, i + concurrency).map(async (h) => {
          await h.agent.start();
          h.running = true;
        }),
      );
    }
  }

  async stop(hostIds: Iterable<string> = this.hosts.keys()): Promise<void> {
    await Promise.all(
      [...hostIds].map(async (id) => {
        const h = this.get(id);
        if (!h.running) return;
        h.running = false;
        await h.agent.stop();
      }),
    );
  }

  /**
   * The host goes down and boots again: its agent stops without a clean stop, as when the host
   * dies, the kernel reboots (its live patches gone), and a new agent starts on the same data
   * dir (its crash-loop guard judges the boot).
   */
  async crash(hostId: string): Promise<void> {
    const h = this.get(hostId);
    if (h.running) await h.agent.stop({ clean: false });
    h.running = false;
    h.kernel.reboot();
    h.agent = this.agentFor(h.spec, h.kernel);
    await this.start([hostId]);
  }

  connectedCount(): number {
    return [...this.hosts.values()].filter((h) => h.running && h.agent.connected).length;
  }

  /** The enabled live patches each host's kernel shows now. */
  async liveModules(hostId: string): Promise<string[]> {
    const patches = await this.get(hostId).kernel.listPatches();
    return patches.filter((p) => p.enabled).map((p) => p.moduleName);
  }

  async close(): Promise<void> {
    await this.stop();
  }
}
