import { QueryRunner } from 'typeorm';
import { PreparedWrite, TableWriter } from './batch-writer';
import { LedgerDatabase, num } from './database';
import { EventPayload, payloadOf } from '@rebootless/events';
import { EventContext, VerifiedEvent, occurredMs } from './event-context';
import { INTERVAL_COLUMNS, intervalValues } from './stacks/columns';
import { StackReadModel } from './stacks/read-model';
import { HOST_COLUMNS, HostRow, hostValues } from './hosts/columns';
import { HostReadModel } from './hosts/read-model';
import { BUILD_COLUMNS, BuildRow, PATCH_COLUMNS, PatchRow, buildValues, patchValues } from './catalog/columns';
import { CatalogReadModel } from './catalog/read-model';
import { ROLLOUT_COLUMNS, ROLLOUT_HOST_COLUMNS, rolloutHostValues, rolloutValues } from './rollouts/columns';
import { RolloutReadModel } from './rollouts/read-model';
import { AUDIT_COLUMNS, auditValues } from './audit/columns';
import { AuditReadModel } from './audit/read-model';
import { FINDING_COLUMNS, FindingRow, findingValues } from './findings/columns';
import { FindingsReadModel } from './findings/read-model';
export * from './hosts/columns';
export * from './catalog/columns';
export * from './rollouts/columns';
export * from './audit/columns';
export * from './findings/columns';
export type { VerifiedEvent } from './event-context';
export { key } from './catalog/read-model';

// The projection: each verified event routed to the read models it changes, one folder each
// (hosts/, stacks/, catalog/, rollouts/, audit/, findings/) holding its evolve step, its rows'
// columns and its queries. The read models hold their live part in memory (hosts, open stack
// intervals, patches, builds, rollouts) so that a batch is applied in memory and written with a
// few multi-row upserts (docs/adr/0005-ledger-read-models.md).

export type { IntervalRow } from './stacks/columns';
export { intervalFromRow } from './stacks/columns';

export interface AgentKeyRow {
  producerId: string;
  publicKey: Buffer;
  boundAt: number;
  partition: number;
  offset: string;
}

/**
 * Projects verified events into the read models. apply() changes the in-memory state and
 * stages the rows it touched; take() hands them over, with partitions' next offsets, as the
 * statements of one transaction (writeStaged). After a failed transaction the caller calls load() again: memory then matches
 * the database as committed.
 */
export class LedgerProjection {
  /** Each host's stack, folded by the domain's rule. */
  readonly stackModel = new StackReadModel();
  readonly hostModel = new HostReadModel(this.stackModel);
  readonly catalog = new CatalogReadModel();
  /** Rollouts, folded by the dispatcher's own fold (libs/rollout RolloutBook). */
  readonly rolloutModel = new RolloutReadModel();
  readonly auditLog = new AuditReadModel();
  readonly findings = new FindingsReadModel();
  readonly agentKeys = new Map<string, AgentKeyRow>();

  private newAgentKeys: AgentKeyRow[] = [];
  /** Events no read model knows (recorded as `not-projected` findings). */
  skipped = 0;

  get hosts(): Map<string, HostRow> {
    return this.hostModel.hosts;
  }

  get patches(): Map<string, PatchRow> {
    return this.catalog.patches;
  }

