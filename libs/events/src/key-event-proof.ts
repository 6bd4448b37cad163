import { events } from '@rebootless/contracts';
import { AgentKeyState, KeyEventSource } from './agent-key-book';
import { chainHash } from './chain';
import { authorityViolation } from './producer-authority';
import { keyFingerprint, verifyHash } from './signing';
import { KeyTrust } from './verifier';

/**
 * A checkpoint's agent keys are believed only as the log says them (docs/adr/0028): each binding
 * and revocation a checkpoint row holds names the sealed record that established it, and a ledger
 * resuming from the checkpoint reads those records again and checks them here. Pure: the caller
 * reads the records.
 */

/** A record's value read from the log at a position; undefined when the log has none there. */
export type RecordAt = (partition: number, offset: string) => Uint8Array | null | undefined;

/** Every position the rows' sources name: what the caller reads from the log. */
export function keyEventPositions(states: readonly AgentKeyState[]): [partition: number, offset: string][] {
  const out: [number, string][] = [];
  const add = (s: KeyEventSource) => {
    out.push([s.partition, s.offset]);
    for (const p of s.sealedBy ?? []) out.push(p);
  };
  for (const state of states) {
    for (const [, , source] of state.bound) if (source) add(source);
    for (const [, source] of state.revocations ?? []) add(source);
  }
  return out;
}

const at = (partition: number, offset: string) => `partition ${partition} offset ${offset}`;

/**
 * The body of the key event `source` names, read again: the record at its position carries the
 * hash the source names and that hash is its body's; the records named up to the seal continue
 * its chain; the seal verifies with a key configured for the producer (never a key the
 * checkpoint itself holds); and the producer may say it (the dispatcher). Otherwise, why not.
 */
export function readKeyEvent(
  source: KeyEventSource,
  read: RecordAt,
  services: KeyTrust,
): { body: events.EventBody } | { why: string } {
  const path: [number, string][] = [[source.partition, source.offset], ...(source.sealedBy ?? [])];
  let first: events.EventBody | undefined;
  let prev: { hash: Uint8Array; producerId: string; epoch: number; seq: number } | undefined;
  let signature: Uint8Array = new Uint8Array();
  for (const [partition, offset] of path) {
    const value = read(partition, offset);
    if (!value) return { why: `the log has no record at ${at(partition, offset)}` };
    let envelope: events.Envelope;
    let body: events.EventBody;
    try {
      envelope = events.Envelope.decode(value);
      body = events.EventBody.decode(envelope.body);
    } catch {
      return { why: `the record at ${at(partition, offset)} is not an event envelope` };
    }
    const p = body.producer;
    if (!p) return { why: `the record at ${at(partition, offset)} names no producer` };
    if (!Buffer.from(chainHash(p.prevHash, envelope.body)).equals(Buffer.from(envelope.hash)))
      return { why: `the record at ${at(partition, offset)} does not hash to the hash it carries` };
    if (!prev) {
      if (Buffer.from(envelope.hash).toString('hex') !== source.hash)
        return {
          why: `the record at ${at(partition, offset)} is another record than the one named (its hash differs)`,
        };
      first = body;
    } else if (
      p.producerId !== prev.producerId ||
      p.epoch !== prev.epoch ||
      Number(p.seq) !== prev.seq + 1 ||
      !Buffer.from(p.prevHash).equals(Buffer.from(prev.hash))
    )
      return { why: `the record at ${at(partition, offset)} does not continue the chain of the one before it` };
    prev = { hash: envelope.hash, producerId: p.producerId, epoch: p.epoch, seq: Number(p.seq) };
    signature = envelope.signature;
  }
  const producerId = prev!.producerId;
  if (signature.length === 0)
    return { why: `no seal covers the record at ${at(source.partition, source.offset)} among the records named` };
  const keys = services.keysFor(producerId);
  if (!keys.some((k) => verifyHash(k, prev!.hash, signature)))
    return {
      why: `the seal over the record at ${at(source.partition, source.offset)} verifies with no key configured for ${producerId}`,
    };
  const why = authorityViolation(first!, () => undefined);
  if (why) return { why };
  return { body: first! };
}

/**
 * Why a checkpoint's row of agent keys cannot be believed, one sentence each (empty: every
 * binding and revocation it holds is what its record says, and no key it keeps bound was revoked
 * by a revocation it names). A deleted revocation is not seen here: the checkpoint's seal sees it.
 */
export function agentKeyStateProblems(state: AgentKeyState, read: RecordAt, services: KeyTrust): string[] {
  const problems: string[] = [];
  const row = `checkpoint_agent_keys ${state.producerId}`;
  const revocations: { epoch: number; source: KeyEventSource }[] = [];
  for (const [epoch, source] of state.revocations ?? []) {
    const read1 = readKeyEvent(source, read, services);
    if ('why' in read1) {
      problems.push(`${row}: the revocation of epoch ${epoch} is not believed: ${read1.why}`);
      continue;
    }
    const r = read1.body.agentKeyRevoked;
    if (!r || r.producerId !== state.producerId || r.epoch !== epoch)
      problems.push(
        `${row}: the revocation of epoch ${epoch} names the record at ${at(source.partition, source.offset)}, which is ` +
          (r ? `a revocation of ${r.producerId} epoch ${r.epoch}` : `a ${read1.body.type}`),
      );
    else revocations.push({ epoch, source });
  }
  for (const epoch of state.revokedEpochs)
    if (!revocations.some((r) => r.epoch === 0 || r.epoch === epoch))
      problems.push(`${row}: epoch ${epoch} is kept revoked with no revocation record that says so`);
  for (const [epoch, key, source] of state.bound) {
    const what = `${row}: the binding of epoch ${epoch} to key ${key.slice(0, 16)}`;
    if (!source) {
      problems.push(`${what} names no record of the log that bound it`);
      continue;
    }
    const read1 = readKeyEvent(source, read, services);
    if ('why' in read1) {
      problems.push(`${what} is not believed: ${read1.why}`);
      continue;
    }
    const b = read1.body.agentKeyBound;
    if (
      !b ||
      b.producerId !== state.producerId ||
      b.epoch !== epoch ||
      Buffer.from(b.publicKey).toString('hex') !== key
    ) {
      problems.push(
        `${what} names the record at ${at(source.partition, source.offset)}, which ` +
          (b
            ? `binds ${b.producerId} epoch ${b.epoch} to key ${keyFingerprint(b.publicKey)}`
            : `is a ${read1.body.type}`),
      );
      continue;
    }
    if (state.revoked.includes(key)) problems.push(`${what} keeps a key the row itself holds revoked`);
    const revokedAfter = revocations.find(
      (r) =>
        (r.epoch === 0 || r.epoch === epoch) &&
        r.source.partition === source.partition &&
        BigInt(r.source.offset) > BigInt(source.offset),
    );
    if (revokedAfter)
      problems.push(
        `${what} keeps a key the revocation at ${at(revokedAfter.source.partition, revokedAfter.source.offset)} revoked`,
      );
  }
  return problems;
}
