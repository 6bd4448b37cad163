import { KeyObject } from 'node:crypto';
import { events } from '@rebootless/contracts';
import { GENESIS_HASH, chainHash } from './chain';
import { isEventType, payloadFieldNumber } from './event-types';
import { keyFingerprint, publicKeyFromRaw, verifyHash } from './signing';
import { EnvelopeView, WireError, readEnvelope } from './wire';

export type FindingKind =
  | 'undecodable'
  | 'unknown-event-type'
  | 'altered-body'
  | 'broken-link'
  | 'bad-signature'
  | 'unknown-producer-key'
  | 'missing-epoch-start'
  | 'duplicate'
  | 'conflict'
  | 'reorder'
  | 'gap'
  | 'unsealed';

/** Where a record sits in the log. Offsets are strings, as Kafka clients give them. */
export interface RecordPosition {
  partition: number;
  offset: string;
}

export interface Finding {
  kind: FindingKind;
  producerId?: string;
  epoch?: number;
  seq?: number;
  /** Last seq of a range (gap, unsealed). */
  toSeq?: number;
  position?: RecordPosition;
  /** A plain sentence saying what is wrong and where. */
  detail: string;
}

/** Who may sign for a producer: configured service keys, hosts' enrolled keys. */
export interface KeyTrust {
  /** Raw Ed25519 keys vouched for this producer. */
  keysFor(producerId: string): readonly Uint8Array[];
}

export class StaticKeyTrust implements KeyTrust {
  private readonly keys = new Map<string, Uint8Array[]>();

  vouch(producerId: string, rawKey: Uint8Array): this {
    const list = this.keys.get(producerId) ?? [];
    list.push(rawKey);
    this.keys.set(producerId, list);
    return this;
  }

  keysFor(producerId: string): readonly Uint8Array[] {
    return this.keys.get(producerId) ?? [];
  }
}

export interface ChainSummary {
  producerId: string;
  epoch: number;
  /** Highest seq verified in order. */
  lastSeq: number;
  events: number;
  /** Events covered by a valid seal. */
  sealed: number;
  keyFingerprint?: string;
}

export interface VerificationReport {
  records: number;
  chains: ChainSummary[];
  findings: Finding[];
}

interface Arrival {
  view: EnvelopeView;
  pos: RecordPosition;
}

interface Seen {
  hash: Uint8Array;
  pos: RecordPosition;
}

/**
 * Hashes and places of a chain's recent events, for telling a duplicate from a conflict.
 * A ring indexed by seq that grows with the chain up to SEEN_WINDOW: no object per event,
 * so a long replay does not feed the garbage collector.
 */
class SeenRing {
  private seqs = new Float64Array(256);
  private hashes = Buffer.alloc(256 * 32);
  private partitions = new Int32Array(256);
  private offsets: string[] = new Array<string>(256);

  add(seq: number, hash: Uint8Array, pos: RecordPosition): void {
    if (seq >= this.seqs.length && this.seqs.length < SEEN_WINDOW) this.grow();
    const i = seq % this.seqs.length;
    this.seqs[i] = seq;
    this.hashes.set(hash.subarray(0, 32), i * 32);
    this.partitions[i] = pos.partition;
    this.offsets[i] = pos.offset;
  }

  get(seq: number): Seen | undefined {
    const i = seq % this.seqs.length;
    if (this.seqs[i] !== seq) return undefined;
    return { hash: this.hashes.subarray(i * 32, i * 32 + 32), pos: { partition: this.partitions[i]!, offset: this.offsets[i]! } };
  }

  private grow(): void {
    const old = { seqs: this.seqs, hashes: this.hashes, partitions: this.partitions, offsets: this.offsets };
    const size = old.seqs.length * 2;
    this.seqs = new Float64Array(size);
    this.hashes = Buffer.alloc(size * 32);
    this.partitions = new Int32Array(size);
    this.offsets = new Array<string>(size);
    old.seqs.forEach((seq, i) => {
      if (seq > 0) this.add(seq, old.hashes.subarray(i * 32, i * 32 + 32), { partition: old.partitions[i]!, offset: old.offsets[i]! });
    });
  }
}

