// A rollout's state is a fold over events: the dispatcher's own decisions (RolloutCreated,
// WaveStarted, HostApplyRequested, ...) and the facts agents report about the commands
// (PatchApplied, PatchApplyFailed, ...). Rebuilding it means replaying the log; nothing else is kept.
// Agent facts may arrive before the command they answer (other partitions, replay order), so
// outcomes are matched to commands by command id in whichever order the two arrive.
import { events } from '@rebootless/contracts';

export const ROLLOUT_STATUSES = ['running', 'paused', 'completed', 'aborted', 'rolling-back', 'rolled-back'] as const;
export type RolloutStatus = (typeof ROLLOUT_STATUSES)[number];

/** The dispatcher's rollout events, as the log carries them. */
export type RolloutEvent =
  | { type: 'RolloutCreated'; data: events.RolloutCreated }
  | { type: 'RolloutApproved'; data: events.RolloutApproved }
  | { type: 'WaveStarted'; data: events.WaveStarted }
  | { type: 'HostApplyRequested'; data: events.HostApplyRequested }
  | { type: 'HostRevertRequested'; data: events.HostRevertRequested }
  | { type: 'WaveCompleted'; data: events.WaveCompleted }
  | { type: 'RolloutPaused'; data: events.RolloutPaused }
  | { type: 'RolloutResumed'; data: events.RolloutResumed }
  | { type: 'RolloutAborted'; data: events.RolloutAborted }
  | { type: 'RolloutCompleted'; data: events.RolloutCompleted };

/** The agent facts a rollout listens to. */
export type HostFactEvent =
  | { type: 'PatchApplied'; data: events.PatchApplied }
  | { type: 'PatchApplyFailed'; data: events.PatchApplyFailed }
  | { type: 'PatchReverted'; data: events.PatchReverted }
  | { type: 'PatchRevertFailed'; data: events.PatchRevertFailed }
  | { type: 'DriftDetected'; data: events.DriftDetected }
  | { type: 'HostBooted'; data: events.HostBooted }
  | { type: 'HostInventoryReported'; data: events.HostInventoryReported };

export interface EventMeta {
  /** occurred_at, ms. */
  at: number;
  actor?: events.Actor;
}

export interface HostCommand {
  commandId: string;
  requestedAt: number;
  expiresAt: number;
}

export type CommandOutcome =
  | { kind: 'applied'; at: number; moduleName: string; transitionMs: number; forced: boolean; replace: boolean }
  | { kind: 'apply-failed'; at: number; stage: string; error: string; stalledTasks: number }
  | { kind: 'reverted'; at: number }
  | { kind: 'revert-failed'; at: number; stage: string; error: string };

export interface HostRun {
  hostId: string;
  wave: number;
  /** The patch is the rollout's, or in an undo the one its step loads again. */
  apply?: HostCommand & {
    kernelRelease: string;
    artifactDigest: string;
    patchId: string;
    version: string;
    allowForce: boolean;
    allowDowngrade: boolean;
  };
  applyOutcome?: CommandOutcome;
  revert?: HostCommand & { moduleName: string; patchId: string; version: string };
  revertOutcome?: CommandOutcome;
  /** A fact after the apply that fails the health gate (drift, kernel warning). */
  issue?: { at: number; what: string };
  /** The host booted after the apply: its live patches are gone. */
  rebootedAt?: number;
  /** In an undo: the step (1-based) the latest command carries out. */
  undoStep?: number;
  /** In an undo: how many steps of the host's plan the agent's facts (or a new boot) confirmed. */
  undoStepsDone?: number;
  /** In an undo: when the last step was confirmed; a boot after it completes a reboot step. */
  undoStepDoneAt?: number;
}

export interface WaveRun {
  index: number;
  name: string;
  hostIds: readonly string[];
  startedAt?: number;
  completedAt?: number;
}

export interface RolloutRun {
  rolloutId: string;
  patchId: string;
  version: string;
  undo: boolean;
  reason: string;
  selector: events.HostSelector;
  strategy: events.RolloutStrategy;
  allowForce: boolean;
  allowDowngrade: boolean;
  /** For an undo: the module each host disables. */
  undoModules: ReadonlyMap<string, string>;
  /** For an undo: each host's steps, in order (one revert of its undoModules entry when none were recorded). */
  undoPlans: ReadonlyMap<string, readonly events.UndoPlanStep[]>;
  waves: WaveRun[];
  hosts: Map<string, HostRun>;
  skippedHostIds: readonly string[];
  status: RolloutStatus;
  statusReason: string;
  approvedWaves: Set<number>;
  /**
   * When an operator last resumed it: a failure that arose at or before then was accepted and no
   * longer counts against the budgets (forgiven). A time, not the set of hosts failing when the
   * resume was read, so that the fold does not depend on how a reader of several partitions
   * interleaved the agents' facts with the resume.
   */
  resumedAt?: number;
  createdAt: number;
  createdBy?: events.Actor;
  updatedAt: number;
  /** When the roll-back began. */
  rollbackAt?: number;
}

