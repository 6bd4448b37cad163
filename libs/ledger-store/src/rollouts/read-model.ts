import { dispatcher, fromTimestamp } from '@rebootless/contracts';
import {
  type EventMeta,
  type HostFactEvent,
  type HostRun,
  type RolloutEvent,
  type RolloutRun,
  type RolloutRunRecord,
  RolloutBook,
  currentWave,
  rolloutView,
  runRecord,
} from '@rebootless/rollout';
import type { ActorRow } from '../audit/columns';
import type { EventContext } from '../event-context';
import type { LedgerDatabase } from '../database';
import {
  type RolloutHostRow,
  type RolloutRow,
  type WaveRow,
  canonicalJson,
  rolloutFromRow,
  rolloutHostFromRow,
} from './columns';

const H = dispatcher.HostRolloutState;

/**
 * The rollouts read model: every rollout folded by the dispatcher's own fold (libs/rollout
 * RolloutBook), its record stored beside the rows so that a restart picks the fold up again, and
 * the rows' columns derived from it as the dispatcher's view (rolloutView) tells them at the
 * rollout's last change (docs/adr/0014-one-fold.md).
 */
export class RolloutReadModel {
  private book = newBook();
  /** The rows as stored (or staged): a derived row equal to its stored one is not written again. */
  private readonly stored = new Map<string, RolloutRow>();
  private readonly storedHosts = new Map<string, RolloutHostRow>();
  private dirty = new Set<string>();

  clear(): void {
    this.book = newBook();
    this.stored.clear();
    this.storedHosts.clear();
    this.dirty = new Set();
  }

  /** Reads the fold back from the database. */
  async load(db: LedgerDatabase): Promise<void> {
    this.clear();
    this.restore(
      (await db.query('SELECT * FROM rollouts')).map(rolloutFromRow),
      (await db.query('SELECT * FROM rollout_hosts')).map(rolloutHostFromRow),
      (await db.query(`SELECT book_key, fold_state FROM rollout_book WHERE fold_state <> ''`)).map((r) => [
        String(r['book_key']),
        String(r['fold_state']),
      ]),
    );
  }

  /** Takes the fold back from the stored rows (rows without a fold state predate migration 0003). */
  restore(rollouts: RolloutRow[], hosts: RolloutHostRow[], leftovers: [string, string][]): void {
    const hostsOf = new Map<string, HostRun[]>();
    for (const h of hosts) {
      this.storedHosts.set(hostKey(h.rolloutId, h.hostId), h);
      if (!h.foldState) continue;
      const list = hostsOf.get(h.rolloutId);
      const run = JSON.parse(h.foldState) as HostRun;
      if (list) list.push(run);
      else hostsOf.set(h.rolloutId, [run]);
    }
    for (const r of rollouts) {
      this.stored.set(r.rolloutId, r);
      if (r.foldState) this.book.restore(JSON.parse(r.foldState) as RolloutRunRecord, hostsOf.get(r.rolloutId) ?? []);
    }
    for (const [key, json] of leftovers) this.book.restoreLeftover(key, json);
  }

  get(rolloutId: string): RolloutRun | undefined {
    return this.book.get(rolloutId);
  }

  /** One of the dispatcher's rollout events: what the audit says of it, then the fold. */
  evolve(ctx: EventContext, event: RolloutEvent): void {
    describe(ctx, event, this.book.get(event.data.rolloutId));
    const run = this.book.evolve(event, metaOf(ctx));
    if (run) this.dirty.add(run.rolloutId);
  }

  /** An agent fact a rollout listens to (its hosts' answers, boots, drift and warnings). */
  observe(ctx: EventContext, fact: HostFactEvent): void {
    for (const run of this.book.observe(fact, metaOf(ctx))) this.dirty.add(run.rolloutId);
  }

  /** The rows the events since the last take changed, derived from the fold now. */
  take(): { rollouts: RolloutRow[]; hosts: RolloutHostRow[]; book: [string, string][] } {
    const rollouts: RolloutRow[] = [];
    const hosts: RolloutHostRow[] = [];
    for (const id of this.dirty) {
      const run = this.book.get(id)!;
      const row = rolloutRow(run);
      if (!sameRow(this.stored.get(id), row)) {
        this.stored.set(id, row);
        rollouts.push(row);
      }
      for (const h of hostRows(run)) {
        const k = hostKey(h.rolloutId, h.hostId);
        if (sameRow(this.storedHosts.get(k), h)) continue;
        this.storedHosts.set(k, h);
        hosts.push(h);
      }
    }
    this.dirty = new Set();
    return { rollouts, hosts, book: this.book.takeLeftoverChanges() };
  }
}

const metaOf = (ctx: EventContext): EventMeta => ({
  at: ctx.at,
  ...(ctx.e.body.actor ? { actor: ctx.e.body.actor } : {}),
});

