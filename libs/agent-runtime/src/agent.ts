// The agent: the only part of rebootless that touches a kernel. It verifies before it loads,
// records every fact as a signed event in its outbox before it answers, and reports what the
// kernel shows, not what it was asked. Embeddable: the daemon (apps/agent) wraps one, the
// dispatcher's tests and benchmarks run thousands in one process. An idle agent holds no timer.
import * as path from 'node:path';
import type { ChannelCredentials, Client } from '@grpc/grpc-js';
import { ArtifactStore } from '@rebootless/artifacts';
import { agent as agentApi, dispatcher, events, fromTimestamp, toTimestamp } from '@rebootless/contracts';
import { decodeEvent, type EventDraft, type EventPayload } from '@rebootless/events';
import { telemetryStatus } from '@rebootless/telemetry';
import {
  Outcome,
  applyFailedFact,
  sleep,
  type AgentContext,
  type AgentOptions,
  type AgentTimeouts,
  type CommandCause,
  type ResultBody,
} from './agent-context';
import { ApplyFlow } from './apply-flow';
import { watchDrift } from './drift-schedule';
import { readHostFacts } from './host/host-facts';
import { OutboxDelivery } from './outbox-delivery';
import { RevertFlow } from './revert-flow';
import {
  crashLoopSuspect,
  detectDrift,
  answerOf,
  isQuarantined,
  rememberAnswer,
  rememberCommand,
  wasSeen,
  withoutQuarantine,
} from './rules/host-rules';
import { AgentStateFile, type DesiredPatch } from './state/agent-state';
import { CommandRefused, checkCommand } from './verification';
import { EventOutbox, GATEWAY_MARK_EVERY } from './state/event-outbox';
import { ArtifactFetchError } from './talk/artifact-fetch';
import { GatewayLink } from './talk/gateway-link';
import { insecureCredentials, sharedClient } from './talk/grpc-clients';

export type { AgentOptions, AgentTimeouts, ReapplyPolicy } from './agent-context';

/**
 * The agent's lifecycle (start, boot, recovery, drift, stop) and its status. Commands run one at
 * a time through ApplyFlow and RevertFlow; facts leave through OutboxDelivery.
 */
