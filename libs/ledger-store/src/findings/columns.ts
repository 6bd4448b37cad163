// The integrity findings read model's rows: what the verifier (and the projection) found wrong
// with a record, keyed by the record and the kind of finding.

export interface FindingRow {
  partition: number;
  offset: string;
  kind: string;
  producerId: string;
  epoch: number;
  seq: number;
  toSeq: number;
  detail: string;
}

export const FINDING_COLUMNS = [
  'partition_no',
  'record_offset',
  'kind',
  'producer_id',
  'epoch',
  'seq',
  'to_seq',
  'detail',
];

export const findingValues = (f: FindingRow) => [
  f.partition,
  f.offset,
  f.kind,
  f.producerId,
  f.epoch,
  f.seq,
  f.toSeq,
  f.detail,
];
