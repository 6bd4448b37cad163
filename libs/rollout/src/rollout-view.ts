// The rollout as RolloutService answers it: per wave and per host, at a given instant.
import { dispatcher, toTimestamp } from '@rebootless/contracts';
import { currentWave, waveAwaitingApproval } from './rollout-decider';
import {
  failureOf,
  hostPhase,
  type HostPhase,
  type HostRun,
  type RolloutRun,
  type RolloutStatus,
  type WaveRun,
} from './rollout-state';

const R = dispatcher.RolloutState;
const W = dispatcher.WaveState;
const H = dispatcher.HostRolloutState;

const STATUS: Record<RolloutStatus, dispatcher.RolloutState> = {
  running: R.ROLLOUT_STATE_RUNNING,
  paused: R.ROLLOUT_STATE_PAUSED,
  completed: R.ROLLOUT_STATE_COMPLETED,
  aborted: R.ROLLOUT_STATE_ABORTED,
  'rolling-back': R.ROLLOUT_STATE_ROLLING_BACK,
  'rolled-back': R.ROLLOUT_STATE_ROLLED_BACK,
};

const PHASE: Record<HostPhase, dispatcher.HostRolloutState> = {
  pending: H.HOST_ROLLOUT_STATE_PENDING,
  'in-progress': H.HOST_ROLLOUT_STATE_IN_PROGRESS,
  succeeded: H.HOST_ROLLOUT_STATE_SUCCEEDED,
  failed: H.HOST_ROLLOUT_STATE_FAILED,
  'timed-out': H.HOST_ROLLOUT_STATE_TIMED_OUT,
  skipped: H.HOST_ROLLOUT_STATE_SKIPPED,
  reverting: H.HOST_ROLLOUT_STATE_IN_PROGRESS,
  reverted: H.HOST_ROLLOUT_STATE_REVERTED,
};

export function rolloutState(run: RolloutRun): dispatcher.RolloutState {
  return waveAwaitingApproval(run) ? R.ROLLOUT_STATE_AWAITING_APPROVAL : STATUS[run.status];
}

export function rolloutView(run: RolloutRun, now: number): dispatcher.Rollout {
  const awaiting = waveAwaitingApproval(run);
  const current = currentWave(run);
  return {
    rolloutId: run.rolloutId,
    kind: run.undo ? dispatcher.RolloutKind.ROLLOUT_KIND_UNDO : dispatcher.RolloutKind.ROLLOUT_KIND_APPLY,
    patchId: run.patchId,
    version: run.version,
    selector: run.selector,
    strategy: run.strategy,
    state: rolloutState(run),
    stateReason: run.statusReason,
    waves: run.waves.map((wave) => {
      const hosts = wave.hostIds.map((id) => hostView(run, run.hosts.get(id)!, now));
      return {
        index: wave.index,
        name: wave.name,
        state: waveState(run, wave, hosts.filter((h) => h.error).length, awaiting, current),
        hosts,
        ...(wave.startedAt !== undefined ? { startedAt: toTimestamp(new Date(wave.startedAt)) } : {}),
        ...(wave.completedAt !== undefined ? { completedAt: toTimestamp(new Date(wave.completedAt)) } : {}),
      };
    }),
    skippedHostIds: [...run.skippedHostIds],
    allowForce: run.allowForce,
    allowDowngrade: run.allowDowngrade,
    ...(run.createdBy ? { createdBy: run.createdBy } : {}),
    createdAt: toTimestamp(new Date(run.createdAt)),
    updatedAt: toTimestamp(new Date(run.updatedAt)),
  };
}

/**
 * A wave's state, given how many of its hosts show an error (`failedHosts`), the wave awaiting
 * approval and the current wave (waveAwaitingApproval, currentWave): a reader that keeps the
 * count as hosts change need not look at every host again.
 */
export function waveState(
  run: RolloutRun,
  wave: WaveRun,
  failedHosts: number,
  awaiting: WaveRun | undefined,
  current: WaveRun | undefined,
): dispatcher.WaveState {
  if (awaiting?.index === wave.index) return W.WAVE_STATE_AWAITING_APPROVAL;
  if (wave.completedAt !== undefined) {
    if (failedHosts > run.strategy.waveFailureBudget) return W.WAVE_STATE_FAILED;
    if (current === wave && run.status === 'running' && run.waves.some((w) => w.startedAt === undefined))
      return W.WAVE_STATE_SOAKING;
    return W.WAVE_STATE_COMPLETED;
  }
  return wave.startedAt !== undefined ? W.WAVE_STATE_RUNNING : W.WAVE_STATE_PENDING;
}

/** One host's progress in the rollout at `now`, as rolloutView shows it. */
export function hostView(run: RolloutRun, host: HostRun, now: number): dispatcher.HostProgress {
  const phase = hostPhase(run, host, now);
  const failure = failureOf(run, host, now);
  const revertError =
    host.revertOutcome?.kind === 'revert-failed'
      ? `revert failed at ${host.revertOutcome.stage}: ${host.revertOutcome.error}`
      : host.revert && !host.revertOutcome && now > host.revert.expiresAt
        ? 'no answer to the revert before it expired'
        : undefined;
  const updated = Math.max(
    host.apply?.requestedAt ?? 0,
    host.applyOutcome?.at ?? 0,
    host.revert?.requestedAt ?? 0,
    host.revertOutcome?.at ?? 0,
  );
  return {
    hostId: host.hostId,
    state: PHASE[phase],
    commandId: host.revert?.commandId ?? host.apply?.commandId ?? '',
    error: revertError ?? failure ?? '',
    forced: host.applyOutcome?.kind === 'applied' && host.applyOutcome.forced,
    ...(updated > 0 ? { updatedAt: toTimestamp(new Date(updated)) } : {}),
  };
}
