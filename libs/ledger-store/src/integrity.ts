import { Kafka } from 'kafkajs';
import { ledger, toTimestamp } from '@rebootless/contracts';
import { events } from '@rebootless/contracts';
import { Finding, FindingKind, ProjectionGate, scanEnvelope, EnvelopeLayout } from '@rebootless/events';
import { readRange } from '@rebootless/kafka';
import type { LedgerDatabase } from './database';
import { LedgerKeyTrust } from './ledger-consumer';
import { ReadModelChecker, checkReadModels, describeDifference } from './read-model-check';

const K = ledger.IntegrityFindingKind;
const KIND: Record<FindingKind, ledger.IntegrityFindingKind> = {
  undecodable: K.INTEGRITY_FINDING_KIND_MALFORMED,
  'unknown-event-type': K.INTEGRITY_FINDING_KIND_MALFORMED,
  'altered-body': K.INTEGRITY_FINDING_KIND_HASH_MISMATCH,
  'broken-link': K.INTEGRITY_FINDING_KIND_CHAIN_BROKEN,
  reorder: K.INTEGRITY_FINDING_KIND_CHAIN_BROKEN,
  'bad-signature': K.INTEGRITY_FINDING_KIND_BAD_SIGNATURE,
  'unknown-producer-key': K.INTEGRITY_FINDING_KIND_UNVOUCHED_KEY,
  'missing-epoch-start': K.INTEGRITY_FINDING_KIND_MISSING_EPOCH_START,
  duplicate: K.INTEGRITY_FINDING_KIND_SEQ_DUPLICATE,
  conflict: K.INTEGRITY_FINDING_KIND_SEQ_DUPLICATE,
  gap: K.INTEGRITY_FINDING_KIND_SEQ_GAP,
  unsealed: K.INTEGRITY_FINDING_KIND_UNSIGNED_TAIL,
  unauthorized: K.INTEGRITY_FINDING_KIND_UNAUTHORIZED,
  // Rows of the database changed by someone other than the ledger, as an edited read model is.
  'checkpoint-altered': K.INTEGRITY_FINDING_KIND_READ_MODEL_ALTERED,
};

export function integrityKindOf(kind: string): ledger.IntegrityFindingKind {
  return KIND[kind as FindingKind] ?? K.INTEGRITY_FINDING_KIND_UNSPECIFIED;
}

const layout = new EnvelopeLayout();

function bodyOf(value: Buffer | null): events.EventBody | undefined {
  if (!value) return undefined;
  try {
    const l = scanEnvelope(value, layout);
    return events.EventBody.decode(value.subarray(l.bodyStart, l.bodyEnd));
  } catch {
    return undefined;
  }
}

/**
 * Re-reads the whole log and checks every producer's chain and seals from scratch, through the
 * one verdict path every reader uses (ProjectionGate): service keys from configuration, agents'
 * keys only as the log's sealed bindings and revocations say, met as the log is read again; never
 * the keys the running ledger holds, which came from its checkpoint (docs/adr/0028). With
 * `readModels`, also folds the log again into a scratch database and reports every read-model
 * row that differs from it (READ_MODEL_ALTERED: edited, deleted or added in the database).
 */
export async function verifyLog(
  kafka: Kafka,
  topic: string,
  serviceKeys: ReadonlyMap<string, readonly Uint8Array[]>,
  producerId = '',
  readModels?: { stored: LedgerDatabase } | { checker: ReadModelChecker },
): Promise<ledger.VerifyIntegrityResponse> {
  // Nothing is judged on the clock while reading: what still waits once the whole log is read
  // (a tail no seal covers, an epoch no binding vouches for) is then given up on.
  const gate = new ProjectionGate<null>({
    trust: new LedgerKeyTrust(serviceKeys),
    unsealedTimeoutMs: 1,
    checkpointed: false,
  });
  const found: Finding[] = [];
  await readRange({
    kafka,
    topic,
    timeoutMs: 600_000,
    onRecord: (r) => {
      const record = { partition: r.partition, offset: r.offset, value: r.value, body: bodyOf(r.value), item: null };
      found.push(...gate.offer(record, Date.now()).findings);
    },
  });
  found.push(...gate.flushGaps().findings, ...gate.expire(Date.now() + 1).findings);
  const report = gate.report();
  const chains = report.chains.filter((c) => !producerId || c.producerId === producerId);
  const findings = found
    .filter((f) => !producerId || f.producerId === producerId)
    .map((f) => ({
      kind: KIND[f.kind],
      position: {
        producerId: f.producerId ?? '',
        epoch: f.epoch ?? 0,
        seq: String(f.seq ?? 0),
        partition: f.position?.partition ?? -1,
        offset: f.position?.offset ?? '-1',
      },
      detail: f.detail,
    }));
  // Read models answer for the whole fleet: checked when the whole log is asked about.
  if (readModels && !producerId) {
    const check =
      'checker' in readModels
        ? await readModels.checker.check()
        : await checkReadModels({ kafka, topic, serviceKeys, ...readModels });
    for (const d of check.differences)
      findings.push({
        kind: K.INTEGRITY_FINDING_KIND_READ_MODEL_ALTERED,
        position: { producerId: '', epoch: 0, seq: '0', partition: -1, offset: '-1' },
        detail: describeDifference(d),
      });
  }
  return {
    verifiedAt: toTimestamp(new Date()),
    eventsChecked: String(producerId ? chains.reduce((n, c) => n + c.events, 0) : report.records),
    producersChecked: new Set(chains.map((c) => c.producerId)).size,
    findings,
  };
}
