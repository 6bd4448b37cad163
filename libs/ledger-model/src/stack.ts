import type { events } from '@rebootless/contracts';
import { EMPTY_CATALOG, PatchCatalog, PublishedPatch } from './catalog';
import type { EpochMillis } from './time';

/**
 * A host's live-patch stack as its agent observed it in /sys/kernel/livepatch, and its history
 * as intervals (DESIGN.md sections 1 and 5: facts come from hosts; the kernel's listing is the
 * truth). Pure data: instants are epoch milliseconds, ids are strings.
 */

/** Where a patch is in its life in the kernel. */
export type StackEntryState = 'enabled' | 'in-transition' | 'disabled';

/**
 * Why an interval ended.
 * - reverted: the agent disabled the patch (and removed its module) on request;
 * - replaced: an atomic-replace (cumulative) patch completed its transition and disabled it;
 * - rebooted: a new boot id, which removes every live patch;
 * - forced: superseded by an atomic replace whose transition was forced: tasks that never
 *   switched may still run its code, and its module stays loaded until the next boot;
 * - inventory: the kernel's listing no longer showed it and no event of ours explains why
 *   (removed by hand, a missed event): the listing is the truth all the same.
 */
export type RemovalReason = 'reverted' | 'replaced' | 'rebooted' | 'forced' | 'inventory';

/**
 * One stretch of time during which one module was on one host's stack (listed by the kernel).
 * `removedAt` null: still on the stack. While open, its fields follow what the agent reports.
 */
export interface StackInterval {
  /** `<event id that opened it>/<module name>`: stable across replays. */
  intervalId: string;
  hostId: string;
  /** Grows by one for every interval the host opens: the order patches entered the stack. */
  stackSeq: number;
  bootId: string;
  moduleName: string;
  /** '' when the module is not one rebootless published (loaded by hand). */
  patchId: string;
  version: string;
  replace: boolean;
  /** A transition involving it was ended with force: it cannot be removed, only rebooted away. */
  forced: boolean;
  functions: events.PatchedFunction[];
  cves: events.Cve[];
  /** The state last observed. */
  state: StackEntryState;
  /** The direction of a transition (true while enabling); true for enabled, false for disabled. */
  enabled: boolean;
  /** Every state it was observed in, oldest first (the last is `state`/`enabled`): a past instant gets the state it had then. */
  states: StateChange[];
  /** Who put it there (the rollout's creator, or the event's actor); undefined when unknown. */
  appliedBy: events.Actor | undefined;
  rolloutId: string;
  appliedAt: EpochMillis;
  appliedEventId: string;
  /** When its code became live (its enable transition observed complete); null if never. */
  liveFrom: EpochMillis | null;
  liveFromEventId: string | null;
  /** When its code stopped being live (disabled or removed); null while live or never live. */
  liveUntil: EpochMillis | null;
  liveUntilEventId: string | null;
  removedAt: EpochMillis | null;
  removalReason: RemovalReason | null;
  removedEventId: string | null;
}

export interface StateChange {
  at: EpochMillis;
  state: StackEntryState;
  enabled: boolean;
  eventId: string;
}

/** An interval as the stack shows it at one instant. */
export interface StackEntry extends StackInterval {
  /** 1 is the oldest (bottom) of the stack. */
  position: number;
}

/** What the ledger holds per host to fold the next fact into. */
export interface HostStack {
  hostId: string;
  bootId: string;
  kernelRelease: string;
  /** The open intervals, oldest (bottom) first. */
  entries: StackInterval[];
  /** The stackSeq the next opened interval gets. */
  nextStackSeq: number;
  /** When the agent last showed the kernel's listing (or a boot emptied it). */
  observedAt: EpochMillis | null;
}

export function emptyHostStack(
  hostId: string,
  init: { bootId?: string; kernelRelease?: string; nextStackSeq?: number } = {},
): HostStack {
  return {
    hostId,
    bootId: init.bootId ?? '',
    kernelRelease: init.kernelRelease ?? '',
    entries: [],
    nextStackSeq: init.nextStackSeq ?? 1,
    observedAt: null,
  };
}

