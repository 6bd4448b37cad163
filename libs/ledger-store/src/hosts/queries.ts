import { Timestamp, dispatcher, events, ledger } from '@rebootless/contracts';
import { num } from '../database';
import type { Dialect, LedgerDatabase } from '../database';
import { InvalidArgumentError, NotFoundError } from '../errors';
import { type PatchRow } from '../catalog/columns';
import { type IntervalRow, intervalFromRow } from '../stacks/columns';
import { type HostRow, hostFromRow } from './columns';
import {
  ExposureInterval,
  cveExposure,
  effectiveKernel,
  fixPublications,
  hostVerdict,
  HostVerdictResult,
  liveFunctions,
} from '@rebootless/ledger-model';
import { toPublishedPatch } from '../catalog/published';
import { listPatches, patchMap } from '../catalog/queries';
import { toHostHistory } from './history';
import { quarantinesOf } from './quarantines';
import { withCatalog } from '../stacks/read';
import { getRollout } from '../rollouts/queries';
import { auditRecord, queryAudit } from '../audit/queries';
import { integrityFindingCount, integrityFindings } from '../findings/queries';
import {
  MAX_SECONDS,
  MIN_SECONDS,
  decodeAfterToken,
  decodeToken,
  encodeAfterToken,
  encodeToken,
  instantOf,
  pageSize,
  ts,
} from '../query-paging';
import { VERDICT_WIRE } from '../verdict-wire';
export { auditRecord } from '../audit/queries';
export { instantOf, type PageToken } from '../query-paging';

// The queries of the hosts read model and their stacks, with the answers that join the catalog
// and rollouts in (verdicts, exposure, who applied what). Each other read model's queries are in
// its folder; ../queries.ts gathers them.

const S = ledger.StackEntryState;
const stateOf = (s: string) =>
  s === 'enabled'
    ? S.STACK_ENTRY_STATE_ENABLED
    : s === 'in-transition'
      ? S.STACK_ENTRY_STATE_IN_TRANSITION
      : S.STACK_ENTRY_STATE_DISABLED;

export interface LedgerQueryOptions {
  /** A host is online when its agent was heard from within this many ms. */
  onlineWindowMs: number;
  now?: () => number;
}

/** Host ids bound at most this many at a time in an IN list. */
const HOSTS_PER_QUERY = 1000;

/** Answers LedgerService queries from the committed read models. */
export class LedgerQueries {
  private readonly now: () => number;

  constructor(
    readonly db: LedgerDatabase,
    private readonly opts: LedgerQueryOptions = { onlineWindowMs: 10 * 60_000 },
  ) {
    this.now = opts.now ?? Date.now;
  }

  async hostRow(hostId: string): Promise<HostRow> {
    if (!hostId) throw new InvalidArgumentError('host_id', 'is required');
    const rows = await this.db.query('SELECT * FROM hosts WHERE host_id = $1', [hostId]);
    if (rows.length === 0) throw new NotFoundError(`host ${hostId} is not known to the ledger`);
    return hostFromRow(rows[0]!);
  }

  /** The catalog: each published patch version with its build's manifests joined in. */
  patchMap(): Promise<Map<string, PatchRow>> {
    return patchMap(this.db);
  }

  listPatches(req: ledger.ListPatchesRequest): Promise<ledger.ListPatchesResponse> {
    return listPatches(this.db, req);
  }

  getRollout(rolloutId: string, view?: dispatcher.RolloutView): Promise<ledger.GetRolloutResponse> {
    return getRollout(this.db, rolloutId, view);
  }

  /** Audit records matching the query, oldest first, fetched a page at a time. */
  queryAudit(req: ledger.QueryAuditRequest): AsyncGenerator<ledger.AuditRecord> {
    return queryAudit(this.db, req);
  }

  integrityFindingCount(): Promise<number> {
    return integrityFindingCount(this.db);
  }

  integrityFindings(): ReturnType<typeof integrityFindings> {
    return integrityFindings(this.db);
  }

  /** Names the patch of entries the kernel listed without saying whose they are (module name). */
  private resolve(intervals: IntervalRow[], patches: Map<string, PatchRow>): IntervalRow[] {
    if (intervals.every((i) => i.patchId)) return intervals;
    const byModule = new Map<string, PatchRow>();
    for (const p of patches.values()) for (const a of p.artifacts) if (a.moduleName) byModule.set(a.moduleName, p);
    return intervals.map((i) => {
      const p = i.patchId ? undefined : byModule.get(i.moduleName);
      return p ? { ...i, patchId: p.patchId, version: p.version, replace: i.replace || p.replace } : i;
    });
  }

