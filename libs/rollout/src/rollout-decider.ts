// Decisions: what the dispatcher writes next for a rollout, from its folded state, the clock and
// which agents are connected. Pure: time and connectivity come in as arguments, command ids are
// derived from the fold, and the result is events to write (each written before its effect, e.g.
// the command it describes).
import { events, toTimestamp } from '@rebootless/contracts';
import { commandIdFor } from './command-id';
import { RolloutForbiddenError, RolloutInputError, RolloutPreconditionError } from './errors';
import { insideWindow, isWindowSet, parseWindow } from './maintenance-window';
import {
  forgiven,
  hostFailure,
  hostPhase,
  nextUndoStep,
  offlineDeadline,
  type HostRun,
  type RolloutEvent,
  type RolloutRun,
  type WaveRun,
} from './rollout-state';

export interface TickContext {
  now: number;
  /** Whether the host's agent holds a stream to this dispatcher now. */
  isOnline(hostId: string): boolean;
  /** Since when (ms) a host has been disconnected; undefined while connected or never seen. */
  offlineSince(hostId: string): number | undefined;
  /**
   * Every host that may be disconnected now (more is fine, none may be missing): only these can
   * have gone silent, so a tick asks about them, not about every host that applied.
   */
  awayHosts(): Iterable<string>;
  /**
   * The artifact the host's kernel needs for this rollout's patch (or, for an undo's apply step,
   * the patch the step loads); undefined if none was built.
   */
  artifactFor(
    run: RolloutRun,
    hostId: string,
    patch?: { patchId: string; version: string },
  ): { kernelRelease: string; artifactDigest: string } | undefined;
  /** How long a host that applied may stay disconnected before it counts as gone silent. */
  silenceGraceMs: number;
  /** Why the rollout's patch version was retracted, if it was. */
  retraction(run: RolloutRun): string | undefined;
}

const FAILURE_POLICY = events.FailurePolicy;

/** The next events for one rollout; empty when it waits (for agents, approval, soak or window). */
export function nextEvents(run: RolloutRun, ctx: TickContext): RolloutEvent[] {
  const retracted =
    !run.undo && (run.status === 'running' || run.status === 'paused') ? ctx.retraction(run) : undefined;
  if (retracted !== undefined) {
    // No host gets a retracted patch; those that have it keep it until an operator decides.
    return [
      {
        type: 'RolloutAborted',
        data: {
          rolloutId: run.rolloutId,
          reason: `patch ${run.patchId} version ${run.version} was retracted: ${retracted}`,
          rollBack: false,
        },
      },
    ];
  }
  switch (run.status) {
    case 'paused':
    case 'aborted':
    case 'rolled-back':
      return [];
    case 'completed':
      return reapplyAfterReboot(run, ctx);
    case 'rolling-back':
      return rollBackStep(run, ctx);
    case 'running':
      return runningStep(run, ctx);
  }
}