/** The audit's subject and sentence for a rollout event (`run` as folded before it, if created). */
function describe(ctx: EventContext, step: RolloutEvent, run: RolloutRun | undefined): void {
  if (step.type === 'RolloutCreated') {
    const p = step.data;
    Object.assign(ctx, { patchId: p.patchId, version: p.version });
    ctx.summary = `rollout ${p.rolloutId} of ${p.patchId} ${p.version} created: ${p.waves.length} wave(s)`;
    return;
  }
  const rolloutId = step.data.rolloutId;
  if (run) Object.assign(ctx, { patchId: run.patchId, version: run.version });
  switch (step.type) {
    case 'RolloutApproved':
      ctx.summary = `rollout ${rolloutId} wave ${step.data.waveIndex} approved by ${step.data.approver}`;
      return;
    case 'WaveStarted':
      ctx.summary = `rollout ${rolloutId} wave ${step.data.waveIndex} started on ${step.data.hostIds.length} host(s)`;
      return;
    case 'HostApplyRequested': {
      const p = step.data;
      Object.assign(ctx, { hostId: p.hostId, patchId: p.patchId, version: p.version });
      ctx.summary = `asked ${p.hostId} to apply ${p.patchId} ${p.version}` + (p.allowForce ? ' (force allowed)' : '');
      return;
    }
    case 'HostRevertRequested': {
      const p = step.data;
      Object.assign(ctx, { hostId: p.hostId, patchId: p.patchId, version: p.version });
      ctx.summary = `asked ${p.hostId} to revert ${p.patchId} ${p.version} (${p.reason})`;
      return;
    }
    case 'WaveCompleted': {
      const p = step.data;
      ctx.summary = `rollout ${rolloutId} wave ${p.waveIndex} completed: ${p.succeededHostIds.length} succeeded, ${p.failedHostIds.length} failed`;
      return;
    }
    case 'RolloutPaused':
      ctx.summary = `rollout ${rolloutId} paused: ${step.data.reason}`;
      return;
    case 'RolloutResumed':
      ctx.summary = `rollout ${rolloutId} resumed`;
      return;
    case 'RolloutAborted':
      ctx.summary = `rollout ${rolloutId} aborted: ${step.data.reason}`;
      return;
    case 'RolloutCompleted': {
      const p = step.data;
      ctx.summary = `rollout ${rolloutId} completed: ${p.succeeded} succeeded, ${p.failed} failed, ${p.skipped} skipped`;
      return;
    }
    default: {
      const unrouted: never = step;
      throw new Error(`no rollout step ${JSON.stringify(unrouted)}`);
    }
  }
}

function newBook(): RolloutBook {
  // The ledger reads a host's commands and its agent's answers on one partition, in order.
  return new RolloutBook({ keepOutcomes: 'for-waiting-steps' });
}

const hostKey = (rolloutId: string, hostId: string) => `${rolloutId}\u0000${hostId}`;

function sameRow<T extends object>(a: T | undefined, b: T): boolean {
  return a !== undefined && JSON.stringify(a) === JSON.stringify(b);
}

const tsMs = (ts: { seconds: string; nanos: number } | undefined) => (ts ? fromTimestamp(ts).getTime() : null);

/** A rollout's row: the dispatcher's view of it at its last change. */
export function rolloutRow(run: RolloutRun): RolloutRow {
  const view = rolloutView(run, run.updatedAt);
  const states = view.waves.flatMap((w) => w.hosts.map((h) => h.state));
  const actor: ActorRow = {
    kind: run.createdBy?.kind ?? 0,
    id: run.createdBy?.id ?? '',
    origin: run.createdBy?.origin ?? '',
  };
  return {
    rolloutId: run.rolloutId,
    patchId: run.patchId,
    version: run.version,
    state: view.state,
    createdAt: run.createdAt,
    updatedAt: run.updatedAt,
    createdBy: actor,
    selector: run.selector,
    strategy: run.strategy,
    waves: view.waves.map((w): WaveRow => ({
      index: w.index,
      name: w.name,
      state: w.state,
      startedAt: tsMs(w.startedAt),
      completedAt: tsMs(w.completedAt),
    })),
    currentWave: currentWave(run)?.index ?? 0,
    succeeded: states.filter((s) => s === H.HOST_ROLLOUT_STATE_SUCCEEDED).length,
    failed: states.filter((s) => s === H.HOST_ROLLOUT_STATE_FAILED || s === H.HOST_ROLLOUT_STATE_TIMED_OUT).length,
    skipped: states.filter((s) => s === H.HOST_ROLLOUT_STATE_SKIPPED).length + run.skippedHostIds.length,
    reason: view.stateReason,
    foldState: canonicalJson(runRecord(run)),
  };
}

/** Each host's row: its progress in the dispatcher's view, and its run in the fold. */
export function hostRows(run: RolloutRun): RolloutHostRow[] {
  const view = rolloutView(run, run.updatedAt);
  const rows: RolloutHostRow[] = [];
  for (const wave of view.waves)
    for (const h of wave.hosts)
      rows.push({
        rolloutId: run.rolloutId,
        hostId: h.hostId,
        waveIndex: wave.index,
        commandId: h.commandId,
        outcome: h.state,
        detail: h.error,
        updatedAt: tsMs(h.updatedAt) ?? 0,
        planned: true,
        foldState: canonicalJson(run.hosts.get(h.hostId)),
      });
  for (const hostId of run.skippedHostIds)
    rows.push({
      rolloutId: run.rolloutId,
      hostId,
      waveIndex: -1,
      commandId: '',
      outcome: H.HOST_ROLLOUT_STATE_SKIPPED,
      detail: 'already carried the patch',
      updatedAt: 0,
      planned: true,
      foldState: '',
    });
  return rows;
}
