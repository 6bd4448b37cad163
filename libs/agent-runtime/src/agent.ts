// The agent: the only part of rebootless that touches a kernel. It verifies before it loads,
// records every fact as a signed event in its outbox before it answers, and reports what the
// kernel shows, not what it was asked. Embeddable: the daemon (apps/agent) wraps one, the
// dispatcher's tests and benchmarks run thousands in one process. An idle agent holds no timer.
import * as path from 'node:path';
import type { ChannelCredentials } from '@grpc/grpc-js';
import { ArtifactStore, type PatchManifest } from '@rebootless/artifacts';
import { agent as agentApi, dispatcher, events, fromTimestamp, toTimestamp } from '@rebootless/contracts';
import type { EventDraft, EventPayload } from '@rebootless/events';
import { isKernelError, type KernelPort } from '@rebootless/kernel-model';
import {
  ATTR,
  SPAN,
  SpanStatusCode,
  telemetryStatus,
  traceFields,
  withSpanFrom,
  withTraceContext,
  type Span,
  type TraceFields,
} from '@rebootless/telemetry';
import { readHostFacts } from './host/host-facts';
import { AgentStateFile, type DesiredPatch } from './state/agent-state';
import { EventOutbox } from './state/event-outbox';
import { ArtifactFetchError, fetchArtifact } from './talk/artifact-fetch';
import type { EventSink } from './talk/event-sink';
import { GatewayLink } from './talk/gateway-link';
import { insecureCredentials, sharedClient } from './talk/grpc-clients';
import type { SharedArtifactDownloads } from './talk/shared-artifact-downloads';
import { watchDrift } from './drift-schedule';
import { CommandRefused, ModuleReceipt, checkCommand, checkManifest, compareVersions } from './verification';

export type ReapplyPolicy = 'never' | 'at-start';

export interface AgentTimeouts {
  /** How long a patch transition may take before the agent reverses it. Default 60 s. */
  transitionMs?: number;
  /** How long fetching one artifact may take. Default 60 s. */
  fetchMs?: number;
  /** How often a running transition is looked at. Default 100 ms. */
  pollMs?: number;
  /** A transition the agent did not start, still running after this long, is drift. Default 5 min. */
  stuckTransitionMs?: number;
}

export interface AgentOptions {
  readonly kernel: KernelPort;
  readonly dataDir: string;
  readonly hostId: string;
  readonly labels?: Record<string, string>;
  /** host:port of the dispatcher's AgentGateway; without it the agent works offline. */
  readonly dispatcherAddress?: string;
  /** host:port of the builder's BuildService (FetchArtifact). */
  readonly builderAddress: string;
  /** The builder's raw 32-byte Ed25519 public key: the only key whose artifacts are loaded. */
  readonly builderPublicKey: Uint8Array;
  readonly sink: EventSink;
  /** TLS client credentials for both; insecure when absent (tests, REBOOTLESS_INSECURE). */
  readonly credentials?: ChannelCredentials;
  readonly reapply?: ReapplyPolicy;
  readonly timeouts?: AgentTimeouts;
  /** A host that went down within this long after an apply quarantines that patch. Default 10 min. */
  readonly crashLoopWindowMs?: number;
  /** Largest module accepted. Default 64 MiB. */
  readonly maxArtifactBytes?: number;
  /** Wall clock in ms. */
  readonly now?: () => number;
  /** fsync state and outbox writes (default). Off only in benchmarks. */
  readonly syncWrites?: boolean;
  /**
   * Where fetched artifacts are kept; default `<dataDir>/artifacts`. Simulated agents of one
   * process may share one store (content-addressed: same digest, same bytes).
   */
  readonly artifacts?: ArtifactStore;
  /**
   * One FetchArtifact per digest for every agent of the process that holds the same instance
   * (simulated fleets only). Verification stays per agent: own pinned key, own hash of the module.
   */
  readonly sharedDownloads?: SharedArtifactDownloads;
  /** Host facts the kernel port cannot give (simulated hosts share one /etc). */
  readonly facts?: { hostname?: string; machineId?: string; distro?: string; root?: string };
  readonly agentVersion?: string;
  readonly reconnect?: { minMs: number; maxMs: number };
  /** How often the kernel is compared with the last report, on a timer shared by every agent of the process. Default 60 s; 0: only on start and after commands. */
  readonly driftCheckMs?: number;
  readonly log?: (message: string) => void;
}

type CommandOutcome = dispatcher.CommandOutcome;
const Outcome = dispatcher.CommandOutcome;

interface ResultBody {
  outcome: CommandOutcome;
  stage: string;
  error: string;
  forced?: boolean;
}

export class Agent {
  private readonly state: AgentStateFile;
  private outbox!: EventOutbox;
  private readonly store: ArtifactStore;
  private readonly now: () => number;
  private readonly timeouts: Required<AgentTimeouts>;
  private readonly credentials: ChannelCredentials;
  private builder: { client: import('@grpc/grpc-js').Client; release(): void } | undefined;
  private gateway: GatewayLink | undefined;
  private work: Promise<unknown> = Promise.resolve();
  private flushing = false;
  private flushTimer: NodeJS.Timeout | undefined;
  private flushFailures = 0;
  private running = false;
  private bootId = '';
  private kernelRelease = '';
  private kernelVersion = '';
  private readonly transitionSeen = new Map<string, number>();
  private unwatchDrift: (() => void) | undefined;
  private readonly producerId: string;
  private readonly stream: string;
  /** Spans exported in this process: facts keep their trace to be sent under it. */
  private readonly tracing = telemetryStatus().exporting;