interface ChainTrack {
  producerId: string;
  epoch: number;
  next: number;
  /** Hash the next event must link to; null right after a gap, where the link cannot be checked. */
  expectedPrev: Uint8Array | null;
  /** undefined: not known yet; null: nobody vouches for it (reported once). */
  key: KeyObject | null | undefined;
  keyRaw?: Uint8Array;
  pending: Map<number, Arrival>;
  lastSeqByPartition: Map<number, number>;
  seen: SeenRing;
  unsealedFrom: Arrival | null;
  lastProcessed: Arrival | null;
  events: number;
  sealed: number;
}

const SEEN_WINDOW = 65_536;

const at = (p: RecordPosition | undefined): string => (p ? `partition ${p.partition} offset ${p.offset}` : 'unknown position');

/**
 * Verifies producers' hash chains as records arrive, in any interleaving of partitions
 * (a producer's chain spans partitions, so cross-partition arrivals are buffered, not errors).
 * It names each defect and where it is, and keeps going: nothing is dropped.
 * Pure: no I/O; the caller feeds records and reads findings.
 */
export class ChainVerifier {
  private readonly tracks = new Map<string, ChainTrack>();
  private readonly findings: Finding[] = [];
  private records = 0;

  constructor(private readonly trust: KeyTrust) {}

  /** Feeds one record value; returns the findings it caused right away. */
  ingest(value: Uint8Array | null, pos: RecordPosition): Finding[] {
    const before = this.findings.length;
    this.records += 1;
    let view: EnvelopeView;
    try {
      if (!value) throw new WireError('record has no value');
      view = readEnvelope(value);
      if (!view.producerId || view.epoch < 1 || view.seq < 1) {
        throw new WireError('body has no producer position (producer id, epoch >= 1, seq >= 1)');
      }
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      this.report({ kind: 'undecodable', position: pos, detail: `record at ${at(pos)} is not an event envelope: ${err.message}` });
      return this.findings.slice(before);
    }
    this.checkType(view, pos);
    this.place(this.track(view), { view, pos });
    return this.findings.slice(before);
  }

  /**
   * Declares every hole still waiting to be filled a gap, and resumes each chain after it.
   * Call when caught up with the log (end of a replay), or via finish().
   */
  flushGaps(): Finding[] {
    const before = this.findings.length;
    for (const t of this.tracks.values()) {
      while (t.pending.size > 0) {
        const resume = Math.min(...t.pending.keys());
        const after = t.lastProcessed;
        this.report({
          kind: 'gap',
          producerId: t.producerId,
          epoch: t.epoch,
          seq: t.next,
          toSeq: resume - 1,
          position: t.pending.get(resume)!.pos,
          detail:
            `${t.producerId} epoch ${t.epoch}: ${span(t.next, resume - 1)} missing` +
            (after ? ` after seq ${after.view.seq} at ${at(after.pos)}` : ' at the start of the epoch') +
            `; the chain resumes with seq ${resume} at ${at(t.pending.get(resume)!.pos)}`,
        });
        this.closeUnsealed(t, 'its seal lies beyond a gap');
        t.next = resume;
        t.expectedPrev = null;
        this.drain(t);
      }
    }
    return this.findings.slice(before);
  }

  /** The end of the input: gaps, then events no valid seal vouches for. */
  finish(): VerificationReport {
    this.flushGaps();
    for (const t of this.tracks.values()) this.closeUnsealed(t, 'no valid seal follows them');
    return this.report_();
  }