const KERNEL_WARNING_TAINT = 512;

/** What waits for a rollout not yet created: one of its steps, or a host fact read after one. */
type Waiting =
  | { event: RolloutEvent; meta: EventMeta }
  | { commandId: string; hostId?: string; outcome: CommandOutcome }
  | { bootedAt: number; issue?: undefined; at?: undefined }
  | { issue: string; at: number; bootedAt?: undefined };

/** Every rollout, and the index that lets agent facts find the rollout a command belongs to. */
export class RolloutBook {
  private readonly runs = new Map<string, RolloutRun>();
  private readonly commands = new Map<string, { rolloutId: string; hostId: string }>();
  private readonly unmatched = new Map<string, CommandOutcome & { hostId?: string }>();
  private readonly rolloutsOfHost = new Map<string, Set<string>>();
  private readonly warnedHosts = new Set<string>();
  /**
   * Steps read before their RolloutCreated (the ledger reads partitions in any interleaving), by
   * rollout and host, with the host facts read after them that concern the rollout.
   */
  private readonly early = new Map<string, Map<string, Waiting[]>>();
  private readonly leftoverChanges = new Set<string>();

  /**
   * keepOutcomes 'for-waiting-steps': an outcome whose command the book has not seen is kept
   * only when a step waiting for its rollout carries that command, after it in the order read.
   * Exact for a reader that sees a host's commands and facts in their order (one partition, the
   * ledger): any other outcome's command will never come.
   */
  constructor(private readonly opts: { keepOutcomes?: 'all' | 'for-waiting-steps' } = {}) {}

  get(rolloutId: string): RolloutRun | undefined {
    return this.runs.get(rolloutId);
  }

  all(): IterableIterator<RolloutRun> {
    return this.runs.values();
  }

  /** Which rollout and host a command id belongs to. */
  commandOf(commandId: string): { rolloutId: string; hostId: string } | undefined {
    return this.commands.get(commandId);
  }

