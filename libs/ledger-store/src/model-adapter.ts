import type { events } from '@rebootless/contracts';
import type * as model from '@rebootless/ledger-model';
import { HostRow, IntervalRow, PatchRow } from './projection';

// The read-model rows as the pure ledger rules (libs/ledger-model) take them.

export function toPublishedPatch(p: PatchRow): model.PublishedPatch {
  return {
    patchId: p.patchId,
    version: p.version,
    replace: p.replace,
    cves: p.cves,
    severity: p.severity,
    publishedAt: p.publishedAt,
    publishedEventId: p.publishedEventId,
    retracted: p.retracted,
    artifacts: p.artifacts.map((a) => ({
      kernelRelease: a.kernelRelease,
      moduleName: a.moduleName,
      functions: a.functions,
    })),
  };
}

/**
 * A stored interval as the model's StackInterval. The store keeps an interval's last observed
 * state, so its state history is that one state from when it was applied.
 */
export function toStackInterval(
  i: IntervalRow,
  patches: ReadonlyMap<string, PatchRow>,
  appliedBy: events.Actor | undefined,
): model.StackInterval {
  const live = i.enabled && i.state === 'enabled';
  return {
    intervalId: i.intervalId,
    hostId: i.hostId,
    stackSeq: i.stackSeq,
    bootId: i.bootId,
    moduleName: i.moduleName,
    patchId: i.patchId,
    version: i.version,
    replace: i.replace,
    forced: i.forced,
    functions: i.functions,
    cves: patches.get(`${i.patchId}@${i.version}`)?.cves ?? [],
    state: i.state,
    enabled: i.enabled,
    states: [{ at: i.appliedAt, state: i.state, enabled: i.enabled, eventId: i.appliedEventId }],
    appliedBy,
    rolloutId: i.rolloutId,
    appliedAt: i.appliedAt,
    appliedEventId: i.appliedEventId,
    liveFrom: live ? i.appliedAt : null,
    liveFromEventId: live ? i.appliedEventId : null,
    liveUntil: live ? i.removedAt : null,
    liveUntilEventId: live ? i.removedEventId : null,
    removedAt: i.removedAt,
    removalReason: i.removalReason,
    removedEventId: i.removedEventId,
  };
}

/** What exposure is computed from. The store keeps the host's current kernel only. */
export function toHostHistory(h: HostRow, intervals: readonly model.StackInterval[]): model.HostHistory | undefined {
  if (h.enrolledAt === null) return undefined;
  return {
    hostId: h.hostId,
    enrolledAt: h.enrolledAt,
    enrolledEventId: h.enrolledEventId,
    kernels: [{ release: h.kernelRelease, from: h.enrolledAt, eventId: h.enrolledEventId }],
    intervals,
  };
}
