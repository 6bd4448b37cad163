// The dispatcher's running state and its one writer. It folds the event log (its own rollout
// events, the builder's patches, the agents' facts) into the domain model of @rebootless/rollout,
// asks the decider what comes next, writes those events, and only once Kafka has acknowledged
// them carries out their effect (sending a command to an agent).
import type { Kafka } from 'kafkajs';
import { dispatcher, events, fromTimestamp, toTimestamp } from '@rebootless/contracts';
import {
  AgentKeyBook,
  authorityViolation,
  commandAnswered,
  keyFingerprint,
  payloadOf,
  producerOf,
  type EventDraft,
  type EventPayload,
} from '@rebootless/events';
import { SEAL_LANDS_WITHIN_MS, type EventPublisher } from '@rebootless/kafka';
import {
  Fleet,
  PatchCatalog,
  RolloutBook,
  RolloutNotFoundError,
  nextEvents,
  rolloutView,
  type HostFactEvent,
  type RolloutEvent,
  type RolloutRun,
  type TickContext,
} from '@rebootless/rollout';
import { telemetryStatus, traceFields, withContext, type Context } from '@rebootless/telemetry';
import { AgentConnections } from './agent-connections';
import { SoleInstance, type Coordination } from './coordination';
import { AgentKeyNotFoundError, RolloutDrivenElsewhereError } from './dispatcher-errors';
import { EventLogFollower, type FollowedEvent } from './event-log-follower';
import { RolloutTraces } from './rollout-traces';
import { UnansweredHostCommands, type UnansweredHostCommand } from './unanswered-host-commands';

const ROLLOUT_EVENTS = new Set<string>([
  'RolloutCreated',
  'RolloutApproved',
  'WaveStarted',
  'HostApplyRequested',
  'HostRevertRequested',
  'WaveCompleted',
  'RolloutPaused',
  'RolloutResumed',
  'RolloutAborted',
  'RolloutCompleted',
]);
const PATCH_EVENTS = new Set<string>(['BuildSucceeded', 'PatchPublished', 'PatchRetracted']);
const HOST_FACTS = new Set<string>([
  'HostEnrolled',
  'HostInventoryReported',
  'HostBooted',
  'PatchApplied',
  'PatchApplyFailed',
  'PatchReverted',
  'PatchRevertFailed',
  'DriftDetected',
]);
/** The gateway's bindings and an operator's revocations: which agent keys may relay. */
const KEY_EVENTS = new Set<string>(['AgentKeyBound', 'AgentKeyRevoked']);
/** Commands to a host outside rollouts: only the host they went to may answer them. */
const HOST_COMMANDS = new Set<string>(['QuarantineClearRequested']);
/** The agent's own record that it carried such a command out: the caller's proof, whichever instance it is on. */
const HOST_COMMAND_DONE = new Set<string>(['PatchQuarantineCleared']);
const FOLLOWED = new Set([
  ...ROLLOUT_EVENTS,
  ...PATCH_EVENTS,
  ...HOST_FACTS,
  ...KEY_EVENTS,
  ...HOST_COMMANDS,
  ...HOST_COMMAND_DONE,
]);
/** Command ids an agent makes up itself (re-applying after a boot): they answer no dispatcher command. */
const AGENT_OWN_COMMAND = 'at-start/';
/** The facts a rollout's hosts are judged by (HostEnrolled only feeds the fleet). */
const ROLLOUT_FACTS = new Set<string>([...HOST_FACTS].filter((t) => t !== 'HostEnrolled'));

/** What the rebuild keeps to fold in order once the log is read to where it stood at start. */
interface Backlog {
  /** The dispatcher instances' rollout events. */
  readonly rollouts: events.EventBody[];
  readonly keys: events.EventBody[];
  /** The agents' facts, folded by when they happened. */
  readonly facts: events.EventBody[];
  /** Events read while rebuilding, folded at once or kept. */
  read: number;
}

/** Events written in one Kafka batch at most (a wave of thousands of hosts goes in several). */
const WRITE_CHUNK = 1000;
/** Watchers get at most one update per rollout in this time. */
const WATCH_COALESCE_MS = 100;
/** The longest a rollout waits between two looks when answers keep coming (10,000 hosts: 500 ms). */
const MAX_TICK_GAP_MS = 1_000;

export interface EngineLog {
  log(message: string): void;
  warn(message: string): void;
  error(message: string, stack?: string): void;
}

export interface RolloutEngineOptions {
  publisher: EventPublisher;
  kafka: Kafka;
  topic: string;
  actor: events.Actor;
  silenceGraceMs: number;
  tickIntervalMs: number;
  /** Service producers the follower vouches for, read again for a producer not in it yet (its own key is added). */
  serviceKeys?: () => ReadonlyMap<string, readonly Uint8Array[]>;
  unsealedTailTimeoutMs?: number;
  log: EngineLog;
  now?: () => number;
  /** With other instances: leases on rollouts and where their agents are (default: alone, ADR 0025). */
  coordination?: Coordination;
}