function runningStep(run: RolloutRun, ctx: TickContext): RolloutEvent[] {
  const breach = budgetBreach(run, ctx);
  if (breach) return failurePolicy(run, breach);

  const out: RolloutEvent[] = [];
  const windowOpen = !isWindowSet(run.strategy.window) || insideWindow(parseWindow(run.strategy.window), ctx.now);
  let capacity = run.strategy.maxInFlight > 0 ? run.strategy.maxInFlight - inFlight(run, ctx.now) : Infinity;

  const request = (host: HostRun) => {
    const apply = applyRequest(run, host, ctx);
    if (apply) {
      out.push(apply);
      capacity -= 1;
    }
  };

  // Hosts of started waves that were offline: their command waits for them, up to the deadline.
  if (windowOpen) {
    // The hosts in plan order (the fold keeps them so), without a lookup per host: most of a big
    // wave's hosts were asked already, and an apply is never pending again, so they are passed
    // over before their phase is worked out or the connections are asked.
    for (const host of run.hosts.values()) {
      if (capacity <= 0) break;
      if (!run.undo && host.apply) continue;
      if (run.waves[host.wave]?.startedAt === undefined) continue;
      const phase = hostPhase(run, host, ctx.now);
      // An undo's next step goes out once the agent's fact confirmed the one before.
      if ((phase === 'pending' || (run.undo && phase === 'in-progress')) && ctx.isOnline(host.hostId)) request(host);
    }
    out.push(...reapplyAfterReboot(run, ctx, capacity));
  }
  if (out.length > 0) return out;

  const current = currentWave(run);
  if (current && current.completedAt === undefined) {
    // Complete once every host answered or is away (then it waits as above).
    // Most looks end here: some host is still applying.
    for (const host of run.hosts.values()) {
      if (host.wave !== current.index) continue;
      const p = hostPhase(run, host, ctx.now);
      if (p === 'in-progress' || (p === 'pending' && ctx.isOnline(host.hostId))) return [];
    }
    const phases = current.hostIds.map((id) => [id, hostPhase(run, run.hosts.get(id)!, ctx.now)] as const);
    return [
      {
        type: 'WaveCompleted',
        data: {
          rolloutId: run.rolloutId,
          waveIndex: current.index,
          succeededHostIds: phases.filter(([, p]) => p === 'succeeded').map(([id]) => id),
          failedHostIds: phases.filter(([, p]) => p === 'failed' || p === 'timed-out').map(([id]) => id),
          skippedHostIds: phases.filter(([, p]) => p === 'skipped').map(([id]) => id),
        },
      },
    ];
  }

  const next = run.waves.find((w) => w.startedAt === undefined);
  if (!next) {
    for (const h of run.hosts.values()) {
      const p = hostPhase(run, h, ctx.now);
      if (p === 'pending' || p === 'in-progress') return [];
    }
    const phases = [...run.hosts.values()].map((h) => hostPhase(run, h, ctx.now));
    return [
      {
        type: 'RolloutCompleted',
        data: {
          rolloutId: run.rolloutId,
          succeeded: phases.filter((p) => p === 'succeeded').length,
          failed: phases.filter((p) => p === 'failed' || p === 'timed-out').length,
          skipped: phases.filter((p) => p === 'skipped').length + run.skippedHostIds.length,
          rolledBack: false,
          reverted: 0,
        },
      },
    ];
  }
  if (needsApproval(run, next) && !run.approvedWaves.has(next.index)) return [];
  if (current?.completedAt !== undefined && ctx.now < current.completedAt + run.strategy.soakSeconds * 1000) return [];
  if (!windowOpen) return [];
  return [
    { type: 'WaveStarted', data: { rolloutId: run.rolloutId, waveIndex: next.index, hostIds: [...next.hostIds] } },
  ];
}

/** The last wave that started. */
export function currentWave(run: RolloutRun): WaveRun | undefined {
  let current: WaveRun | undefined;
  for (const wave of run.waves) if (wave.startedAt !== undefined) current = wave;
  return current;
}

export function needsApproval(run: RolloutRun, wave: WaveRun): boolean {
  return wave.index === 0 ? run.strategy.approvalBeforeFirstWave : run.strategy.approvalBetweenWaves;
}

/** The wave waiting for an approver, if any. */
export function waveAwaitingApproval(run: RolloutRun): WaveRun | undefined {
  if (run.status !== 'running') return undefined;
  const next = run.waves.find((w) => w.startedAt === undefined);
  const current = currentWave(run);
  if (!next || (current && current.completedAt === undefined)) return undefined;
  return needsApproval(run, next) && !run.approvedWaves.has(next.index) ? next : undefined;
}

function inFlight(run: RolloutRun, now: number): number {
  let n = 0;
  for (const host of run.hosts.values()) if (hostPhase(run, host, now) === 'in-progress') n += 1;
  return n;
}

