import { events, ledger } from '@rebootless/contracts';
import { LedgerDatabase, num } from '../database';
import { InvalidArgumentError } from '../errors';
import { instantOf } from '../query-paging';

// The audit log's queries.

/** Audit records matching the query, oldest first, fetched a page at a time. */
export async function* queryAudit(
  db: LedgerDatabase,
  req: ledger.QueryAuditRequest,
): AsyncGenerator<ledger.AuditRecord> {
  const from = instantOf(req.from, 'from');
  const to = instantOf(req.to, 'to');
  if (from !== undefined && to !== undefined && from > to) throw new InvalidArgumentError('from', 'is after to');
  const where: string[] = [];
  const params: unknown[] = [];
  const p = (v: unknown) => {
    params.push(v);
    return `$${params.length}`;
  };
  if (from !== undefined) where.push(`occurred_at >= ${p(from)}`);
  if (to !== undefined) where.push(`occurred_at <= ${p(to)}`);
  if (req.hostId) where.push(`host_id = ${p(req.hostId)}`);
  if (req.actorId) where.push(`actor_id = ${p(req.actorId)}`);
  if (req.correlationId) where.push(`correlation_id = ${p(req.correlationId)} AND correlation_id <> ''`);
  if (req.producerId) where.push(`producer_id = ${p(req.producerId)}`);
  if (req.types.length > 0) where.push(`type IN (${req.types.map((t) => p(t)).join(',')})`);
  // Keyset paging: stable while the projection appends.
  let cursor: [number, number, string] | undefined;
  for (;;) {
    const page = [...where];
    const pageParams = [...params];
    if (cursor) {
      const n = pageParams.length;
      pageParams.push(cursor[0], cursor[0], cursor[1], cursor[0], cursor[1], cursor[2]);
      page.push(
        `(occurred_at > $${n + 1} OR (occurred_at = $${n + 2} AND partition_no > $${n + 3}) OR (occurred_at = $${n + 4} AND partition_no = $${n + 5} AND record_offset > $${n + 6}))`,
      );
    }
    const rows = await db.query(
      `SELECT * FROM audit_log ${page.length ? 'WHERE ' + page.join(' AND ') : ''}
       ORDER BY occurred_at, partition_no, record_offset LIMIT 1000`,
      pageParams,
    );
    for (const r of rows) yield auditRecord(r, req.includeEnvelopes);
    if (rows.length < 1000) return;
    const last = rows[rows.length - 1]!;
    cursor = [num(last['occurred_at']), num(last['partition_no']), String(last['record_offset'])];
  }
}

export function auditRecord(r: Record<string, unknown>, withEnvelope: boolean): ledger.AuditRecord {
  const envelope = Buffer.from(r['envelope'] as Uint8Array);
  let body: events.EventBody | undefined;
  try {
    body = events.EventBody.decode(events.Envelope.decode(envelope).body);
  } catch {
    body = undefined;
  }
  return {
    body,
    position: {
      producerId: String(r['producer_id']),
      epoch: num(r['epoch']),
      seq: String(r['seq']),
      partition: num(r['partition_no']),
      offset: String(r['record_offset']),
    },
    summary: String(r['summary']),
    envelope: withEnvelope ? envelope : Buffer.alloc(0),
  };
}
