import { events } from '@rebootless/contracts';
import type { EventPayload } from '@rebootless/events';
import type { HostFact } from '@rebootless/ledger-model';
import type { LedgerDatabase } from '../database';
import type { EventContext } from '../event-context';
import { type IntervalRow, intervalFromRow } from '../stacks/columns';
import type { StackReadModel } from '../stacks/read-model';
import { type HostRow, hostFromRow } from './columns';

/** What agents report about their host: facts, boots, and what they did to its live patches. */
export type HostEvent = Extract<
  EventPayload,
  {
    type:
      | 'HostEnrolled'
      | 'HostBooted'
      | 'HostInventoryReported'
      | 'PatchApplyStarted'
      | 'PatchQuarantineCleared'
      | 'PatchApplied'
      | 'PatchApplyFailed'
      | 'PatchReverted'
      | 'PatchRevertFailed'
      | 'DriftDetected';
  }
>;

/**
 * The hosts read model: each host's last facts, enrollment and last sighting, all in memory. The
 * facts that change a host's live patches go on to its stack (stacks/, the domain's fold), which
 * keeps the host row's stack bookkeeping (boot, stack counter, last observation).
 */
export class HostReadModel {
  readonly hosts = new Map<string, HostRow>();
  private dirty = new Set<HostRow>();

  constructor(private readonly stacks: StackReadModel) {}

  clear(): void {
    this.hosts.clear();
    this.dirty = new Set();
    this.stacks.clear();
  }

  /** Reads every host and its open stack intervals back. */
  async load(db: LedgerDatabase): Promise<void> {
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
    for (const h of this.hosts.values()) this.stacks.restore(h, open.get(h.hostId) ?? []);
  }

  evolve(ctx: EventContext, p: HostEvent): void {
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
      // Quarantines are read from the audit rows (hosts/quarantines.ts), so only the summary here.
      case 'PatchQuarantineCleared': {
        const d = p.data;
        this.seen(ctx, d.hostId);
        Object.assign(ctx, { patchId: d.patchId, version: d.version });
        ctx.summary = `quarantine of ${d.patchId} ${d.version} cleared on ${ctx.hostId}: ${d.reason}`;
        return;
      }
      case 'PatchApplyFailed': {
        const d = p.data;
        const h = this.seen(ctx, d.hostId);
        Object.assign(ctx, { patchId: d.patchId, version: d.version });
        ctx.summary = `applying ${d.patchId} ${d.version} failed on ${h.hostId} at ${d.stage}: ${d.error}`;
        return;
      }
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
      default: {
        const unrouted: never = p;
        throw new Error(`the hosts read model has no step for ${JSON.stringify(unrouted)}`);
      }
    }
  }

  /** The host rows changed since the last take. */
  take(): HostRow[] {
    const rows = [...this.dirty];
    this.dirty = new Set();
    return rows;
  }

  discardStaged(): void {
    this.dirty = new Set();
  }

  /** Folds an agent fact into the host's stack (libs/ledger-model evolveHostStack). */
  private foldStack(ctx: EventContext, h: HostRow, fact: HostFact): void {
    const b = ctx.e.body;
    this.stacks.fold(h, fact, {
      eventId: b.eventId,
      at: ctx.at,
      ...(b.actor ? { actor: b.actor } : {}),
      rolloutId: b.correlationId,
    });
  }

  /** The host an agent event is about, created on first sight (facts follow with enrollment). */
  private seen(ctx: EventContext, payloadHostId: string): HostRow {
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
    this.dirty.add(h);
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

  private onEnrolled(ctx: EventContext, p: events.HostEnrolled): void {
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

  private onBooted(ctx: EventContext, p: events.HostBooted): void {
    const h = this.seen(ctx, p.hostId);
    this.foldStack(ctx, h, { type: 'HostBooted', payload: p });
    if (p.kernelRelease) h.kernelRelease = p.kernelRelease;
    ctx.summary = `${h.hostId} booted ${p.kernelRelease} (boot ${p.bootId}): every live patch is gone`;
  }

  private onInventory(ctx: EventContext, p: events.HostInventoryReported): void {
    const h = this.seen(ctx, p.facts?.hostId ?? '');
    if (p.facts) this.takeFacts(h, p.facts);
    this.foldStack(ctx, h, { type: 'HostInventoryReported', payload: p });
    ctx.summary = `inventory of ${h.hostId}: ${p.patches.length} live patch(es)`;
  }

  private onApplied(ctx: EventContext, p: events.PatchApplied): void {
    const h = this.seen(ctx, p.hostId);
    Object.assign(ctx, { patchId: p.patchId, version: p.version });
    this.foldStack(ctx, h, { type: 'PatchApplied', payload: p });
    ctx.summary =
      `applied ${p.patchId} ${p.version} on ${h.hostId}` +
      (p.replace ? ' (replace)' : '') +
      (p.forced ? ' (forced)' : '');
  }

  private onReverted(ctx: EventContext, p: events.PatchReverted): void {
    const h = this.seen(ctx, p.hostId);
    Object.assign(ctx, { patchId: p.patchId, version: p.version });
    this.foldStack(ctx, h, { type: 'PatchReverted', payload: p });
    ctx.summary = `reverted ${p.patchId} ${p.version} on ${h.hostId}`;
  }
}