function applyRequest(run: RolloutRun, host: HostRun, ctx: TickContext): RolloutEvent | undefined {
  if (run.undo) return undoRequest(run, host, ctx);
  const artifact = ctx.artifactFor(run, host.hostId);
  // The host moved to a kernel the patch was not built for: it waits, and is skipped at the deadline.
  if (!artifact) return undefined;
  return {
    type: 'HostApplyRequested',
    data: {
      rolloutId: run.rolloutId,
      hostId: host.hostId,
      commandId: commandIdFor(run, host, {
        type: 'HostApplyRequested',
        patchId: run.patchId,
        version: run.version,
        undoStep: 0,
      }),
      patchId: run.patchId,
      version: run.version,
      artifactDigest: artifact.artifactDigest,
      kernelRelease: artifact.kernelRelease,
      expiresAt: toTimestamp(new Date(ctx.now + run.strategy.applyTimeoutSeconds * 1000)),
      allowForce: run.allowForce,
      allowDowngrade: run.allowDowngrade,
      undoStep: 0,
    },
  };
}

/**
 * An undo's next step on a host, as the ledger planned it: disable a module, or load one again
 * (a patch taken off on the way, the previous cumulative patch). A reboot step sends nothing:
 * the dispatcher never reboots a host; the step is done when the host reports a new boot.
 */
function undoRequest(run: RolloutRun, host: HostRun, ctx: TickContext): RolloutEvent | undefined {
  const next = nextUndoStep(run, host);
  if (!next) return undefined;
  const { index, step } = next;
  const expiresAt = toTimestamp(new Date(ctx.now + run.strategy.applyTimeoutSeconds * 1000));
  switch (step.action) {
    case events.UndoStepAction.UNDO_STEP_ACTION_REVERT:
      return {
        type: 'HostRevertRequested',
        data: {
          rolloutId: run.rolloutId,
          hostId: host.hostId,
          commandId: commandIdFor(run, host, {
            type: 'HostRevertRequested',
            patchId: step.patchId || run.patchId,
            version: step.version || run.version,
            undoStep: index,
          }),
          patchId: step.patchId || run.patchId,
          version: step.version || run.version,
          moduleName: step.moduleName,
          expiresAt,
          reason: 'undo',
          undoStep: index,
        },
      };
    case events.UndoStepAction.UNDO_STEP_ACTION_APPLY: {
      const artifact = ctx.artifactFor(run, host.hostId, { patchId: step.patchId, version: step.version });
      // Not built for the host's kernel (it moved on): the host waits and times out, as in an apply.
      if (!artifact) return undefined;
      return {
        type: 'HostApplyRequested',
        data: {
          rolloutId: run.rolloutId,
          hostId: host.hostId,
          commandId: commandIdFor(run, host, {
            type: 'HostApplyRequested',
            patchId: step.patchId,
            version: step.version,
            undoStep: index,
          }),
          patchId: step.patchId,
          version: step.version,
          artifactDigest: artifact.artifactDigest,
          kernelRelease: artifact.kernelRelease,
          expiresAt,
          allowForce: false,
          allowDowngrade: step.downgrade,
          undoStep: index,
        },
      };
    }
    default:
      return undefined;
  }
}

/** A host that booted lost its live patches: it gets the patch again (its desired state). */
function reapplyAfterReboot(run: RolloutRun, ctx: TickContext, capacity = Infinity): RolloutEvent[] {
  const out: RolloutEvent[] = [];
  if (run.undo) return out;
  for (const host of run.hosts.values()) {
    if (out.length >= capacity) break;
    if (host.rebootedAt === undefined || host.revert || !ctx.isOnline(host.hostId)) continue;
    const apply = applyRequest(run, host, ctx);
    if (apply) out.push(apply);
  }
  return out;
}

interface Breach {
  reason: string;
}