export type RolloutWatcher = (rollout: dispatcher.Rollout, eventType: string) => void;

export class RolloutEngine {
  readonly fleet = new Fleet();
  readonly catalog = new PatchCatalog();
  readonly book = new RolloutBook();
  readonly agents = new AgentConnections();
  /** Agent keys as the gateway bound them and operators revoked them (folded from the log). */
  readonly agentKeys = new AgentKeyBook(false);
  /** The host each command was sent to: an agent may answer only its own host's commands. */
  private readonly commandHosts = new Map<string, string>();
  /** Commands to a host another instance wrote, carried by this one to the agent connected here. */
  private readonly carriedForPeers = new Set<string>();
  /** Host commands not answered yet, any instance's: sent whenever their agent connects here. */
  private readonly unansweredHostCommands = new UnansweredHostCommands();
  /** This instance's host commands its operation sent to the agent itself (then connected here). */
  private readonly sentByOperation = new Set<string>();
  private readonly now: () => number;
  private readonly producerId: string;
  private follower?: EventLogFollower;
  /**
   * What the rebuild folds once the log is read to where it stood at start (undefined after):
   * bodies only, not their envelopes, and nothing it could fold as it read (ADR 0029).
   */
  private backlog: Backlog | undefined = { rollouts: [], keys: [], facts: [], read: 0 };
  private lock: Promise<unknown> = Promise.resolve();
  private readonly dirty = new Set<string>();
  private tickQueued = false;
  private lastTickAt = 0;
  private timer?: NodeJS.Timeout;
  /** Each rollout's watchers, and the view each asked for. */
  private readonly watchers = new Map<string, Map<RolloutWatcher, dispatcher.RolloutView>>();
  private readonly pendingWatch = new Map<string, string>();
  private watchTimer?: NodeJS.Timeout;
  private stopped = false;
  /** Only when spans are exported: untraced, writing stays exactly as it was. */
  private readonly traces = telemetryStatus().exporting ? new RolloutTraces() : undefined;
  private readonly coordination: Coordination;
  /** Rollouts this instance holds the lease of and has read everything about: only these it decides. */
  private readonly driven = new Set<string>();
  private readonly claiming = new Set<string>();

  constructor(private readonly opts: RolloutEngineOptions) {
    this.now = opts.now ?? Date.now;
    this.producerId = opts.publisher.head.producerId;
    this.coordination = opts.coordination ?? new SoleInstance();
    this.coordination.onLeasesLost(() => {
      if (this.driven.size > 0) this.opts.log.warn(`leases lost: no longer driving ${[...this.driven].join(', ')}`);
      this.driven.clear();
    });
  }

  /** Several instances share the rollouts (ADR 0025); alone, this one drives every rollout. */
  private get shared(): boolean {
    return this.coordination.instance !== undefined;
  }

  /** Whether this instance decides for the rollout now. */
  drives(rolloutId: string): boolean {
    return !this.shared || this.driven.has(rolloutId);
  }

  /**
   * Takes the rollout's lease (an operator's call on it, or a rollout whose driver died) and reads
   * the log to its end first, so the decisions start from everything the previous driver wrote.
   * Throws RolloutDrivenElsewhereError while another live instance holds it.
   */
  async drive(rolloutId: string): Promise<void> {
    if (this.drives(rolloutId)) return;
    if (!(await this.coordination.claim(rolloutId))) {
      const holder = await this.coordination.holderOf(rolloutId).catch(() => undefined);
      throw new RolloutDrivenElsewhereError(rolloutId, holder);
    }
    await this.follower?.readToNow();
    if (!this.driven.has(rolloutId)) {
      this.driven.add(rolloutId);
      this.opts.log.log(`driving rollout ${rolloutId} (lease taken, log read to its end)`);
    }
  }

  /** A rollout that has something to decide (or may at any moment): it needs a driver. */
  private wantsDriver(run: RolloutRun): boolean {
    if (run.status === 'running' || run.status === 'rolling-back') return true;
    // A completed rollout re-applies after a host's reboot.
    return run.status === 'completed' && nextEvents(run, this.context()).length > 0;
  }

  /** Tries to take a rollout nobody here drives; in the background, so ticks go on meanwhile. */
  private takeOver(rolloutId: string): void {
    if (this.claiming.has(rolloutId) || this.stopped) return;
    this.claiming.add(rolloutId);
    void this.drive(rolloutId)
      .then(
        () => {
          this.dirty.add(rolloutId);
          this.scheduleTick();
        },
        (error: unknown) => {
          if (!(error instanceof RolloutDrivenElsewhereError))
            this.opts.log.warn(`cannot take the lease of rollout ${rolloutId}: ${String(error)}`);
        },
      )
      .finally(() => this.claiming.delete(rolloutId));
  }

