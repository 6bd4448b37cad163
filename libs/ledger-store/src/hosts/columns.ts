import { num, numOrNull } from '../database';

// The hosts read model's rows: each host's last facts, enrollment, last sighting and its stack's bookkeeping.

const json = (v: unknown) => JSON.stringify(v);

export interface HostRow {
  hostId: string;
  hostname: string;
  machineId: string;
  kernelRelease: string;
  kernelVersion: string;
  arch: string;
  distro: string;
  bootId: string;
  labels: Record<string, string>;
  agentVersion: string;
  tainted: number;
  taintFlags: string[];
  enrolledAt: number | null;
  enrolledEventId: string;
  lastSeenAt: number;
  stackObservedAt: number | null;
  /** Gives each new stack interval of the host its place (stack_seq). */
  stackCounter: number;
  lastEventId: string;
}

export const HOST_COLUMNS = [
  'host_id',
  'hostname',
  'machine_id',
  'kernel_release',
  'kernel_version',
  'arch',
  'distro',
  'boot_id',
  'labels',
  'agent_version',
  'tainted',
  'taint_flags',
  'enrolled_at',
  'enrolled_event_id',
  'last_seen_at',
  'stack_observed_at',
  'stack_counter',
  'last_event_id',
];
export const hostValues = (h: HostRow) => [
  h.hostId,
  h.hostname,
  h.machineId,
  h.kernelRelease,
  h.kernelVersion,
  h.arch,
  h.distro,
  h.bootId,
  json(sortedObject(h.labels)),
  h.agentVersion,
  h.tainted,
  json(h.taintFlags),
  h.enrolledAt,
  h.enrolledEventId,
  h.lastSeenAt,
  h.stackObservedAt,
  h.stackCounter,
  h.lastEventId,
];
export function hostFromRow(r: Record<string, unknown>): HostRow {
  return {
    hostId: String(r['host_id']),
    hostname: String(r['hostname']),
    machineId: String(r['machine_id']),
    kernelRelease: String(r['kernel_release']),
    kernelVersion: String(r['kernel_version']),
    arch: String(r['arch']),
    distro: String(r['distro']),
    bootId: String(r['boot_id']),
    labels: JSON.parse(String(r['labels'])) as Record<string, string>,
    agentVersion: String(r['agent_version']),
    tainted: num(r['tainted']),
    taintFlags: JSON.parse(String(r['taint_flags'])) as string[],
    enrolledAt: numOrNull(r['enrolled_at']),
    enrolledEventId: String(r['enrolled_event_id']),
    lastSeenAt: num(r['last_seen_at']),
    stackObservedAt: numOrNull(r['stack_observed_at']),
    stackCounter: num(r['stack_counter']),
    lastEventId: String(r['last_event_id']),
  };
}

function sortedObject(o: Record<string, string>): Record<string, string> {
  return Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}
