import { QueryRunner } from 'typeorm';
import { events } from '@rebootless/contracts';
import { PreparedWrite, TableWriter } from './batch-writer';
import { LedgerDatabase, num } from './database';
import { EventPayload, payloadOf } from '@rebootless/events';
import { HostFact } from '@rebootless/ledger-model';
import { INTERVAL_COLUMNS, IntervalRow, intervalFromRow, intervalValues } from './stacks/columns';
import { StackReadModel } from './stacks/read-model';
import { HOST_COLUMNS, HostRow, hostFromRow, hostValues } from './hosts/columns';
import {
  ArtifactRow,
  BUILD_COLUMNS,
  BuildRow,
  CveRow,
  FunctionRef,
  PATCH_COLUMNS,
  PatchRow,
  buildFromRow,
  buildValues,
  patchFromRow,
  patchValues,
} from './catalog/columns';
import {
  ROLLOUT_COLUMNS,
  ROLLOUT_HOST_COLUMNS,
  rolloutFromRow,
  rolloutHostFromRow,
  rolloutHostValues,
  rolloutValues,
} from './rollouts/columns';
import { RolloutReadModel } from './rollouts/read-model';
import { AUDIT_COLUMNS, ActorRow, AuditRow, auditValues } from './audit/columns';
export * from './hosts/columns';
export * from './catalog/columns';
export * from './rollouts/columns';
export * from './audit/columns';

// The read models as rows in memory. The projector holds the live part of them (hosts, open
// stack intervals, patches, builds, rollouts) so that a batch is applied in
// memory and written with a few multi-row upserts (docs/adr/0005-ledger-read-models.md).

export type { IntervalRow } from './stacks/columns';
export { intervalFromRow } from './stacks/columns';

export interface FindingRow {
  partition: number;
  offset: string;
  kind: string;
  producerId: string;
  epoch: number;
  seq: number;
  toSeq: number;
  detail: string;
}

export interface AgentKeyRow {
  producerId: string;
  publicKey: Buffer;
  boundAt: number;
  partition: number;
  offset: string;
}

/** One consumed record that passed verification, decoded. */
export interface VerifiedEvent {
  partition: number;
  offset: string;
  envelope: Buffer;
  body: events.EventBody;
}

/** The dispatcher's events about a rollout already created. */
type RolloutStep = Extract<
  EventPayload,
  {
    type:
      | 'RolloutApproved'
      | 'WaveStarted'
      | 'HostApplyRequested'
      | 'HostRevertRequested'
      | 'WaveCompleted'
      | 'RolloutPaused'
      | 'RolloutResumed'
      | 'RolloutAborted'
      | 'RolloutCompleted';
  }
>;

const FAILURE_TYPES = new Set([
  'BuildFailed',
  'PatchApplyFailed',
  'PatchRevertFailed',
  'RolloutAborted',
  'CallDenied',
  'DriftDetected',
]);

const ms = (ts: { seconds: string; nanos: number } | undefined) =>
  ts ? Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000) : 0;
const fnRef = (f: events.PatchedFunction): FunctionRef => ({ object: f.object, name: f.name, sympos: f.sympos });
const cveRow = (c: events.Cve): CveRow => ({ id: c.id, severity: c.severity, cvssScore: c.cvssScore });
const actorRow = (a: events.Actor | undefined): ActorRow => ({
  kind: a?.kind ?? 0,
  id: a?.id ?? '',
  origin: a?.origin ?? '',
});

/**
 * Projects verified events into the read models. apply() changes the in-memory state and
 * stages the rows it touched; take() hands them over, with partitions' next offsets, as the
 * statements of one transaction (writeStaged). After a failed transaction the caller calls load() again: memory then matches
 * the database as committed.
 */
export class LedgerProjection {
  readonly hosts = new Map<string, HostRow>();
  /** Each host's stack, folded by the domain's rule. */
  readonly stackModel = new StackReadModel();
  readonly patches = new Map<string, PatchRow>();
  readonly builds = new Map<string, BuildRow>();
  /** Rollouts, folded by the dispatcher's own fold (libs/rollout RolloutBook). */
  readonly rolloutModel = new RolloutReadModel();
  readonly agentKeys = new Map<string, AgentKeyRow>();