  /**
   * `sql(inList, n)` run for the hosts a bounded IN list at a time (`inList` holds $n+1...), the
   * rows joined: a page of hosts asks for its own rows, not the fleet's.
   */
  private async forHosts(
    hostIds: readonly string[],
    sql: (inList: string, first: number) => string,
    params: unknown[] = [],
  ): Promise<Record<string, unknown>[]> {
    const out: Record<string, unknown>[] = [];
    for (let i = 0; i < hostIds.length; i += HOSTS_PER_QUERY) {
      const chunk = hostIds.slice(i, i + HOSTS_PER_QUERY);
      const inList = chunk.map((_, j) => `$${params.length + j + 1}`).join(',');
      out.push(...(await this.db.query(sql(inList, params.length), [...params, ...chunk])));
    }
    return out;
  }

  /** Each host's open intervals, oldest first. */
  private async openIntervalsOf(hostIds: readonly string[]): Promise<Map<string, IntervalRow[]>> {
    const out = new Map<string, IntervalRow[]>(hostIds.map((id) => [id, []]));
    const rows = await this.forHosts(
      hostIds,
      (inList) =>
        `SELECT * FROM stack_intervals WHERE host_id IN (${inList}) AND removed_at IS NULL ORDER BY host_id, stack_seq`,
    );
    for (const r of rows) {
      const i = intervalFromRow(r);
      out.get(i.hostId)?.push(i);
    }
    return out;
  }

  private async rolloutCreators(ids: string[]): Promise<Map<string, events.Actor>> {
    const out = new Map<string, events.Actor>();
    const wanted = [...new Set(ids.filter(Boolean))];
    if (wanted.length === 0) return out;
    const rows = await this.db.query(
      `SELECT rollout_id, created_by FROM rollouts WHERE rollout_id IN (${wanted.map((_, i) => `$${i + 1}`).join(',')})`,
      wanted,
    );
    for (const r of rows) out.set(String(r['rollout_id']), JSON.parse(String(r['created_by'])) as events.Actor);
    return out;
  }

  /** The intervals open at `at` (now when undefined), oldest first. */
  async intervalsAt(hostId: string, at?: number): Promise<IntervalRow[]> {
    const rows =
      at === undefined
        ? await this.db.query(
            'SELECT * FROM stack_intervals WHERE host_id = $1 AND removed_at IS NULL ORDER BY stack_seq',
            [hostId],
          )
        : await this.db.query(
            'SELECT * FROM stack_intervals WHERE host_id = $1 AND applied_at <= $2 AND (removed_at IS NULL OR removed_at > $3) ORDER BY stack_seq',
            [hostId, at, at],
          );
    return rows.map(intervalFromRow);
  }

  /** `known`: the creators of the rollouts already looked up (a page of hosts asks once). */
  async stack(
    h: HostRow,
    raw: IntervalRow[],
    patches: Map<string, PatchRow>,
    observedAt: number | null,
    known?: ReadonlyMap<string, events.Actor>,
  ): Promise<ledger.HostStack> {
    const intervals = this.resolve(raw, patches);
    // Who applied it: the operator who created the rollout, else whoever the event names.
    const creators = known ?? (await this.rolloutCreators(intervals.map((i) => i.rolloutId)));
    const entries: ledger.StackEntry[] = intervals.map((i, n) => {
      const patch = patches.get(`${i.patchId}@${i.version}`);
      return {
        position: n + 1,
        moduleName: i.moduleName,
        patch: i.patchId ? { patchId: i.patchId, version: i.version } : undefined,
        state: stateOf(i.state),
        enabled: i.enabled,
        replace: i.replace,
        forced: i.forced,
        cveIds: (patch?.cves ?? []).map((c) => c.id),
        functions: i.functions,
        appliedBy: creators.get(i.rolloutId) ?? i.appliedBy,
        rolloutId: i.rolloutId,
        appliedAt: ts(i.appliedAt),
      };
    });
    const model = intervals.map((i) => withCatalog(i, patches, creators.get(i.rolloutId) ?? i.appliedBy));
    const functions: ledger.LiveFunction[] = liveFunctions(model).map((f) => ({
      function: f.function,
      runs: {
        moduleName: f.runs.moduleName,
        patch: f.runs.patchId ? { patchId: f.runs.patchId, version: f.runs.version } : undefined,
      },
    }));
    return {
      entries,
      functions,
      effectiveKernel: effectiveKernel(h.kernelRelease, model),
      kernelRelease: h.kernelRelease,
      bootId: intervals[intervals.length - 1]?.bootId ?? h.bootId,
      observedAt: ts(observedAt),
    };
  }

