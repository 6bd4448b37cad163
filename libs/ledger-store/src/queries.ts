import { Timestamp, events, ledger, toTimestamp } from '@rebootless/contracts';
import { LedgerDatabase, num } from './database';
import { InvalidArgumentError, NotFoundError } from './errors';
import {
  ArtifactRow,
  HostRow,
  IntervalRow,
  PatchRow,
  hostFromRow,
  intervalFromRow,
  patchFromRow,
  rolloutFromRow,
  rolloutHostFromRow,
} from './projection';
import {
  ExposureInterval,
  cveExposure,
  effectiveKernel,
  fixPublications,
  hostVerdict,
  HostVerdictResult,
  liveFunctions,
} from '@rebootless/ledger-model';
import { toPublishedPatch } from './catalog/published';
import { toHostHistory } from './hosts/history';
import { quarantinesOf } from './hosts/quarantines';
import { withCatalog } from './stacks/read';
import { VERDICT_WIRE } from './verdict-wire';

const MIN_SECONDS = -62135596800;
const MAX_SECONDS = 253402300799;

/** An instant from a request: INVALID_ARGUMENT naming the field when it is not a valid Timestamp. */
export function instantOf(ts: Timestamp | undefined, field: string, required: true): number;
export function instantOf(ts: Timestamp | undefined, field: string, required?: false): number | undefined;
export function instantOf(ts: Timestamp | undefined, field: string, required = false): number | undefined {
  if (!ts) {
    if (required) throw new InvalidArgumentError(field, 'is required (a google.protobuf.Timestamp)');
    return undefined;
  }
  const seconds = Number(ts.seconds);
  if (!Number.isInteger(seconds) || seconds < MIN_SECONDS || seconds > MAX_SECONDS)
    throw new InvalidArgumentError(
      field,
      `seconds ${JSON.stringify(ts.seconds)} is not a whole number of seconds between 0001-01-01 and 9999-12-31`,
    );
  if (!Number.isInteger(ts.nanos) || ts.nanos < 0 || ts.nanos > 999_999_999)
    throw new InvalidArgumentError(field, `nanos ${ts.nanos} is outside 0 to 999999999`);
  return seconds * 1000 + Math.floor(ts.nanos / 1_000_000);
}

const ts = (msValue: number | null | undefined): Timestamp | undefined =>
  msValue === null || msValue === undefined ? undefined : toTimestamp(new Date(msValue));

const S = ledger.StackEntryState;
const stateOf = (s: string) =>
  s === 'enabled'
    ? S.STACK_ENTRY_STATE_ENABLED
    : s === 'in-transition'
      ? S.STACK_ENTRY_STATE_IN_TRANSITION
      : S.STACK_ENTRY_STATE_DISABLED;

export interface PageToken {
  after: string;
}

function pageSize(requested: number, def = 100, max = 1000): number {
  if (requested === 0) return def;
  return Math.min(requested, max);
}

function decodeToken(token: string, field = 'page_token'): number {
  if (!token) return 0;
  const n = Number(Buffer.from(token, 'base64url').toString());
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(field, 'is not a token this ledger handed out');
  return n;
}

const encodeToken = (n: number) => Buffer.from(String(n)).toString('base64url');

