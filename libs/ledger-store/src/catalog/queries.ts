import { ledger } from '@rebootless/contracts';
import { LedgerDatabase, num } from '../database';
import { decodeToken, encodeToken, pageSize, ts } from '../query-paging';
import { type ArtifactRow, type PatchRow, patchFromRow } from './columns';

// The catalog's queries.

/** The catalog: each published patch version with its build's manifests joined in. */
export async function patchMap(db: LedgerDatabase): Promise<Map<string, PatchRow>> {
  const builds = new Map<string, { description: string; artifacts: ArtifactRow[] }>();
  for (const r of await db.query('SELECT build_id, description, artifacts FROM builds'))
    builds.set(String(r['build_id']), {
      description: String(r['description']),
      artifacts: JSON.parse(String(r['artifacts'])) as ArtifactRow[],
    });
  const out = new Map<string, PatchRow>();
  for (const r of await db.query('SELECT * FROM patches')) {
    const p = patchFromRow(r);
    const b = builds.get(p.buildId);
    if (b) {
      p.description ||= b.description;
      p.artifacts = p.artifacts.map((a) => {
        const built = b.artifacts.find((x) => x.kernelRelease === a.kernelRelease);
        return built ? { ...a, moduleName: built.moduleName, functions: built.functions } : a;
      });
    }
    out.set(`${p.patchId}@${p.version}`, p);
  }
  return out;
}

export async function listPatches(
  db: LedgerDatabase,
  req: ledger.ListPatchesRequest,
): Promise<ledger.ListPatchesResponse> {
  const size = pageSize(req.pageSize);
  const skip = decodeToken(req.pageToken);
  const carrying = new Map<string, number>();
  for (const r of await db.query(
    'SELECT patch_id, version, COUNT(DISTINCT host_id) AS n FROM stack_intervals WHERE removed_at IS NULL AND enabled = 1 GROUP BY patch_id, version',
  ))
    carrying.set(`${String(r['patch_id'])}@${String(r['version'])}`, num(r['n']));
  const all = [...(await patchMap(db)).values()]
    .filter((p) => req.includeRetracted || !p.retracted)
    .filter((p) => !req.cveId || p.cves.some((c) => c.id === req.cveId))
    .filter((p) => !req.kernelRelease || p.artifacts.some((a) => a.kernelRelease === req.kernelRelease))
    .sort((a, b) => a.publishedAt - b.publishedAt || (a.patchId < b.patchId ? -1 : 1));
  const patches: ledger.Patch[] = all.slice(skip, skip + size).map((p) => ({
    patchId: p.patchId,
    version: p.version,
    patchName: p.patchName,
    description: p.description,
    cves: p.cves,
    severity: p.severity,
    replace: p.replace,
    buildId: p.buildId,
    artifacts: p.artifacts.map((a) => ({
      kernelRelease: a.kernelRelease,
      artifactDigest: a.artifactDigest,
      vermagic: a.vermagic,
    })),
    publishedAt: ts(p.publishedAt),
    retracted: p.retracted,
    retractionReason: p.retractionReason,
    hostsCarrying: carrying.get(`${p.patchId}@${p.version}`) ?? 0,
  }));
  return { patches, nextPageToken: skip + size < all.length ? encodeToken(skip + size) : '' };
}
