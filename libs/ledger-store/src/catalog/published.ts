import type * as model from '@rebootless/ledger-model';
import type { PatchRow } from '../projection';

/** A patches row as the domain's catalog entry. */
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