  /** Rebuilds the state from the whole log; resolves once it reached the end the log had at start. */
  async start(): Promise<void> {
    const began = this.now();
    this.follower = await EventLogFollower.start({
      kafka: this.opts.kafka,
      topic: this.opts.topic,
      types: FOLLOWED,
      serviceKeys: () => {
        const keys = new Map(this.opts.serviceKeys?.() ?? []);
        keys.set(this.producerId, [...(keys.get(this.producerId) ?? []), this.opts.publisher.key.rawPublicKey]);
        return keys;
      },
      unsealedTailTimeoutMs: this.opts.unsealedTailTimeoutMs ?? SEAL_LANDS_WITHIN_MS,
      onEvents: (batch) => this.onEvents(batch),
      onError: (error) => this.opts.log.warn(String(error)),
      onFinding: (f) => this.opts.log.warn(`event log: ${f.kind}: ${f.detail}; not acted on`),
    });
    await this.follower.caughtUp;
    const backlog = this.backlog!;
    this.backlog = undefined;
    this.foldBacklog(backlog);
    const runs = [...this.book.all()];
    this.opts.log.log(
      `rebuilt from the event log in ${this.now() - began} ms: ${backlog.read} events, ${runs.length} rollout(s) ` +
        `(${runs.filter((r) => r.status === 'running' || r.status === 'rolling-back').length} active), ` +
        `${this.fleet.size} host(s)`,
    );
    for (const run of runs) this.dirty.add(run.rolloutId);
    this.timer = setInterval(() => this.scheduleTick(true), this.opts.tickIntervalMs);
    this.scheduleTick();
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    if (this.watchTimer) clearTimeout(this.watchTimer);
    await this.lock.catch(() => undefined);
    await this.follower?.stop();
    await this.coordination.close();
  }

  /** Runs `work` alone: decisions are taken on a state nobody else is changing. */
  exclusive<T>(work: () => Promise<T>): Promise<T> {
    const run = this.lock.then(work, work);
    this.lock = run.catch(() => undefined);
    return run;
  }

  get(rolloutId: string): RolloutRun {
    const run = this.book.get(rolloutId);
    if (!run) throw new RolloutNotFoundError(rolloutId);
    return run;
  }

  view(run: RolloutRun, view?: dispatcher.RolloutView): dispatcher.Rollout {
    return rolloutView(run, this.now(), view);
  }

  /** Writes a rollout's events (before their effects), folds them in, then carries out the effects. */
  async write(run: RolloutRun | undefined, decided: readonly RolloutEvent[], actor?: events.Actor): Promise<void> {
    const first = decided[0];
    if (!first) return;
    // A new rollout's lease is free and there is nothing to read about it: its creator drives it.
    // Any other write needs the lease held.
    if (!run && first.type === 'RolloutCreated') {
      const id = first.data.rolloutId;
      if (this.shared && !(await this.coordination.claim(id))) throw new RolloutDrivenElsewhereError(id, undefined);
      if (this.shared) this.driven.add(id);
    } else if (!this.drives(run?.rolloutId ?? first.data.rolloutId))
      throw new RolloutDrivenElsewhereError(run?.rolloutId ?? first.data.rolloutId, undefined);
    // The lease may have gone with a session this instance can no longer reach (ADR 0025): asked
    // before each write, so an instance cut off from the database stops deciding within seconds.
    if (this.shared && !(await this.coordination.confirmLeases()))
      throw new RolloutDrivenElsewhereError(run?.rolloutId ?? first.data.rolloutId, undefined);
    for (let i = 0; i < decided.length; i += WRITE_CHUNK) {
      const chunk = decided.slice(i, i + WRITE_CHUNK);
      const at = this.now();
      const rolloutId = chunk[0]!.data.rolloutId;
      const by = actor ?? this.opts.actor;
      const drafts: EventDraft[] = chunk.map((e) => ({
        stream: streamOf(e),
        payload: e as EventPayload,
        actor: by,
        correlationId: rolloutId,
        occurredAt: new Date(at),
      }));
      const contexts = this.traces?.contextsFor(chunk);
      if (!contexts) await this.opts.publisher.publish(drafts);
      else await this.publishIn(contexts, drafts);
      // A command the fold already holds came from the instance that took this rollout over while
      // this write was on its way (same id, ADR 0025): that instance's copy was sent, this is not.
      const folded = chunk.map((e) => this.book.evolve(e, { at, actor: by }) !== undefined);
      for (const e of chunk) this.noteCommand(e);
      for (const [j, e] of chunk.entries()) if (folded[j]) this.carryOut(e, contexts?.[j]);
      this.traces?.written(chunk);
      for (const type of new Set(chunk.map((e) => e.type))) this.changed(run?.rolloutId ?? rolloutId, type);
    }
  }

  /** Each run of drafts sharing a context is published in it, so its producer spans hang there. */
  private async publishIn(contexts: readonly Context[], drafts: readonly EventDraft[]): Promise<void> {
    for (let from = 0; from < drafts.length;) {
      let to = from + 1;
      while (to < drafts.length && contexts[to] === contexts[from]) to += 1;
      await withContext(contexts[from]!, () => this.opts.publisher.publish(drafts.slice(from, to)));
      from = to;
    }
  }