/** The agent facts that change a host's stack. */
export type HostFact =
  | { type: 'HostEnrolled'; payload: events.HostEnrolled }
  | { type: 'PatchApplied'; payload: events.PatchApplied }
  | { type: 'PatchReverted'; payload: events.PatchReverted }
  | { type: 'HostBooted'; payload: events.HostBooted }
  | { type: 'HostInventoryReported'; payload: events.HostInventoryReported }
  | { type: 'DriftDetected'; payload: events.DriftDetected };

export const HOST_FACT_TYPES: readonly HostFact['type'][] = [
  'HostEnrolled',
  'PatchApplied',
  'PatchReverted',
  'HostBooted',
  'HostInventoryReported',
  'DriftDetected',
];

/** The envelope data of the event carrying the fact. */
export interface FactMeta {
  eventId: string;
  at: EpochMillis;
  /** The event's actor; `appliedBy` falls back to it. */
  actor?: events.Actor;
  /** The rollout the fact belongs to (the event's correlation id), '' if none. */
  rolloutId?: string;
  /** Who created that rollout, when the ledger knows: the person accountable for the patch. */
  rolloutCreatedBy?: events.Actor;
  /** Names the modules the kernel lists (patch id, version, CVEs). */
  catalog?: PatchCatalog;
}

/** What one fact did. Every list holds intervals in their final form, to upsert by intervalId. */
export interface StackChange {
  stack: HostStack;
  /** Intervals this fact opened (possibly closed again by it, then also in `closed`). */
  opened: StackInterval[];
  /** Intervals this fact closed. */
  closed: StackInterval[];
  /** Every interval this fact created or changed, opened and closed ones included. */
  changed: StackInterval[];
}

/** The fact an event body carries, if it is one that changes a stack. */
export function hostFactOf(body: events.EventBody): HostFact | undefined {
  if (body.hostEnrolled) return { type: 'HostEnrolled', payload: body.hostEnrolled };
  if (body.patchApplied) return { type: 'PatchApplied', payload: body.patchApplied };
  if (body.patchReverted) return { type: 'PatchReverted', payload: body.patchReverted };
  if (body.hostBooted) return { type: 'HostBooted', payload: body.hostBooted };
  if (body.hostInventoryReported) return { type: 'HostInventoryReported', payload: body.hostInventoryReported };
  if (body.driftDetected) return { type: 'DriftDetected', payload: body.driftDetected };
  return undefined;
}

/**
 * Folds one agent fact into a host's stack: the projection calls it once per event, in log
 * order, and stores what `changed` lists. The input is not modified.
 *
 * Rules (DESIGN.md section 5):
 * - HostEnrolled records the boot id and kernel; enrolling again from another boot closes
 *   every interval as `rebooted`.
 * - PatchApplied opens the module's interval, live from the event. With `replace` every other
 *   interval closes as `replaced` (atomic replace disables all older patches), or `forced` when
 *   that transition was forced; an older version of the same patch that the agent took off for
 *   the new one closes as `replaced` too.
 * - PatchReverted closes the module's interval as `reverted`.
 * - HostBooted with a new boot id closes every interval as `rebooted`.
 * - A kernel listing (HostInventoryReported, or the `stack` an apply/revert carries) is the truth:
 *   listed modules are on the stack in the listed state, unlisted ones close (as `inventory`
 *   unless the fact explains them), and an inventory from a new boot id closes all as `rebooted`.
 *   An empty `stack` on PatchApplied/PatchReverted means "not reported", not "nothing loaded".
 * - DriftDetected carries the listing the agent observed: the truth too (unlisted close as
 *   `inventory`); with no listing it changes nothing, unless its kind says modules were removed
 *   (then the empty listing is what the kernel showed).
 */