export class Agent {
  private readonly state: AgentStateFile;
  private outbox!: EventOutbox;
  private delivery!: OutboxDelivery;
  private readonly store: ArtifactStore;
  private readonly now: () => number;
  private readonly timeouts: Required<AgentTimeouts>;
  private readonly credentials: ChannelCredentials;
  private builder: { client: Client; release(): void } | undefined;
  private gateway: GatewayLink | undefined;
  private work: Promise<unknown> = Promise.resolve();
  private running = false;
  private bootId = '';
  private kernelRelease = '';
  private kernelVersion = '';
  private transitionSeen: ReadonlyMap<string, number> = new Map();
  private unwatchDrift: (() => void) | undefined;
  private readonly producerId: string;
  private readonly applies: ApplyFlow;
  private readonly reverts: RevertFlow;
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
      startedHoldMs: 2_000,
      ...options.timeouts,
    };
    this.credentials = options.credentials ?? insecureCredentials();
    this.producerId = `agent/${options.hostId}`;
    const context: AgentContext = {
      options,
      kernel: options.kernel,
      state: this.state,
      store: this.store,
      timeouts: this.timeouts,
      hostId: options.hostId,
      now: () => this.now(),
      bootId: () => this.bootId,
      kernelRelease: () => this.kernelRelease,
      kernelVersion: () => this.kernelVersion,
      builderClient: () => (this.builder ??= sharedClient(options.builderAddress, this.credentials)).client,
      dispatcherClient: () => this.gateway?.client,
      record: (payloads, cause, holdMs) => this.delivery.record(payloads, cause, holdMs),
      answer: (commandId, body, stack) => this.answer(commandId, body, stack),
      answerAgain: (commandId) => this.answerAgain(commandId),
      rememberCommand: (commandId, expiresAt) => this.rememberCommand(commandId, expiresAt),
      recordedEnd: (commandId) => recordedEnd(this.outbox.pending(), commandId),
      waitForTransition: (moduleName) => this.waitForTransition(moduleName),
      log: (message) => this.log(message),
    };
    this.applies = new ApplyFlow(context);
    this.reverts = new RevertFlow(context);
  }

  get hostId(): string {
    return this.options.hostId;
  }

  get publicKey(): Buffer {
    return this.outbox.publicKey;
  }

  get pendingEvents(): number {
    return this.delivery?.pendingCount ?? 0;
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
    const { outbox, epoch } = EventOutbox.open({
      // The same place as the services' chains, so tools find every producer key alike.
      dir: path.join(this.options.dataDir, 'chain'),
      producerId: this.producerId,
      syncWrites: this.options.syncWrites ?? true,
      now: this.now,
      ...(this.options.sink.throughGateway ? { markEvery: GATEWAY_MARK_EVERY } : {}),
    });
    this.outbox = outbox;
    this.delivery = new OutboxDelivery({
      outbox,
      sink: this.options.sink,
      hostId: this.hostId,
      relay: () => this.gateway,
      tracing: this.tracing,
      log: (m) => this.log(m),
      // A new epoch holds only its start, never sent; an outbox opened where it stood may hold
      // what the last run sent without hearing back.
      sentBefore: epoch === undefined,
    });
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
        // Spread over the instances by host, so a fleet does not all start on the first one.
        firstAddress: spreadIndex(this.hostId),
        credentials: this.credentials,
        greeting: async () => ({
          hello: { facts: await this.facts(), agentPublicKey: this.outbox.publicKey },
          inventory: await this.inventory(),
        }),
        onCommand: (response) => this.onCommand(response),
        onConnected: () => this.delivery.flush(true),
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
    // Before the boot is looked at: the crash-loop guard reads the last apply, written by the catch-up.
    await this.applies.catchUpRecordedEnd();
    const previousBootId = this.state.data.lastBootId;
    if (previousBootId !== this.bootId) {
      await this.onNewBoot(previousBootId);
    } else if (this.state.data.applying) {
      await this.serialized(() => this.applies.recoverInterruptedApply());
    }
    await this.serialized(() => this.checkDrift());
    this.state.update((s) => void (s.cleanStop = false));
    this.delivery.flush();
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
    this.delivery.stop();
    this.unwatchDrift?.();
    this.unwatchDrift = undefined;
    await this.work.catch(() => undefined);
    this.gateway?.stop();
    this.gateway = undefined;
    this.builder?.release();
    this.builder = undefined;
    const clean = options.clean ?? true;
    if (clean) this.state.update((s) => void (s.cleanStop = true));
    this.outbox.close({ markDelivered: clean });
  }

  /**
   * Records events of the daemon around the agent (ServiceStarted, ServiceStopped) on the
   * agent's own chain: one producer per host, one outbox.
   */
  recordServiceEvents(drafts: readonly EventDraft[]): void {
    this.delivery.append(drafts);
  }

  /** Delivers what waits in the outbox now; rejects when some is still there after `timeoutMs`. */
  drain(timeoutMs = 30_000): Promise<void> {
    return this.delivery.drain(timeoutMs);
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
      if (command.apply) return this.applies.apply(command.apply, command);
      if (command.revert) return this.reverts.revert(command.revert, command);
      if (command.clearQuarantine) return this.clearQuarantine(command.clearQuarantine);
      return this.answer(
        '',
        { outcome: Outcome.COMMAND_OUTCOME_REJECTED, stage: 'verify', error: 'empty command' },
        [],
      );
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

  private rememberCommand(commandId: string, expiresAt: dispatcher.ApplyCommand['expiresAt']): void {
    const now = this.now();
    const expiry = expiresAt ? fromTimestampMs(expiresAt) : undefined;
    this.state.stage((s) => void (s.seenCommands = rememberCommand(s.seenCommands, commandId, expiry, now)));
  }

  /**
   * An operator's ClearQuarantine: the patch leaves quarantine, recorded with the operator's
   * reason; nothing is applied now (a rollout, or the next boot's re-apply, does that).
   */
  private async clearQuarantine(cmd: dispatcher.ClearQuarantineCommand): Promise<dispatcher.CommandResult> {
    const again = await this.answerAgain(cmd.commandId);
    if (again) return again;
    const refuse = (error: string) =>
      this.answer(cmd.commandId, { outcome: Outcome.COMMAND_OUTCOME_REJECTED, stage: 'verify', error });
    try {
      checkCommand(
        { commandId: cmd.commandId, ...(cmd.expiresAt ? { expiresAt: fromTimestamp(cmd.expiresAt) } : {}) },
        new Date(this.now()),
        (id) => wasSeen(this.state.data.seenCommands, id),
      );
    } catch (error) {
      if (error instanceof CommandRefused) return refuse(error.message);
      throw error;
    }
    this.rememberCommand(cmd.commandId, cmd.expiresAt);
    const held = this.state.data.quarantined.find((q) => q.patchId === cmd.patchId && q.version === cmd.version);
    if (!held) return refuse(`patch ${cmd.patchId} ${cmd.version} is not quarantined on this host`);
    this.state.update((s) => void (s.quarantined = withoutQuarantine(s.quarantined, cmd)));
    this.record(
      [
        {
          type: 'PatchQuarantineCleared',
          data: {
            hostId: this.hostId,
            commandId: cmd.commandId,
            patchId: cmd.patchId,
            version: cmd.version,
            reason: cmd.reason,
            quarantineReason: held.reason,
            quarantinedSince: toTimestamp(new Date(held.since)),
          },
        },
      ],
      { commandId: cmd.commandId, rolloutId: '' },
    );
    this.log(`quarantine of ${cmd.patchId} ${cmd.version} cleared: ${cmd.reason}`);
    return this.answer(cmd.commandId, {
      outcome: Outcome.COMMAND_OUTCOME_SUCCEEDED,
      stage: 'clear-quarantine',
      error: '',
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
    // The crash-loop guard: that patch is not tried again until an operator clears it.
    const suspect = crashLoopSuspect(s, previousBootId, now, this.options.crashLoopWindowMs);
    this.state.update((st) => {
      st.lastBootId = this.bootId;
      st.applying = undefined;
      // A reboot clears every live patch, forced ones too: the debt is paid.
      st.forced = [];
      st.reported = [];
      if (suspect && !isQuarantined(st.quarantined, suspect)) {
        st.quarantined.push({ patchId: suspect.patchId, version: suspect.version, reason: suspect.why, since: now });
      }
    });
    if (suspect) {
      this.record([
        {
          type: 'PatchApplyFailed',
          data: applyFailedFact(
            this.hostId,
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
        if (isQuarantined(this.state.data.quarantined, patch)) continue;
        await this.serialized(() => this.applies.reapply(patch));
      }
    }
  }

  /** Compares the kernel with what the agent last reported; a difference is drift. */
  async checkDrift(): Promise<void> {
    const observed = await this.options.kernel.listPatches();
    const expected = this.state.data.reported ?? [];
    const check = detectDrift(expected, observed, this.transitionSeen, this.now(), this.timeouts.stuckTransitionMs);
    this.transitionSeen = check.transitionSeen;
    const found = check.findings;
    const changed = check.stackChanged;
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

  private record(payloads: EventPayload[], cause?: CommandCause): void {
    this.delivery.record(payloads, cause);
  }

  /** See AgentContext.answerAgain. */
  private async answerAgain(commandId: string): Promise<dispatcher.CommandResult | undefined> {
    const first = answerOf(this.state.data.seenCommands, commandId);
    if (!first) return undefined;
    this.log(
      `command ${commandId} came again: answered as the first time (${Outcome[first.outcome] ?? first.outcome})`,
    );
    return this.answer(commandId, first, await this.options.kernel.listPatches());
  }

  /**
   * See AgentContext.answer. No inventory follows an answer: the stack a command left is in its
   * signed fact (PatchApplied, PatchReverted), which every dispatcher instance folds into its view
   * of the fleet; an unsigned copy after each answer was a message and an acknowledgement more per
   * host and command (ADR 0032).
   */
  private answer(commandId: string, body: ResultBody, stack: events.LivePatchState[] = []): dispatcher.CommandResult {
    if (commandId !== '' && body.outcome !== Outcome.COMMAND_OUTCOME_ACCEPTED) {
      // Kept with the command's id: the same command sent again gets this answer again.
      const answer = { outcome: body.outcome, stage: body.stage, error: body.error, forced: body.forced ?? false };
      this.state.stage((s) => void (s.seenCommands = rememberAnswer(s.seenCommands, commandId, answer)));
    }
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

  private log(message: string): void {
    this.options.log?.(`agent ${this.hostId}: ${message}`);
  }
}

function fromTimestampMs(t: NonNullable<dispatcher.ApplyCommand['expiresAt']>): number {
  return fromTimestamp(t).getTime();
}

export { ArtifactFetchError };

const END_OF_APPLY = new Set(['PatchApplied', 'PatchApplyFailed']);

/** The undelivered fact that ended the command's apply, if the outbox holds one. */
function recordedEnd(pending: readonly { envelope: Buffer }[], commandId: string): events.EventBody | undefined {
  for (let i = pending.length - 1; i >= 0; i--) {
    const { body } = decodeEvent(pending[i]!.envelope);
    if (body.causationId === commandId && END_OF_APPLY.has(body.type)) return body;
  }
  return undefined;
}

/** A stable small number from the host id (FNV-1a): which dispatcher instance it tries first. */
function spreadIndex(hostId: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < hostId.length; i++) h = Math.imul(h ^ hostId.charCodeAt(i), 0x01000193) >>> 0;
  return h;
}