  private online(h: HostRow): boolean {
    return this.now() - h.lastSeenAt <= this.opts.onlineWindowMs;
  }

  /** Each host's verdict now (ADR 0019), from its open intervals, exposure and drift reports. */
  async verdicts(
    hosts: HostRow[],
    open: ReadonlyMap<string, IntervalRow[]>,
    patches: Map<string, PatchRow>,
    deadlineDays: number,
    quarantines: ReadonlyMap<string, readonly ledger.HostQuarantine[]> = new Map(),
  ): Promise<Map<string, HostVerdictResult>> {
    const asOf = this.now();
    const exposures = await this.exposures(hosts, asOf);
    const published = [...patches.values()].map(toPublishedPatch);
    const driftAt = new Map<string, number>();
    for (const r of await this.forHosts(
      hosts.map((h) => h.hostId),
      (inList) =>
        `SELECT host_id, MAX(occurred_at) AS at FROM audit_log WHERE type = 'DriftDetected' AND host_id IN (${inList}) GROUP BY host_id`,
    ))
      driftAt.set(String(r['host_id']), num(r['at']));
    const exposuresOf = new Map<string, ExposureInterval[]>();
    for (const e of exposures) exposuresOf.set(e.hostId, [...(exposuresOf.get(e.hostId) ?? []), e]);
    const out = new Map<string, HostVerdictResult>();
    for (const h of hosts) {
      const drift = driftAt.get(h.hostId);
      out.set(
        h.hostId,
        hostVerdict({
          kernelRelease: h.kernelRelease,
          online: this.online(h),
          stack: this.resolve(open.get(h.hostId) ?? [], patches).map((i) => ({
            patchId: i.patchId,
            version: i.version,
            moduleName: i.moduleName,
            live: i.enabled && i.state === 'enabled',
            forced: i.forced,
          })),
          published,
          exposures: exposuresOf.get(h.hostId) ?? [],
          driftReported: drift !== undefined && drift > (h.stackObservedAt ?? -Infinity),
          asOf,
          deadlineDays: deadlineDays || 30,
          quarantined: (quarantines.get(h.hostId) ?? []).flatMap((q) => (q.patch ? [q.patch] : [])),
        }),
      );
    }
    return out;
  }

  private hostMessage(
    h: HostRow,
    stack: ledger.HostStack,
    intervals: IntervalRow[],
    verdict: HostVerdictResult | undefined,
    quarantined: ledger.HostQuarantine[] = [],
  ): ledger.Host {
    return {
      facts: {
        hostId: h.hostId,
        hostname: h.hostname,
        machineId: h.machineId,
        kernelRelease: h.kernelRelease,
        kernelVersion: h.kernelVersion,
        arch: h.arch,
        distro: h.distro,
        bootId: h.bootId,
        labels: h.labels,
        agentVersion: h.agentVersion,
        tainted: String(h.tainted),
        taintFlags: h.taintFlags,
      },
      stack,
      rebootRequired: intervals.some((i) => i.forced),
      enrolledAt: ts(h.enrolledAt),
      lastSeenAt: ts(h.lastSeenAt),
      online: this.online(h),
      verdict: verdict ? VERDICT_WIRE[verdict.verdict] : ledger.HostVerdict.HOST_VERDICT_UNSPECIFIED,
      verdictReasons: verdict?.reasons ?? [],
      missingPatches: verdict?.missing ?? [],
      quarantined,
    };
  }

  async getHost(hostId: string, verdictDeadlineDays = 0): Promise<ledger.GetHostResponse> {
    const h = await this.hostRow(hostId);
    const intervals = await this.intervalsAt(hostId);
    const patches = await this.patchMap();
    const stack = await this.stack(h, intervals, patches, h.stackObservedAt);
    const quarantines = await quarantinesOf(this.db, [hostId]);
    const verdicts = await this.verdicts(
      [h],
      new Map([[hostId, intervals]]),
      patches,
      verdictDeadlineDays,
      quarantines,
    );
    return { host: this.hostMessage(h, stack, intervals, verdicts.get(hostId), quarantines.get(hostId)) };
  }

