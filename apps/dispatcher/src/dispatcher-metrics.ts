// The dispatcher's metrics (ADR 0019): where each host of each rollout stands, and rollouts by
// state. Read from the rollout book when a scrape or an export asks.
//
// OpenTelemetry keeps the last value of every series an asynchronous gauge ever observed, so a
// series left out of a collection is not dropped, it goes stale. Every series is therefore
// observed each time: every state, zeros included, and a finished rollout its final counts.
import { HOST_PHASES, ROLLOUT_STATUSES, hostPhase, type HostPhase, type RolloutRun } from '@rebootless/rollout';
import { rebootlessMeter } from '@rebootless/telemetry';
import type { RolloutEngine } from './rollout-engine';

const FINISHED = new Set(['completed', 'aborted', 'rolled-back']);

export function registerDispatcherMetrics(engine: RolloutEngine): void {
  const meter = rebootlessMeter();
  const hosts = meter.createObservableGauge('rebootless.rollout.hosts', {
    description:
      'hosts of each rollout by state (pending, in-progress, succeeded, failed, ...); final counts once it finished',
  });
  const rollouts = meter.createObservableGauge('rebootless.rollouts', { description: 'rollouts by state' });
  // A finished rollout's counts no longer change: counted once, by the update they were read at.
  const final = new Map<string, { updatedAt: number; phases: Map<HostPhase, number> }>();
  meter.addBatchObservableCallback(
    (result) => {
      const now = Date.now();
      const byState = new Map<string, number>(ROLLOUT_STATUSES.map((s) => [s, 0]));
      for (const run of engine.book.all()) {
        byState.set(run.status, byState.get(run.status)! + 1);
        let phases: Map<HostPhase, number>;
        if (FINISHED.has(run.status)) {
          const kept = final.get(run.rolloutId);
          phases = kept?.updatedAt === run.updatedAt ? kept.phases : phasesOf(run, now);
          final.set(run.rolloutId, { updatedAt: run.updatedAt, phases });
        } else {
          final.delete(run.rolloutId);
          phases = phasesOf(run, now);
        }
        const labels = { rollout: run.rolloutId, patch: `${run.patchId} ${run.version}` };
        for (const [state, n] of phases) result.observe(hosts, n, { ...labels, state });
      }
      for (const [state, n] of byState) result.observe(rollouts, n, { state });
    },
    [hosts, rollouts],
  );
}

/** How many of the rollout's hosts stand in each phase, every phase present. */
function phasesOf(run: RolloutRun, now: number): Map<HostPhase, number> {
  const phases = new Map<HostPhase, number>(HOST_PHASES.map((p) => [p, 0]));
  for (const host of run.hosts.values()) {
    const phase = hostPhase(run, host, now);
    phases.set(phase, phases.get(phase)! + 1);
  }
  return phases;
}
