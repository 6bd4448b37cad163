import type { ledger } from '@rebootless/contracts';
import { openVexDocument, vexFindings } from '@rebootless/ledger-model';
import { InvalidArgumentError, NotFoundError } from './errors';
import { withCatalog } from './stacks/read';
import { LedgerQueries, instantOf } from './queries';

// VexReport: each selected host's live stack and CVE exposure, as OpenVEX (libs/ledger-model/src/vex.ts).

export async function vexReport(q: LedgerQueries, req: ledger.VexReportRequest): Promise<ledger.VexReportResponse> {
  const labels = Object.entries(req.labels);
  if (req.hostIds.length === 0 && labels.length === 0)
    throw new InvalidArgumentError('host_ids', 'name the hosts, or give labels: never the whole fleet by omission');
  const asOf = instantOf(req.asOf, 'as_of') ?? Date.now();
  const all = await q.hosts();
  for (const id of req.hostIds)
    if (!all.some((h) => h.hostId === id)) throw new NotFoundError(`host ${id} is not known to the ledger`);
  const selected = all.filter(
    (h) =>
      (req.hostIds.length === 0 || req.hostIds.includes(h.hostId)) &&
      labels.every(([k, v]) => h.labels[k] === v) &&
      h.enrolledAt !== null &&
      h.enrolledAt <= asOf,
  );
  const exposures = await q.exposures(selected, asOf);
  const patches = await q.patchMap();
  const response: ledger.VexReportResponse = { documents: [], hostsWithoutStatements: [] };
  for (const h of selected) {
    const live = (await q.intervalsAt(h.hostId, asOf)).map((i) => withCatalog(i, patches, undefined));
    const findings = vexFindings(
      live,
      exposures.filter((e) => e.hostId === h.hostId),
      asOf,
    );
    if (findings.length === 0) {
      response.hostsWithoutStatements.push(h.hostId);
      continue;
    }
    const doc = openVexDocument(
      {
        hostId: h.hostId,
        kernelRelease: h.kernelRelease,
        kernelVersion: h.kernelVersion,
        arch: h.arch,
        distro: h.distro,
      },
      findings,
      asOf,
    );
    response.documents.push({
      hostId: h.hostId,
      openvexJson: JSON.stringify(doc, null, 2),
      fixed: findings.filter((f) => f.status === 'fixed').length,
      affected: findings.filter((f) => f.status === 'affected').length,
    });
  }
  return response;
}