function budgetBreach(run: RolloutRun, ctx: TickContext): Breach | undefined {
  const current = currentWave(run);
  const failures: { hostId: string; wave: number; why: string }[] = [];
  const failed = new Set<string>();
  for (const host of run.hosts.values()) {
    const failure = hostFailure(run, host, ctx.now);
    if (!failure) continue;
    failed.add(host.hostId);
    // A failure the operator accepted by resuming after it no longer counts.
    if (!forgiven(run, failure)) failures.push({ hostId: host.hostId, wave: host.wave, why: failure.why });
  }
  // A host of the current wave that failed in no other way may have gone silent.
  if (current) {
    for (const hostId of new Set(ctx.awayHosts())) {
      const host = run.hosts.get(hostId);
      if (!host || host.wave !== current.index || failed.has(hostId)) continue;
      const why = silence(run, host, ctx);
      if (why) failures.push({ hostId, wave: host.wave, why });
    }
  }
  if (failures.length === 0) return undefined;
  const inWave = current ? failures.filter((f) => f.wave === current.index) : [];
  const describe = (list: typeof failures) =>
    list
      .slice(0, 5)
      .map((f) => `${f.hostId}: ${f.why}`)
      .join('; ') + (list.length > 5 ? `; and ${list.length - 5} more` : '');
  if (current && inWave.length > run.strategy.waveFailureBudget) {
    return {
      reason: `${current.name}: ${inWave.length} host(s) failed, over its failure budget of ${run.strategy.waveFailureBudget} (${describe(inWave)})`,
    };
  }
  if (failures.length > run.strategy.totalFailureBudget) {
    return {
      reason: `${failures.length} host(s) failed, over the total failure budget of ${run.strategy.totalFailureBudget} (${describe(failures)})`,
    };
  }
  return undefined;
}

/** A host of the current wave that applied and then went away for longer than the grace. */
function silence(run: RolloutRun, host: HostRun, ctx: TickContext): string | undefined {
  if (host.applyOutcome?.kind !== 'applied' || host.revert) return undefined;
  const since = ctx.offlineSince(host.hostId);
  if (since === undefined || since < host.applyOutcome.at - ctx.silenceGraceMs) return undefined;
  if (ctx.now - since <= ctx.silenceGraceMs) return undefined;
  return `went silent after the apply (disconnected for ${Math.round((ctx.now - since) / 1000)} s)`;
}

function failurePolicy(run: RolloutRun, breach: Breach): RolloutEvent[] {
  switch (run.strategy.onFailure) {
    case FAILURE_POLICY.FAILURE_POLICY_ABORT:
      return [{ type: 'RolloutAborted', data: { rolloutId: run.rolloutId, reason: breach.reason, rollBack: false } }];
    case FAILURE_POLICY.FAILURE_POLICY_ROLL_BACK:
      return [{ type: 'RolloutAborted', data: { rolloutId: run.rolloutId, reason: breach.reason, rollBack: true } }];
    default:
      return [{ type: 'RolloutPaused', data: { rolloutId: run.rolloutId, reason: breach.reason } }];
  }
}

/**
 * Roll-back: revert every host the rollout patched, newest wave first, a wave's hosts together;
 * hosts still applying are waited for, since they may yet end up patched.
 */
function rollBackStep(run: RolloutRun, ctx: TickContext): RolloutEvent[] {
  const deadline = (run.rollbackAt ?? ctx.now) + run.strategy.offlineDeadlineSeconds * 1000;
  // An offline host waits for its revert; past the deadline the roll-back goes on without it.
  const needsRevert = (h: HostRun) =>
    h.applyOutcome?.kind === 'applied' && !h.revert && (ctx.isOnline(h.hostId) || ctx.now <= deadline);
  const reverting = (h: HostRun) => hostPhase(run, h, ctx.now) === 'reverting';
  const hosts = [...run.hosts.values()];
  const active = hosts.filter((h) => needsRevert(h) || reverting(h));
  if (active.length > 0) {
    const wave = Math.max(...active.map((h) => h.wave));
    const due = active.filter((h) => h.wave === wave && needsRevert(h));
    const online = due.filter((h) => ctx.isOnline(h.hostId));
    const out: RolloutEvent[] = online.map((host) => ({
      type: 'HostRevertRequested',
      data: {
        rolloutId: run.rolloutId,
        hostId: host.hostId,
        commandId: commandIdFor(run, host, {
          type: 'HostRevertRequested',
          patchId: run.patchId,
          version: run.version,
          undoStep: 0,
        }),
        patchId: run.patchId,
        version: run.version,
        moduleName: host.applyOutcome?.kind === 'applied' ? host.applyOutcome.moduleName : '',
        expiresAt: toTimestamp(new Date(ctx.now + run.strategy.applyTimeoutSeconds * 1000)),
        reason: 'roll-back',
        undoStep: 0,
      },
    }));
    return out;
  }
  if (hosts.some((h) => hostPhase(run, h, ctx.now) === 'in-progress')) return [];
  const phases = hosts.map((h) => hostPhase(run, h, ctx.now));
  return [
    {
      type: 'RolloutCompleted',
      data: {
        rolloutId: run.rolloutId,
        succeeded: phases.filter((p) => p === 'succeeded').length,
        failed: phases.filter((p) => p === 'failed' || p === 'timed-out').length,
        skipped: phases.filter((p) => p === 'skipped').length + run.skippedHostIds.length,
        rolledBack: true,
        reverted: phases.filter((p) => p === 'reverted').length,
      },
    },
  ];
}

