// Each host's quarantined patches (issue 21), folded at query time by the domain's rule
// (libs/ledger-model quarantinesAfter) from the host's audit rows: the two event types involved
// are rare, and reading them back keeps the hosts table and its migration unchanged.
import { events, ledger, toTimestamp } from '@rebootless/contracts';
import { quarantinesAfter, type QuarantineFact } from '@rebootless/ledger-model';
import { num, type LedgerDatabase } from '../database';

/** host id → its quarantines still in force, oldest first (hosts without any are absent). */
export async function quarantinesOf(
  db: LedgerDatabase,
  hostIds: readonly string[],
): Promise<Map<string, ledger.HostQuarantine[]>> {
  const out = new Map<string, ledger.HostQuarantine[]>();
  if (hostIds.length === 0) return out;
  const rows = await db.query(
    `SELECT host_id, event_id, occurred_at, envelope FROM audit_log
      WHERE type IN ('PatchApplyFailed', 'PatchQuarantineCleared')
        AND host_id IN (${hostIds.map((_, i) => `$${i + 1}`).join(', ')})
      ORDER BY occurred_at, partition_no, record_offset`,
    [...hostIds],
  );
  const facts = new Map<string, QuarantineFact[]>();
  for (const r of rows) {
    const fact = factOf(r);
    if (!fact) continue;
    const hostId = String(r['host_id']);
    facts.set(hostId, [...(facts.get(hostId) ?? []), fact]);
  }
  for (const [hostId, list] of facts) {
    const held = quarantinesAfter(list);
    if (held.length === 0) continue;
    out.set(
      hostId,
      held.map((q) => ({
        patch: { patchId: q.patchId, version: q.version },
        reason: q.reason,
        since: toTimestamp(new Date(q.since)),
        eventId: q.eventId,
      })),
    );
  }
  return out;
}

function factOf(r: Record<string, unknown>): QuarantineFact | undefined {
  const body = events.EventBody.decode(events.Envelope.decode(Buffer.from(r['envelope'] as Uint8Array)).body);
  const base = { eventId: String(r['event_id']), at: num(r['occurred_at']) };
  if (body.patchApplyFailed) {
    const f = body.patchApplyFailed;
    return {
      type: 'PatchApplyFailed',
      ...base,
      patchId: f.patchId,
      version: f.version,
      stage: f.stage,
      error: f.error,
    };
  }
  if (body.patchQuarantineCleared) {
    const c = body.patchQuarantineCleared;
    return { type: 'PatchQuarantineCleared', ...base, patchId: c.patchId, version: c.version };
  }
  return undefined;
}