  private dirtyHosts = new Set<HostRow>();
  private dirtyPatches = new Set<PatchRow>();
  private dirtyBuilds = new Set<BuildRow>();
  private newAgentKeys: AgentKeyRow[] = [];
  private audit: AuditRow[] = [];
  private findings: FindingRow[] = [];
  /** Events no read model knows (recorded as `not-projected` findings). */
  skipped = 0;

  private readonly w: Record<string, TableWriter>;

  constructor(
    private readonly db: LedgerDatabase,
    readonly topic: string,
  ) {
    const t = (
      table: string,
      columns: string[],
      key: string[],
      onConflict: 'update' | 'ignore' | 'append' = 'update',
    ) => new TableWriter(table, columns, key, onConflict, db);
    this.w = {
      offsets: t('consumer_offsets', ['topic', 'partition_no', 'next_offset'], ['topic', 'partition_no']),
      agentKeys: t(
        'agent_keys',
        ['producer_id', 'public_key', 'bound_at', 'partition_no', 'record_offset'],
        ['producer_id'],
        'ignore',
      ),
      hosts: t('hosts', HOST_COLUMNS, ['host_id']),
      intervals: t('stack_intervals', INTERVAL_COLUMNS, ['host_id', 'interval_id']),
      newIntervals: t('stack_intervals', INTERVAL_COLUMNS, ['host_id', 'interval_id'], 'append'),
      patches: t('patches', PATCH_COLUMNS, ['patch_id', 'version']),
      builds: t('builds', BUILD_COLUMNS, ['build_id']),
      rollouts: t('rollouts', ROLLOUT_COLUMNS, ['rollout_id']),
      rolloutHosts: t('rollout_hosts', ROLLOUT_HOST_COLUMNS, ['rollout_id', 'host_id']),
      rolloutBook: t('rollout_book', ['book_key', 'fold_state'], ['book_key']),
      // Only records at or past the committed offset are projected, and the offset commits with
      // the rows: an audit row is never written twice, so it can go by COPY.
      audit: t('audit_log', AUDIT_COLUMNS, ['partition_no', 'record_offset'], 'append'),
      findings: t('integrity_findings', FINDING_COLUMNS, ['partition_no', 'record_offset', 'kind'], 'ignore'),
    };
  }

  /** Reads the live part of the read models into memory; returns the stored offsets. */
  async load(): Promise<Map<number, bigint>> {
    for (const m of [this.hosts, this.patches, this.builds, this.agentKeys] as Map<unknown, unknown>[]) m.clear();
    this.rolloutModel.clear();
    this.discardStaged();
    this.stackModel.clear();
    const db = this.db;
    for (const r of await db.query('SELECT * FROM hosts')) {
      const h = hostFromRow(r);
      this.hosts.set(h.hostId, h);
    }
    const open = new Map<string, IntervalRow[]>();
    for (const r of await db.query(
      'SELECT * FROM stack_intervals WHERE removed_at IS NULL ORDER BY host_id, stack_seq',
    )) {
      const row = intervalFromRow(r);
      const list = open.get(row.hostId);
      if (list) list.push(row);
      else open.set(row.hostId, [row]);
    }
    for (const h of this.hosts.values()) this.stackModel.restore(h, open.get(h.hostId) ?? []);
    for (const r of await db.query('SELECT * FROM builds')) {
      const b = buildFromRow(r);
      this.builds.set(b.buildId, b);
    }
    for (const r of await db.query('SELECT * FROM patches')) {
      const p = patchFromRow(r);
      this.patches.set(key(p.patchId, p.version), p);
    }
    this.rolloutModel.restore(
      (await db.query('SELECT * FROM rollouts')).map(rolloutFromRow),
      (await db.query('SELECT * FROM rollout_hosts')).map(rolloutHostFromRow),
      (await db.query(`SELECT book_key, fold_state FROM rollout_book WHERE fold_state <> ''`)).map((r) => [
        String(r['book_key']),
        String(r['fold_state']),
      ]),
    );
    for (const r of await db.query('SELECT * FROM agent_keys')) {
      this.agentKeys.set(String(r['producer_id']), {
        producerId: String(r['producer_id']),
        publicKey: Buffer.from(r['public_key'] as Uint8Array),
        boundAt: num(r['bound_at']),
        partition: num(r['partition_no']),
        offset: String(r['record_offset']),
      });
    }
    const offsets = new Map<number, bigint>();
    for (const r of await db.query('SELECT partition_no, next_offset FROM consumer_offsets WHERE topic = $1', [
      this.topic,
    ]))
      offsets.set(num(r['partition_no']), BigInt(String(r['next_offset'])));
    return offsets;
  }