// Operator commands: each checks the rollout is in a state for it and says what to write.

export function pause(run: RolloutRun, reason: string): RolloutEvent[] {
  if (run.status !== 'running') throw notIn(run, 'paused', 'running');
  return [{ type: 'RolloutPaused', data: { rolloutId: run.rolloutId, reason: reason || 'paused by an operator' } }];
}

export function resume(run: RolloutRun): RolloutEvent[] {
  if (run.status !== 'paused') throw notIn(run, 'resumed', 'paused');
  return [{ type: 'RolloutResumed', data: { rolloutId: run.rolloutId } }];
}

export function abort(run: RolloutRun, reason: string): RolloutEvent[] {
  if (run.status !== 'running' && run.status !== 'paused') throw notIn(run, 'aborted', 'running or paused');
  return [
    {
      type: 'RolloutAborted',
      data: { rolloutId: run.rolloutId, reason: reason || 'aborted by an operator', rollBack: false },
    },
  ];
}

export function rollBack(run: RolloutRun, reason: string): RolloutEvent[] {
  if (run.status === 'rolling-back' || run.status === 'rolled-back') {
    throw new RolloutPreconditionError(`rollout ${run.rolloutId} is already ${run.status}`);
  }
  if (run.undo) throw new RolloutPreconditionError(`rollout ${run.rolloutId} is an undo; it cannot be rolled back`);
  return [
    {
      type: 'RolloutAborted',
      data: { rolloutId: run.rolloutId, reason: reason || 'rolled back by an operator', rollBack: true },
    },
  ];
}

/** The actor id of a call made to a server without authentication. */
export const UNAUTHENTICATED = 'unauthenticated';

export function approve(run: RolloutRun, waveIndex: number, approver: string): RolloutEvent[] {
  const waiting = waveAwaitingApproval(run);
  if (!waiting) {
    throw new RolloutPreconditionError(
      `rollout ${run.rolloutId} has no wave waiting for approval (it is ${run.status})`,
    );
  }
  if (waiting.index !== waveIndex) {
    throw new RolloutPreconditionError(
      `wave_index ${waveIndex} is not the wave waiting for approval: ${waiting.name} (index ${waiting.index}) is`,
    );
  }
  // Two-person rule: whoever created a rollout cannot approve it. Without identities (a plaintext
  // test server answers every caller as "unauthenticated") there is no person to compare.
  if (approver !== UNAUTHENTICATED && run.createdBy?.id === approver) {
    throw new RolloutForbiddenError(
      `${approver} created rollout ${run.rolloutId} and cannot approve it too: another approver must (two-person rule)`,
    );
  }
  return [{ type: 'RolloutApproved', data: { rolloutId: run.rolloutId, waveIndex, approver } }];
}

function notIn(run: RolloutRun, verb: string, wanted: string): RolloutPreconditionError {
  return new RolloutPreconditionError(
    `rollout ${run.rolloutId} is ${run.status}${run.statusReason ? ` (${run.statusReason})` : ''}; only a ${wanted} rollout can be ${verb}`,
  );
}

/** The request's rollout id, checked. */
export function requireRolloutId(rolloutId: string): string {
  if (!rolloutId) throw new RolloutInputError('rollout_id', 'is required');
  return rolloutId;
}

export { offlineDeadline };