  /** Folds one of the dispatcher's own events; returns the rollout it changed. */
  evolve(event: RolloutEvent, meta: EventMeta): RolloutRun | undefined {
    if (event.type === 'RolloutCreated') {
      const d = event.data;
      if (this.runs.has(d.rolloutId)) return undefined;
      const run: RolloutRun = {
        rolloutId: d.rolloutId,
        patchId: d.patchId,
        version: d.version,
        undo: d.undo,
        reason: d.reason,
        selector: d.selector ?? { kernelReleases: [], labels: {}, hostIds: [] },
        // The dispatcher always plans one; a reader of any log folds a missing one as all defaults.
        strategy: d.strategy ?? events.RolloutStrategy.decode(new Uint8Array(0)),
        allowForce: d.allowForce,
        allowDowngrade: d.allowDowngrade,
        undoModules: new Map(Object.entries(d.undoModules)),
        undoPlans: undoPlansOf(d),
        waves: d.waves.map((w) => ({ index: w.index, name: w.name, hostIds: w.hostIds })),
        hosts: new Map(),
        skippedHostIds: d.skippedHostIds,
        status: 'running',
        statusReason: '',
        approvedWaves: new Set(),
        createdAt: meta.at,
        ...(meta.actor ? { createdBy: meta.actor } : {}),
        updatedAt: meta.at,
      };
      for (const wave of d.waves) {
        for (const hostId of wave.hostIds) {
          run.hosts.set(hostId, { hostId, wave: wave.index });
          let set = this.rolloutsOfHost.get(hostId);
          if (!set) this.rolloutsOfHost.set(hostId, (set = new Set()));
          set.add(d.rolloutId);
        }
      }
      this.runs.set(d.rolloutId, run);
      const early = this.early.get(d.rolloutId);
      if (early) {
        this.early.delete(d.rolloutId);
        this.leftoverChanges.add(`early/${d.rolloutId}`);
        // Host by host, each in the order its partition gave: hosts do not touch each other's runs.
        for (const hostId of [...early.keys()].sort())
          for (const w of early.get(hostId)!) {
            if ('event' in w) this.evolve(w.event, w.meta);
            else if ('outcome' in w) this.outcome(w.commandId, w.hostId, w.outcome);
            else if (w.bootedAt !== undefined) this.booted(run, hostId, w.bootedAt, this.runsOf(hostId));
            else this.issueOn(run, hostId, w.at ?? 0, w.issue ?? '');
          }
      }
      return run;
    }
    const run = this.runs.get(event.data.rolloutId);
    if (!run) {
      // The dispatcher writes RolloutCreated first; a reader of other partitions may see a
      // command (on its host's partition) before it: the step waits for its rollout.
      const hostId = 'hostId' in event.data ? event.data.hostId : '';
      let waiting = this.early.get(event.data.rolloutId);
      if (!waiting) this.early.set(event.data.rolloutId, (waiting = new Map()));
      const list = waiting.get(hostId);
      if (list) list.push({ event, meta });
      else waiting.set(hostId, [{ event, meta }]);
      this.leftoverChanges.add(`early/${event.data.rolloutId}`);
      return undefined;
    }
    // A command already folded, written again by a driver that had lost its lease without knowing
    // it (its id is derived from the same fold, docs/adr/0025): one command, folded once, so a
    // late copy cannot undo its answer.
    if (
      (event.type === 'HostApplyRequested' || event.type === 'HostRevertRequested') &&
      this.commands.has(event.data.commandId)
    )
      return undefined;
    // A step that waited for its rollout is folded after later ones: the latest stays latest.
    run.updatedAt = Math.max(run.updatedAt, meta.at);
    switch (event.type) {
      case 'RolloutApproved':
        run.approvedWaves.add(event.data.waveIndex);
        break;
      case 'WaveStarted': {
        const wave = run.waves[event.data.waveIndex];
        // The first start stands (a late driver's copy of the step says nothing new).
        if (wave) wave.startedAt ??= meta.at;
        break;
      }
      case 'HostApplyRequested': {
        const d = event.data;
        const host = run.hosts.get(d.hostId);
        if (!host) break;
        host.apply = {
          commandId: d.commandId,
          requestedAt: meta.at,
          expiresAt: d.expiresAt ? timestampMs(d.expiresAt) : meta.at,
          kernelRelease: d.kernelRelease,
          artifactDigest: d.artifactDigest,
          patchId: d.patchId,
          version: d.version,
          allowForce: d.allowForce,
          allowDowngrade: d.allowDowngrade,
        };
        delete host.applyOutcome;
        delete host.issue;
        delete host.rebootedAt;
        if (run.undo) host.undoStep = d.undoStep || 1;
        this.commands.set(d.commandId, { rolloutId: run.rolloutId, hostId: d.hostId });
        this.matchUnmatched(d.commandId);
        break;
      }
      case 'HostRevertRequested': {
        const d = event.data;
        const host = run.hosts.get(d.hostId);
        if (!host) break;
        host.revert = {
          commandId: d.commandId,
          requestedAt: meta.at,
          expiresAt: d.expiresAt ? timestampMs(d.expiresAt) : meta.at,
          moduleName: d.moduleName,
          patchId: d.patchId,
          version: d.version,
        };
        delete host.revertOutcome;
        if (run.undo) host.undoStep = d.undoStep || 1;
        this.commands.set(d.commandId, { rolloutId: run.rolloutId, hostId: d.hostId });
        this.matchUnmatched(d.commandId);
        break;
      }
      case 'WaveCompleted': {
        const wave = run.waves[event.data.waveIndex];
        if (wave) wave.completedAt ??= meta.at;
        break;
      }
      case 'RolloutPaused':
        run.status = 'paused';
        run.statusReason = event.data.reason;
        break;
      case 'RolloutResumed':
        run.status = 'running';
        run.statusReason = '';
        run.resumedAt = Math.max(run.resumedAt ?? meta.at, meta.at);
        break;
      case 'RolloutAborted':
        run.status = event.data.rollBack ? 'rolling-back' : 'aborted';
        run.statusReason = event.data.reason;
        if (event.data.rollBack) run.rollbackAt = meta.at;
        break;
      case 'RolloutCompleted':
        run.status = event.data.rolledBack ? 'rolled-back' : 'completed';
        break;
      default:
        return assertNever(event);
    }
    return run;
  }

