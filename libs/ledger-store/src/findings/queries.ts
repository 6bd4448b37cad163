import { LedgerDatabase, num } from '../database';

// The integrity findings' queries.

export async function integrityFindingCount(db: LedgerDatabase): Promise<number> {
  const rows = await db.query('SELECT COUNT(*) AS n FROM integrity_findings');
  return num(rows[0]?.['n'] ?? 0);
}

export async function integrityFindings(db: LedgerDatabase): Promise<
  {
    partition: number;
    offset: string;
    kind: string;
    producerId: string;
    epoch: number;
    seq: number;
    detail: string;
  }[]
> {
  return (await db.query('SELECT * FROM integrity_findings ORDER BY partition_no, record_offset, kind')).map((r) => ({
    partition: num(r['partition_no']),
    offset: String(r['record_offset']),
    kind: String(r['kind']),
    producerId: String(r['producer_id']),
    epoch: num(r['epoch']),
    seq: num(r['seq']),
    detail: String(r['detail']),
  }));
}
