import { FactMeta, HostFact, HostStack, StackChange, emptyHostStack, evolveHostStack } from '@rebootless/ledger-model';
import { IntervalRow } from './columns';

/** What the stack model needs of a host row to pick its stack up again after a restart. */
export interface StackOwner {
  hostId: string;
  bootId: string;
  kernelRelease: string;
  stackCounter: number;
  stackObservedAt: number | null;
}

/**
 * The host stacks read model: each host's stack folded by the domain's own rule
 * (evolveHostStack, libs/ledger-model), and the intervals each fact changed, staged to be written.
 * The fold runs without a catalog so that it depends on the host's stream alone: a replay reads
 * the catalog's stream in another order (docs/adr/0014-one-fold.md).
 */
export class StackReadModel {
  /** Each host's stack: its open intervals, oldest first, as the fold left them. */
  readonly stacks = new Map<string, HostStack>();
  private dirty = new Map<string, IntervalRow>();
  /** Open intervals the database holds: a dirty one among them is an update, any other a new row (COPY). */
  private stored = new Set<string>();

  clear(): void {
    this.stacks.clear();
    this.dirty = new Map();
    this.stored = new Set();
  }

  /** Takes back a host's stack from its row and its open intervals (stack order). */
  restore(host: StackOwner, open: IntervalRow[]): void {
    this.stacks.set(host.hostId, {
      ...emptyHostStack(host.hostId, {
        bootId: host.bootId,
        kernelRelease: host.kernelRelease,
        nextStackSeq: host.stackCounter + 1,
      }),
      entries: open,
      observedAt: host.stackObservedAt,
    });
    for (const i of open) this.stored.add(i.intervalId);
  }

  stackOf(host: StackOwner): HostStack {
    let s = this.stacks.get(host.hostId);
    if (!s) {
      s = emptyHostStack(host.hostId, {
        bootId: host.bootId,
        kernelRelease: host.kernelRelease,
        nextStackSeq: host.stackCounter + 1,
      });
      this.stacks.set(host.hostId, s);
    }
    return s;
  }

  /** Folds one fact into the host's stack, stages what changed, and brings the host row along. */
  fold(host: StackOwner, fact: HostFact, meta: FactMeta): StackChange {
    const change = evolveHostStack(this.stackOf(host), fact, meta);
    this.stacks.set(host.hostId, change.stack);
    for (const i of change.changed) this.dirty.set(i.intervalId, i);
    host.bootId = change.stack.bootId;
    host.stackCounter = change.stack.nextStackSeq - 1;
    host.stackObservedAt = change.stack.observedAt;
    return change;
  }

  /**
   * The intervals staged since the last take: new rows and updates of stored ones. A closed
   * interval is never touched again, so a new one is inserted once; after a refused transaction
   * the projection loads everything again.
   */
  take(): { fresh: IntervalRow[]; stored: IntervalRow[] } {
    const fresh: IntervalRow[] = [];
    const stored: IntervalRow[] = [];
    for (const i of this.dirty.values()) {
      (this.stored.has(i.intervalId) ? stored : fresh).push(i);
      if (i.removedAt === null) this.stored.add(i.intervalId);
      else this.stored.delete(i.intervalId);
    }
    this.dirty = new Map();
    return { fresh, stored };
  }

  discardStaged(): void {
    this.dirty = new Map();
  }
}
