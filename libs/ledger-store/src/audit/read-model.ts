import { events } from '@rebootless/contracts';
import type { EventPayload } from '@rebootless/events';
import type { EventContext } from '../event-context';
import type { ActorRow, AuditRow } from './columns';

const FAILURE_TYPES = new Set([
  'BuildFailed',
  'PatchApplyFailed',
  'PatchRevertFailed',
  'RolloutAborted',
  'CallDenied',
  'DriftDetected',
]);

const actorRow = (a: events.Actor | undefined): ActorRow => ({
  kind: a?.kind ?? 0,
  id: a?.id ?? '',
  origin: a?.origin ?? '',
});

/** The events only the audit log keeps: services' lifecycle, chains, denials and agent keys. */
export type AuditOnlyEvent = Extract<
  EventPayload,
  {
    type:
      | 'ChainEpochStarted'
      | 'ServiceStarted'
      | 'ServiceStopped'
      | 'CallDenied'
      | 'AgentKeyBound'
      | 'AgentKeyRevoked'
      | 'QuarantineClearRequested';
  }
>;

/**
 * The audit read model: one row per projected event, with what the other read models said it
 * was about (the context), staged until the batch is written. Rows are appended, never changed.
 */
export class AuditReadModel {
  private staged: AuditRow[] = [];

  /** What an event that changes no other read model is about, in a sentence. */
  evolve(ctx: EventContext, p: AuditOnlyEvent): void {
    switch (p.type) {
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
      case 'QuarantineClearRequested': {
        const d = p.data;
        ctx.hostId = d.hostId;
        Object.assign(ctx, { patchId: d.patchId, version: d.version });
        ctx.summary = `asked ${d.hostId} to clear the quarantine of ${d.patchId} ${d.version}: ${d.reason}`;
        return;
      }
      default: {
        const unrouted: never = p;
        throw new Error(`the audit log has no summary for ${JSON.stringify(unrouted)}`);
      }
    }
  }

  /** The event's row, once every read model has had it. */
  record(ctx: EventContext): void {
    const { e, at } = ctx;
    const b = e.body;
    this.staged.push({
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

  get pending(): number {
    return this.staged.length;
  }

  take(): AuditRow[] {
    const rows = this.staged;
    this.staged = [];
    return rows;
  }
}

function summarizeOther(b: events.EventBody): string {
  if (b.serviceStarted) return `${b.serviceStarted.service} started on ${b.serviceStarted.listenAddress}`;
  if (b.serviceStopped) return `${b.serviceStopped.service} stopped: ${b.serviceStopped.reason}`;
  if (b.chainEpochStarted) return `${b.producer?.producerId ?? ''} started chain epoch ${b.producer?.epoch ?? 0}`;
  if (b.callDenied) return `denied ${b.callDenied.method} to ${b.callDenied.subject}: ${b.callDenied.code}`;
  return b.type;
}
