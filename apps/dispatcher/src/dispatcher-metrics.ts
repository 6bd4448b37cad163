// The dispatcher's metrics (ADR 0019): where each host of each rollout under way stands, and
// rollouts by state. Read from the rollout book when a scrape or an export asks.
import { hostPhase } from '@rebootless/rollout';
import { rebootlessMeter } from '@rebootless/telemetry';
import type { RolloutEngine } from './rollout-engine';

const FINISHED = new Set(['completed', 'aborted', 'rolled-back']);

export function registerDispatcherMetrics(engine: RolloutEngine): void {
  const meter = rebootlessMeter();
  const hosts = meter.createObservableGauge('rebootless.rollout.hosts', {
    description: 'hosts of each rollout under way by state (pending, in-progress, succeeded, failed, ...)',
  });
  const rollouts = meter.createObservableGauge('rebootless.rollouts', { description: 'rollouts by state' });
  meter.addBatchObservableCallback(
    (result) => {
      const now = Date.now();
      const byState = new Map<string, number>();
      for (const run of engine.book.all()) {
        byState.set(run.status, (byState.get(run.status) ?? 0) + 1);
        // Finished rollouts keep their last counts in the ledger; the gauge follows live work only.
        if (FINISHED.has(run.status)) continue;
        const phases = new Map<string, number>();
        for (const host of run.hosts.values()) {
          const phase = hostPhase(run, host, now);
          phases.set(phase, (phases.get(phase) ?? 0) + 1);
        }
        for (const [state, n] of phases)
          result.observe(hosts, n, { rollout: run.rolloutId, patch: `${run.patchId} ${run.version}`, state });
      }
      for (const [state, n] of byState) result.observe(rollouts, n, { state });
    },
    [hosts, rollouts],
  );
}