  /**
   * Hosts by host id, a page at a time from where the last page ended (the token names its last
   * host): a page reads its own hosts and their rows, whatever the fleet's size.
   */
  async listHosts(req: ledger.ListHostsRequest): Promise<ledger.ListHostsResponse> {
    const size = pageSize(req.pageSize);
    const found: HostRow[] = [];
    // One more host than the page shows whether another page follows.
    for await (const matching of this.hostsMatching(req, decodeAfterToken(req.pageToken), Math.max(size + 1, 200))) {
      found.push(...matching);
      if (found.length > size) break;
    }
    const page = found.slice(0, size);
    const patches = await this.patchMap();
    const ids = page.map((h) => h.hostId);
    const open = await this.openIntervalsOf(ids);
    const quarantines = await quarantinesOf(this.db, ids);
    const verdicts = await this.verdicts(page, open, patches, req.verdictDeadlineDays, quarantines);
    const creators = await this.rolloutCreators([...open.values()].flat().map((i) => i.rolloutId));
    const hosts: ledger.Host[] = [];
    for (const h of page) {
      const intervals = open.get(h.hostId)!;
      hosts.push(
        this.hostMessage(
          h,
          await this.stack(h, intervals, patches, h.stackObservedAt, creators),
          intervals,
          verdicts.get(h.hostId),
          quarantines.get(h.hostId),
        ),
      );
    }
    return { hosts, nextPageToken: found.length > size ? encodeAfterToken(page[page.length - 1]!.hostId) : '' };
  }

  /**
   * ListHosts' filters counted: one SQL count, or a chunk of rows at a time when exposure to a CVE
   * is asked (judged here); no stacks, verdicts or messages built.
   */
  async countHosts(req: ledger.CountHostsRequest): Promise<ledger.CountHostsResponse> {
    if (!req.exposedToCveId) {
      const { where, params } = hostFilter(req, this.db.dialect);
      const rows = await this.db.query(
        `SELECT COUNT(*) AS n FROM hosts${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''}`,
        params,
      );
      return { hosts: num(rows[0]!['n']) };
    }
    let hosts = 0;
    for await (const matching of this.hostsMatching(req, '', 5000)) hosts += matching.length;
    return { hosts };
  }

  /**
   * The hosts after a host id that match every filter, in host id order, a chunk of rows at a
   * time: exposure is judged here, the rest in SQL.
   */
  private async *hostsMatching(req: HostFilterRequest, after: string, chunk: number): AsyncGenerator<HostRow[]> {
    const { where, params } = hostFilter(req, this.db.dialect);
    for (let more = true; more;) {
      const rows = await this.db.query(
        `SELECT * FROM hosts WHERE ${[...where, `host_id > $${params.length + 1}`].join(' AND ')} ORDER BY host_id LIMIT ${chunk}`,
        [...params, after],
      );
      more = rows.length === chunk;
      let matching = rows.map(hostFromRow);
      if (req.exposedToCveId && matching.length > 0) {
        const exposed = new Set(
          (await this.exposures(matching, this.now()))
            .filter((e) => e.cveId === req.exposedToCveId && e.exposedUntil === null)
            .map((e) => e.hostId),
        );
        matching = matching.filter((h) => exposed.has(h.hostId));
      }
      if (rows.length > 0) after = hostFromRow(rows[rows.length - 1]!).hostId;
      yield matching;
    }
  }

  async getHostStackAt(hostId: string, atTs: Timestamp | undefined): Promise<ledger.GetHostStackAtResponse> {
    const at = instantOf(atTs, 'at', true);
    const h = await this.hostRow(hostId);
    if (h.enrolledAt === null || h.enrolledAt > at)
      throw new NotFoundError(
        `host ${hostId} was not enrolled yet at ${new Date(at).toISOString()}` +
          (h.enrolledAt !== null ? ` (enrolled ${new Date(h.enrolledAt).toISOString()})` : ''),
      );
    const intervals = await this.intervalsAt(hostId, at);
    const asOfRows = await this.db.query(
      `SELECT * FROM audit_log WHERE host_id = $1 AND occurred_at <= $2 ORDER BY occurred_at DESC, partition_no DESC, record_offset DESC LIMIT 1`,
      [hostId, at],
    );
    const asOf = asOfRows[0] ? auditRecord(asOfRows[0], false) : undefined;
    const stack = await this.stack(
      h,
      intervals,
      await this.patchMap(),
      asOfRows[0] ? num(asOfRows[0]['occurred_at']) : null,
    );
    return { stack, asOf };
  }