  get builds(): Map<string, BuildRow> {
    return this.catalog.builds;
  }

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
      rolloutLists: t('rollout_host_lists', ['rollout_id', 'list', 'host_ids'], ['rollout_id', 'list']),
      // Only records at or past the committed offset are projected, and the offset commits with
      // the rows: an audit row is never written twice, so it can go by COPY.
      audit: t('audit_log', AUDIT_COLUMNS, ['partition_no', 'record_offset'], 'append'),
      findings: t('integrity_findings', FINDING_COLUMNS, ['partition_no', 'record_offset', 'kind'], 'ignore'),
    };
  }

  /** Reads the live part of the read models into memory; returns the stored offsets. */
  async load(): Promise<Map<number, bigint>> {
    this.agentKeys.clear();
    this.discardStaged();
    const db = this.db;
    this.hostModel.clear();
    await this.hostModel.load(db);
    this.catalog.clear();
    await this.catalog.load(db);
    await this.rolloutModel.load(db);
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
    this.findings.record(f);
  }

  /**
   * Takes everything staged since the last take as rows of values, copied now: the projection
   * may go on with the next batch while these are being written.
   */
  take(nextOffsets: ReadonlyMap<number, bigint> | null): StagedWrite {
    const w = this.w;
    const { fresh, stored } = this.stackModel.take();
    const rollouts = this.rolloutModel.take();
    const catalog = this.catalog.take();
    const tables: [TableWriter, unknown[][]][] = [
      [w.agentKeys!, this.newAgentKeys.map((k) => [k.producerId, k.publicKey, k.boundAt, k.partition, k.offset])],
      [w.hosts!, this.hostModel.take().map(hostValues)],
      [w.newIntervals!, fresh.map(intervalValues)],
      [w.intervals!, stored.map(intervalValues)],
      [w.builds!, catalog.builds.map(buildValues)],
      [w.patches!, catalog.patches.map(patchValues)],
      [w.rollouts!, rollouts.rollouts.map(rolloutValues)],
      [w.rolloutHosts!, rollouts.hosts.map(rolloutHostValues)],
      [w.rolloutLists!, rollouts.lists.map((l) => [l.rolloutId, l.list, l.hostIds])],
      // An entry the book no longer holds is deleted: the table is what the book holds now,
      // whatever order the partitions were read in (ledger verify compares it).
      [w.rolloutBook!, rollouts.book.filter(([, json]) => json !== '')],
      [w.audit!, this.auditLog.take().map(auditValues)],
      [w.findings!, this.findings.take().map(findingValues)],
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
    return this.auditLog.pending + this.findings.pending;
  }

  private discardStaged(): void {
    this.hostModel.discardStaged();
    this.stackModel.discardStaged();
    this.catalog.discardStaged();
    this.newAgentKeys = [];
    this.auditLog.take();
    this.findings.take();
  }

  // ---------------------------------------------------------------------------------------
  // Events

  apply(e: VerifiedEvent): void {
    const b = e.body;
    const ctx: EventContext = {
      e,
      at: occurredMs(b.occurredAt),
      hostId: b.stream.startsWith('host/') ? b.stream.slice(5) : '',
      patchId: '',
      version: '',
      summary: b.type,
    };
    const payload = payloadOf(b);
    if (!payload) {
      // The verifier keeps unknown types out; one that gets here anyway is skipped, and said so.
      this.skipped += 1;
      this.findings.notProjected(e);
      return;
    }
    this.route(ctx, payload);
    this.auditLog.record(ctx);
  }

  /** Each event type to the read models it changes; a type left out does not compile. */
  private route(ctx: EventContext, p: EventPayload): void {
    switch (p.type) {
      case 'HostEnrolled':
      case 'PatchApplyStarted':
      case 'PatchQuarantineCleared':
        return this.hostModel.evolve(ctx, p);
      case 'HostBooted':
      case 'HostInventoryReported':
      case 'PatchApplied':
      case 'PatchApplyFailed':
      case 'PatchReverted':
      case 'PatchRevertFailed':
      case 'DriftDetected':
        // The host and its stack, then the rollouts waiting for the host's answers.
        this.hostModel.evolve(ctx, p);
        return this.rolloutModel.observe(ctx, p);
      case 'BuildRequested':
      case 'BuildSucceeded':
      case 'BuildFailed':
      case 'PatchPublished':
      case 'PatchRetracted':
        return this.catalog.evolve(ctx, p);
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
        return this.rolloutModel.evolve(ctx, p);
      case 'ChainEpochStarted':
      case 'ServiceStarted':
      case 'ServiceStopped':
      case 'CallDenied':
      case 'AgentKeyBound':
      case 'AgentKeyRevoked':
      case 'QuarantineClearRequested':
        return this.auditLog.evolve(ctx, p);
      default: {
        const unrouted: never = p;
        throw new Error(`the projection has no route for ${JSON.stringify(unrouted)}`);
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