  report_(): VerificationReport {
    return {
      records: this.records,
      chains: [...this.tracks.values()].map((t) => ({
        producerId: t.producerId,
        epoch: t.epoch,
        lastSeq: t.next - 1,
        events: t.events,
        sealed: t.sealed,
        ...(t.keyRaw ? { keyFingerprint: keyFingerprint(t.keyRaw) } : {}),
      })),
      findings: [...this.findings],
    };
  }

  private report(f: Finding): void {
    this.findings.push(f);
  }

  private checkType(view: EnvelopeView, pos: RecordPosition): void {
    const expected = payloadFieldNumber(view.type);
    if (expected !== undefined && expected === view.payloadField) return;
    const why = !isEventType(view.type)
      ? `type "${view.type}" is not an event type this build knows`
      : view.payloadField === 0
        ? `type ${view.type} carries no payload`
        : `type ${view.type} carries the payload of field ${view.payloadField}, not ${expected}`;
    this.report({ kind: 'unknown-event-type', ...where(view), position: pos, detail: `${who(view)} at ${at(pos)}: ${why}` });
  }

  private track(view: EnvelopeView): ChainTrack {
    const id = `${view.producerId}\u0000${view.epoch}`;
    let t = this.tracks.get(id);
    if (!t) {
      t = {
        producerId: view.producerId,
        epoch: view.epoch,
        next: 1,
        expectedPrev: GENESIS_HASH,
        key: undefined,
        pending: new Map(),
        lastSeqByPartition: new Map(),
        seen: new SeenRing(),
        unsealedFrom: null,
        lastProcessed: null,
        events: 0,
        sealed: 0,
      };
      this.tracks.set(id, t);
    }
    return t;
  }

  private place(t: ChainTrack, a: Arrival): void {
    const { view, pos } = a;
    const waiting = t.pending.get(view.seq);
    const earlier: Seen | undefined = view.seq < t.next ? t.seen.get(view.seq) : waiting && { hash: waiting.view.hash, pos: waiting.pos };
    if (earlier || view.seq < t.next) {
      const same = earlier ? sameBytes(earlier.hash, view.hash) : undefined;
      this.report({
        kind: same === false ? 'conflict' : 'duplicate',
        ...where(view),
        position: pos,
        detail:
          same === false
            ? `${who(view)} at ${at(pos)} differs from the seq ${view.seq} already at ${at(earlier!.pos)}: two events claim one place in the chain`
            : `${who(view)} at ${at(pos)} is a copy of the one ` +
              (earlier ? `at ${at(earlier.pos)}` : 'verified earlier (beyond the retained window)'),
      });
      return;
    }
    const lastHere = t.lastSeqByPartition.get(pos.partition);
    if (lastHere !== undefined && lastHere > view.seq) {
      this.report({
        kind: 'reorder',
        ...where(view),
        position: pos,
        detail: `${who(view)} at ${at(pos)} comes after seq ${lastHere} in the same partition: the producer wrote them in the other order`,
      });
    } else t.lastSeqByPartition.set(pos.partition, view.seq);

    if (view.seq > t.next) {
      t.pending.set(view.seq, a);
      return;
    }
    this.process(t, a);
    this.drain(t);
  }

  private drain(t: ChainTrack): void {
    for (let a = t.pending.get(t.next); a; a = t.pending.get(t.next)) {
      t.pending.delete(a.view.seq);
      this.process(t, a);
    }
  }

  private process(t: ChainTrack, a: Arrival): void {
    const { view, pos } = a;
    if (!sameBytes(chainHash(view.prevHash, view.body), view.hash)) {
      this.report({
        kind: 'altered-body',
        ...where(view),
        position: pos,
        detail: `${who(view)} at ${at(pos)}: the body does not hash to the recorded hash; it was altered after it was written`,
      });
    }
    if (t.expectedPrev && !sameBytes(t.expectedPrev, view.prevHash)) {
      this.report({
        kind: 'broken-link',
        ...where(view),
        position: pos,
        detail:
          view.seq === 1
            ? `${who(view)} at ${at(pos)} does not start from the genesis hash`
            : `${who(view)} at ${at(pos)} does not link to seq ${view.seq - 1}: its prev_hash differs from that event's hash`,
      });
    }
    if (view.seq === 1) this.adoptEpochKey(t, a);
    t.unsealedFrom ??= a;
    if (view.signature.length > 0) this.checkSeal(t, a);

    t.seen.add(view.seq, view.hash, pos);
    t.expectedPrev = view.hash;
    t.next = view.seq + 1;
    t.lastProcessed = a;
    t.events += 1;
  }