export interface LedgerQueryOptions {
  /** A host is online when its agent was heard from within this many ms. */
  onlineWindowMs: number;
  now?: () => number;
}

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
  async patchMap(): Promise<Map<string, PatchRow>> {
    const builds = new Map<string, { description: string; artifacts: ArtifactRow[] }>();
    for (const r of await this.db.query('SELECT build_id, description, artifacts FROM builds'))
      builds.set(String(r['build_id']), {
        description: String(r['description']),
        artifacts: JSON.parse(String(r['artifacts'])) as ArtifactRow[],
      });
    const out = new Map<string, PatchRow>();
    for (const r of await this.db.query('SELECT * FROM patches')) {
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

  async stack(
    h: HostRow,
    raw: IntervalRow[],
    patches: Map<string, PatchRow>,
    observedAt: number | null,
  ): Promise<ledger.HostStack> {
    const intervals = this.resolve(raw, patches);
    // Who applied it: the operator who created the rollout, else whoever the event names.
    const creators = await this.rolloutCreators(intervals.map((i) => i.rolloutId));
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
    for (const r of await this.db.query(
      `SELECT host_id, MAX(occurred_at) AS at FROM audit_log WHERE type = 'DriftDetected' GROUP BY host_id`,
    ))
      driftAt.set(String(r['host_id']), num(r['at']));
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
          exposures: exposures.filter((e) => e.hostId === h.hostId),
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

  async listHosts(req: ledger.ListHostsRequest): Promise<ledger.ListHostsResponse> {
    const size = pageSize(req.pageSize);
    const skip = decodeToken(req.pageToken);
    const where: string[] = [];
    const params: unknown[] = [];
    const p = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    if (req.kernelRelease) where.push(`kernel_release = ${p(req.kernelRelease)}`);
    if (req.carriesPatchId)
      where.push(
        `host_id IN (SELECT host_id FROM stack_intervals WHERE patch_id = ${p(req.carriesPatchId)} AND removed_at IS NULL AND enabled = 1)`,
      );
    const rows = await this.db.query(
      `SELECT * FROM hosts ${where.length ? 'WHERE ' + where.join(' AND ') : ''} ORDER BY host_id`,
      params,
    );
    const labels = Object.entries(req.labels);
    const patches = await this.patchMap();
    let matching = rows.map(hostFromRow).filter((h) => labels.every(([k, v]) => h.labels[k] === v));
    if (req.exposedToCveId) {
      const exposed = new Set(
        (await this.exposures(matching, this.now()))
          .filter((e) => e.cveId === req.exposedToCveId && e.exposedUntil === null)
          .map((e) => e.hostId),
      );
      matching = matching.filter((h) => exposed.has(h.hostId));
    }
    const page = matching.slice(skip, skip + size);
    const open = new Map<string, IntervalRow[]>();
    for (const h of page) open.set(h.hostId, await this.intervalsAt(h.hostId));
    const quarantines = await quarantinesOf(
      this.db,
      page.map((h) => h.hostId),
    );
    const verdicts = await this.verdicts(page, open, patches, req.verdictDeadlineDays, quarantines);
    const hosts: ledger.Host[] = [];
    for (const h of page) {
      const intervals = open.get(h.hostId)!;
      hosts.push(
        this.hostMessage(
          h,
          await this.stack(h, intervals, patches, h.stackObservedAt),
          intervals,
          verdicts.get(h.hostId),
          quarantines.get(h.hostId),
        ),
      );
    }
    return { hosts, nextPageToken: skip + size < matching.length ? encodeToken(skip + size) : '' };
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

  async listPatches(req: ledger.ListPatchesRequest): Promise<ledger.ListPatchesResponse> {
    const size = pageSize(req.pageSize);
    const skip = decodeToken(req.pageToken);
    const carrying = new Map<string, number>();
    for (const r of await this.db.query(
      'SELECT patch_id, version, COUNT(DISTINCT host_id) AS n FROM stack_intervals WHERE removed_at IS NULL AND enabled = 1 GROUP BY patch_id, version',
    ))
      carrying.set(`${String(r['patch_id'])}@${String(r['version'])}`, num(r['n']));
    const all = [...(await this.patchMap()).values()]
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

  async getRollout(rolloutId: string): Promise<ledger.GetRolloutResponse> {
    if (!rolloutId) throw new InvalidArgumentError('rollout_id', 'is required');
    const rows = await this.db.query('SELECT * FROM rollouts WHERE rollout_id = $1', [rolloutId]);
    if (rows.length === 0) throw new NotFoundError(`rollout ${rolloutId} is not in the log`);
    const ro = rolloutFromRow(rows[0]!);
    const hosts = (
      await this.db.query('SELECT * FROM rollout_hosts WHERE rollout_id = $1 ORDER BY host_id', [rolloutId])
    ).map(rolloutHostFromRow);
    const timeline = await this.db.query(
      "SELECT * FROM audit_log WHERE correlation_id = $1 AND correlation_id <> '' ORDER BY occurred_at, partition_no, record_offset",
      [rolloutId],
    );
    return {
      rollout: {
        rolloutId: ro.rolloutId,
        kind: 0,
        patchId: ro.patchId,
        version: ro.version,
        selector: ro.selector as events.HostSelector,
        strategy: ro.strategy as events.RolloutStrategy,
        state: ro.state,
        stateReason: ro.reason,
        waves: ro.waves.map((w) => ({
          index: w.index,
          name: w.name,
          state: w.state,
          hosts: hosts
            .filter((h) => h.waveIndex === w.index)
            .map((h) => ({
              hostId: h.hostId,
              state: h.outcome,
              commandId: h.commandId,
              error: h.detail,
              forced: h.detail === 'forced',
              updatedAt: ts(h.updatedAt),
            })),
          startedAt: ts(w.startedAt),
          completedAt: ts(w.completedAt),
        })),
        skippedHostIds: hosts.filter((h) => h.waveIndex === -1 && h.planned).map((h) => h.hostId),
        allowForce: false,
        allowDowngrade: false,
        createdBy: ro.createdBy,
        createdAt: ts(ro.createdAt),
        updatedAt: ts(ro.updatedAt),
      },
      timeline: timeline.map((r) => auditRecord(r, false)),
    };
  }

  /** Audit records matching the query, oldest first, fetched a page at a time. */
  async *queryAudit(req: ledger.QueryAuditRequest): AsyncGenerator<ledger.AuditRecord> {
    const from = instantOf(req.from, 'from');
    const to = instantOf(req.to, 'to');
    if (from !== undefined && to !== undefined && from > to) throw new InvalidArgumentError('from', 'is after to');
    const where: string[] = [];
    const params: unknown[] = [];
    const p = (v: unknown) => {
      params.push(v);
      return `$${params.length}`;
    };
    if (from !== undefined) where.push(`occurred_at >= ${p(from)}`);
    if (to !== undefined) where.push(`occurred_at <= ${p(to)}`);
    if (req.hostId) where.push(`host_id = ${p(req.hostId)}`);
    if (req.actorId) where.push(`actor_id = ${p(req.actorId)}`);
    if (req.correlationId) where.push(`correlation_id = ${p(req.correlationId)} AND correlation_id <> ''`);
    if (req.producerId) where.push(`producer_id = ${p(req.producerId)}`);
    if (req.types.length > 0) where.push(`type IN (${req.types.map((t) => p(t)).join(',')})`);
    // Keyset paging: stable while the projection appends.
    let cursor: [number, number, string] | undefined;
    for (;;) {
      const page = [...where];
      const pageParams = [...params];
      if (cursor) {
        const n = pageParams.length;
        pageParams.push(cursor[0], cursor[0], cursor[1], cursor[0], cursor[1], cursor[2]);
        page.push(
          `(occurred_at > $${n + 1} OR (occurred_at = $${n + 2} AND partition_no > $${n + 3}) OR (occurred_at = $${n + 4} AND partition_no = $${n + 5} AND record_offset > $${n + 6}))`,
        );
      }
      const rows = await this.db.query(
        `SELECT * FROM audit_log ${page.length ? 'WHERE ' + page.join(' AND ') : ''}
         ORDER BY occurred_at, partition_no, record_offset LIMIT 1000`,
        pageParams,
      );
      for (const r of rows) yield auditRecord(r, req.includeEnvelopes);
      if (rows.length < 1000) return;
      const last = rows[rows.length - 1]!;
      cursor = [num(last['occurred_at']), num(last['partition_no']), String(last['record_offset'])];
    }
  }

  /** Every host's exposure intervals (open and closed) as of an instant, from its stack history and the catalog. */
  async exposures(hosts?: HostRow[], asOf = Infinity): Promise<ExposureInterval[]> {
    const patches = await this.patchMap();
    const fixes = fixPublications([...patches.values()].map(toPublishedPatch));
    const history = new Map<string, IntervalRow[]>();
    for (const r of await this.db.query('SELECT * FROM stack_intervals ORDER BY host_id, stack_seq')) {
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

  async integrityFindingCount(): Promise<number> {
    const rows = await this.db.query('SELECT COUNT(*) AS n FROM integrity_findings');
    return num(rows[0]?.['n'] ?? 0);
  }

  async integrityFindings(): Promise<
    {
      partition: number;
      offset: string;
      kind: string;
      producerId: string;
      epoch: number;
      seq: number;
      detail: string;
    }[]
  > {
    return (await this.db.query('SELECT * FROM integrity_findings ORDER BY partition_no, record_offset, kind')).map(
      (r) => ({
        partition: num(r['partition_no']),
        offset: String(r['record_offset']),
        kind: String(r['kind']),
        producerId: String(r['producer_id']),
        epoch: num(r['epoch']),
        seq: num(r['seq']),
        detail: String(r['detail']),
      }),
    );
  }
}

export function auditRecord(r: Record<string, unknown>, withEnvelope: boolean): ledger.AuditRecord {
  const envelope = Buffer.from(r['envelope'] as Uint8Array);
  let body: events.EventBody | undefined;
  try {
    body = events.EventBody.decode(events.Envelope.decode(envelope).body);
  } catch {
    body = undefined;
  }
  return {
    body,
    position: {
      producerId: String(r['producer_id']),
      epoch: num(r['epoch']),
      seq: String(r['seq']),
      partition: num(r['partition_no']),
      offset: String(r['record_offset']),
    },
    summary: String(r['summary']),
    envelope: withEnvelope ? envelope : Buffer.alloc(0),
  };
}
