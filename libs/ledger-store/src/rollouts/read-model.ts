import { dispatcher, fromTimestamp, toTimestamp } from '@rebootless/contracts';
import {
  type EventMeta,
  type HostFactEvent,
  type HostRun,
  type RolloutEvent,
  type RolloutRun,
  type RolloutRunRecord,
  type WaveRun,
  RolloutBook,
  currentWave,
  hostView,
  phaseDeadlines,
  rolloutState,
  rolloutView,
  runRecord,
  waveAwaitingApproval,
  waveState,
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

/** A rollout's host list kept beside its record: `wave/<index>`, or `skipped`. */
export interface RolloutHostListRow {
  rolloutId: string;
  list: string;
  /** JSON array of host ids, in the plan's order. */
  hostIds: string;
}

/**
 * What the rows of one rollout's hosts add up to, kept as they change, so that an event about one
 * host re-derives that host's row and the rollout's, not every host's (a 100,000-host rollout
 * answers in a few hundred thousand events).
 */
interface RunTally {
  /** The wave hosts' rows by state (dispatcher.v1.HostRolloutState). */
  byState: Map<number, number>;
  /** Per wave, how many of its hosts' rows show an error. */
  errorsByWave: Map<number, number>;
  /** The rollout's clock (updatedAt) the rows were derived at. */
  derivedAt: number;
  /** From here on, time alone may change a host's row (phaseDeadlines): every host is looked at again. */
  nextDeadline: number;
}

/**
 * The rollouts read model: every rollout folded by the dispatcher's own fold (libs/rollout
 * RolloutBook), its record stored beside the rows so that a restart picks the fold up again, and
 * the rows' columns derived from it as the dispatcher's view (rolloutView) tells them at the
 * rollout's last change (docs/adr/0014-one-fold.md). Only the hosts an event touched are derived
 * again, and the whole rollout when a step of the rollout itself (a wave, a pause) or its clock
 * passing a host's deadline may have moved them all. The plan's host lists go to a table of their
 * own, written once, not with every change of the rollout's record.
 */
export class RolloutReadModel {
  private book = newBook();
  /** The rows as stored (or staged): a derived row equal to its stored one is not written again. */
  private readonly stored = new Map<string, RolloutRow>();
  private readonly storedHosts = new Map<string, RolloutHostRow>();
  /** The host lists as stored, by identity (they never change once planned). */
  private readonly storedLists = new Map<string, readonly string[]>();
  private readonly tallies = new Map<string, RunTally>();
  /** Rollouts changed since the last take: the hosts touched, or 'all'. */
  private dirty = new Map<string, Set<string> | 'all'>();

  clear(): void {
    this.book = newBook();
    this.stored.clear();
    this.storedHosts.clear();
    this.storedLists.clear();
    this.tallies.clear();
    this.dirty = new Map();
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
      (await db.query('SELECT * FROM rollout_host_lists')).map((r) => ({
        rolloutId: String(r['rollout_id']),
        list: String(r['list']),
        hostIds: String(r['host_ids']),
      })),
    );
  }

  /**
   * Takes the fold back from the stored rows (rows without a fold state predate migration 0003;
   * records that still hold their host lists predate 0006 and keep them).
   */
  restore(
    rollouts: RolloutRow[],
    hosts: RolloutHostRow[],
    leftovers: [string, string][],
    lists: RolloutHostListRow[] = [],
  ): void {
    const hostsOf = new Map<string, HostRun[]>();
    for (const h of hosts) {
      this.storedHosts.set(hostKey(h.rolloutId, h.hostId), h);
      if (!h.foldState) continue;
      const list = hostsOf.get(h.rolloutId);
      const run = JSON.parse(h.foldState) as HostRun;
      if (list) list.push(run);
      else hostsOf.set(h.rolloutId, [run]);
    }
    const listsOf = new Map<string, Map<string, string[]>>();
    for (const l of lists) {
      const byName = listsOf.get(l.rolloutId) ?? new Map<string, string[]>();
      byName.set(l.list, JSON.parse(l.hostIds) as string[]);
      listsOf.set(l.rolloutId, byName);
    }
    for (const r of rollouts) {
      this.stored.set(r.rolloutId, r);
      if (!r.foldState) continue;
      const record = withHostLists(JSON.parse(r.foldState) as RolloutRunRecord, listsOf.get(r.rolloutId));
      for (const [name, ids] of hostListsOf(record)) {
        if (listsOf.get(r.rolloutId)?.has(name)) this.storedLists.set(listKey(r.rolloutId, name), ids);
      }
      this.book.restore(record, hostsOf.get(r.rolloutId) ?? []);
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
    if (!run) return;
    // A command moves its host; any other step (a wave, a pause, the end) may move them all.
    if (event.type === 'HostApplyRequested' || event.type === 'HostRevertRequested')
      this.touch(run.rolloutId, event.data.hostId);
    else this.dirty.set(run.rolloutId, 'all');
  }

  /** An agent fact a rollout listens to (its hosts' answers, boots, drift and warnings). */
  observe(ctx: EventContext, fact: HostFactEvent): void {
    const hostId = fact.type === 'HostInventoryReported' ? (fact.data.facts?.hostId ?? '') : fact.data.hostId;
    for (const run of this.book.observe(fact, metaOf(ctx))) this.touch(run.rolloutId, hostId);
  }

  private touch(rolloutId: string, hostId: string): void {
    const hosts = this.dirty.get(rolloutId);
    if (hosts === 'all') return;
    if (hosts) hosts.add(hostId);
    else this.dirty.set(rolloutId, new Set([hostId]));
  }

  /** The rows the events since the last take changed, derived from the fold now. */
  take(): {
    rollouts: RolloutRow[];
    hosts: RolloutHostRow[];
    lists: RolloutHostListRow[];
    book: [string, string][];
  } {
    const rollouts: RolloutRow[] = [];
    const hosts: RolloutHostRow[] = [];
    const lists: RolloutHostListRow[] = [];
    for (const [id, touched] of this.dirty) {
      const run = this.book.get(id)!;
      const now = run.updatedAt;
      const tally = this.tallies.get(id);
      // Everything again: after a step of the rollout, a restart, the clock going back, or past a deadline.
      const whole = touched === 'all' || !tally || now < tally.derivedAt || now > tally.nextDeadline;
      const t = whole ? this.deriveAll(run, hosts, lists) : this.deriveSome(run, tally, touched, hosts);
      t.derivedAt = now;
      this.tallies.set(id, t);
      const row = rolloutRowFrom(run, t);
      if (!sameRow(this.stored.get(id), row)) {
        this.stored.set(id, row);
        rollouts.push(row);
      }
    }
    this.dirty = new Map();
    return { rollouts, hosts, lists, book: this.book.takeLeftoverChanges() };
  }

  /** Every host's row derived again, and the tally counted from them. */
  private deriveAll(run: RolloutRun, out: RolloutHostRow[], lists: RolloutHostListRow[]): RunTally {
    const tally: RunTally = { byState: new Map(), errorsByWave: new Map(), derivedAt: 0, nextDeadline: Infinity };
    const now = run.updatedAt;
    for (const wave of run.waves) {
      for (const hostId of wave.hostIds) {
        const host = run.hosts.get(hostId)!;
        const row = hostRow(run, host, wave.index, now);
        count(tally, row, 1);
        tally.nextDeadline = Math.min(tally.nextDeadline, nextDeadlineOf(run, host, now));
        this.stage(row, out);
      }
    }
    for (const row of skippedRows(run)) this.stage(row, out);
    for (const [name, ids] of hostListsOf(runRecord(run))) {
      const key = listKey(run.rolloutId, name);
      if (this.storedLists.get(key) === ids) continue;
      this.storedLists.set(key, ids);
      lists.push({ rolloutId: run.rolloutId, list: name, hostIds: JSON.stringify(ids) });
    }
    return tally;
  }

  /** The touched hosts' rows derived again, the tally moved by what changed in them. */
  private deriveSome(run: RolloutRun, tally: RunTally, touched: Set<string>, out: RolloutHostRow[]): RunTally {
    const now = run.updatedAt;
    for (const hostId of touched) {
      const host = run.hosts.get(hostId);
      if (!host) continue;
      const row = hostRow(run, host, host.wave, now);
      const before = this.storedHosts.get(hostKey(run.rolloutId, hostId));
      if (this.stage(row, out)) {
        if (before && before.waveIndex >= 0) count(tally, before, -1);
        count(tally, row, 1);
      }
      tally.nextDeadline = Math.min(tally.nextDeadline, nextDeadlineOf(run, host, now));
    }
    return tally;
  }

  /** Stages a row unless it equals the stored one; true when staged. */
  private stage(row: RolloutHostRow, out: RolloutHostRow[]): boolean {
    const k = hostKey(row.rolloutId, row.hostId);
    if (sameRow(this.storedHosts.get(k), row)) return false;
    this.storedHosts.set(k, row);
    out.push(row);
    return true;
  }
}

function count(tally: RunTally, row: RolloutHostRow, by: 1 | -1): void {
  tally.byState.set(row.outcome, (tally.byState.get(row.outcome) ?? 0) + by);
  if (row.detail) tally.errorsByWave.set(row.waveIndex, (tally.errorsByWave.get(row.waveIndex) ?? 0) + by);
}

/** The first of the host's deadlines still ahead at `now` (Infinity when none is). */
function nextDeadlineOf(run: RolloutRun, host: HostRun, now: number): number {
  let next = Infinity;
  for (const d of phaseDeadlines(run, host)) if (d >= now && d < next) next = d;
  return next;
}

const listKey = (rolloutId: string, name: string) => `${rolloutId}\u0000${name}`;

/** The plan's host lists a record holds, by name (wave/<index>, skipped). */
function hostListsOf(record: RolloutRunRecord): [string, readonly string[]][] {
  return [
    ...record.waves.map((w): [string, readonly string[]] => [`wave/${w.index}`, w.hostIds]),
    ['skipped', record.skippedHostIds],
  ];
}

/** The record as stored: its host lists live in rollout_host_lists. */
function withoutHostLists(record: RolloutRunRecord): RolloutRunRecord {
  return { ...record, waves: record.waves.map((w) => ({ ...w, hostIds: [] })), skippedHostIds: [] };
}

/** A stored record with its host lists back (a record from before 0006 holds its own). */
function withHostLists(record: RolloutRunRecord, lists: ReadonlyMap<string, string[]> | undefined): RolloutRunRecord {
  if (!lists) return record;
  return {
    ...record,
    waves: record.waves.map((w) => ({ ...w, hostIds: lists.get(`wave/${w.index}`) ?? w.hostIds })),
    skippedHostIds: lists.get('skipped') ?? record.skippedHostIds,
  };
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

/** A rollout's row from its tally: the dispatcher's view of it at its last change. */
function rolloutRowFrom(run: RolloutRun, tally: RunTally): RolloutRow {
  const awaiting = waveAwaitingApproval(run);
  const current = currentWave(run);
  const n = (state: dispatcher.HostRolloutState) => tally.byState.get(state) ?? 0;
  return {
    ...rolloutRowBase(run),
    waves: run.waves.map((w) => waveRow(w, waveState(run, w, tally.errorsByWave.get(w.index) ?? 0, awaiting, current))),
    succeeded: n(H.HOST_ROLLOUT_STATE_SUCCEEDED),
    failed: n(H.HOST_ROLLOUT_STATE_FAILED) + n(H.HOST_ROLLOUT_STATE_TIMED_OUT),
    skipped: n(H.HOST_ROLLOUT_STATE_SKIPPED) + run.skippedHostIds.length,
  };
}

/**
 * A rollout's row derived from its whole view (every host looked at): what the kept rows must
 * always equal (the read model's tests hold them to it).
 */
export function rolloutRow(run: RolloutRun): RolloutRow {
  const view = rolloutView(run, run.updatedAt);
  const states = view.waves.flatMap((w) => w.hosts.map((h) => h.state));
  return {
    ...rolloutRowBase(run),
    waves: view.waves.map((w) => ({
      index: w.index,
      name: w.name,
      state: w.state,
      startedAt: tsMs(w.startedAt),
      completedAt: tsMs(w.completedAt),
    })),
    succeeded: states.filter((s) => s === H.HOST_ROLLOUT_STATE_SUCCEEDED).length,
    failed: states.filter((s) => s === H.HOST_ROLLOUT_STATE_FAILED || s === H.HOST_ROLLOUT_STATE_TIMED_OUT).length,
    skipped: states.filter((s) => s === H.HOST_ROLLOUT_STATE_SKIPPED).length + run.skippedHostIds.length,
  };
}

function rolloutRowBase(run: RolloutRun): Omit<RolloutRow, 'waves' | 'succeeded' | 'failed' | 'skipped'> {
  const actor: ActorRow = {
    kind: run.createdBy?.kind ?? 0,
    id: run.createdBy?.id ?? '',
    origin: run.createdBy?.origin ?? '',
  };
  return {
    rolloutId: run.rolloutId,
    patchId: run.patchId,
    version: run.version,
    state: rolloutState(run),
    createdAt: run.createdAt,
    updatedAt: run.updatedAt,
    createdBy: actor,
    selector: run.selector,
    strategy: run.strategy,
    currentWave: currentWave(run)?.index ?? 0,
    reason: run.statusReason,
    foldState: canonicalJson(withoutHostLists(runRecord(run))),
  };
}

function waveRow(w: WaveRun, state: dispatcher.WaveState): WaveRow {
  const at = (ms: number | undefined) => (ms === undefined ? null : tsMs(toTimestamp(new Date(ms))));
  return { index: w.index, name: w.name, state, startedAt: at(w.startedAt), completedAt: at(w.completedAt) };
}

/** One host's row: its progress in the dispatcher's view at `now`, and its run in the fold. */
function hostRow(run: RolloutRun, host: HostRun, waveIndex: number, now: number): RolloutHostRow {
  const h = hostView(run, host, now);
  return {
    rolloutId: run.rolloutId,
    hostId: h.hostId,
    waveIndex,
    commandId: h.commandId,
    outcome: h.state,
    detail: h.error,
    updatedAt: tsMs(h.updatedAt) ?? 0,
    planned: true,
    foldState: canonicalJson(host),
  };
}

function skippedRows(run: RolloutRun): RolloutHostRow[] {
  return run.skippedHostIds.map((hostId) => ({
    rolloutId: run.rolloutId,
    hostId,
    waveIndex: -1,
    commandId: '',
    outcome: H.HOST_ROLLOUT_STATE_SKIPPED,
    detail: 'already carried the patch',
    updatedAt: 0,
    planned: true,
    foldState: '',
  }));
}

/** Every host's row derived from the whole view: what the kept rows must always equal. */
export function hostRows(run: RolloutRun): RolloutHostRow[] {
  const rows: RolloutHostRow[] = [];
  for (const wave of run.waves)
    for (const id of wave.hostIds) rows.push(hostRow(run, run.hosts.get(id)!, wave.index, run.updatedAt));
  return [...rows, ...skippedRows(run)];
}