  /**
   * Why the gateway must refuse to relay `body` for `hostId`, or undefined: the producer
   * authority table (its own host only, in what it may say), the command it answers (one this
   * dispatcher sent to that host; docs/adr/0012) and the revocations of its key.
   */
  relayRefusal(hostId: string, body: events.EventBody): string | undefined {
    const why = authorityViolation(body, (id) => this.commandHosts.get(id)) ?? this.agentKeys.revocationOf(body);
    if (why) return why;
    const command = commandAnswered(body);
    if (command && !command.startsWith(AGENT_OWN_COMMAND) && !this.commandHosts.has(command))
      return `${body.producer?.producerId ?? ''} seq ${body.producer?.seq ?? '?'} (${body.type}): it answers command ${command}, which this dispatcher never sent to ${hostId}`;
    return undefined;
  }

  /**
   * An operator revokes a host's agent key (one epoch's, or every epoch's bound so far): the
   * revocation is written first, then counts here at once, so the next relay under it is refused.
   */
  async revokeAgentKey(
    hostId: string,
    epoch: number,
    reason: string,
    actor: events.Actor,
  ): Promise<{ revoked: events.AgentKeyRevoked; epochs: number[]; keyFingerprints: string[] }> {
    const producerId = `agent/${hostId}`;
    const bound = this.agentKeys.boundEpochs(producerId).filter((b) => epoch === 0 || b.epoch === epoch);
    if (bound.length === 0)
      throw new AgentKeyNotFoundError(
        epoch === 0
          ? `no agent key of host ${hostId} is bound (or every one is revoked already): the gateway binds one when the host's agent first relays`
          : `no agent key of host ${hostId} is bound for epoch ${epoch} (bound: ${
              this.agentKeys
                .boundEpochs(producerId)
                .map((b) => b.epoch)
                .join(', ') || 'none'
            })`,
      );
    const revoked: events.AgentKeyRevoked = { hostId, producerId, epoch, reason };
    await this.opts.publisher.publish([
      { stream: `host/${hostId}`, actor, payload: { type: 'AgentKeyRevoked', data: revoked } },
    ]);
    this.revoke(revoked);
    return {
      revoked,
      epochs: bound.map((b) => b.epoch),
      keyFingerprints: bound.map((b) => keyFingerprint(b.publicKey)),
    };
  }

  private noteCommand(e: RolloutEvent): void {
    if (e.type === 'HostApplyRequested' || e.type === 'HostRevertRequested')
      this.commandHosts.set(e.data.commandId, e.data.hostId);
  }

  /**
   * Whether the log already holds this agent envelope (as read so far): an agent re-sends what
   * it was not told was written, as when the instance that wrote it died before answering.
   */
  alreadyInLog(envelope: Uint8Array): boolean {
    return this.follower?.holds(envelope) ?? false;
  }