export function evolveHostStack(stack: HostStack, fact: HostFact, meta: FactMeta): StackChange {
  const fold = new StackFold(stack, meta);
  switch (fact.type) {
    case 'HostEnrolled':
      fold.hostEnrolled(fact.payload);
      break;
    case 'PatchApplied':
      fold.patchApplied(fact.payload);
      break;
    case 'PatchReverted':
      fold.patchReverted(fact.payload);
      break;
    case 'HostBooted':
      fold.hostBooted(fact.payload);
      break;
    case 'HostInventoryReported':
      fold.inventoryReported(fact.payload);
      break;
    case 'DriftDetected':
      fold.driftDetected(fact.payload);
      break;
    default: {
      const unknown: never = fact;
      throw new Error(`evolveHostStack: unknown fact ${JSON.stringify(unknown)}`);
    }
  }
  return fold.result();
}

/**
 * The stack at an instant, from a host's intervals (any order, open and closed): every
 * interval with appliedAt <= instant < removedAt, oldest first, each in the state it had then.
 */
export function stackAt(intervals: readonly StackInterval[], instant: EpochMillis): StackEntry[] {
  return intervals
    .filter((i) => i.appliedAt <= instant && (i.removedAt === null || instant < i.removedAt))
    .sort((a, b) => a.stackSeq - b.stackSeq)
    .map((i, index) => ({ ...i, ...stateAt(i, instant), position: index + 1 }));
}

/** The open intervals of a stack, positioned: the stack now. */
export function currentStack(stack: HostStack): StackEntry[] {
  return stack.entries.map((e, index) => ({ ...e, position: index + 1 }));
}

function stateAt(i: StackInterval, instant: EpochMillis): { state: StackEntryState; enabled: boolean } {
  let current = { state: i.state, enabled: i.enabled };
  for (const change of i.states) {
    if (change.at > instant) break;
    current = { state: change.state, enabled: change.enabled };
  }
  return current;
}

/** The state a kernel listing entry is in. */
export function listedState(s: events.LivePatchState): { state: StackEntryState; enabled: boolean } {
  if (s.transition) return { state: 'in-transition', enabled: s.enabled };
  return { state: s.enabled ? 'enabled' : 'disabled', enabled: s.enabled };
}

/** Whether an entry's code runs (settled enabled, or still running while a disable is in transition). */
export function isLive(e: Pick<StackInterval, 'state' | 'enabled'>): boolean {
  return e.state === 'enabled' || (e.state === 'in-transition' && !e.enabled);
}

class StackFold {
  private readonly entries: StackInterval[];
  private readonly opened = new Map<string, StackInterval>();
  private readonly closed = new Map<string, StackInterval>();
  private readonly changed = new Map<string, StackInterval>();
  private readonly catalog: PatchCatalog;
  private bootId: string;
  private kernelRelease: string;
  private nextStackSeq: number;
  private observedAt: EpochMillis | null;

  constructor(
    private readonly before: HostStack,
    private readonly meta: FactMeta,
  ) {
    this.entries = [...before.entries];
    this.catalog = meta.catalog ?? EMPTY_CATALOG;
    this.bootId = before.bootId;
    this.kernelRelease = before.kernelRelease;
    this.nextStackSeq = before.nextStackSeq;
    this.observedAt = before.observedAt;
  }

  result(): StackChange {
    return {
      stack: {
        hostId: this.before.hostId,
        bootId: this.bootId,
        kernelRelease: this.kernelRelease,
        entries: this.entries,
        nextStackSeq: this.nextStackSeq,
        observedAt: this.observedAt,
      },
      opened: [...this.opened.values()],
      closed: [...this.closed.values()],
      changed: [...this.changed.values()],
    };
  }