  /** Trust on first use: binds an agent producer's key the first time an epoch of it starts. */
  bindAgentKey(producerId: string, publicKey: Uint8Array, at: number, partition: number, offset: string): void {
    if (this.agentKeys.has(producerId)) return;
    const row = { producerId, publicKey: Buffer.from(publicKey), boundAt: at, partition, offset };
    this.agentKeys.set(producerId, row);
    this.newAgentKeys.push(row);
  }

  recordFinding(f: FindingRow): void {
    this.findings.push(f);
  }

  /**
   * Takes everything staged since the last take as rows of values, copied now: the projection
   * may go on with the next batch while these are being written.
   */
  take(nextOffsets: ReadonlyMap<number, bigint> | null): StagedWrite {
    const w = this.w;
    const { fresh, stored } = this.stackModel.take();
    const rollouts = this.rolloutModel.take();
    const tables: [TableWriter, unknown[][]][] = [
      [w.agentKeys!, this.newAgentKeys.map((k) => [k.producerId, k.publicKey, k.boundAt, k.partition, k.offset])],
      [w.hosts!, [...this.dirtyHosts].map(hostValues)],
      [w.newIntervals!, fresh.map(intervalValues)],
      [w.intervals!, stored.map(intervalValues)],
      [w.builds!, [...this.dirtyBuilds].map(buildValues)],
      [w.patches!, [...this.dirtyPatches].map(patchValues)],
      [w.rollouts!, rollouts.rollouts.map(rolloutValues)],
      [w.rolloutHosts!, rollouts.hosts.map(rolloutHostValues)],
      // An entry the book no longer holds is deleted: the table is what the book holds now,
      // whatever order the partitions were read in (ledger verify compares it).
      [w.rolloutBook!, rollouts.book.filter(([, json]) => json !== '')],
      [w.audit!, this.audit.map(auditValues)],
      [
        w.findings!,
        this.findings.map((f) => [f.partition, f.offset, f.kind, f.producerId, f.epoch, f.seq, f.toSeq, f.detail]),
      ],
    ];
    if (nextOffsets && nextOffsets.size > 0)
      tables.push([w.offsets!, [...nextOffsets].map(([partition, next]) => [this.topic, partition, next.toString()])]);
    this.discardStaged();
    const gone = rollouts.book.filter(([, json]) => json === '').map(([bookKey]) => bookKey);
    const writes = tables.filter(([, rows]) => rows.length > 0).map(([writer, rows]) => writer.prepare(rows));
    if (gone.length > 0) writes.push(w.rolloutBook!.prepareDelete(gone));
    return { writes };
  }

  /** Rows staged and not yet flushed (for progress and tests). */
  get staged(): number {
    return this.audit.length + this.findings.length;
  }

  private discardStaged(): void {
    this.dirtyHosts = new Set();
    this.stackModel.discardStaged();
    this.dirtyPatches = new Set();
    this.dirtyBuilds = new Set();
    this.newAgentKeys = [];
    this.audit = [];
    this.findings = [];
  }

  // ---------------------------------------------------------------------------------------
  // Events

  apply(e: VerifiedEvent): void {
    const b = e.body;
    const at = ms(b.occurredAt);
    const ctx: Ctx = { e, at, hostId: '', patchId: '', version: '', summary: b.type };
    const streamHost = b.stream.startsWith('host/') ? b.stream.slice(5) : '';
    ctx.hostId = streamHost;
    const payload = payloadOf(b);
    if (!payload) {
      // The verifier keeps unknown types out; one that gets here anyway is skipped, and said so.
      this.skipped += 1;
      this.findings.push({
        partition: e.partition,
        offset: e.offset,
        kind: 'not-projected',
        producerId: b.producer?.producerId ?? '',
        epoch: b.producer?.epoch ?? 0,
        seq: Number(b.producer?.seq ?? 0),
        toSeq: Number(b.producer?.seq ?? 0),
        detail: `no read model knows event type ${JSON.stringify(b.type)}: not projected`,
      });
      return;
    }
    this.route(ctx, payload);
    this.foldRollouts(ctx, payload);

    this.audit.push({
      partition: e.partition,
      offset: e.offset,
      eventId: b.eventId,
      type: b.type,
      occurredAt: at,
      producerId: b.producer?.producerId ?? '',
      epoch: b.producer?.epoch ?? 0,
      seq: Number(b.producer?.seq ?? 0),
      actor: actorRow(b.actor),
      outcome: FAILURE_TYPES.has(b.type) ? 'failure' : 'success',
      hostId: ctx.hostId,
      patchId: ctx.patchId,
      patchVersion: ctx.version,
      correlationId: b.correlationId,
      summary: ctx.summary,
      envelope: e.envelope,
    });
  }

