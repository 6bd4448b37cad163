import type { events } from '@rebootless/contracts';
import type { StackInterval } from '@rebootless/ledger-model';
import type { PatchRow } from '../projection';
import type { IntervalRow } from './columns';

/**
 * A stored interval with what the host's stream cannot say, joined from the other streams when
 * read: its patch's CVEs (catalog) and who is accountable for it (the rollout's creator).
 */
export function withCatalog(
  i: IntervalRow,
  patches: ReadonlyMap<string, PatchRow>,
  appliedBy: events.Actor | undefined,
): StackInterval {
  return { ...i, cves: patches.get(`${i.patchId}@${i.version}`)?.cves ?? [], appliedBy };
}