  constructor(readonly options: AgentOptions) {
    this.state = new AgentStateFile(options.dataDir, options.syncWrites ?? true);
    this.store =
      options.artifacts ??
      new ArtifactStore({ dir: path.join(options.dataDir, 'artifacts'), builderKey: options.builderPublicKey });
    this.now = options.now ?? Date.now;
    this.timeouts = {
      transitionMs: 60_000,
      fetchMs: 60_000,
      pollMs: 100,
      stuckTransitionMs: 300_000,
      ...options.timeouts,
    };
    this.credentials = options.credentials ?? insecureCredentials();
    this.producerId = `agent/${options.hostId}`;
    this.stream = `host/${options.hostId}`;
  }

  get hostId(): string {
    return this.options.hostId;
  }

  get publicKey(): Buffer {
    return this.outbox.publicKey;
  }

  get pendingEvents(): number {
    return this.outbox?.pendingCount ?? 0;
  }

  get connected(): boolean {
    return this.gateway?.connected ?? false;
  }

  /**
   * Opens the chain (a new epoch on first start), enrolls the host once, reports a new boot and
   * re-applies per policy behind the crash-loop guard, recovers an apply a crash interrupted,
   * reports drift, then connects. Resolves once the agent's start facts are in its outbox.
   */
  async start(): Promise<void> {
    const { outbox } = EventOutbox.open({
      // The same place as the services' chains, so tools find every producer key alike.
      dir: path.join(this.options.dataDir, 'chain'),
      producerId: this.producerId,
      syncWrites: this.options.syncWrites ?? true,
      now: this.now,
    });
    this.outbox = outbox;
    this.running = true;
    const k = this.options.kernel;
    [this.bootId, this.kernelRelease, this.kernelVersion] = await Promise.all([
      k.bootId(),
      k.kernelRelease(),
      k.kernelVersion(),
    ]);
    // Made now, started once the start facts are recorded: results of a recovered command
    // wait in it for the connection.
    if (this.options.dispatcherAddress) {
      this.gateway = new GatewayLink({
        address: this.options.dispatcherAddress,
        credentials: this.credentials,
        greeting: async () => ({
          hello: { facts: await this.facts(), agentPublicKey: this.outbox.publicKey },
          inventory: await this.inventory(),
        }),
        onCommand: (response) => this.onCommand(response),
        onConnected: () => this.flush(true),
        log: (m) => this.log(m),
        ...(this.options.reconnect ? { backoff: this.options.reconnect } : {}),
        now: this.now,
      });
    }
    if (!this.state.data.enrolled) {
      const facts = await this.facts();
      this.record([{ type: 'HostEnrolled', data: { facts, agentPublicKey: this.outbox.publicKey } }]);
      this.state.update((s) => void (s.enrolled = true));
    }
    const previousBootId = this.state.data.lastBootId;
    if (previousBootId !== this.bootId) {
      await this.onNewBoot(previousBootId);
    } else if (this.state.data.applying) {
      await this.serialized(() => this.recoverInterruptedApply());
    }
    await this.serialized(() => this.checkDrift());
    this.state.update((s) => void (s.cleanStop = false));
    this.flush();
    this.gateway?.start();
    const every = this.options.driftCheckMs ?? 60_000;
    if (every > 0)
      this.unwatchDrift = watchDrift({ checkDrift: () => this.serialized(() => this.checkDrift()) }, every);
  }

  /**
   * Stops talking and lets the running command end. `clean: false` leaves no mark of a planned
   * stop, as when the host dies (the crash-loop guard then treats the next boot as a crash).
   */
  async stop(options: { clean?: boolean } = {}): Promise<void> {
    if (!this.running) return;
    this.running = false;
    this.unwatchDrift?.();
    this.unwatchDrift = undefined;
    await this.work.catch(() => undefined);
    this.gateway?.stop();
    this.gateway = undefined;
    if (this.flushTimer) clearTimeout(this.flushTimer);
    this.flushTimer = undefined;
    this.builder?.release();
    this.builder = undefined;
    if (options.clean ?? true) this.state.update((s) => void (s.cleanStop = true));
    this.outbox.close();
  }

  /**
   * Records events of the daemon around the agent (ServiceStarted, ServiceStopped) on the
   * agent's own chain: one producer per host, one outbox.
   */
  recordServiceEvents(drafts: readonly EventDraft[]): void {
    this.outbox.append(drafts);
    this.flush();
  }

  /** The span the facts are recorded in (agent verify, agent transition), kept with them. */
  private activeTrace(): TraceFields | undefined {
    const fields = traceFields();
    return fields.traceparent ? fields : undefined;
  }