  patchApplied(p: events.PatchApplied): void {
    const { at, eventId } = this.meta;
    let entry = this.find(p.moduleName);
    // A patch that stayed listed while disabled (before 5.1) and is enabled again starts a new interval.
    if (entry && entry.state === 'disabled') {
      this.close(entry, 'reverted');
      entry = undefined;
    }
    const published = this.catalog.byPatch(p.patchId, p.version);
    const identity = {
      patchId: p.patchId,
      version: p.version,
      replace: p.replace,
      forced: p.forced || (entry?.forced ?? false),
      cves: published ? [...published.cves] : (entry?.cves ?? []),
      // A repeated report without a rollout or actor keeps what the first one said.
      rolloutId: this.meta.rolloutId || (entry?.rolloutId ?? ''),
      appliedBy: this.accountable() ?? entry?.appliedBy,
    };
    if (entry) {
      entry = this.update(entry, {
        ...identity,
        functions: p.functions.length > 0 ? [...p.functions] : entry.functions,
        ...(entry.liveFrom === null ? { liveFrom: at, liveFromEventId: eventId } : {}),
        ...this.stateChange(entry, 'enabled', true),
      });
    } else {
      entry = this.open({
        moduleName: p.moduleName,
        ...identity,
        functions: [...p.functions],
        state: 'enabled',
        enabled: true,
        liveFrom: at,
        liveFromEventId: eventId,
      });
    }
    const applied = entry;
    const supersedes = (other: StackInterval) =>
      other !== applied && (p.replace || (other.patchId !== '' && other.patchId === p.patchId));
    const superseded: RemovalReason = p.replace && p.forced ? 'forced' : 'replaced';
    if (p.stack.length > 0) {
      this.reconcile(p.stack, (other) => (supersedes(other) ? superseded : 'inventory'));
    } else {
      for (const other of [...this.entries]) if (supersedes(other)) this.close(other, superseded);
    }
  }

  hostEnrolled(p: events.HostEnrolled): void {
    this.takeFacts(p.facts);
  }

  patchReverted(p: events.PatchReverted): void {
    const entry = this.find(p.moduleName) ?? this.entries.find((e) => p.patchId && e.patchId === p.patchId);
    const stillListed = entry && p.stack.some((s) => s.moduleName === entry.moduleName);
    if (entry && !stillListed) this.close(entry, 'reverted');
    if (p.stack.length > 0) this.reconcile(p.stack, () => 'inventory');
  }

  hostBooted(p: events.HostBooted): void {
    if (p.kernelRelease) this.kernelRelease = p.kernelRelease;
    // The same boot id again is a repeated report, not a reboot.
    if (p.bootId && p.bootId === this.bootId) return;
    for (const entry of [...this.entries]) this.close(entry, 'rebooted');
    this.bootId = p.bootId;
    this.observedAt = this.meta.at;
  }

  inventoryReported(p: events.HostInventoryReported): void {
    this.takeFacts(p.facts);
    this.reconcile(p.patches, () => 'inventory');
  }

  driftDetected(p: events.DriftDetected): void {
    if (p.observed.length > 0 || p.kind.startsWith('removed')) this.reconcile(p.observed, () => 'inventory');
  }

  /** Facts from another boot than the one known mean a reboot we have no HostBooted for (yet). */
  private takeFacts(facts: events.HostFacts | undefined): void {
    if (facts?.bootId && this.bootId && facts.bootId !== this.bootId) {
      for (const entry of [...this.entries]) this.close(entry, 'rebooted');
    }
    if (facts?.bootId) this.bootId = facts.bootId;
    if (facts?.kernelRelease) this.kernelRelease = facts.kernelRelease;
  }

