import type { events } from '@rebootless/contracts';
import type { RemovalReason, StackEntryState, StackInterval, StateChange } from '@rebootless/ledger-model';
import { num, numOrNull } from '../database';

/**
 * A stack_intervals row is the domain's StackInterval as evolveHostStack returned it, every field
 * kept but `cves`: the ledger folds with no catalog (a patch's CVEs come from another stream, in
 * any order on replay), so queries join them from the catalog when they read.
 */
export type IntervalRow = StackInterval;

export const INTERVAL_COLUMNS = [
  'host_id',
  'interval_id',
  'stack_seq',
  'module_name',
  'patch_id',
  'version',
  'boot_id',
  'applied_at',
  'removed_at',
  'removal_reason',
  'state',
  'enabled',
  'replace_flag',
  'forced',
  'functions',
  'applied_by',
  'rollout_id',
  'applied_event_id',
  'removed_event_id',
  'states',
  'live_from',
  'live_from_event_id',
  'live_until',
  'live_until_event_id',
];

const flag = (b: boolean) => (b ? 1 : 0);

export const intervalValues = (i: IntervalRow): unknown[] => [
  i.hostId,
  i.intervalId,
  i.stackSeq,
  i.moduleName,
  i.patchId,
  i.version,
  i.bootId,
  i.appliedAt,
  i.removedAt,
  i.removalReason,
  i.state,
  flag(i.enabled),
  flag(i.replace),
  flag(i.forced),
  JSON.stringify(i.functions.map((f) => ({ object: f.object, name: f.name, sympos: f.sympos }))),
  JSON.stringify(i.appliedBy ?? null),
  i.rolloutId,
  i.appliedEventId,
  i.removedEventId,
  JSON.stringify(i.states),
  i.liveFrom,
  i.liveFromEventId,
  i.liveUntil,
  i.liveUntilEventId,
];

const strOrNull = (v: unknown) => (v === null || v === undefined ? null : String(v));

export function intervalFromRow(r: Record<string, unknown>): IntervalRow {
  const appliedBy = JSON.parse(String(r['applied_by'])) as events.Actor | null;
  return {
    hostId: String(r['host_id']),
    intervalId: String(r['interval_id']),
    stackSeq: num(r['stack_seq']),
    moduleName: String(r['module_name']),
    patchId: String(r['patch_id']),
    version: String(r['version']),
    bootId: String(r['boot_id']),
    appliedAt: num(r['applied_at']),
    removedAt: numOrNull(r['removed_at']),
    removalReason: (r['removal_reason'] as RemovalReason | null) ?? null,
    state: String(r['state']) as StackEntryState,
    enabled: num(r['enabled']) === 1,
    replace: num(r['replace_flag']) === 1,
    forced: num(r['forced']) === 1,
    functions: JSON.parse(String(r['functions'])) as events.PatchedFunction[],
    cves: [],
    appliedBy: appliedBy ?? undefined,
    rolloutId: String(r['rollout_id']),
    appliedEventId: String(r['applied_event_id']),
    removedEventId: strOrNull(r['removed_event_id']),
    states: JSON.parse(String(r['states'] ?? '[]')) as StateChange[],
    liveFrom: numOrNull(r['live_from']),
    liveFromEventId: strOrNull(r['live_from_event_id']),
    liveUntil: numOrNull(r['live_until']),
    liveUntilEventId: strOrNull(r['live_until_event_id']),
  };
}