  async getHostHistory(req: ledger.GetHostHistoryRequest): Promise<ledger.GetHostHistoryResponse> {
    await this.hostRow(req.hostId);
    const from = instantOf(req.from, 'from');
    const to = instantOf(req.to, 'to');
    if (from !== undefined && to !== undefined && from > to) throw new InvalidArgumentError('from', 'is after to');
    const size = pageSize(req.pageSize);
    const skip = decodeToken(req.pageToken);
    const rows = await this.db.query(
      `SELECT * FROM audit_log WHERE host_id = $1 AND occurred_at >= $2 AND occurred_at <= $3
       ORDER BY occurred_at, partition_no, record_offset LIMIT ${size + 1} OFFSET ${skip}`,
      [req.hostId, from ?? MIN_SECONDS * 1000, to ?? MAX_SECONDS * 1000],
    );
    return {
      records: rows.slice(0, size).map((r) => auditRecord(r, false)),
      nextPageToken: rows.length > size ? encodeToken(skip + size) : '',
    };
  }

  /** Every host's exposure intervals (open and closed) as of an instant, from its stack history and the catalog. */
  async exposures(hosts?: HostRow[], asOf = Infinity): Promise<ExposureInterval[]> {
    const patches = await this.patchMap();
    const fixes = fixPublications([...patches.values()].map(toPublishedPatch));
    const history = new Map<string, IntervalRow[]>();
    const rows = hosts
      ? await this.forHosts(
          hosts.map((h) => h.hostId),
          (inList) => `SELECT * FROM stack_intervals WHERE host_id IN (${inList}) ORDER BY host_id, stack_seq`,
        )
      : await this.db.query('SELECT * FROM stack_intervals ORDER BY host_id, stack_seq');
    for (const r of rows) {
      const i = intervalFromRow(r);
      const list = history.get(i.hostId);
      if (list) list.push(i);
      else history.set(i.hostId, [i]);
    }
    const out: ExposureInterval[] = [];
    for (const h of hosts ?? (await this.hosts())) {
      const intervals = this.resolve(history.get(h.hostId) ?? [], patches).map((i) =>
        withCatalog(i, patches, i.appliedBy),
      );
      const host = toHostHistory(h, intervals);
      if (host) out.push(...cveExposure(host, fixes, asOf));
    }
    return out;
  }

  async hosts(): Promise<HostRow[]> {
    return (await this.db.query('SELECT * FROM hosts ORDER BY host_id')).map(hostFromRow);
  }
}

/** What ListHosts and CountHosts filter on. */
type HostFilterRequest = Pick<
  ledger.ListHostsRequest,
  'kernelRelease' | 'labels' | 'carriesPatchId' | 'exposedToCveId'
>;

/** The filters SQL can judge, as conditions on the hosts table and their parameters. */
function hostFilter(req: HostFilterRequest, dialect: Dialect): { where: string[]; params: unknown[] } {
  const where: string[] = [];
  const params: unknown[] = [];
  // Labels are one JSON object of strings a host: read in SQL, not by parsing every host's row
  // here (a count over 100,000 hosts took seconds, and held the projection up while it ran).
  for (const [key, value] of Object.entries(req.labels)) {
    params.push(key, value);
    const [k, v] = [`$${params.length - 1}`, `$${params.length}`];
    where.push(
      dialect === 'postgres'
        ? `(labels::jsonb ->> ${k}) = ${v}`
        : `EXISTS (SELECT 1 FROM json_each(hosts.labels) WHERE json_each.key = ${k} AND json_each.type = 'text' AND json_each.value = ${v})`,
    );
  }
  if (req.kernelRelease) {
    params.push(req.kernelRelease);
    where.push(`kernel_release = $${params.length}`);
  }
  if (req.carriesPatchId) {
    params.push(req.carriesPatchId);
    where.push(
      `host_id IN (SELECT host_id FROM stack_intervals WHERE patch_id = $${params.length} AND removed_at IS NULL AND enabled = 1)`,
    );
  }
  return { where, params };
}
