// Splits the targeted hosts into a canary and waves. Percentages are of the hosts left after the
// canary, and a plan must cover every target exactly once: counts must sum to that number,
// percentages to 100 (docs/adr/0007-rollouts.md).
import { events } from '@rebootless/contracts';
import { RolloutInputError } from './errors';
import { isWindowSet, parseWindow } from './maintenance-window';

export const DEFAULT_STRATEGY: Readonly<events.RolloutStrategy> = Object.freeze({
  canaryHostIds: [],
  canaryCount: 1,
  waves: [{ percent: 100 }],
  maxInFlight: 0,
  soakSeconds: 300,
  waveFailureBudget: 0,
  totalFailureBudget: 0,
  window: undefined,
  approvalBeforeFirstWave: false,
  approvalBetweenWaves: false,
  onFailure: events.FailurePolicy.FAILURE_POLICY_PAUSE,
  applyTimeoutSeconds: 600,
  offlineDeadlineSeconds: 3600,
});

/** The strategy as the rollout will run it: unset numbers get the dispatcher's defaults. */
export function effectiveStrategy(requested: events.RolloutStrategy | undefined): events.RolloutStrategy {
  if (!requested) return { ...DEFAULT_STRATEGY, waves: [...DEFAULT_STRATEGY.waves] };
  return {
    ...requested,
    waves: requested.waves.length > 0 ? requested.waves : [{ percent: 100 }],
    onFailure: requested.onFailure || DEFAULT_STRATEGY.onFailure,
    applyTimeoutSeconds: requested.applyTimeoutSeconds || DEFAULT_STRATEGY.applyTimeoutSeconds,
    offlineDeadlineSeconds: requested.offlineDeadlineSeconds || DEFAULT_STRATEGY.offlineDeadlineSeconds,
  };
}

export function planWaves(targets: readonly string[], strategy: events.RolloutStrategy): events.PlannedWave[] {
  if (isWindowSet(strategy.window)) parseWindow(strategy.window);
  const targetSet = new Set(targets);
  const explicit = [...new Set(strategy.canaryHostIds)];
  const outside = explicit.filter((id) => !targetSet.has(id));
  if (outside.length > 0) {
    throw new RolloutInputError(
      'strategy.canary_host_ids',
      `${outside.join(', ')} ${outside.length === 1 ? 'is' : 'are'} not among the hosts the rollout targets`,
    );
  }
  const canarySize = Math.max(strategy.canaryCount, explicit.length);
  if (canarySize > targets.length) {
    throw new RolloutInputError(
      'strategy.canary_count',
      `${canarySize} canary hosts asked but the selection targets ${targets.length}`,
    );
  }
  const canary = [...explicit];
  const chosen = new Set(explicit);
  for (const id of targets) {
    if (canary.length >= canarySize) break;
    if (!chosen.has(id)) {
      canary.push(id);
      chosen.add(id);
    }
  }
  const rest = targets.filter((id) => !chosen.has(id));
  const sizes = waveSizes(strategy.waves, rest.length);

  const plan: events.PlannedWave[] = [];
  if (canary.length > 0) plan.push({ index: 0, name: 'canary', hostIds: canary });
  let at = 0;
  let n = 0;
  for (const size of sizes) {
    // A small fleet can leave a percentage wave empty: it is dropped, not run.
    if (size === 0) continue;
    n += 1;
    plan.push({ index: plan.length, name: `wave ${n}`, hostIds: rest.slice(at, at + size) });
    at += size;
  }
  return plan;
}

function waveSizes(waves: readonly events.WaveSize[], hosts: number): number[] {
  if (waves.length === 0) return [hosts];
  const kinds = new Set(waves.map((w, i) => kindOf(w, i)));
  if (kinds.size > 1) {
    throw new RolloutInputError('strategy.waves', 'mixes counts and percentages; give every wave as one or the other');
  }
  if (kinds.has('count')) {
    const total = waves.reduce((sum, w) => sum + (w.count ?? 0), 0);
    if (total !== hosts) {
      throw new RolloutInputError(
        'strategy.waves',
        `wave counts add up to ${total} but ${hosts} host(s) remain after the canary`,
      );
    }
    return waves.map((w) => w.count ?? 0);
  }
  const total = waves.reduce((sum, w) => sum + (w.percent ?? 0), 0);
  if (total !== 100) {
    throw new RolloutInputError('strategy.waves', `wave percentages add up to ${total}, not 100`);
  }
  // Cumulative rounding: every host lands in exactly one wave whatever the fleet size.
  const sizes: number[] = [];
  let cumulative = 0;
  let placed = 0;
  for (const w of waves) {
    cumulative += w.percent ?? 0;
    const upTo = Math.round((cumulative * hosts) / 100);
    sizes.push(upTo - placed);
    placed = upTo;
  }
  return sizes;
}

function kindOf(wave: events.WaveSize, index: number): 'count' | 'percent' {
  if (wave.count !== undefined) {
    if (wave.count < 1) throw new RolloutInputError(`strategy.waves[${index}].count`, 'must be at least 1');
    return 'count';
  }
  if (wave.percent !== undefined) {
    if (wave.percent < 1 || wave.percent > 100) {
      throw new RolloutInputError(`strategy.waves[${index}].percent`, `${wave.percent} is not from 1 to 100`);
    }
    return 'percent';
  }
  throw new RolloutInputError(`strategy.waves[${index}]`, 'sets neither count nor percent');
}
