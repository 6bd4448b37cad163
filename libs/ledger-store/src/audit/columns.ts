// The audit read model's rows: one per projected event, with the fields PCI-DSS 10.2.2 asks for
// and the envelope as stored.

export interface ActorRow {
  kind: number;
  id: string;
  origin: string;
}

export interface AuditRow {
  partition: number;
  offset: string;
  eventId: string;
  type: string;
  occurredAt: number;
  producerId: string;
  epoch: number;
  seq: number;
  actor: ActorRow;
  outcome: 'success' | 'failure';
  hostId: string;
  patchId: string;
  patchVersion: string;
  correlationId: string;
  summary: string;
  envelope: Buffer;
}

export const AUDIT_COLUMNS = [
  'partition_no',
  'record_offset',
  'event_id',
  'type',
  'occurred_at',
  'producer_id',
  'epoch',
  'seq',
  'actor_kind',
  'actor_id',
  'actor_origin',
  'outcome',
  'host_id',
  'patch_id',
  'patch_version',
  'correlation_id',
  'summary',
  'envelope',
];
export const auditValues = (a: AuditRow) => [
  a.partition,
  a.offset,
  a.eventId,
  a.type,
  a.occurredAt,
  a.producerId,
  a.epoch,
  a.seq,
  a.actor.kind,
  a.actor.id,
  a.actor.origin,
  a.outcome,
  a.hostId,
  a.patchId,
  a.patchVersion,
  a.correlationId,
  a.summary,
  a.envelope,
];
