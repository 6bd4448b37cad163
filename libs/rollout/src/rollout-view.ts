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

/**
 * The rollout at `now`. The summary view counts each wave's hosts by state instead of listing
 * them: a 100,000-host rollout's full view is about 2 MB and 100,000 objects to make.
 */
export function rolloutView(
  run: RolloutRun,
  now: number,
  view: dispatcher.RolloutView = dispatcher.RolloutView.ROLLOUT_VIEW_FULL,
): dispatcher.Rollout {
  const awaiting = waveAwaitingApproval(run);
  const current = currentWave(run);
  const summary = view === dispatcher.RolloutView.ROLLOUT_VIEW_SUMMARY;
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
      const hosts: dispatcher.HostProgress[] = [];
      // Counted as they come: a summary of 100,000 hosts is asked for every few seconds.
      const totals = new Map<dispatcher.HostRolloutState, number>();
      let withError = 0;
      for (const id of wave.hostIds) {
        const host = run.hosts.get(id)!;
        let state: dispatcher.HostRolloutState;
        if (summary) {
          const phase = hostPhase(run, host, now);
          state = PHASE[phase];
          if (hostError(run, host, now, phase)) withError += 1;
        } else {
          const shown = hostView(run, host, now);
          hosts.push(shown);
          state = shown.state;
          if (shown.error) withError += 1;
        }
        totals.set(state, (totals.get(state) ?? 0) + 1);
      }
      return {
        index: wave.index,
        name: wave.name,
        state: waveState(run, wave, withError, awaiting, current),
        hosts,
        ...(wave.startedAt !== undefined ? { startedAt: toTimestamp(new Date(wave.startedAt)) } : {}),
        ...(wave.completedAt !== undefined ? { completedAt: toTimestamp(new Date(wave.completedAt)) } : {}),
        hostCounts: inStateOrder(totals),
      };
    }),
    skippedHostIds: summary ? [] : [...run.skippedHostIds],
    skippedHosts: run.skippedHostIds.length,
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
    error: hostError(run, host, now, phase) ?? '',
    forced: host.applyOutcome?.kind === 'applied' && host.applyOutcome.forced,
    ...(updated > 0 ? { updatedAt: toTimestamp(new Date(updated)) } : {}),
  };
}

/** What went wrong for the host at `now`, as its view says it: its revert's failure, else its own. */
function hostError(
  run: RolloutRun,
  host: HostRun,
  now: number,
  phase: HostPhase = hostPhase(run, host, now),
): string | undefined {
  if (host.revertOutcome?.kind === 'revert-failed')
    return `revert failed at ${host.revertOutcome.stage}: ${host.revertOutcome.error}`;
  if (host.revert && !host.revertOutcome && now > host.revert.expiresAt)
    return 'no answer to the revert before it expired';
  return failureOf(run, host, now, phase);
}

/** How many hosts are in each state, in the states' order (those with none left out). */
export function hostStateCounts(states: Iterable<dispatcher.HostRolloutState>): dispatcher.HostStateCount[] {
  const totals = new Map<dispatcher.HostRolloutState, number>();
  for (const state of states) totals.set(state, (totals.get(state) ?? 0) + 1);
  return inStateOrder(totals);
}

/** hostStateCounts from counts already taken (a database's GROUP BY), summed per state. */
export function hostStateTotals(
  counts: Iterable<readonly [dispatcher.HostRolloutState, number]>,
): dispatcher.HostStateCount[] {
  const totals = new Map<dispatcher.HostRolloutState, number>();
  for (const [state, n] of counts) totals.set(state, (totals.get(state) ?? 0) + n);
  return inStateOrder(totals);
}

function inStateOrder(totals: Map<dispatcher.HostRolloutState, number>): dispatcher.HostStateCount[] {
  return [...totals]
    .filter(([, hosts]) => hosts > 0)
    .sort(([a], [b]) => a - b)
    .map(([state, hosts]) => ({ state, hosts }));
}

/**
 * The view a request asks for (unset: FULL), or a sentence saying why it is none, for the
 * service to refuse as an invalid `view`.
 */
export function requestedView(
  view: dispatcher.RolloutView | undefined,
): { view: dispatcher.RolloutView } | { problem: string } {
  const V = dispatcher.RolloutView;
  if (view === undefined || view === V.ROLLOUT_VIEW_UNSPECIFIED) return { view: V.ROLLOUT_VIEW_FULL };
  if (view === V.ROLLOUT_VIEW_FULL || view === V.ROLLOUT_VIEW_SUMMARY) return { view };
  return { problem: `${String(view)} is not a RolloutView (ROLLOUT_VIEW_FULL or ROLLOUT_VIEW_SUMMARY)` };
}