  /** Each event type to the read models it changes; a type left out does not compile. */
  private route(ctx: Ctx, p: EventPayload): void {
    switch (p.type) {
      case 'HostEnrolled':
        return this.onEnrolled(ctx, p.data);
      case 'HostBooted':
        return this.onBooted(ctx, p.data);
      case 'HostInventoryReported':
        return this.onInventory(ctx, p.data);
      case 'PatchApplied':
        return this.onApplied(ctx, p.data);
      case 'PatchReverted':
        return this.onReverted(ctx, p.data);
      case 'PatchApplyStarted': {
        const d = p.data;
        this.seen(ctx, d.hostId);
        Object.assign(ctx, { patchId: d.patchId, version: d.version });
        ctx.summary = `applying ${d.patchId} ${d.version} on ${ctx.hostId}`;
        return;
      }
      case 'PatchApplyFailed':
        return this.onApplyFailed(ctx, p.data);
      case 'PatchRevertFailed': {
        const d = p.data;
        this.seen(ctx, d.hostId);
        Object.assign(ctx, { patchId: d.patchId, version: d.version });
        ctx.summary = `revert of ${d.patchId} ${d.version} failed on ${ctx.hostId} at ${d.stage}: ${d.error}`;
        return;
      }
      case 'DriftDetected': {
        const d = p.data;
        const h = this.seen(ctx, d.hostId);
        ctx.summary = `drift on ${ctx.hostId}: ${d.kind} ${d.detail}`.trim();
        this.foldStack(ctx, h, { type: 'DriftDetected', payload: d });
        return;
      }
      case 'BuildRequested':
        return this.onBuildRequested(ctx, p.data);
      case 'BuildSucceeded':
        return this.onBuildSucceeded(ctx, p.data);
      case 'BuildFailed': {
        const d = p.data;
        const build = this.builds.get(d.buildId);
        if (build) {
          build.failures.push({ kernelRelease: d.kernelRelease, stage: d.stage, code: d.code });
          this.dirtyBuilds.add(build);
          Object.assign(ctx, { patchId: build.patchId, version: build.version });
        }
        ctx.summary = `build ${d.buildId} failed for ${d.kernelRelease} at ${d.stage}`;
        return;
      }
      case 'PatchPublished':
        return this.onPublished(ctx, p.data);
      case 'PatchRetracted': {
        const d = p.data;
        const patch = this.patches.get(key(d.patchId, d.version));
        if (patch) {
          Object.assign(patch, { retracted: true, retractionReason: d.reason, retractedAt: ctx.at });
          this.dirtyPatches.add(patch);
        }
        Object.assign(ctx, { patchId: d.patchId, version: d.version });
        ctx.summary = `retracted ${d.patchId} ${d.version}: ${d.reason}`;
        return;
      }
      case 'RolloutCreated':
        return this.onRolloutCreated(ctx, p.data);
      case 'RolloutApproved':
      case 'WaveStarted':
      case 'HostApplyRequested':
      case 'HostRevertRequested':
      case 'WaveCompleted':
      case 'RolloutPaused':
      case 'RolloutResumed':
      case 'RolloutAborted':
      case 'RolloutCompleted':
        return this.onRolloutEvent(ctx, p);
      case 'ChainEpochStarted':
      case 'ServiceStarted':
      case 'ServiceStopped':
      case 'CallDenied':
        ctx.summary = summarizeOther(ctx.e.body);
        return;
      case 'AgentKeyBound': {
        const d = p.data;
        ctx.hostId = d.hostId;
        ctx.summary = `bound ${d.producerId} epoch ${d.epoch} key ${Buffer.from(d.publicKey).toString('hex').slice(0, 16)}… to ${d.hostId}`;
        return;
      }
      case 'AgentKeyRevoked': {
        const d = p.data;
        ctx.hostId = d.hostId;
        ctx.summary = `revoked ${d.producerId} ${d.epoch ? `epoch ${d.epoch}` : 'every epoch bound so far'}: ${d.reason}`;
        return;
      }
      default: {
        const unrouted: never = p;
        throw new Error(`the projection has no route for ${JSON.stringify(unrouted)}`);
      }
    }
  }