  /** Delivers what waits in the outbox now; resolves when it is empty or delivery failed once. */
  async drain(timeoutMs = 30_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.outbox.pendingCount > 0) {
      if (Date.now() > deadline) throw new Error(`${this.outbox.pendingCount} events still undelivered`);
      this.flush(true);
      await sleep(20);
    }
  }

  // ---- what the host looks like ---------------------------------------------------------------

  async facts(): Promise<events.HostFacts> {
    return readHostFacts({
      hostId: this.options.hostId,
      labels: this.options.labels ?? {},
      agentVersion: this.options.agentVersion ?? '0.1.0',
      kernel: this.options.kernel,
      ...this.options.facts,
    });
  }

  async inventory(): Promise<dispatcher.Inventory> {
    const [facts, patches] = await Promise.all([this.facts(), this.options.kernel.listPatches()]);
    return { facts, patches };
  }

  /** What `rebootless-agent status` shows (AgentControl.GetStatus). */
  async status(): Promise<agentApi.GetStatusResponse> {
    const [facts, stack, stalledTasks] = await Promise.all([
      this.facts(),
      this.options.kernel.listPatches(),
      this.options.kernel.stalledTasks().catch(() => []),
    ]);
    const s = this.state.data;
    const at = (ms: number | undefined) => (ms === undefined ? undefined : toTimestamp(new Date(ms)));
    return {
      facts,
      stack,
      desired: s.desired.map((d) => ({ patchId: d.patchId, version: d.version })),
      quarantined: s.quarantined.map((q) => ({
        patch: { patchId: q.patchId, version: q.version },
        reason: q.reason,
        since: toTimestamp(new Date(q.since)),
      })),
      lastReport: {
        sentAt: at(this.gateway?.lastSentAt),
        acknowledgedAt: at(this.gateway?.lastAckAt),
        pendingEvents: this.outbox.pendingCount,
        connected: this.connected,
      },
      forcedModules: s.forced.filter((f) => f.bootId === this.bootId).map((f) => f.moduleName),
      desiredModules: s.desired.map((d) => ({
        patch: { patchId: d.patchId, version: d.version },
        moduleName: d.moduleName,
        cveIds: d.cves,
        live: stack.some((p) => p.moduleName === d.moduleName && p.enabled && !p.transition),
      })),
      stalledTasks,
    };
  }

  /** The desired patches with their modules and CVE ids (for the status command). */
  desiredPatches(): readonly DesiredPatch[] {
    return this.state.data.desired;
  }

  // ---- commands -------------------------------------------------------------------------------

  /** Runs one command to its end (tests and embedders may call it without a gateway). */
  handle(command: dispatcher.ConnectResponse): Promise<dispatcher.CommandResult> {
    return this.serialized(async () => {
      // The command's traceparent (the dispatcher's rollout wave) is the parent of its spans.
      if (command.apply) return this.apply(command.apply, command);
      if (command.revert) return this.revert(command.revert, command);
      return this.result('', { outcome: Outcome.COMMAND_OUTCOME_REJECTED, stage: 'verify', error: 'empty command' });
    });
  }

  private onCommand(response: dispatcher.ConnectResponse): void {
    void this.handle(response).catch((error: unknown) => this.log(`command failed unexpectedly: ${String(error)}`));
  }

  private serialized<T>(run: () => Promise<T>): Promise<T> {
    const next = this.work.then(run, run);
    this.work = next.catch(() => undefined);
    return next;
  }

  private async apply(cmd: dispatcher.ApplyCommand, trace: TraceFields = {}): Promise<dispatcher.CommandResult> {
    const attributes = this.spanAttributes(cmd);
    const verified = await withSpanFrom(trace, SPAN.agentVerify, attributes, async (span) => {
      const checked = await this.verifyApply(cmd);
      if ('result' in checked) settle(span, checked.result);
      return checked;
    });
    if ('result' in verified) return verified.result;
    const { manifest, modulePath } = verified;
    const live = (await this.options.kernel.listPatches()).find((p) => p.moduleName === manifest.moduleName);
    if (live?.enabled && !live.transition) {
      // Already live (sent again under a new id, e.g. by the dispatcher after a reboot the agent
      // re-applied from): nothing to load, but recorded as applied, so the command has its outcome
      // in the log as every other command has (the dispatcher follows only signed facts).
      return this.finishApplied(cmd, manifest, 0, false);
    }
    return withSpanFrom(
      trace,
      SPAN.agentTransition,
      { ...attributes, [MODULE_ATTR]: manifest.moduleName },
      async (span) => settle(span, await this.load(cmd, manifest, modulePath, cmd.allowForce)),
    );
  }

  private spanAttributes(cmd: { rolloutId: string; patchId: string; version: string }) {
    return {
      [ATTR.hostId]: this.hostId,
      [ATTR.rolloutId]: cmd.rolloutId,
      [ATTR.patchId]: cmd.patchId,
      [ATTR.patchVersion]: cmd.version,
    };
  }

  /** The command and its artifact checked before the kernel is touched: the module, or the refusal answered. */
  private async verifyApply(
    cmd: dispatcher.ApplyCommand,
  ): Promise<{ manifest: PatchManifest; modulePath: string } | { result: dispatcher.CommandResult }> {
    const refuse = (error: CommandRefused, stage = 'verify') => {
      this.record(
        [
          {
            type: 'PatchApplyFailed',
            data: this.applyFailed(cmd, stage, error.message, [], false),
          },
        ],
        cmd,
      );
      return {
        result: this.answer(cmd.commandId, { outcome: Outcome.COMMAND_OUTCOME_REJECTED, stage, error: error.message }),
      };
    };
    // Expired and replayed commands: refused before anything is fetched.
    try {
      checkCommand(
        { commandId: cmd.commandId, ...(cmd.expiresAt ? { expiresAt: fromTimestamp(cmd.expiresAt) } : {}) },
        new Date(this.now()),
        (id) => this.state.data.seenCommands.some((c) => c.id === id),
      );
    } catch (error) {
      if (error instanceof CommandRefused) return refuse(error);
      throw error;
    }
    // Written with the next state change, before the kernel is touched or anything is answered.
    this.remember(cmd.commandId, cmd.expiresAt);

    try {
      return await this.obtainArtifact(cmd);
    } catch (error) {
      if (error instanceof CommandRefused) {
        if (error.reason === 'retracted') this.learnRetraction(cmd.patchId, cmd.version, error.message);
        return refuse(error);
      }
      const message = error instanceof Error ? error.message : String(error);
      this.record([{ type: 'PatchApplyFailed', data: this.applyFailed(cmd, 'fetch', message, [], false) }], cmd);
      return {
        result: this.answer(cmd.commandId, { outcome: Outcome.COMMAND_OUTCOME_FAILED, stage: 'fetch', error: message }),
      };
    }
  }

  /** Loads a verified module and sees its transition through (or reverses it). */
  private async load(
    cmd: { commandId: string; rolloutId: string; patchId: string; version: string; artifactDigest: string },
    manifest: PatchManifest,
    modulePath: string,
    allowForce: boolean,
  ): Promise<dispatcher.CommandResult> {
    const kernel = this.options.kernel;
    this.record(
      [
        {
          type: 'PatchApplyStarted',
          data: {
            hostId: this.hostId,
            commandId: cmd.commandId,
            patchId: manifest.patchId,
            version: manifest.version,
            moduleName: manifest.moduleName,
            artifactDigest: cmd.artifactDigest,
          },
        },
      ],
      cmd,
    );
    this.state.update((s) => {
      s.applying = {
        commandId: cmd.commandId,
        patchId: manifest.patchId,
        version: manifest.version,
        moduleName: manifest.moduleName,
        artifactDigest: cmd.artifactDigest,
        bootId: this.bootId,
        startedAt: this.now(),
      };
    });
    this.sendResult(cmd.commandId, { outcome: Outcome.COMMAND_OUTCOME_ACCEPTED, stage: 'load', error: '' }, []);

    const startedAt = Date.now();
    try {
      await kernel.loadModule({
        path: modulePath,
        moduleName: manifest.moduleName,
        functions: manifest.functions,
        replace: manifest.replace,
      });
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      // A module the kernel refused is not loaded; one that loaded but failed to enable may be.
      if (isKernelError(error) && (await kernel.moduleLoaded(manifest.moduleName).catch(() => false))) {
        await kernel.removeModule(manifest.moduleName).catch(() => undefined);
      }
      return this.finishApplyFailure(cmd, 'load', message, [], false);
    }

    const settled = await this.waitForTransition(manifest.moduleName);
    if (settled) return this.finishApplied(cmd, manifest, Date.now() - startedAt, false);

    const stalled = await kernel.stalledTasks().catch(() => []);
    if (allowForce) {
      await kernel.force(manifest.moduleName);
      this.state.update((s) => {
        s.forced.push({ moduleName: manifest.moduleName, bootId: this.bootId, at: this.now() });
      });
      return this.finishApplied(cmd, manifest, Date.now() - startedAt, true);
    }
    // Reverse: write the opposite value during the transition, wait, then remove the module.
    const detail = `the transition did not complete within ${this.timeouts.transitionMs} ms; ${stalled.length} task(s) block it`;
    try {
      await kernel.setEnabled(manifest.moduleName, false);
    } catch (error) {
      return this.finishApplyFailure(
        cmd,
        'transition',
        `${detail}; reversing failed: ${String(error)}`,
        stalled,
        false,
      );
    }
    const reversed = await this.waitForTransition(manifest.moduleName);
    if (!reversed) {
      return this.finishApplyFailure(cmd, 'transition', `${detail}; the reversal is stalled too`, stalled, false);
    }
    await kernel.removeModule(manifest.moduleName).catch((error: unknown) => {
      this.log(`rmmod ${manifest.moduleName} after a reversed apply: ${String(error)}`);
    });
    return this.finishApplyFailure(cmd, 'transition', `${detail}; reversed`, stalled, true);
  }

  private async finishApplied(
    cmd: { commandId: string; rolloutId: string; patchId: string; version: string; artifactDigest: string },
    manifest: PatchManifest,
    transitionMs: number,
    forced: boolean,
  ): Promise<dispatcher.CommandResult> {
    const kernel = this.options.kernel;
    const before = this.state.data.desired;
    // Staged with the end of the apply below: until then `applying` stays on disk, and a crash
    // in between is finished on restart by coming through here again.
    this.rememberDesired(manifest, cmd.artifactDigest);
    // Modules the new patch superseded (replace, or an older version of the same patch) go away.
    const superseded = before.filter(
      (d) => d.moduleName !== manifest.moduleName && (manifest.replace || d.patchId === manifest.patchId),
    );
    for (const old of superseded) {
      const stillThere = (await kernel.listPatches()).find((p) => p.moduleName === old.moduleName);
      if (stillThere?.enabled && !manifest.replace) {
        await kernel.setEnabled(old.moduleName, false).catch(() => undefined);
        await this.waitForTransition(old.moduleName);
      }
      if (await kernel.moduleLoaded(old.moduleName)) {
        await kernel.removeModule(old.moduleName).catch((error: unknown) => {
          this.log(`rmmod ${old.moduleName} (superseded): ${String(error)}`);
        });
      }
    }
    const stack = await kernel.listPatches();
    this.state.update((s) => {
      s.applying = undefined;
      s.lastApplied = { patchId: manifest.patchId, version: manifest.version, bootId: this.bootId, at: this.now() };
      s.cleanStop = false;
      s.reported = stack;
    });
    this.record(
      [
        {
          type: 'PatchApplied',
          data: {
            hostId: this.hostId,
            commandId: cmd.commandId,
            patchId: manifest.patchId,
            version: manifest.version,
            moduleName: manifest.moduleName,
            transitionMs: String(transitionMs),
            forced,
            replace: manifest.replace,
            functions: manifest.functions,
            stack,
          },
        },
      ],
      cmd,
    );
    return this.answer(
      cmd.commandId,
      { outcome: Outcome.COMMAND_OUTCOME_SUCCEEDED, stage: 'done', error: '', forced },
      stack,
    );
  }

  private async finishApplyFailure(
    cmd: { commandId: string; rolloutId: string; patchId: string; version: string },
    stage: string,
    error: string,
    stalled: events.StalledTask[],
    reverted: boolean,
  ): Promise<dispatcher.CommandResult> {
    const stack = await this.options.kernel.listPatches();
    this.state.update((s) => {
      s.applying = undefined;
      s.reported = stack;
    });
    this.record([{ type: 'PatchApplyFailed', data: this.applyFailed(cmd, stage, error, stalled, reverted) }], cmd);
    return this.answer(cmd.commandId, { outcome: Outcome.COMMAND_OUTCOME_FAILED, stage, error }, stack);
  }

  private applyFailed(
    cmd: { commandId: string; patchId: string; version: string },
    stage: string,
    error: string,
    stalledTasks: events.StalledTask[],
    reverted: boolean,
  ): events.PatchApplyFailed {
    return {
      hostId: this.hostId,
      commandId: cmd.commandId,
      patchId: cmd.patchId,
      version: cmd.version,
      stage,
      error,
      stalledTasks,
      reverted,
    };
  }

  private async revert(cmd: dispatcher.RevertCommand, trace: TraceFields = {}): Promise<dispatcher.CommandResult> {
    const attributes = this.spanAttributes(cmd);
    const failed: RevertFailed = (stage: string, error: string, stalledTasks: events.StalledTask[] = []) =>
      this.record(
        [
          {
            type: 'PatchRevertFailed',
            data: {
              hostId: this.hostId,
              commandId: cmd.commandId,
              patchId: cmd.patchId,
              version: cmd.version,
              stage,
              error,
              stalledTasks,
            },
          },
        ],
        cmd,
      );
    const checked = await withSpanFrom(trace, SPAN.agentVerify, attributes, async (span) => {
      const outcome = this.verifyRevert(cmd, failed);
      if ('result' in outcome) settle(span, outcome.result);
      return outcome;
    });
    if ('result' in checked) return checked.result;
    const { moduleName } = checked;
    return withSpanFrom(trace, SPAN.agentTransition, { ...attributes, [MODULE_ATTR]: moduleName }, async (span) =>
      settle(span, await this.disableAndRemove(cmd, moduleName, failed)),
    );
  }

  /** A revert checked (replay, expiry, which module, not forced): the module, or the refusal answered. */
  private verifyRevert(
    cmd: dispatcher.RevertCommand,
    failed: RevertFailed,
  ): { moduleName: string } | { result: dispatcher.CommandResult } {
    try {
      checkCommand(
        { commandId: cmd.commandId, ...(cmd.expiresAt ? { expiresAt: fromTimestamp(cmd.expiresAt) } : {}) },
        new Date(this.now()),
        (id) => this.state.data.seenCommands.some((c) => c.id === id),
      );
    } catch (error) {
      if (!(error instanceof CommandRefused)) throw error;
      failed('verify', error.message);
      return {
        result: this.answer(cmd.commandId, {
          outcome: Outcome.COMMAND_OUTCOME_REJECTED,
          stage: 'verify',
          error: error.message,
        }),
      };
    }
    // Written with the next state change, before the kernel is touched or anything is answered.
    this.remember(cmd.commandId, cmd.expiresAt);
    const desired = this.state.data.desired.find((d) => d.patchId === cmd.patchId && d.version === cmd.version);
    const moduleName = cmd.moduleName || desired?.moduleName || '';
    if (moduleName === '') {
      const error = `patch ${cmd.patchId} ${cmd.version} is unknown here and the command names no module`;
      failed('verify', error);
      return {
        result: this.answer(cmd.commandId, { outcome: Outcome.COMMAND_OUTCOME_REJECTED, stage: 'verify', error }),
      };
    }
    if (this.state.data.forced.some((f) => f.moduleName === moduleName && f.bootId === this.bootId)) {
      const error = `${moduleName} was forced this boot: it can never be removed, only rebooted away`;
      failed('verify', error);
      return {
        result: this.answer(cmd.commandId, { outcome: Outcome.COMMAND_OUTCOME_REJECTED, stage: 'verify', error }),
      };
    }
    return { moduleName };
  }

  /** Disables a verified revert's module, waits for the transition and removes it. */
  private async disableAndRemove(
    cmd: dispatcher.RevertCommand,
    moduleName: string,
    failed: RevertFailed,
  ): Promise<dispatcher.CommandResult> {
    const kernel = this.options.kernel;
    this.sendResult(cmd.commandId, { outcome: Outcome.COMMAND_OUTCOME_ACCEPTED, stage: 'disable', error: '' }, []);
    const startedAt = Date.now();
    const live = (await kernel.listPatches()).find((p) => p.moduleName === moduleName);
    if (live?.enabled) {
      try {
        await kernel.setEnabled(moduleName, false);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        failed('disable', message);
        return this.answer(
          cmd.commandId,
          { outcome: Outcome.COMMAND_OUTCOME_FAILED, stage: 'disable', error: message },
          await kernel.listPatches(),
        );
      }
      if (!(await this.waitForTransition(moduleName))) {
        const stalled = await kernel.stalledTasks().catch(() => []);
        // Reverse the disable: the patch stays as it was, and the failure is reported.
        await kernel.setEnabled(moduleName, true).catch(() => undefined);
        const back = await this.waitForTransition(moduleName);
        const error =
          `the disable transition did not complete within ${this.timeouts.transitionMs} ms; ` +
          (back ? 'reversed, the patch stays live' : 'the reversal is stalled too');
        failed('transition', error, stalled);
        const stack = await kernel.listPatches();
        this.state.update((s) => void (s.reported = stack));
        return this.answer(
          cmd.commandId,
          { outcome: Outcome.COMMAND_OUTCOME_FAILED, stage: 'transition', error },
          stack,
        );
      }
    }
    if (await kernel.moduleLoaded(moduleName)) {
      try {
        await kernel.removeModule(moduleName);
      } catch (error) {
        const message = error instanceof Error ? error.message : String(error);
        failed('remove', message);
        return this.answer(
          cmd.commandId,
          { outcome: Outcome.COMMAND_OUTCOME_FAILED, stage: 'remove', error: message },
          await kernel.listPatches(),
        );
      }
    }
    const stack = await kernel.listPatches();
    this.state.update((s) => {
      s.desired = s.desired.filter((d) => d.moduleName !== moduleName);
      s.reported = stack;
    });
    this.record(
      [
        {
          type: 'PatchReverted',
          data: {
            hostId: this.hostId,
            commandId: cmd.commandId,
            patchId: cmd.patchId,
            version: cmd.version,
            moduleName,
            transitionMs: String(Date.now() - startedAt),
            stack,
          },
        },
      ],
      cmd,
    );
    return this.answer(cmd.commandId, { outcome: Outcome.COMMAND_OUTCOME_SUCCEEDED, stage: 'done', error: '' }, stack);
  }

  // ---- artifacts ------------------------------------------------------------------------------

  private async obtainArtifact(cmd: dispatcher.ApplyCommand): Promise<{ manifest: PatchManifest; modulePath: string }> {
    const check = (manifestBytes: Uint8Array, signature: Uint8Array | undefined) =>
      checkManifest({
        manifestBytes,
        signature,
        pinnedBuilderKey: this.options.builderPublicKey,
        request: cmd,
        kernel: { release: this.kernelRelease, version: this.kernelVersion },
        retracted: (p, v) => this.state.data.retracted.find((r) => r.patchId === p && r.version === v)?.reason,
        quarantined: (p, v) => this.state.data.quarantined.find((q) => q.patchId === p && q.version === v)?.reason,
        liveVersion: this.liveVersionOf(cmd.patchId),
        maxArtifactBytes: this.options.maxArtifactBytes ?? 64 * 1024 * 1024,
      });
    if (this.options.builderPublicKey.length !== 32 || this.options.builderAddress === '') {
      throw new CommandRefused('bad-signature', 'this agent has no builder address or pinned builder key configured');
    }
    // Always asked of the builder, even when a copy is kept: its answer carries retractions.
    this.builder ??= sharedClient(this.options.builderAddress, this.credentials);
    const shared = this.options.sharedDownloads;
    if (shared) {
      const download = await shared.fetch(this.builder.client, cmd.artifactDigest, this.timeouts.fetchMs);
      // This agent's own checks, as if the bytes had just arrived for it alone.
      const manifest = check(download.manifestBytes, download.signature);
      const receipt = new ModuleReceipt(manifest);
      receipt.add(download.module);
      receipt.finish();
      const signed = { manifest, bytes: download.manifestBytes, signature: download.signature };
      const artifact = await download.keep(this.store, async () => {
        const { artifact } = await this.store.put({ module: download.module, signed });
        return artifact;
      });
      return { manifest, modulePath: artifact.modulePath };
    }
    const fetched = await fetchArtifact({
      client: this.builder.client,
      digest: cmd.artifactDigest,
      timeoutMs: this.timeouts.fetchMs,
      checkHeader: check,
    });
    const { artifact } = await this.store.put({
      module: fetched.module,
      signed: { manifest: fetched.manifest, bytes: fetched.manifestBytes, signature: fetched.signature },
    });
    return { manifest: fetched.manifest, modulePath: artifact.modulePath };
  }

  /** A kept copy, re-verified against the pinned key and the running kernel (re-apply at boot). */
  private async keptArtifact(patch: DesiredPatch): Promise<{ manifest: PatchManifest; modulePath: string }> {
    const artifact = await this.store.open(patch.artifactDigest);
    const manifest = checkManifest({
      manifestBytes: artifact.manifestBytes,
      signature: artifact.signature,
      pinnedBuilderKey: this.options.builderPublicKey,
      request: { ...patch, kernelRelease: '', allowDowngrade: true },
      kernel: { release: this.kernelRelease, version: this.kernelVersion },
      retracted: (p, v) => this.state.data.retracted.find((r) => r.patchId === p && r.version === v)?.reason,
      quarantined: (p, v) => this.state.data.quarantined.find((q) => q.patchId === p && q.version === v)?.reason,
      liveVersion: undefined,
      maxArtifactBytes: this.options.maxArtifactBytes ?? 64 * 1024 * 1024,
    });
    return { manifest, modulePath: artifact.modulePath };
  }

  private liveVersionOf(patchId: string): string | undefined {
    const versions = this.state.data.desired.filter((d) => d.patchId === patchId).map((d) => d.version);
    return versions.sort(compareVersions).pop();
  }

  private learnRetraction(patchId: string, version: string, reason: string): void {
    if (this.state.data.retracted.some((r) => r.patchId === patchId && r.version === version)) return;
    this.state.update((s) => void s.retracted.push({ patchId, version, reason }));
  }

  /** Staged: the caller's next state update writes it. */
  private rememberDesired(manifest: PatchManifest, artifactDigest: string): void {
    this.state.stage((s) => {
      const keep = s.desired.filter(
        (d) => !manifest.replace && d.patchId !== manifest.patchId && d.moduleName !== manifest.moduleName,
      );
      keep.push({
        patchId: manifest.patchId,
        version: manifest.version,
        moduleName: manifest.moduleName,
        artifactDigest,
        replace: manifest.replace,
        cves: manifest.cves.map((c) => c.id),
      });
      s.desired = keep;
    });
  }

  private remember(commandId: string, expiresAt: dispatcher.ApplyCommand['expiresAt']): void {
    const now = this.now();
    // Kept until a day after it expired: by then the command is refused as expired anyway.
    const until = (expiresAt ? fromTimestamp(expiresAt).getTime() : now + 30 * 86_400_000) + 86_400_000;
    this.state.stage((s) => {
      s.seenCommands = s.seenCommands.filter((c) => c.until > now);
      s.seenCommands.push({ id: commandId, until });
    });
  }

  // ---- boot, recovery, drift ------------------------------------------------------------------

  private async onNewBoot(previousBootId: string | undefined): Promise<void> {
    const s = this.state.data;
    const now = this.now();
    this.record([
      {
        type: 'HostBooted',
        data: {
          hostId: this.hostId,
          bootId: this.bootId,
          previousBootId: previousBootId ?? '',
          kernelRelease: this.kernelRelease,
        },
      },
    ]);
    // The crash-loop guard: the host went down during an apply, or soon after one without a
    // planned stop. That patch is not tried again until an operator clears it.
    const suspect = s.applying
      ? { patchId: s.applying.patchId, version: s.applying.version, why: 'the host went down during its apply' }
      : s.lastApplied &&
          s.lastApplied.bootId === previousBootId &&
          !s.cleanStop &&
          now - s.lastApplied.at < (this.options.crashLoopWindowMs ?? 600_000)
        ? {
            patchId: s.lastApplied.patchId,
            version: s.lastApplied.version,
            why: `the host went down ${Math.round((now - s.lastApplied.at) / 1000)} s after it was applied, without a planned stop`,
          }
        : undefined;
    this.state.update((st) => {
      st.lastBootId = this.bootId;
      st.applying = undefined;
      // A reboot clears every live patch, forced ones too: the debt is paid.
      st.forced = [];
      st.reported = [];
      if (suspect && !st.quarantined.some((q) => q.patchId === suspect.patchId && q.version === suspect.version)) {
        st.quarantined.push({ patchId: suspect.patchId, version: suspect.version, reason: suspect.why, since: now });
      }
    });
    if (suspect) {
      this.record([
        {
          type: 'PatchApplyFailed',
          data: this.applyFailed(
            { commandId: '', patchId: suspect.patchId, version: suspect.version },
            'crash-loop-guard',
            `quarantined: ${suspect.why}`,
            [],
            false,
          ),
        },
      ]);
    }
    if ((this.options.reapply ?? 'at-start') === 'at-start') {
      for (const patch of this.state.data.desired) {
        if (this.state.data.quarantined.some((q) => q.patchId === patch.patchId && q.version === patch.version))
          continue;
        await this.serialized(() => this.reapply(patch));
      }
    }
  }

  private async reapply(patch: DesiredPatch): Promise<void> {
    const cmd = {
      commandId: `at-start/${this.bootId}/${patch.patchId}/${patch.version}`,
      rolloutId: '',
      patchId: patch.patchId,
      version: patch.version,
      artifactDigest: patch.artifactDigest,
    };
    let kept: { manifest: PatchManifest; modulePath: string };
    try {
      kept = await this.keptArtifact(patch);
    } catch (error) {
      const message = error instanceof Error ? error.message : String(error);
      this.record([{ type: 'PatchApplyFailed', data: this.applyFailed(cmd, 'verify', message, [], false) }]);
      return;
    }
    await this.load(cmd, kept.manifest, kept.modulePath, false);
  }

  /**
   * The agent died between loading a module and reporting it (same boot): what the kernel shows
   * now is the truth, reported as the outcome of the interrupted command.
   */
  private async recoverInterruptedApply(): Promise<void> {
    const applying = this.state.data.applying;
    if (!applying) return;
    const cmd = { ...applying, rolloutId: '' };
    const live = (await this.options.kernel.listPatches()).find((p) => p.moduleName === applying.moduleName);
    if (live?.enabled) {
      const settled = !live.transition || (await this.waitForTransition(applying.moduleName));
      if (settled) {
        let manifest: PatchManifest | undefined;
        try {
          manifest = (await this.store.open(applying.artifactDigest)).manifest;
        } catch {
          manifest = undefined;
        }
        if (manifest) {
          await this.finishApplied(cmd, manifest, Date.now() - applying.startedAt, false);
          return;
        }
      }
    }
    const loaded = await this.options.kernel.moduleLoaded(applying.moduleName);
    await this.finishApplyFailure(
      cmd,
      'interrupted',
      `the agent stopped during this apply; on restart the kernel shows ${applying.moduleName} ` +
        (live
          ? `enabled=${live.enabled} transition=${live.transition}`
          : loaded
            ? 'loaded but not patching'
            : 'absent'),
      [],
      !live,
    );
  }

  /** Compares the kernel with what the agent last reported; a difference is drift. */
  async checkDrift(): Promise<void> {
    const observed = await this.options.kernel.listPatches();
    const expected = this.state.data.reported ?? [];
    const names = (list: events.LivePatchState[]) => new Set(list.map((p) => `${p.moduleName}:${p.enabled}`));
    const exp = names(expected);
    const obs = names(observed);
    const found: { kind: string; detail: string }[] = [];
    const added = observed.filter((p) => !exp.has(`${p.moduleName}:${p.enabled}`));
    const removed = expected.filter((p) => !obs.has(`${p.moduleName}:${p.enabled}`));
    if (added.length > 0) {
      found.push({
        kind: 'loaded-by-hand',
        detail: `not loaded by this agent: ${added.map((p) => p.moduleName).join(', ')}`,
      });
    }
    if (removed.length > 0) {
      found.push({
        kind: 'removed-by-hand',
        detail: `gone without this agent: ${removed.map((p) => p.moduleName).join(', ')}`,
      });
    }
    const now = this.now();
    for (const p of observed.filter((x) => x.transition)) {
      const since = this.transitionSeen.get(p.moduleName) ?? now;
      this.transitionSeen.set(p.moduleName, since);
      if (now - since >= this.timeouts.stuckTransitionMs) {
        found.push({
          kind: 'transition-stuck',
          detail: `${p.moduleName} in transition for ${Math.round((now - since) / 1000)} s`,
        });
        this.transitionSeen.delete(p.moduleName);
      }
    }
    for (const name of [...this.transitionSeen.keys()]) {
      if (!observed.some((p) => p.moduleName === name && p.transition)) this.transitionSeen.delete(name);
    }
    const changed = found.some((f) => f.kind !== 'transition-stuck');
    if (found.length === 0) return;
    const drafts: EventPayload[] = found.map((f) => ({
      type: 'DriftDetected',
      data: { hostId: this.hostId, kind: f.kind, detail: f.detail, expected, observed },
    }));
    if (changed) drafts.push({ type: 'HostInventoryReported', data: { facts: await this.facts(), patches: observed } });
    this.record(drafts);
    this.state.update((s) => void (s.reported = observed));
    if (changed) this.gateway?.sendInventory(await this.inventory());
  }

  private async waitForTransition(moduleName: string): Promise<boolean> {
    const deadline = Date.now() + this.timeouts.transitionMs;
    for (;;) {
      const patch = (await this.options.kernel.listPatches()).find((p) => p.moduleName === moduleName);
      if (!patch?.transition) return true;
      if (Date.now() >= deadline) return false;
      await sleep(this.timeouts.pollMs);
    }
  }

  // ---- events and answers ---------------------------------------------------------------------

  /** Signs the facts into the outbox (durable on return), then starts delivering them. */
  private record(payloads: EventPayload[], cause?: { commandId: string; rolloutId: string }): void {
    const drafts: EventDraft[] = payloads.map((payload) => ({
      stream: this.stream,
      actor: { kind: events.ActorKind.ACTOR_KIND_HOST, id: this.hostId, origin: '' },
      ...(cause?.rolloutId ? { correlationId: cause.rolloutId } : {}),
      ...(cause?.commandId ? { causationId: cause.commandId } : {}),
      payload,
    }));
    this.outbox.append(drafts, this.tracing ? this.activeTrace() : undefined);
    this.flush();
  }

  private answer(commandId: string, body: ResultBody, stack: events.LivePatchState[] = []): dispatcher.CommandResult {
    const result = this.sendResult(commandId, body, stack);
    if (body.outcome !== Outcome.COMMAND_OUTCOME_REJECTED && this.gateway?.connected) {
      void this.inventory().then(
        (inventory) => this.gateway?.sendInventory(inventory),
        () => undefined,
      );
    }
    return result;
  }

  private sendResult(commandId: string, body: ResultBody, stack: events.LivePatchState[]): dispatcher.CommandResult {
    // Nothing is answered before what the agent learned is on disk (a seen command id above all).
    this.state.flush();
    const result: dispatcher.CommandResult = {
      commandId,
      outcome: body.outcome,
      stage: body.stage,
      error: body.error,
      forced: body.forced ?? false,
      stack,
    };
    // Re-applies at boot answer nobody; their events are the record.
    if (commandId !== '' && !commandId.startsWith('at-start/')) {
      this.gateway?.sendDurable({ commandResult: result }).catch(() => undefined);
    }
    return result;
  }

  private result(commandId: string, body: ResultBody): dispatcher.CommandResult {
    return this.sendResult(commandId, body, []);
  }

  /** One delivery at a time, oldest first; after a failure, retried with backoff. */
  private flush(now = false): void {
    if (now && this.flushTimer) {
      clearTimeout(this.flushTimer);
      this.flushTimer = undefined;
    }
    if (this.flushing || !this.running || this.flushTimer) return;
    let batch = this.outbox.pending(200);
    if (batch.length === 0) return;
    // Sent under the trace they were recorded in; kafkajs gives a send one parent, so a delivery
    // holds one trace's records (untraced: all of them, as before).
    const trace = batch[0]!.trace;
    const cut = batch.findIndex((r) => r.trace?.traceparent !== trace?.traceparent);
    if (cut > 0) batch = batch.slice(0, cut);
    this.flushing = true;
    const relay = this.gateway ?? { relay: () => Promise.reject(new Error('no dispatcher configured')) };
    const last = batch[batch.length - 1]!.seq;
    withTraceContext(trace, () =>
      this.options.sink.deliver(
        this.hostId,
        batch.map((r) => r.envelope),
        relay,
      ),
    ).then(
      () => {
        this.flushFailures = 0;
        this.outbox.confirm(last);
        this.flushing = false;
        this.flush();
      },
      (error: unknown) => {
        this.flushing = false;
        this.flushFailures += 1;
        const delay = Math.min(30_000, 250 * 2 ** Math.min(this.flushFailures - 1, 8));
        if (this.flushFailures === 1) this.log(`events not delivered, kept in the outbox: ${String(error)}`);
        if (!this.running) return;
        this.flushTimer = setTimeout(() => {
          this.flushTimer = undefined;
          this.flush();
        }, delay);
      },
    );
  }

  private log(message: string): void {
    this.options.log?.(`agent ${this.hostId}: ${message}`);
  }
}

type RevertFailed = (stage: string, error: string, stalledTasks?: events.StalledTask[]) => void;

const MODULE_ATTR = 'rebootless.module.name';

/** The command's outcome on its span; anything but success marks the span as an error. */
function settle(span: Span, result: dispatcher.CommandResult): dispatcher.CommandResult {
  span.setAttribute(
    ATTR.outcome,
    (Outcome[result.outcome] ?? String(result.outcome)).replace('COMMAND_OUTCOME_', '').toLowerCase(),
  );
  if (result.outcome !== Outcome.COMMAND_OUTCOME_SUCCEEDED) {
    span.setStatus({ code: SpanStatusCode.ERROR, message: `${result.stage}: ${result.error}` });
  }
  return result;
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

export { ArtifactFetchError };