  /** Folds an agent fact; returns the rollouts it changed. */
  observe(fact: HostFactEvent, meta: EventMeta): RolloutRun[] {
    switch (fact.type) {
      case 'PatchApplied':
        return this.outcome(fact.data.commandId, fact.data.hostId, {
          kind: 'applied',
          at: meta.at,
          moduleName: fact.data.moduleName,
          transitionMs: Number(fact.data.transitionMs),
          forced: fact.data.forced,
          replace: fact.data.replace,
        });
      case 'PatchApplyFailed':
        return this.outcome(fact.data.commandId, fact.data.hostId, {
          kind: 'apply-failed',
          at: meta.at,
          stage: fact.data.stage,
          error: fact.data.error,
          stalledTasks: fact.data.stalledTasks.length,
        });
      case 'PatchReverted':
        return this.outcome(fact.data.commandId, fact.data.hostId, { kind: 'reverted', at: meta.at });
      case 'PatchRevertFailed':
        return this.outcome(fact.data.commandId, fact.data.hostId, {
          kind: 'revert-failed',
          at: meta.at,
          stage: fact.data.stage,
          error: fact.data.error,
        });
      case 'DriftDetected':
        return this.hostIssue(fact.data.hostId, meta.at, `drift (${fact.data.kind}): ${fact.data.detail}`);
      case 'HostInventoryReported': {
        const facts = fact.data.facts;
        if (!facts) return [];
        const warned = (Number(facts.tainted) & KERNEL_WARNING_TAINT) !== 0 || facts.taintFlags.includes('W');
        if (!warned) {
          if (this.warnedHosts.delete(facts.hostId)) this.leftoverChanges.add(`warned/${facts.hostId}`);
          return [];
        }
        // Only a warning that appears counts; one the host already had says nothing about the patch.
        if (this.warnedHosts.has(facts.hostId)) return [];
        this.warnedHosts.add(facts.hostId);
        this.leftoverChanges.add(`warned/${facts.hostId}`);
        return this.hostIssue(facts.hostId, meta.at, 'the kernel logged a warning (taint W)');
      }
      case 'HostBooted': {
        const hostId = fact.data.hostId;
        this.waitWithSteps(hostId, { bootedAt: meta.at });
        const runs = this.runsOf(hostId);
        return runs.filter((run) => this.booted(run, hostId, meta.at, runs));
      }
      default:
        return assertNever(fact);
    }
  }

  /** Takes back a rollout from its record (runRecord), with the indexes that lead facts to it. */
  restore(record: RolloutRunRecord, hosts: readonly HostRun[]): RolloutRun {
    const run = runFromRecord(record, hosts);
    this.runs.set(run.rolloutId, run);
    for (const host of run.hosts.values()) {
      let set = this.rolloutsOfHost.get(host.hostId);
      if (!set) this.rolloutsOfHost.set(host.hostId, (set = new Set()));
      set.add(run.rolloutId);
      if (host.apply) this.commands.set(host.apply.commandId, { rolloutId: run.rolloutId, hostId: host.hostId });
      if (host.revert) this.commands.set(host.revert.commandId, { rolloutId: run.rolloutId, hostId: host.hostId });
    }
    return run;
  }