  private adoptEpochKey(t: ChainTrack, a: Arrival): void {
    const { view, pos } = a;
    let started: events.ChainEpochStarted | undefined;
    try {
      started = events.EventBody.decode(view.body).chainEpochStarted;
    } catch {
      started = undefined;
    }
    if (view.type !== 'ChainEpochStarted' || !started) {
      this.report({
        kind: 'missing-epoch-start',
        ...where(view),
        position: pos,
        detail: `${who(view)} at ${at(pos)} opens the epoch with ${view.type || 'no type'}, not ChainEpochStarted`,
      });
      return;
    }
    const raw = started.publicKey;
    t.keyRaw = raw;
    const vouched = this.trust.keysFor(t.producerId).some((k) => Buffer.from(k).equals(raw));
    if (vouched) t.key = publicKeyFromRaw(raw);
    else this.rejectKey(t, pos, `is signed by key ${keyFingerprint(raw)}, which nobody vouches for`);
  }

  private rejectKey(t: ChainTrack, pos: RecordPosition, why: string): void {
    t.key = null;
    this.report({
      kind: 'unknown-producer-key',
      producerId: t.producerId,
      epoch: t.epoch,
      position: pos,
      detail: `${t.producerId} epoch ${t.epoch} ${why}; its seals cannot be trusted`,
    });
  }

  private checkSeal(t: ChainTrack, a: Arrival): void {
    const { view, pos } = a;
    if (t.key === undefined) {
      // No epoch start seen: accept a key vouched for the producer directly, if one verifies.
      const match = this.trust.keysFor(t.producerId).find((k) => verifyHash(publicKeyFromRaw(k), view.hash, view.signature));
      if (!match) return this.rejectKey(t, pos, 'has no ChainEpochStarted and no vouched key verifies its seal');
      t.keyRaw = match;
      t.key = publicKeyFromRaw(match);
    }
    if (t.key === null) return;
    if (!verifyHash(t.key, view.hash, view.signature)) {
      this.report({
        kind: 'bad-signature',
        ...where(view),
        position: pos,
        detail: `${who(view)} at ${at(pos)}: the seal does not verify with the epoch's key ${keyFingerprint(t.keyRaw!)}`,
      });
      return;
    }
    t.sealed += view.seq - t.unsealedFrom!.view.seq + 1;
    t.unsealedFrom = null;
  }

  private closeUnsealed(t: ChainTrack, why: string): void {
    const from = t.unsealedFrom;
    const to = t.lastProcessed;
    t.unsealedFrom = null;
    if (!from || !to || t.key === null) return;
    this.report({
      kind: 'unsealed',
      producerId: t.producerId,
      epoch: t.epoch,
      seq: from.view.seq,
      toSeq: to.view.seq,
      position: from.pos,
      detail: `${t.producerId} epoch ${t.epoch}: ${span(from.view.seq, to.view.seq)} (from ${at(from.pos)}) carry no valid seal: ${why}`,
    });
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

function who(v: EnvelopeView): string {
  return `${v.producerId} epoch ${v.epoch} seq ${v.seq}`;
}

function where(v: EnvelopeView): Pick<Finding, 'producerId' | 'epoch' | 'seq'> {
  return { producerId: v.producerId, epoch: v.epoch, seq: v.seq };
}

function span(from: number, to: number): string {
  return from === to ? `seq ${from} is` : `seq ${from} to ${to} are`;
}