  /**
   * Whether the log was read up to the end it has now within `timeoutMs`: then alreadyInLog()
   * knows everything written before this call, an instance that died since included.
   */
  async logReadToNow(timeoutMs: number): Promise<boolean> {
    if (!this.follower) return false;
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<false>((resolve) => (timer = setTimeout(() => resolve(false), timeoutMs)));
    try {
      return await Promise.race([this.follower.readToNow().then(() => true), late]);
    } catch {
      return false; // Kafka could not say where the log ends
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * A command sent to a host outside a rollout (a quarantine to clear): its answer is the host's
   * to give. `sentHere`: the operation sent it to the agent, connected here when it was written.
   */
  noteHostCommand(commandId: string, hostId: string, sentHere = false): void {
    this.commandHosts.set(commandId, hostId);
    if (sentHere) this.sentByOperation.add(commandId);
  }

  /** A dispatcher instance's host command, read from the log: kept until its agent answers it. */
  private foldHostCommand(body: events.EventBody): UnansweredHostCommand | undefined {
    const clear = body.quarantineClearRequested;
    const by = body.producer?.producerId ?? '';
    if (!clear || producerOf(by).kind !== 'dispatcher') return undefined;
    const { commandId, hostId, patchId, version, reason } = clear;
    this.noteHostCommand(commandId, hostId);
    const command: UnansweredHostCommand = {
      hostId,
      byPeer: by !== this.producerId,
      clearQuarantine: {
        commandId,
        patchId,
        version,
        reason,
        ...(clear.expiresAt ? { expiresAt: clear.expiresAt } : {}),
      },
    };
    this.unansweredHostCommands.add(command, this.now());
    return command;
  }

  /**
   * A host command read live whose agent is connected here: this instance carries it (commands
   * go through the log, ADR 0025), unless the operation that wrote it here already sent it. The
   * agent may have moved here since it was written, or from here: whoever holds it sends it.
   */
  private carryHostCommand(command: UnansweredHostCommand | undefined): void {
    if (!command) return;
    const { commandId } = command.clearQuarantine;
    if (this.sentByOperation.delete(commandId) || !this.agents.isOnline(command.hostId)) return;
    this.sendHostCommand(command);
  }

  /** A peer's command is answered to it through the log or, when refused, the coordination database. */
  private sendHostCommand(command: UnansweredHostCommand): void {
    if (command.byPeer) this.carriedForPeers.add(command.clearQuarantine.commandId);
    this.agents.send(command.hostId, { clearQuarantine: command.clearQuarantine });
  }

  /**
   * An agent connected here answered a command: one another instance wrote is kept for it when
   * it is not a success (a refusal leaves no event; a success is proved by the agent's fact).
   */
  hostCommandAnswered(hostId: string, result: dispatcher.CommandResult): void {
    if (this.commandHosts.get(result.commandId) !== hostId) return;
    if (result.outcome === dispatcher.CommandOutcome.COMMAND_OUTCOME_ACCEPTED) return;
    this.unansweredHostCommands.settle(result.commandId);
    if (!this.carriedForPeers.has(result.commandId)) return;
    this.carriedForPeers.delete(result.commandId);
    if (result.outcome === dispatcher.CommandOutcome.COMMAND_OUTCOME_SUCCEEDED) return;
    const { commandId, outcome, stage, error } = result;
    this.coordination
      .recordAnswer({ commandId, outcome, stage, error })
      .catch((e: unknown) => this.opts.log.warn(`cannot keep the answer to command ${commandId}: ${String(e)}`));
  }

  /** The agent's sealed record that it carried a host command out: its caller's answer, wherever the agent is. */
  private hostCommandDone(body: events.EventBody): void {
    const cleared = body.patchQuarantineCleared;
    if (!cleared || this.commandHosts.get(cleared.commandId) !== cleared.hostId) return;
    this.unansweredHostCommands.settle(cleared.commandId);
    this.agents.answered(cleared.hostId, {
      commandId: cleared.commandId,
      outcome: dispatcher.CommandOutcome.COMMAND_OUTCOME_SUCCEEDED,
      stage: 'done',
      error: '',
      forced: false,
      stack: [],
    });
  }

  private foldKey(body: events.EventBody): void {
    if (body.agentKeyBound) this.agentKeys.bind(body.agentKeyBound);
    else if (body.agentKeyRevoked) this.revoke(body.agentKeyRevoked);
  }

  /**
   * A revocation counts here at once (whichever instance wrote it): the host's stream here is cut
   * unless its agent said at hello a key still bound, so a host holding a key the fleet no
   * longer trusts is not left connected and sent commands (docs/adr/0028).
   */
  private revoke(r: events.AgentKeyRevoked): void {
    const keys = this.agentKeys
      .boundEpochs(r.producerId)
      .filter((b) => r.epoch === 0 || b.epoch === r.epoch)
      .map((b) => `epoch ${b.epoch} (key ${keyFingerprint(b.publicKey)})`);
    if (this.agentKeys.revoke(r) === 0) return;
    const trusted = (key: Uint8Array) => this.agentKeys.keysOf(r.producerId).some((k) => Buffer.from(k).equals(key));
    const why =
      `an operator revoked the agent key of host ${r.hostId}, ${keys.join(', ')}` +
      `${r.reason ? ` (${r.reason})` : ''}: the stream is closed; a rebuilt host re-enrols with a new key`;
    this.agents.revoked(r.hostId, trusted, why);
  }

  /** Why a hello must be refused: the key the agent says it signs with was revoked. */
  helloRefusal(hostId: string, agentKey: Uint8Array): string | undefined {
    if (agentKey.length === 0 || !this.agentKeys.isRevoked(`agent/${hostId}`, agentKey)) return undefined;
    return (
      `agent/${hostId}: its key ${keyFingerprint(agentKey)} was revoked by an operator; ` +
      'the host may connect again only with a new key (a rebuilt host re-enrols with one)'
    );
  }

  /** A host's agent connected: what was sent to it and not answered goes again, same command id. */
  agentConnected(hostId: string): void {
    const now = this.now();
    this.coordination.agentAttached(hostId, now);
    for (const run of this.book.all()) {
      const host = run.hosts.get(hostId);
      if (!host) continue;
      const trace = this.traces?.commandFields(run.rolloutId);
      if (host.revert && !host.revertOutcome && now <= host.revert.expiresAt) {
        this.agents.send(hostId, { revert: this.revertCommand(run, hostId), ...trace });
      } else if (!host.revert && host.apply && !host.applyOutcome && now <= host.apply.expiresAt) {
        this.agents.send(hostId, { apply: this.applyCommand(run, hostId), ...trace });
      }
      this.dirty.add(run.rolloutId);
    }
    for (const command of this.unansweredHostCommands.of(hostId, now)) this.sendHostCommand(command);
    this.scheduleTick();
  }

  agentDisconnected(hostId: string): void {
    // A stale stream of a host that has a newer one here says nothing about where it is.
    if (!this.agents.isOnline(hostId)) this.coordination.agentDetached(hostId, this.now());
    for (const run of this.book.all()) if (run.hosts.has(hostId)) this.dirty.add(run.rolloutId);
    this.scheduleTick();
  }

  watch(
    rolloutId: string,
    watcher: RolloutWatcher,
    view: dispatcher.RolloutView = dispatcher.RolloutView.ROLLOUT_VIEW_FULL,
  ): () => void {
    let set = this.watchers.get(rolloutId);
    if (!set) this.watchers.set(rolloutId, (set = new Map()));
    set.set(watcher, view);
    return () => {
      set.delete(watcher);
      if (set.size === 0) this.watchers.delete(rolloutId);
    };
  }

  scheduleTick(everything = false): void {
    if (everything) {
      for (const run of this.book.all()) {
        if (run.status === 'running' || run.status === 'rolling-back' || run.status === 'paused') {
          this.dirty.add(run.rolloutId);
        }
      }
    }
    if (this.tickQueued || this.stopped || this.backlog) return;
    this.tickQueued = true;
    const run = () => {
      this.tickQueued = false;
      this.lastTickAt = this.now();
      void this.exclusive(() => this.tick()).catch((error: unknown) =>
        this.opts.log.error(`rollout step failed: ${String(error)}`, error instanceof Error ? error.stack : undefined),
      );
    };
    // A decision costs time in proportion to the rollout's hosts: with thousands of answers a
    // second they are gathered, so a big rollout is looked at every few tens of ms, not per answer.
    const wait = this.lastTickAt + this.tickGapMs() - this.now();
    if (wait > 0) setTimeout(run, wait);
    else setImmediate(run);
  }

  private tickGapMs(): number {
    let hosts = 0;
    for (const id of this.dirty) hosts = Math.max(hosts, this.book.get(id)?.hosts.size ?? 0);
    return Math.min(MAX_TICK_GAP_MS, Math.floor(hosts / 20));
  }

  private async tick(): Promise<void> {
    const ids = [...this.dirty];
    this.dirty.clear();
    for (const id of ids) {
      const run = this.book.get(id);
      if (!run) continue;
      if (!this.drives(id)) {
        // Its driver may have died: the lease is free once its session ended (ADR 0025).
        if (this.wantsDriver(run)) this.takeOver(id);
        continue;
      }
      // Each round's events are folded before the next round is decided.
      for (let round = 0; round < 10_000 && !this.stopped && this.drives(id); round++) {
        const decided = nextEvents(run, this.context());
        if (decided.length === 0) break;
        await this.write(run, decided);
        // Commands alone: the next look comes with the hosts' answers, after the gap. Looking again
        // at once decided on the few answers that came during the write, each time a scan of every
        // host: at 100,000 hosts nine a second, a sixth of the driving instance's CPU (ADR 0029).
        if (decided.every((e) => isCommandToHost(e.type))) {
          this.dirty.add(id);
          break;
        }
      }
      if (this.shared && this.driven.has(id) && !this.wantsDriver(run)) {
        // Nothing left to decide: the lease goes back, for whichever instance an operator asks next.
        this.driven.delete(id);
        await this.coordination.release(id).catch((e: unknown) => this.opts.log.warn(String(e)));
      }
    }
    if (this.dirty.size > 0) this.scheduleTick();
  }

  private context(): TickContext {
    return {
      now: this.now(),
      // Connected here, or to another live instance, which delivers what it reads in the log.
      isOnline: (hostId) => this.agents.isOnline(hostId) || this.coordination.elsewhere(hostId)?.online === true,
      offlineSince: (hostId) => {
        if (this.agents.isOnline(hostId)) return undefined;
        const elsewhere = this.coordination.elsewhere(hostId);
        if (elsewhere?.online) return undefined;
        const here = this.agents.offlineSince(hostId);
        const there = elsewhere?.offlineSince;
        return here === undefined ? there : there === undefined ? here : Math.max(here, there);
      },
      // Away from here, or from the instance that held them: as few as are away, not every host.
      awayHosts: () => [...this.agents.awayHosts(), ...this.coordination.awayElsewhere()],
      artifactFor: (run, hostId, which = run) => {
        const host = this.fleet.get(hostId);
        const patch = this.catalog.find(which.patchId, which.version);
        if (!host || !patch || patch.retracted !== undefined) return undefined;
        const artifact = patch.artifacts.get(host.kernelRelease);
        return artifact && { kernelRelease: artifact.kernelRelease, artifactDigest: artifact.artifactDigest };
      },
      silenceGraceMs: this.opts.silenceGraceMs,
      retraction: (run) => this.catalog.find(run.patchId, run.version)?.retracted,
    };
  }

  /** `trace`: the context the event was written in; the command carries it to the agent. */
  private carryOut(e: RolloutEvent, trace?: Context): void {
    if (e.type === 'HostApplyRequested') {
      const { hostId, rolloutId } = e.data;
      const apply = this.applyCommand(this.book.get(rolloutId)!, hostId);
      this.agents.send(hostId, trace ? { apply, ...traceFields(trace) } : { apply });
    } else if (e.type === 'HostRevertRequested') {
      const { hostId, rolloutId } = e.data;
      const revert = this.revertCommand(this.book.get(rolloutId)!, hostId);
      this.agents.send(hostId, trace ? { revert, ...traceFields(trace) } : { revert });
    }
  }

  private applyCommand(run: RolloutRun, hostId: string): dispatcher.ApplyCommand {
    const apply = run.hosts.get(hostId)!.apply!;
    return {
      commandId: apply.commandId,
      expiresAt: timestamp(apply.expiresAt),
      rolloutId: run.rolloutId,
      patchId: apply.patchId,
      version: apply.version,
      kernelRelease: apply.kernelRelease,
      artifactDigest: apply.artifactDigest,
      allowForce: apply.allowForce,
      allowDowngrade: apply.allowDowngrade,
    };
  }

  private revertCommand(run: RolloutRun, hostId: string): dispatcher.RevertCommand {
    const revert = run.hosts.get(hostId)!.revert!;
    return {
      commandId: revert.commandId,
      expiresAt: timestamp(revert.expiresAt),
      rolloutId: run.rolloutId,
      patchId: revert.patchId,
      version: revert.version,
      moduleName: revert.moduleName,
      reason: run.undo ? 'undo' : 'roll-back',
    };
  }

  private onEvents(batch: FollowedEvent[]): void {
    if (this.backlog) {
      for (const e of batch) this.keepForRebuild(this.backlog, e.body);
      return;
    }
    for (const e of batch) {
      if (ROLLOUT_EVENTS.has(e.body.type)) {
        // Our own were folded when written; another instance's are folded here, and its commands
        // to agents connected here are delivered by this instance (ADR 0025).
        if (e.body.producer?.producerId !== this.producerId) this.foldPeerRolloutEvent(e);
        continue;
      }
      if (KEY_EVENTS.has(e.body.type)) {
        this.foldKey(e.body);
        continue;
      }
      if (HOST_COMMANDS.has(e.body.type)) {
        this.carryHostCommand(this.foldHostCommand(e.body));
        continue;
      }
      if (HOST_COMMAND_DONE.has(e.body.type)) {
        this.hostCommandDone(e.body);
        continue;
      }
      this.foldFact(e.body);
    }
    this.scheduleTick();
  }

  /** Another instance's rollout event, read live: folded, and its command sent if its agent is here. */
  private foldPeerRolloutEvent(e: FollowedEvent): void {
    const payload = payloadOf(e.body) as RolloutEvent | undefined;
    if (!payload || producerOf(e.body.producer?.producerId ?? '').kind !== 'dispatcher') return;
    const run = this.book.evolve(payload, {
      at: occurredAt(e.body),
      ...(e.body.actor ? { actor: e.body.actor } : {}),
    });
    this.noteCommand(payload);
    // Not folded: a step read before its rollout, or a command already sent under the same id.
    if (!run) return;
    this.carryOut(payload);
    this.changed(payload.data.rolloutId, payload.type);
  }

  /**
   * Partitions interleave arbitrarily, so the rebuild does not trust the read order: patches and
   * enrolments as they are read, then the dispatchers' events (each instance's in its chain order:
   * epoch and seq), then the agents' answers in the order they happened.
   */
  private keepForRebuild(backlog: Backlog, body: events.EventBody): void {
    backlog.read += 1;
    if (PATCH_EVENTS.has(body.type) || body.type === 'HostEnrolled') this.foldFact(body);
    else if (ROLLOUT_EVENTS.has(body.type)) {
      // Every dispatcher instance's (ADR 0025), not just this one's.
      if (producerOf(body.producer?.producerId ?? '').kind === 'dispatcher') backlog.rollouts.push(body);
    } else if (KEY_EVENTS.has(body.type)) backlog.keys.push(body);
    else if (HOST_COMMANDS.has(body.type)) this.foldHostCommand(body);
    // After its command: both on the host's stream, in one partition.
    else if (HOST_COMMAND_DONE.has(body.type)) this.hostCommandDone(body);
    else backlog.facts.push(body);
  }

  private foldBacklog({ rollouts: own, keys, facts }: Backlog): void {
    const chainOrder = (a: events.EventBody, b: events.EventBody) =>
      a.producer!.epoch - b.producer!.epoch || Number(a.producer!.seq) - Number(b.producer!.seq);
    // One instance's chain in its order (as ever); several instances' by time, then chain (a
    // rollout's next driver wrote only after reading what the last one wrote; ADR 0025).
    const producers = new Set(own.map((b) => b.producer!.producerId));
    if (producers.size <= 1) own.sort(chainOrder);
    else
      own.sort(
        (a, b) =>
          occurredAt(a) - occurredAt(b) ||
          a.producer!.producerId.localeCompare(b.producer!.producerId) ||
          chainOrder(a, b),
      );
    for (const body of own) {
      const payload = payloadOf(body) as RolloutEvent | undefined;
      if (!payload) continue;
      this.book.evolve(payload, { at: occurredAt(body), ...(body.actor ? { actor: body.actor } : {}) });
      this.noteCommand(payload);
    }
    // Bindings and revocations in the order the gateway wrote them (a revocation after its binding).
    keys.sort(chainOrder);
    for (const body of keys) this.foldKey(body);
    facts.sort((a, b) => occurredAt(a) - occurredAt(b));
    for (const body of facts) this.foldFact(body);
  }

  private foldFact(body: events.EventBody): void {
    const at = occurredAt(body);
    switch (body.type) {
      case 'BuildSucceeded':
        if (body.buildSucceeded) this.catalog.buildSucceeded(body.buildSucceeded);
        return;
      case 'PatchPublished':
        if (body.patchPublished) this.catalog.patchPublished(body.patchPublished);
        return;
      case 'PatchRetracted':
        if (body.patchRetracted) this.catalog.patchRetracted(body.patchRetracted);
        // Running rollouts of that patch are looked at: the decider aborts them.
        this.scheduleTick(true);
        return;
      case 'HostEnrolled':
        if (body.hostEnrolled?.facts) this.fleet.observeFacts(body.hostEnrolled.facts);
        return;
      case 'HostInventoryReported':
        if (body.hostInventoryReported?.facts) {
          this.fleet.observeFacts(body.hostInventoryReported.facts, body.hostInventoryReported.patches);
        }
        break;
      case 'HostBooted':
        if (body.hostBooted) this.fleet.observeBoot(body.hostBooted);
        break;
      case 'PatchApplied':
        if (body.patchApplied) this.fleet.observeStack(body.patchApplied.hostId, body.patchApplied.stack);
        break;
      case 'PatchReverted':
        if (body.patchReverted) this.fleet.observeStack(body.patchReverted.hostId, body.patchReverted.stack);
        break;
    }
    const fact = payloadOf(body) as HostFactEvent | undefined;
    if (!fact || !ROLLOUT_FACTS.has(fact.type)) return;
    for (const run of this.book.observe(fact, { at })) this.changed(run.rolloutId, fact.type);
  }

  private changed(rolloutId: string, eventType: string): void {
    this.dirty.add(rolloutId);
    if (!this.watchers.has(rolloutId)) return;
    // A step of the rollout itself is told at once; host progress is gathered, or thousands of
    // answers would each cost a full view.
    if (ROLLOUT_EVENTS.has(eventType) && !isCommandToHost(eventType)) {
      // Host progress gathered before the step is told first: a watcher sees the hosts' answers
      // that completed a wave before the wave's completion, never instead of it.
      const gathered = this.pendingWatch.get(rolloutId);
      this.pendingWatch.delete(rolloutId);
      if (gathered) this.tell(rolloutId, gathered);
      this.tell(rolloutId, eventType);
      return;
    }
    // A gathered update is named by the host's answer it holds, not by a command sent after it.
    const gathered = this.pendingWatch.get(rolloutId);
    if (!gathered || isCommandToHost(gathered) || !isCommandToHost(eventType))
      this.pendingWatch.set(rolloutId, eventType);
    this.watchTimer ??= setTimeout(() => {
      this.watchTimer = undefined;
      const pending = [...this.pendingWatch];
      this.pendingWatch.clear();
      for (const [id, type] of pending) this.tell(id, type);
    }, WATCH_COALESCE_MS);
  }

  private tell(rolloutId: string, eventType: string): void {
    const run = this.book.get(rolloutId);
    const set = this.watchers.get(rolloutId);
    if (!run || !set) return;
    // Each view asked for is made once per update, whatever the number of its watchers.
    const views = new Map<dispatcher.RolloutView, dispatcher.Rollout>();
    for (const [watcher, kind] of [...set]) {
      let view = views.get(kind);
      if (!view) views.set(kind, (view = this.view(run, kind)));
      watcher(view, eventType);
    }
  }
}

/** A rollout's command to one host (written on the host's stream), not a step of the rollout itself. */
function isCommandToHost(eventType: string): boolean {
  return eventType === 'HostApplyRequested' || eventType === 'HostRevertRequested';
}

function streamOf(e: RolloutEvent): string {
  // Commands share their host's partition with the host's facts, so their order is kept.
  if (e.type === 'HostApplyRequested' || e.type === 'HostRevertRequested') return `host/${e.data.hostId}`;
  return `rollout/${e.data.rolloutId}`;
}

function occurredAt(body: events.EventBody): number {
  return body.occurredAt ? fromTimestamp(body.occurredAt).getTime() : 0;
}

function timestamp(ms: number) {
  return toTimestamp(new Date(ms));
}