  /**
   * What the book holds outside any rollout that changed since the last call, by key: an outcome
   * waiting for its command (`outcome/<command id>`), a host whose kernel warned
   * (`warned/<host id>`), steps waiting for their rollout (`early/<rollout id>`). The value is the
   * entry as JSON, or '' when it is gone. A reader that stores the book writes these.
   */
  takeLeftoverChanges(): [string, string][] {
    const out: [string, string][] = [];
    for (const key of this.leftoverChanges) {
      const [kind, id] = [key.slice(0, key.indexOf('/')), key.slice(key.indexOf('/') + 1)];
      let value: unknown;
      if (kind === 'outcome') value = this.unmatched.get(id);
      else if (kind === 'warned') value = this.warnedHosts.has(id) ? true : undefined;
      else {
        // By host id: the same entry whatever order the hosts' partitions were read in.
        const hosts = this.early.get(id);
        value = hosts && Object.fromEntries([...hosts].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
      }
      out.push([key, value === undefined ? '' : JSON.stringify(value)]);
    }
    this.leftoverChanges.clear();
    return out;
  }

  /** Takes back one entry takeLeftoverChanges gave. */
  restoreLeftover(key: string, json: string): void {
    if (!json) return;
    const id = key.slice(key.indexOf('/') + 1);
    if (key.startsWith('outcome/')) this.unmatched.set(id, JSON.parse(json) as CommandOutcome);
    else if (key.startsWith('warned/')) this.warnedHosts.add(id);
    else if (key.startsWith('early/')) {
      const stored = JSON.parse(json) as Record<string, Waiting[]> | { event: RolloutEvent; meta: EventMeta }[];
      if (!Array.isArray(stored)) {
        this.early.set(id, new Map(Object.entries(stored)));
        return;
      }
      // Stored before steps were kept by host: one list in the order read.
      const hosts = new Map<string, Waiting[]>();
      for (const w of stored) {
        const hostId = 'hostId' in w.event.data ? w.event.data.hostId : '';
        hosts.set(hostId, [...(hosts.get(hostId) ?? []), w]);
      }
      this.early.set(id, hosts);
    }
  }

  private runsOf(hostId: string): RolloutRun[] {
    return [...(this.rolloutsOfHost.get(hostId) ?? [])].map((id) => this.runs.get(id)!);
  }

  /**
   * A host fact read while a command of a rollout not yet created waits: it waits with it, so
   * that the rollout sees it after that command as it would had its RolloutCreated come first.
   */
  private waitWithSteps(hostId: string, w: Waiting): void {
    for (const [rolloutId, hosts] of this.early) {
      const list = hosts.get(hostId);
      if (!list) continue;
      list.push(w);
      this.leftoverChanges.add(`early/${rolloutId}`);
    }
  }

  /** A new boot of a host in one run; true when it changed the run. */
  private booted(run: RolloutRun, hostId: string, at: number, runs: readonly RolloutRun[]): boolean {
    const host = run.hosts.get(hostId);
    if (!host) return false;
    if (run.undo) {
      if (awaitsReboot(run, host) && at >= (host.undoStepDoneAt ?? run.waves[host.wave]?.startedAt ?? Infinity)) {
        confirmStep(host, (host.undoStepsDone ?? 0) + 1, at);
        return true;
      }
      return false;
    }
    if (
      host.applyOutcome?.kind === 'applied' &&
      host.applyOutcome.at <= at &&
      !supersededOn(hostId, run, host.applyOutcome.at, at, runs) &&
      !this.supersededWhileWaiting(hostId, run, host.applyOutcome.at, at)
    ) {
      host.rebootedAt = at;
      return true;
    }
    return false;
  }

  private hostIssue(hostId: string, at: number, what: string): RolloutRun[] {
    this.waitWithSteps(hostId, { issue: what, at });
    return this.runsOf(hostId).filter((run) => this.issueOn(run, hostId, at, what));
  }

  /** A fact after the apply that fails the health gate; true when it changed the run. */
  private issueOn(run: RolloutRun, hostId: string, at: number, what: string): boolean {
    const host = run.hosts.get(hostId);
    if (host?.applyOutcome?.kind === 'applied' && host.applyOutcome.at <= at && !host.issue) {
      host.issue = { at, what };
      return true;
    }
    return false;
  }

  /** `hostId`: the host the answer is about; a command answers only for the host it was sent to. */
  private outcome(commandId: string, hostId: string | undefined, outcome: CommandOutcome): RolloutRun[] {
    const owner = this.commands.get(commandId);
    if (!owner) {
      // Its command waits for its rollout: the outcome waits after it, in the order read.
      if (commandId && this.waitAfterCommand(commandId, hostId, outcome)) return [];
      // Not ours, or its request is further on in the replay (see keepOutcomes).
      if (commandId && !this.unmatched.has(commandId) && this.opts.keepOutcomes !== 'for-waiting-steps') {
        this.unmatched.set(commandId, hostId === undefined ? outcome : { ...outcome, hostId });
        this.leftoverChanges.add(`outcome/${commandId}`);
      }
      return [];
    }
    // Another host answering this command (issue 16): not an outcome of it, whatever it says.
    if (hostId !== undefined && hostId !== owner.hostId) return [];
    const run = this.runs.get(owner.rolloutId)!;
    const host = run.hosts.get(owner.hostId)!;
    // A command has one outcome, its first: the same command sent again (after a dispatcher
    // restart) is refused by the agent as a replay, which says nothing about the first receipt.
    if (host.apply?.commandId === commandId) {
      if (host.applyOutcome) return [];
      if (outcome.kind === 'applied' || outcome.kind === 'apply-failed') host.applyOutcome = outcome;
      if (run.undo && outcome.kind === 'applied') confirmStep(host, host.undoStep ?? 1, outcome.at);
    } else if (host.revert?.commandId === commandId) {
      if (host.revertOutcome) return [];
      if (outcome.kind === 'reverted' || outcome.kind === 'revert-failed') host.revertOutcome = outcome;
      if (run.undo && outcome.kind === 'reverted') confirmStep(host, host.undoStep ?? 1, outcome.at);
    } else {
      return [];
    }
    run.updatedAt = Math.max(run.updatedAt, outcome.at);
    return [run];
  }

  private matchUnmatched(commandId: string): void {
    const stored = this.unmatched.get(commandId);
    if (!stored) return;
    this.unmatched.delete(commandId);
    this.leftoverChanges.add(`outcome/${commandId}`);
    const { hostId, ...outcome } = stored;
    this.outcome(commandId, hostId, outcome as CommandOutcome);
  }

  /**
   * Whether a rollout not created yet took the run's patch off the host between its apply and a
   * boot: the same rule as supersededOn, over the commands and answers waiting for that rollout.
   */
  private supersededWhileWaiting(hostId: string, run: RolloutRun, appliedAt: number, bootedAt: number): boolean {
    const between = (at: number) => at >= appliedAt && at < bootedAt;
    for (const [rolloutId, hosts] of this.early) {
      if (rolloutId === run.rolloutId) continue;
      // As that rollout will hold them once created: the host's last apply and last revert, each
      // with the first answer to that command (a later command sets an earlier answer aside).
      let apply: { data: events.HostApplyRequested; outcome?: CommandOutcome } | undefined;
      let revert: { data: events.HostRevertRequested; outcome?: CommandOutcome } | undefined;
      for (const w of hosts.get(hostId) ?? []) {
        if ('event' in w) {
          if (w.event.type === 'HostApplyRequested') apply = { data: w.event.data };
          else if (w.event.type === 'HostRevertRequested') revert = { data: w.event.data };
        } else if ('outcome' in w) {
          for (const c of [apply, revert])
            if (c && !c.outcome && c.data.commandId === w.commandId) c.outcome = w.outcome;
        }
      }
      const reverted = revert?.outcome?.kind === 'reverted' ? revert.outcome : undefined;
      if (reverted && revert!.data.undoStep > 0 && revert!.data.patchId === run.patchId && between(reverted.at))
        return true;
      const applied = apply?.outcome?.kind === 'applied' ? apply.outcome : undefined;
      const samePatch = applied?.replace || apply?.data.patchId === run.patchId;
      if (applied && apply!.data.undoStep === 0 && samePatch && between(applied.at)) return true;
    }
    return false;
  }

  /** Puts an outcome after its command when the command waits for its rollout; false when none does. */
  private waitAfterCommand(commandId: string, hostId: string | undefined, outcome: CommandOutcome): boolean {
    for (const [rolloutId, hosts] of this.early)
      for (const list of hosts.values())
        for (const w of list)
          if (
            'event' in w &&
            (w.event.type === 'HostApplyRequested' || w.event.type === 'HostRevertRequested') &&
            w.event.data.commandId === commandId
          ) {
            list.push({ commandId, ...(hostId === undefined ? {} : { hostId }), outcome });
            this.leftoverChanges.add(`early/${rolloutId}`);
            return true;
          }
    return false;
  }
}

/** A rollout's fold state without its hosts, as plain JSON (each HostRun is plain already). */
export type RolloutRunRecord = Omit<RolloutRun, 'undoModules' | 'undoPlans' | 'hosts' | 'approvedWaves'> & {
  undoModules: Record<string, string>;
  undoPlans: Record<string, readonly events.UndoPlanStep[]>;
  approvedWaves: number[];
};

export function runRecord(run: RolloutRun): RolloutRunRecord {
  const { undoModules, undoPlans, approvedWaves, ...rest } = run;
  const record: Partial<RolloutRun> = { ...rest };
  delete record.hosts;
  return {
    ...(record as Omit<RolloutRun, 'undoModules' | 'undoPlans' | 'hosts' | 'approvedWaves'>),
    undoModules: Object.fromEntries(undoModules),
    undoPlans: Object.fromEntries(undoPlans),
    approvedWaves: [...approvedWaves].sort((a, b) => a - b),
  };
}

export function runFromRecord(record: RolloutRunRecord, hosts: readonly HostRun[]): RolloutRun {
  const order = new Map<string, number>();
  for (const wave of record.waves) for (const id of wave.hostIds) order.set(id, order.size);
  const sorted = [...hosts].sort((a, b) => (order.get(a.hostId) ?? 0) - (order.get(b.hostId) ?? 0));
  // Records stored before forgiveness was a time carry `forgiven` (host ids) and `lastEventType`:
  // dropped; `ledger rebuild` folds the time in (docs/adr/0014-one-fold.md).
  const current: RolloutRunRecord & { forgiven?: unknown; lastEventType?: unknown } = { ...record };
  delete current.forgiven;
  delete current.lastEventType;
  return {
    ...current,
    undoModules: new Map(Object.entries(record.undoModules)),
    // Records stored before multi-step undo carry no plans.
    undoPlans: new Map(Object.entries(record.undoPlans ?? {})),
    hosts: new Map(sorted.map((h) => [h.hostId, h])),
    approvedWaves: new Set(record.approvedWaves),
  };
}

export const HOST_PHASES = [
  'pending',
  'in-progress',
  'succeeded',
  'failed',
  'timed-out',
  'skipped',
  'reverting',
  'reverted',
] as const;
export type HostPhase = (typeof HOST_PHASES)[number];

/** When a host that never got its command stops being waited for. */
export function offlineDeadline(run: RolloutRun, host: HostRun): number | undefined {
  const started = run.waves[host.wave]?.startedAt;
  if (started === undefined) return undefined;
  return started + run.strategy.offlineDeadlineSeconds * 1000;
}

/** Where one host stands in a rollout at `now`. */
export function hostPhase(run: RolloutRun, host: HostRun, now: number): HostPhase {
  if (run.undo) return undoPhase(run, host, now);
  if (host.revert) {
    if (host.revertOutcome?.kind === 'reverted') return 'reverted';
    if (!host.revertOutcome && now <= host.revert.expiresAt) return 'reverting';
    // A revert that failed or got no answer leaves the patch applied: the host stays "succeeded"
    // as far as the patch goes, and its revert error is reported.
  }
  if (!host.apply) {
    const deadline = offlineDeadline(run, host);
    if (run.status === 'rolling-back' || run.status === 'rolled-back' || run.status === 'aborted') return 'skipped';
    return deadline !== undefined && now > deadline ? 'skipped' : 'pending';
  }
  const outcome = host.applyOutcome;
  if (!outcome) return now > host.apply.expiresAt ? 'timed-out' : 'in-progress';
  return outcome.kind === 'applied' ? 'succeeded' : 'failed';
}

/**
 * The instants at which time alone may change where the host stands (hostPhase, its failure,
 * rolloutView's host): each compared with `now` there as `now > instant` (or `now <= instant`).
 * Between two of them, and with no event, the host's view stays the same; a reader that keeps
 * derived rows (the ledger) looks at a host again only when an event touched it or its rollout's
 * clock passed one of these.
 */
export function phaseDeadlines(run: RolloutRun, host: HostRun): number[] {
  const out: number[] = [];
  const offline = offlineDeadline(run, host);
  if (offline !== undefined) out.push(offline);
  if (host.apply) out.push(host.apply.expiresAt);
  if (host.revert) out.push(host.revert.expiresAt);
  if (host.undoStepDoneAt !== undefined) out.push(host.undoStepDoneAt + run.strategy.offlineDeadlineSeconds * 1000);
  return out;
}

/**
 * In an undo the host carries out its plan's steps one after the other: it succeeded once the
 * agent confirmed the last one; a step that failed or got no answer fails it. Between two steps,
 * and while a reboot step waits for the operator's reboot, it is in progress.
 */
function undoPhase(run: RolloutRun, host: HostRun, now: number): HostPhase {
  const steps = run.undoPlans.get(host.hostId) ?? [];
  const done = host.undoStepsDone ?? 0;
  if (done >= steps.length) return 'succeeded';
  if (host.undoStep === undefined) {
    if (run.status === 'aborted') return 'skipped';
    // Waiting for the operator's reboot, or past it with steps to go.
    if (done > 0) return betweenSteps(run, host, now);
    if (awaitsReboot(run, host) && run.waves[host.wave]?.startedAt !== undefined) return 'in-progress';
    const deadline = offlineDeadline(run, host);
    return deadline !== undefined && now > deadline ? 'skipped' : 'pending';
  }
  if (done >= host.undoStep) return betweenSteps(run, host, now);
  const step = steps[host.undoStep - 1];
  const applying = step?.action === events.UndoStepAction.UNDO_STEP_ACTION_APPLY;
  const command = applying ? host.apply : host.revert;
  const outcome = applying ? host.applyOutcome : host.revertOutcome;
  if (!command) return 'pending';
  if (!outcome) return now > command.expiresAt ? 'timed-out' : 'in-progress';
  return 'failed';
}

/**
 * A confirmed step with more to go: the next one goes out at the next tick. One that cannot
 * (the host went away, or the patch to load again has no artifact any more, e.g. retracted)
 * times out at the offline deadline; a reboot is waited for as long as it takes.
 */
function betweenSteps(run: RolloutRun, host: HostRun, now: number): HostPhase {
  if (awaitsReboot(run, host) || host.undoStepDoneAt === undefined) return 'in-progress';
  return now > host.undoStepDoneAt + run.strategy.offlineDeadlineSeconds * 1000 ? 'timed-out' : 'in-progress';
}

/** The host's next undo step (1-based index), when the previous one is confirmed and steps remain. */
export function nextUndoStep(run: RolloutRun, host: HostRun): { index: number; step: events.UndoPlanStep } | undefined {
  const steps = run.undoPlans.get(host.hostId) ?? [];
  const done = host.undoStepsDone ?? 0;
  if (host.undoStep !== undefined && done < host.undoStep) return undefined;
  const step = steps[done];
  return step && { index: done + 1, step };
}

/** Whether the host's next step is a reboot only its operator may do. */
export function awaitsReboot(run: RolloutRun, host: HostRun): boolean {
  return nextUndoStep(run, host)?.step.action === events.UndoStepAction.UNDO_STEP_ACTION_REBOOT;
}

function confirmStep(host: HostRun, step: number, at: number): void {
  if (step <= (host.undoStepsDone ?? 0)) return;
  host.undoStepsDone = step;
  host.undoStepDoneAt = at;
}

/** Rollouts written before plans were recorded: one revert of the module named in undo_modules. */
function undoPlansOf(d: events.RolloutCreated): Map<string, readonly events.UndoPlanStep[]> {
  const plans = new Map<string, readonly events.UndoPlanStep[]>();
  if (!d.undo) return plans;
  for (const [hostId, moduleName] of Object.entries(d.undoModules)) {
    plans.set(hostId, [
      {
        action: events.UndoStepAction.UNDO_STEP_ACTION_REVERT,
        moduleName,
        patchId: d.patchId,
        version: d.version,
        downgrade: false,
        detail: '',
      },
    ]);
  }
  for (const [hostId, plan] of Object.entries(d.undoPlans ?? {})) plans.set(hostId, plan.steps);
  return plans;
}

/** Why a host counts against the failure budget, or undefined when it does not. */
export function failureOf(
  run: RolloutRun,
  host: HostRun,
  now: number,
  phase: HostPhase = hostPhase(run, host, now),
): string | undefined {
  return hostFailure(run, host, now, phase)?.why;
}

/** A host's failure: why it counts against the budget, and since when (the fact or expiry that made it one). */
export function hostFailure(
  run: RolloutRun,
  host: HostRun,
  now: number,
  phase: HostPhase = hostPhase(run, host, now),
): { why: string; since: number } | undefined {
  if (phase === 'failed' && host.revertOutcome?.kind === 'revert-failed') {
    const o = host.revertOutcome;
    return { why: `revert failed at ${o.stage}: ${o.error}`, since: o.at };
  }
  if (phase === 'failed' && host.applyOutcome?.kind === 'apply-failed') {
    const o = host.applyOutcome;
    return {
      why:
        o.stalledTasks > 0
          ? `transition stalled (${o.stalledTasks} task(s)) at ${o.stage}: ${o.error}`
          : `failed at ${o.stage}: ${o.error}`,
      since: o.at,
    };
  }
  if (phase === 'timed-out') return { why: 'no answer before the command expired', since: expiryOf(run, host) };
  if (phase === 'succeeded' && host.applyOutcome?.kind === 'applied') {
    const o = host.applyOutcome;
    if (o.forced) return { why: 'the transition did not finish by itself (forced)', since: o.at };
    if (o.transitionMs > run.strategy.applyTimeoutSeconds * 1000) {
      return { why: `the transition took ${o.transitionMs} ms, longer than expected`, since: o.at };
    }
    if (host.issue) return { why: host.issue.what, since: host.issue.at };
  }
  return undefined;
}

/** When a timed-out host's wait ended (the instant hostPhase turned 'timed-out'). */
function expiryOf(run: RolloutRun, host: HostRun): number {
  if (!run.undo) return host.apply?.expiresAt ?? 0;
  const done = host.undoStepsDone ?? 0;
  if (host.undoStep === undefined || done >= host.undoStep)
    return (host.undoStepDoneAt ?? 0) + run.strategy.offlineDeadlineSeconds * 1000;
  const step = (run.undoPlans.get(host.hostId) ?? [])[host.undoStep - 1];
  const applying = step?.action === events.UndoStepAction.UNDO_STEP_ACTION_APPLY;
  return (applying ? host.apply : host.revert)?.expiresAt ?? 0;
}

export function isFailure(run: RolloutRun, host: HostRun, now: number): boolean {
  return failureOf(run, host, now) !== undefined;
}

/**
 * Whether the operator accepted this failure by resuming after it arose. Decided by times the
 * events carry, so every reader folds the same answer whatever order it read the partitions in.
 */
export function forgiven(run: RolloutRun, failure: { since: number }): boolean {
  return run.resumedAt !== undefined && failure.since <= run.resumedAt;
}

export function timestampMs(ts: { seconds: string; nanos: number }): number {
  return Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000);
}

export function assertNever(x: never): never {
  throw new Error(`unexpected event ${JSON.stringify(x)}`);
}

/**
 * Whether a later rollout took this run's patch off the host (an undo of it, a cumulative patch
 * with replace, a newer version of the same patch): a reboot must not bring it back then.
 */
function supersededOn(
  hostId: string,
  run: RolloutRun,
  appliedAt: number,
  bootedAt: number,
  runs: readonly RolloutRun[],
): boolean {
  // Only what happened before the boot: a reader of several partitions may have folded later
  // answers of other rollouts already (the same millisecond counts as after).
  const between = (at: number) => at >= appliedAt && at < bootedAt;
  return runs.some((other) => {
    if (other === run) return false;
    const host = other.hosts.get(hostId);
    if (!host) return false;
    if (other.undo) {
      return other.patchId === run.patchId && host.revertOutcome?.kind === 'reverted' && between(host.revertOutcome.at);
    }
    const applied = host.applyOutcome;
    return applied?.kind === 'applied' && between(applied.at) && (applied.replace || other.patchId === run.patchId);
  });
}