  /** Makes the open intervals what the kernel listed. */
  private reconcile(listed: readonly events.LivePatchState[], missing: (e: StackInterval) => RemovalReason): void {
    const { at, eventId } = this.meta;
    this.observedAt = at;
    const names = new Set(listed.map((s) => s.moduleName));
    const reasons = new Map(this.entries.map((e) => [e, missing(e)] as const));
    for (const entry of [...this.entries]) {
      if (!names.has(entry.moduleName)) this.close(entry, reasons.get(entry) ?? 'inventory');
    }
    // stack_order (6.13+) is the kernel's own order; otherwise the listing's.
    const ordered = listed.every((s) => s.stackOrder !== undefined)
      ? [...listed].sort((a, b) => (a.stackOrder ?? 0) - (b.stackOrder ?? 0))
      : listed;
    for (const s of ordered) {
      const { state, enabled } = listedState(s);
      let entry = this.find(s.moduleName);
      if (entry && entry.state === 'disabled' && state !== 'disabled') {
        this.close(entry, 'reverted');
        entry = undefined;
      }
      if (!entry) {
        // Loaded before enrollment, by hand, or an apply whose event we have not seen (yet).
        const known: PublishedPatch | undefined = this.catalog.byModule(s.moduleName, this.kernelRelease);
        this.open({
          moduleName: s.moduleName,
          patchId: known?.patchId ?? '',
          version: known?.version ?? '',
          replace: s.replace ?? known?.replace ?? false,
          forced: false,
          functions: [...s.functions],
          cves: known ? [...known.cves] : [],
          rolloutId: '',
          appliedBy: undefined,
          state,
          enabled,
          liveFrom: state === 'enabled' ? at : null,
          liveFromEventId: state === 'enabled' ? eventId : null,
        });
        continue;
      }
      const patch: Partial<StackInterval> = { ...this.stateChange(entry, state, enabled) };
      if (state === 'enabled' && entry.liveFrom === null)
        Object.assign(patch, { liveFrom: at, liveFromEventId: eventId });
      if (state === 'disabled' && entry.liveFrom !== null && entry.liveUntil === null) {
        Object.assign(patch, { liveUntil: at, liveUntilEventId: eventId });
      }
      if (entry.functions.length === 0 && s.functions.length > 0) patch.functions = [...s.functions];
      if (s.replace !== undefined && s.replace !== entry.replace) patch.replace = s.replace;
      if (Object.keys(patch).length > 0) this.update(entry, patch);
    }
  }

  private stateChange(entry: StackInterval, state: StackEntryState, enabled: boolean): Partial<StackInterval> {
    if (entry.state === state && entry.enabled === enabled) return {};
    const change = { at: this.meta.at, state, enabled, eventId: this.meta.eventId };
    return { state, enabled, states: [...entry.states, change] };
  }

  private accountable(): events.Actor | undefined {
    return this.meta.rolloutCreatedBy ?? this.meta.actor;
  }

  private find(moduleName: string): StackInterval | undefined {
    return moduleName ? this.entries.find((e) => e.moduleName === moduleName) : undefined;
  }

  private open(
    init: Pick<
      StackInterval,
      | 'moduleName'
      | 'patchId'
      | 'version'
      | 'replace'
      | 'forced'
      | 'functions'
      | 'cves'
      | 'rolloutId'
      | 'appliedBy'
      | 'state'
      | 'enabled'
      | 'liveFrom'
      | 'liveFromEventId'
    >,
  ): StackInterval {
    const { at, eventId } = this.meta;
    const interval: StackInterval = {
      intervalId: `${eventId}/${init.moduleName}`,
      hostId: this.before.hostId,
      stackSeq: this.nextStackSeq,
      bootId: this.bootId,
      ...init,
      states: [{ at, state: init.state, enabled: init.enabled, eventId }],
      appliedAt: at,
      appliedEventId: eventId,
      liveUntil: null,
      liveUntilEventId: null,
      removedAt: null,
      removalReason: null,
      removedEventId: null,
    };
    this.nextStackSeq += 1;
    this.entries.push(interval);
    this.opened.set(interval.intervalId, interval);
    this.changed.set(interval.intervalId, interval);
    return interval;
  }

  private update(entry: StackInterval, patch: Partial<StackInterval>): StackInterval {
    const next = { ...entry, ...patch };
    this.replaceEntry(entry, next);
    return next;
  }

  private close(entry: StackInterval, reason: RemovalReason): void {
    const { at, eventId } = this.meta;
    const stillLive = entry.liveFrom !== null && entry.liveUntil === null;
    const next: StackInterval = {
      ...entry,
      removedAt: at,
      removalReason: reason,
      removedEventId: eventId,
      ...(stillLive ? { liveUntil: at, liveUntilEventId: eventId } : {}),
    };
    this.replaceEntry(entry, next);
    this.entries.splice(this.entries.indexOf(next), 1);
    this.closed.set(next.intervalId, next);
  }

  /** Copy on write: the caller's stack and intervals stay as they were. */
  private replaceEntry(old: StackInterval, next: StackInterval): void {
    const index = this.entries.indexOf(old);
    if (index >= 0) this.entries[index] = next;
    if (this.opened.has(next.intervalId)) this.opened.set(next.intervalId, next);
    this.changed.set(next.intervalId, next);
  }
}
