import type { VerifiedEvent } from '../event-context';
import type { FindingRow } from './columns';

/** The integrity findings read model: findings staged until the batch is written (append-only). */
export class FindingsReadModel {
  private staged: FindingRow[] = [];

  record(f: FindingRow): void {
    this.staged.push(f);
  }

  /** An event no read model knows: not projected, and said so (a `not-projected` finding). */
  notProjected(e: VerifiedEvent): void {
    const b = e.body;
    this.staged.push({
      partition: e.partition,
      offset: e.offset,
      kind: 'not-projected',
      producerId: b.producer?.producerId ?? '',
      epoch: b.producer?.epoch ?? 0,
      seq: Number(b.producer?.seq ?? 0),
      toSeq: Number(b.producer?.seq ?? 0),
      detail: `no read model knows event type ${JSON.stringify(b.type)}: not projected`,
    });
  }

  get pending(): number {
    return this.staged.length;
  }

  take(): FindingRow[] {
    const rows = this.staged;
    this.staged = [];
    return rows;
  }
}
