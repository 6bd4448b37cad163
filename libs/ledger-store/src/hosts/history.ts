import type * as model from '@rebootless/ledger-model';
import type { HostRow } from '../projection';

/**
 * What exposure is computed from. The hosts read model keeps the host's current kernel only, so
 * the whole history is taken as running it (a kernel history per host is not stored yet).
 */
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