  /** Folds an agent fact into the host's stack (libs/ledger-model evolveHostStack). */
  private foldStack(ctx: Ctx, h: HostRow, fact: HostFact): void {
    const b = ctx.e.body;
    this.stackModel.fold(h, fact, {
      eventId: b.eventId,
      at: ctx.at,
      ...(b.actor ? { actor: b.actor } : {}),
      rolloutId: b.correlationId,
    });
  }

  /** The host an agent event is about, created on first sight (facts follow with enrollment). */
  private seen(ctx: Ctx, payloadHostId: string): HostRow {
    const hostId = payloadHostId || ctx.hostId;
    ctx.hostId = hostId;
    let h = this.hosts.get(hostId);
    if (!h) {
      h = {
        hostId,
        hostname: '',
        machineId: '',
        kernelRelease: '',
        kernelVersion: '',
        arch: '',
        distro: '',
        bootId: '',
        labels: {},
        agentVersion: '',
        tainted: 0,
        taintFlags: [],
        enrolledAt: null,
        enrolledEventId: '',
        lastSeenAt: ctx.at,
        stackObservedAt: null,
        stackCounter: 0,
        lastEventId: ctx.e.body.eventId,
      };
      this.hosts.set(hostId, h);
    }
    if (ctx.at > h.lastSeenAt) h.lastSeenAt = ctx.at;
    h.lastEventId = ctx.e.body.eventId;
    this.dirtyHosts.add(h);
    return h;
  }

  private takeFacts(h: HostRow, f: events.HostFacts): void {
    Object.assign(h, {
      hostname: f.hostname,
      machineId: f.machineId,
      kernelRelease: f.kernelRelease,
      kernelVersion: f.kernelVersion,
      arch: f.arch,
      distro: f.distro,
      bootId: f.bootId,
      labels: { ...f.labels },
      agentVersion: f.agentVersion,
      tainted: Number(f.tainted),
      taintFlags: [...f.taintFlags],
    });
  }

  private onEnrolled(ctx: Ctx, p: events.HostEnrolled): void {
    const h = this.seen(ctx, p.facts?.hostId ?? '');
    if (p.facts) this.takeFacts(h, p.facts);
    const first = h.enrolledAt === null;
    if (first) {
      h.enrolledAt = ctx.at;
      h.enrolledEventId = ctx.e.body.eventId;
    }
    this.foldStack(ctx, h, { type: 'HostEnrolled', payload: p });
    ctx.summary = `${first ? 'enrolled' : 're-enrolled'} ${h.hostId} (${h.hostname || 'no hostname'}, ${h.kernelRelease})`;
  }

  private onBooted(ctx: Ctx, p: events.HostBooted): void {
    const h = this.seen(ctx, p.hostId);
    this.foldStack(ctx, h, { type: 'HostBooted', payload: p });
    if (p.kernelRelease) h.kernelRelease = p.kernelRelease;
    ctx.summary = `${h.hostId} booted ${p.kernelRelease} (boot ${p.bootId}): every live patch is gone`;
  }

  private onInventory(ctx: Ctx, p: events.HostInventoryReported): void {
    const h = this.seen(ctx, p.facts?.hostId ?? '');
    if (p.facts) this.takeFacts(h, p.facts);
    this.foldStack(ctx, h, { type: 'HostInventoryReported', payload: p });
    ctx.summary = `inventory of ${h.hostId}: ${p.patches.length} live patch(es)`;
  }

  private onApplied(ctx: Ctx, p: events.PatchApplied): void {
    const h = this.seen(ctx, p.hostId);
    Object.assign(ctx, { patchId: p.patchId, version: p.version });
    this.foldStack(ctx, h, { type: 'PatchApplied', payload: p });
    ctx.summary =
      `applied ${p.patchId} ${p.version} on ${h.hostId}` +
      (p.replace ? ' (replace)' : '') +
      (p.forced ? ' (forced)' : '');
  }

  private onReverted(ctx: Ctx, p: events.PatchReverted): void {
    const h = this.seen(ctx, p.hostId);
    Object.assign(ctx, { patchId: p.patchId, version: p.version });
    this.foldStack(ctx, h, { type: 'PatchReverted', payload: p });
    ctx.summary = `reverted ${p.patchId} ${p.version} on ${h.hostId}`;
  }

