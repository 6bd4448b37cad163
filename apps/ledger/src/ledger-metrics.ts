// The ledger's metrics (ADR 0019): hosts by verdict, hosts exposed per CVE, how far the
// projection is behind the log and how many records it has projected. Read from the read models
// when a scrape or an export asks; one computation serves every instrument of that collection.
import { ledger } from '@rebootless/contracts';
import { replayLag } from '@rebootless/ledger-store';
import { rebootlessMeter } from '@rebootless/telemetry';
import type { LedgerRuntime } from './ledger-runtime';

interface Snapshot {
  verdicts: Map<string, number>;
  exposed: Map<string, number>;
  lag: number;
  projected: number;
}

/** Two readers (scrape and OTLP) collecting at once share one snapshot. */
const FRESH_MS = 2_000;

export function registerLedgerMetrics(rt: LedgerRuntime): void {
  const meter = rebootlessMeter();
  const hosts = meter.createObservableGauge('rebootless.hosts', { description: 'hosts by verdict' });
  const exposed = meter.createObservableGauge('rebootless.cve.exposed_hosts', {
    description: 'hosts exposed to a CVE whose fix is published for their kernel',
  });
  const lag = meter.createObservableGauge('rebootless.ledger.consumer.lag', {
    description: 'records in the event log the ledger has not projected yet',
  });
  const projected = meter.createObservableCounter('rebootless.ledger.records.projected', {
    description: 'records of the event log the ledger has consumed (its rate is the projection rate)',
  });
  let last: { at: number; snapshot: Promise<Snapshot> } | undefined;
  const snapshot = () => {
    if (!last || Date.now() - last.at > FRESH_MS) last = { at: Date.now(), snapshot: take(rt) };
    return last.snapshot;
  };
  meter.addBatchObservableCallback(
    async (result) => {
      const s = await snapshot();
      for (const [verdict, n] of s.verdicts) result.observe(hosts, n, { verdict });
      for (const [cve, n] of s.exposed) result.observe(exposed, n, { cve });
      result.observe(lag, s.lag);
      result.observe(projected, s.projected);
    },
    [hosts, exposed, lag, projected],
  );
}

async function take(rt: LedgerRuntime): Promise<Snapshot> {
  const verdicts = new Map<string, number>();
  for (const name of Object.keys(ledger.HostVerdict)) {
    if (!Number.isNaN(Number(name)) || name.endsWith('UNSPECIFIED') || name === 'UNRECOGNIZED') continue;
    verdicts.set(verdictLabel(name), 0);
  }
  let pageToken = '';
  do {
    const page = await rt.queries.listHosts({
      pageSize: 1000,
      pageToken,
      kernelRelease: '',
      labels: {},
      carriesPatchId: '',
      exposedToCveId: '',
      verdictDeadlineDays: 0,
    });
    for (const h of page.hosts) {
      const label = verdictLabel(ledger.HostVerdict[h.verdict] ?? 'unknown');
      verdicts.set(label, (verdicts.get(label) ?? 0) + 1);
    }
    pageToken = page.nextPageToken;
  } while (pageToken);

  const exposed = new Map<string, number>();
  // Every CVE a published patch fixes, 0 when no host is exposed: a graph that drops to nothing.
  for (const p of (await rt.queries.patchMap()).values())
    if (!p.retracted) for (const c of p.cves) exposed.set(c.id, 0);
  const openBy = new Map<string, Set<string>>();
  for (const e of await rt.queries.exposures(undefined, Date.now())) {
    if (e.exposedUntil !== null) continue;
    let set = openBy.get(e.cveId);
    if (!set) openBy.set(e.cveId, (set = new Set()));
    set.add(e.hostId);
  }
  for (const [cve, set] of openBy) exposed.set(cve, set.size);

  const positions = rt.consumer.positions;
  let consumed = 0n;
  for (const p of positions.values()) consumed += p;
  const { behind } = await replayLag(rt.kafka, rt.config.eventsTopic, positions);
  return { verdicts, exposed, lag: Number(behind), projected: Number(consumed) };
}

/** HOST_VERDICT_PATCH_MISSING → patch_missing, as Prometheus label values are usually written. */
function verdictLabel(name: string): string {
  return name.replace(/^HOST_VERDICT_/, '').toLowerCase();
}