  private onApplyFailed(ctx: Ctx, p: events.PatchApplyFailed): void {
    const h = this.seen(ctx, p.hostId);
    Object.assign(ctx, { patchId: p.patchId, version: p.version });
    ctx.summary = `applying ${p.patchId} ${p.version} failed on ${h.hostId} at ${p.stage}: ${p.error}`;
  }

  // ---------------------------------------------------------------------------------------
  // Builder

  private onBuildRequested(ctx: Ctx, p: events.BuildRequested): void {
    const b: BuildRow = {
      buildId: p.buildId,
      patchId: p.patchId,
      version: p.version,
      patchName: p.patchName,
      description: p.description,
      cves: p.cves.map(cveRow),
      replace: p.replace,
      kernelReleases: [...p.kernelReleases],
      requestedAt: ctx.at,
      artifacts: [],
      failures: [],
    };
    this.builds.set(b.buildId, b);
    this.dirtyBuilds.add(b);
    Object.assign(ctx, { patchId: p.patchId, version: p.version });
    ctx.summary = `build ${p.buildId} of ${p.patchId} ${p.version} requested for ${p.kernelReleases.join(', ')}`;
  }

  private onBuildSucceeded(ctx: Ctx, p: events.BuildSucceeded): void {
    const m = p.manifest;
    const b = this.builds.get(p.buildId);
    const artifact: ArtifactRow = {
      kernelRelease: p.kernelRelease,
      artifactDigest: p.artifactDigest,
      vermagic: m?.vermagic ?? '',
      moduleName: m?.moduleName ?? '',
      functions: (m?.functions.length ? m.functions : p.changedFunctions).map(fnRef),
    };
    if (b) {
      b.artifacts = [...b.artifacts.filter((a) => a.kernelRelease !== p.kernelRelease), artifact];
      this.dirtyBuilds.add(b);
    }
    const patchId = m?.patchId ?? b?.patchId ?? '';
    const version = m?.version ?? b?.version ?? '';
    Object.assign(ctx, { patchId, version });
    ctx.summary = `built ${patchId} ${version} for ${p.kernelRelease} (${artifact.moduleName})`;
  }

  private onPublished(ctx: Ctx, p: events.PatchPublished): void {
    // Only what the event says: the build's manifests (module names, functions, description)
    // come from another stream, so queries join them; a replay may read the streams in any order.
    const patch: PatchRow = {
      patchId: p.patchId,
      version: p.version,
      patchName: p.patchName,
      description: '',
      cves: p.cves.map(cveRow),
      severity: p.severity,
      replace: p.replace,
      buildId: p.buildId,
      artifacts: p.artifacts.map((a) => ({
        kernelRelease: a.kernelRelease,
        artifactDigest: a.artifactDigest,
        vermagic: a.vermagic,
        moduleName: '',
        functions: [],
      })),
      publishedAt: ctx.at,
      publishedEventId: ctx.e.body.eventId,
      retracted: false,
      retractionReason: '',
      retractedAt: null,
    };
    this.patches.set(key(patch.patchId, patch.version), patch);
    this.dirtyPatches.add(patch);
    Object.assign(ctx, { patchId: p.patchId, version: p.version });
    ctx.summary = `published ${p.patchId} ${p.version} fixing ${p.cves.map((c) => c.id).join(', ') || 'no CVE'}`;
  }

  // ---------------------------------------------------------------------------------------
  // Dispatcher: rollouts folded by the dispatcher's own fold; here only the audit's summary.

  /** The dispatcher's events and the agent facts a rollout listens to, into the rollout fold. */
  private foldRollouts(ctx: Ctx, p: EventPayload): void {
    const b = ctx.e.body;
    const meta = { at: ctx.at, ...(b.actor ? { actor: b.actor } : {}) };
    switch (p.type) {
      case 'RolloutCreated':
      case 'RolloutApproved':
      case 'WaveStarted':
      case 'HostApplyRequested':
      case 'HostRevertRequested':
      case 'WaveCompleted':
      case 'RolloutPaused':
      case 'RolloutResumed':
      case 'RolloutAborted':
      case 'RolloutCompleted':
        return this.rolloutModel.evolve(p, meta);
      case 'PatchApplied':
      case 'PatchApplyFailed':
      case 'PatchReverted':
      case 'PatchRevertFailed':
      case 'DriftDetected':
      case 'HostBooted':
      case 'HostInventoryReported':
        return this.rolloutModel.observe(p, meta);
      default:
        return;
    }
  }

  private onRolloutCreated(ctx: Ctx, p: events.RolloutCreated): void {
    Object.assign(ctx, { patchId: p.patchId, version: p.version });
    ctx.summary = `rollout ${p.rolloutId} of ${p.patchId} ${p.version} created: ${p.waves.length} wave(s)`;
  }

  private onRolloutEvent(ctx: Ctx, step: RolloutStep): void {
    const rolloutId = step.data.rolloutId;
    const run = this.rolloutModel.get(rolloutId);
    if (run) Object.assign(ctx, { patchId: run.patchId, version: run.version });
    switch (step.type) {
      case 'RolloutApproved':
        ctx.summary = `rollout ${rolloutId} wave ${step.data.waveIndex} approved by ${step.data.approver}`;
        break;
      case 'WaveStarted':
        ctx.summary = `rollout ${rolloutId} wave ${step.data.waveIndex} started on ${step.data.hostIds.length} host(s)`;
        break;
      case 'HostApplyRequested': {
        const p = step.data;
        Object.assign(ctx, { hostId: p.hostId, patchId: p.patchId, version: p.version });
        ctx.summary = `asked ${p.hostId} to apply ${p.patchId} ${p.version}` + (p.allowForce ? ' (force allowed)' : '');
        break;
      }
      case 'HostRevertRequested': {
        const p = step.data;
        Object.assign(ctx, { hostId: p.hostId, patchId: p.patchId, version: p.version });
        ctx.summary = `asked ${p.hostId} to revert ${p.patchId} ${p.version} (${p.reason})`;
        break;
      }
      case 'WaveCompleted': {
        const p = step.data;
        ctx.summary = `rollout ${rolloutId} wave ${p.waveIndex} completed: ${p.succeededHostIds.length} succeeded, ${p.failedHostIds.length} failed`;
        break;
      }
      case 'RolloutPaused':
        ctx.summary = `rollout ${rolloutId} paused: ${step.data.reason}`;
        break;
      case 'RolloutResumed':
        ctx.summary = `rollout ${rolloutId} resumed`;
        break;
      case 'RolloutAborted':
        ctx.summary = `rollout ${rolloutId} aborted: ${step.data.reason}`;
        break;
      case 'RolloutCompleted': {
        const p = step.data;
        ctx.summary = `rollout ${rolloutId} completed: ${p.succeeded} succeeded, ${p.failed} failed, ${p.skipped} skipped`;
        break;
      }
      default: {
        const unrouted: never = step;
        throw new Error(`no rollout step ${JSON.stringify(unrouted)}`);
      }
    }
  }
}

/** One batch's rows, ready to be written in one transaction. */
export interface StagedWrite {
  writes: PreparedWrite[];
}

/** Told how long each table's write took (a benchmark's probe; production passes none). */
export type TableWriteObserver = (table: string, ms: number) => void;

export async function writeStaged(q: QueryRunner, staged: StagedWrite, observe?: TableWriteObserver): Promise<void> {
  for (const w of staged.writes) {
    if (!observe) {
      await w.run(q);
      continue;
    }
    const t0 = performance.now();
    await w.run(q);
    observe(w.table, performance.now() - t0);
  }
}

interface Ctx {
  e: VerifiedEvent;
  at: number;
  hostId: string;
  patchId: string;
  version: string;
  summary: string;
}

function summarizeOther(b: events.EventBody): string {
  if (b.serviceStarted) return `${b.serviceStarted.service} started on ${b.serviceStarted.listenAddress}`;
  if (b.serviceStopped) return `${b.serviceStopped.service} stopped: ${b.serviceStopped.reason}`;
  if (b.chainEpochStarted) return `${b.producer?.producerId ?? ''} started chain epoch ${b.producer?.epoch ?? 0}`;
  if (b.callDenied) return `denied ${b.callDenied.method} to ${b.callDenied.subject}: ${b.callDenied.code}`;
  return b.type;
}

export const key = (a: string, b: string) => `${a}\u0000${b}`;

// Findings' columns (the other read models' rows and columns are in their folders: hosts/,
// stacks/, catalog/, rollouts/, audit/).
const FINDING_COLUMNS = ['partition_no', 'record_offset', 'kind', 'producer_id', 'epoch', 'seq', 'to_seq', 'detail'];
