import { events } from '@rebootless/contracts';
import { GENESIS_HASH } from './chain';
import { EVENT_TYPES, isEventType, payloadFieldNumber } from './event-types';
import { SealVerdicts } from './seal-verdicts';
import { chainHashMatches } from './sha256';
import { keyFingerprint, verifyHash } from './signing';
import { EnvelopeLayout, WireError, asBuffer, scanEnvelope, textAt } from './wire';

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
  | 'unsealed'
  /** Sealed, but not the producer's to say (producer-authority.ts). */
  | 'unauthorized'
  /** The ledger's checkpoint says what the log does not: refused, the log is read again (docs/adr/0028). */
  | 'checkpoint-altered';

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
  /** Raw Ed25519 keys vouched for this producer (for this epoch of its chain, when given). */
  keysFor(producerId: string, epoch?: number): readonly Uint8Array[];
  /**
   * Whether an epoch of this producer whose key is not vouched for yet waits for a binding
   * (keyVouched) instead of being refused at once: agents' keys are bound by the dispatcher.
   */
  awaitsBinding?(producerId: string): boolean;
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

/** A record the verifier holds, as a checkpoint keeps it: its bytes and where it was read. */
export interface HeldRecordState {
  /**
   * The envelope, base64; or, for a record the chain only links to or names (its last event, its
   * last sealed one, where its unsealed run starts), its hash alone with `seq`.
   */
  bytes: string;
  /** Set when `bytes` is the record's hash only. */
  seq?: number;
  partition: number;
  offset: string;
}

/**
 * One chain's state as a checkpoint keeps it (JSON-safe): enough to continue verifying the chain
 * from where it stood, as if every record before had just been read (docs/adr/0024). Records are
 * referred to by index into `records`, as one record is often several of these at once.
 */
export interface ChainState {
  producerId: string;
  epoch: number;
  next: number;
  records: HeldRecordState[];
  /** Index into records, 'genesis', or null right after a gap. */
  linkTo: number | 'genesis' | null;
  key: 'vouched' | 'refused' | 'unknown';
  /** The epoch's raw key, hex. */
  keyRaw?: string;
  /** The epoch waits for a binding of its key: the seals met meanwhile. */
  awaiting?: { record: number; fromSeq: number }[];
  pending: number[];
  lastSeqByPartition: [number, number][];
  unsealedFrom: number | null;
  lastProcessed: number | null;
  lastSealed: number | null;
  events: number;
  sealed: number;
}

/**
 * One record as the verifier keeps it: its bytes and where the chain fields lie in them.
 * Nothing is copied or decoded up front; most records only ever need their hashes compared.
 */
class Arrival {
  readonly seq: number;
  readonly bodyStart: number;
  readonly bodyEnd: number;
  readonly hashStart: number;
  readonly hashEnd: number;
  readonly prevHashStart: number;
  readonly prevHashEnd: number;
  readonly signatureStart: number;
  readonly signatureEnd: number;
  readonly typeStart: number;
  readonly typeEnd: number;
  // The position's parts, not the caller's object: nothing of it is kept, and it is at hand.
  readonly partition: number;
  readonly offset: string;

  constructor(
    readonly bytes: Buffer,
    l: EnvelopeLayout,
    pos: RecordPosition,
  ) {
    this.partition = pos.partition;
    this.offset = pos.offset;
    this.seq = l.seq;
    this.bodyStart = l.bodyStart;
    this.bodyEnd = l.bodyEnd;
    this.hashStart = l.hashStart;
    this.hashEnd = l.hashEnd;
    this.prevHashStart = l.prevHashStart;
    this.prevHashEnd = l.prevHashEnd;
    this.signatureStart = l.signatureStart;
    this.signatureEnd = l.signatureEnd;
    this.typeStart = l.typeStart;
    this.typeEnd = l.typeEnd;
  }

  get pos(): RecordPosition {
    return { partition: this.partition, offset: this.offset };
  }

  get hash(): Buffer {
    return this.bytes.subarray(this.hashStart, this.hashEnd);
  }

  get signature(): Buffer {
    return this.bytes.subarray(this.signatureStart, this.signatureEnd);
  }

  get body(): Buffer {
    return this.bytes.subarray(this.bodyStart, this.bodyEnd);
  }

  get type(): string {
    return textAt(this.bytes, this.typeStart, this.typeEnd);
  }

  /**
   * What a chain keeps of it once processed (what it links to, where it was sealed): its seq,
   * hash and place, in bytes of their own. The record's buffer, a view into a fetched batch or
   * a shared pool slab, is let go: a fleet's log has a chain per host, each holding its last event.
   */
  kept(): Arrival {
    const layout = new EnvelopeLayout();
    layout.seq = this.seq;
    layout.hashEnd = this.hashEnd - this.hashStart;
    return new Arrival(ownBytes(this.hash), layout, this.pos);
  }
}

/** A copy in an allocation of its own (not a slice of the shared pool, which it would pin). */
function ownBytes(bytes: Uint8Array): Buffer {
  const own = Buffer.allocUnsafeSlow(bytes.length);
  own.set(bytes);
  return own;
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
  // Small to start with (a fleet's log has a chain per host, most of them short); it doubles as
  // the chain's events come, so it keeps every event seen up to SEEN_WINDOW. Everything of a slot
  // is in one buffer, the offset too (as a number: exact below 2^53): no string per event, and
  // small rings share Node's buffer pool instead of an allocation each (ADR 0029).
  private slots = pooledZeroes(SEEN_START * SEEN_SLOT);
  private added = 0;

  private get size(): number {
    return this.slots.length / SEEN_SLOT;
  }

  /** Keeps the hash `bytes[start, end)` of `seq`, copied: the record itself is not kept. */
  add(seq: number, bytes: Uint8Array, start: number, end: number, pos: RecordPosition): void {
    this.added += 1;
    if (this.added > this.size && this.size < SEEN_WINDOW) this.grow();
    this.put(seq, bytes, start, end, pos.partition, Number(pos.offset));
  }

  private put(seq: number, bytes: Uint8Array, start: number, end: number, partition: number, offset: number): void {
    const at = (seq % this.size) * SEEN_SLOT;
    const len = Math.min(32, end - start);
    this.slots.writeDoubleLE(seq, at);
    this.slots.writeDoubleLE(offset, at + 8);
    this.slots.writeInt32LE(partition, at + 16);
    this.slots[at + 20] = len;
    this.slots.set(bytes.subarray(start, start + len), at + 21);
  }

  get(seq: number): Seen | undefined {
    const at = (seq % this.size) * SEEN_SLOT;
    // An empty slot reads seq 0, which no event has (chains start at 1): a forged seq 0 finds nothing.
    if (seq < 1 || this.slots.readDoubleLE(at) !== seq) return undefined;
    return {
      hash: this.slots.subarray(at + 21, at + 21 + this.slots[at + 20]!),
      pos: { partition: this.slots.readInt32LE(at + 16), offset: String(this.slots.readDoubleLE(at + 8)) },
    };
  }

  private grow(): void {
    const old = this.slots;
    this.slots = pooledZeroes(old.length * 2);
    for (let at = 0; at < old.length; at += SEEN_SLOT) {
      const seq = old.readDoubleLE(at);
      if (seq === 0) continue;
      this.put(seq, old, at + 21, at + 21 + old[at + 20]!, old.readInt32LE(at + 16), old.readDoubleLE(at + 8));
    }
  }
}

/** Zeroed bytes; under 4 KiB from Node's shared pool rather than an allocation of their own. */
function pooledZeroes(size: number): Buffer {
  return Buffer.allocUnsafe(size).fill(0);
}

/**
 * Records waiting for an earlier seq of their chain. A chain spans partitions, which are read
 * one batch at a time, so most records wait a little: they sit in a ring indexed by seq (no
 * hashing, no allocation). One far ahead of the chain's next seq (past a gap, or a forged seq)
 * goes to a Map instead, so the ring stays bounded.
 */
class PendingArrivals {
  // Made on first use: a fleet's log has a chain per host, most of whose records never wait. The
  // ring then grows to the window needed.
  private ring: (Arrival | undefined)[] | undefined;
  private far: Map<number, Arrival> | undefined;
  size = 0;

  get(seq: number): Arrival | undefined {
    if (this.size === 0) return undefined;
    const a = this.ring?.[seq % this.ring.length];
    if (a?.seq === seq) return a;
    return this.far?.get(seq);
  }

  /** Adds `a`, which waits for `next` (a.seq > next; nothing below next is ever held). */
  add(a: Arrival, next: number): void {
    this.size += 1;
    const ahead = a.seq - next;
    this.ring ??= new Array<Arrival | undefined>(8).fill(undefined);
    if (ahead >= this.ring.length && ahead < PENDING_RING_MAX) this.grow(ahead);
    if (ahead < this.ring.length) this.ring[a.seq % this.ring.length] = a;
    else (this.far ??= new Map()).set(a.seq, a);
  }

  delete(a: Arrival): void {
    this.size -= 1;
    const ring = this.ring!;
    const i = a.seq % ring.length;
    if (ring[i] === a) ring[i] = undefined;
    else this.far?.delete(a.seq);
  }

  /** Every seq held. */
  seqs(): number[] {
    const inRing = (this.ring ?? []).filter((a): a is Arrival => a !== undefined).map((a) => a.seq);
    return [...inRing, ...(this.far?.keys() ?? [])];
  }

  /** The lowest seq held (the caller checks size > 0 first). */
  lowest(next: number): number {
    let low = Infinity;
    const ring = this.ring ?? [];
    for (let seq = next; seq < next + ring.length; seq++) {
      if (ring[seq % ring.length]?.seq === seq) {
        low = seq;
        break;
      }
    }
    for (const seq of this.far?.keys() ?? []) low = Math.min(low, seq);
    return low;
  }

  /** Every held seq lies in [next, next + ring length), so each keeps its own slot in a bigger ring. */
  private grow(ahead: number): void {
    const old = this.ring!;
    let size = old.length * 2;
    while (size <= ahead) size *= 2;
    this.ring = new Array<Arrival | undefined>(size).fill(undefined);
    for (const a of old) if (a) this.ring[a.seq % size] = a;
  }
}

const PENDING_RING_MAX = 1 << 17;

interface ChainTrack {
  producerId: string;
  /** producerId as written on the wire: recognises the chain's next record without decoding it. */
  producerIdBytes: Buffer;
  epoch: number;
  next: number;
  /**
   * What the next event must link to: the last event processed (its hash), the genesis hash,
   * or null right after a gap, where the link cannot be checked.
   */
  linkTo: Arrival | 'genesis' | null;
  /** The raw Ed25519 key vouched for; undefined: not known yet; null: nobody vouches for it (reported once). */
  key: Uint8Array | null | undefined;
  keyRaw?: Uint8Array;
  /** The epoch's key waits for a binding: seals met meanwhile are checked once it comes. */
  awaiting?: { seals: { a: Arrival; fromSeq: number }[] };
  pending: PendingArrivals;
  /** [partition, last seq read there]: a list, as a chain mostly lives in one partition (ADR 0029). */
  lastSeqByPartition: [number, number][];
  seen: SeenRing;
  unsealedFrom: Arrival | null;
  lastProcessed: Arrival | null;
  /** The last event a valid seal covers: where an abandoned tail rolls back to. */
  lastSealed: Arrival | null;
  events: number;
  sealed: number;
}

const SEEN_WINDOW = 65_536;
const SEEN_START = 4;
/** A SeenRing slot: seq (f64), offset (f64), partition (i32), hash length (u8), hash (up to 32 bytes). */
const SEEN_SLOT = 8 + 8 + 4 + 1 + 32;

/** Each payload field number's type name, as its bytes, to check a record's type without decoding it. */
const TYPE_NAMES = new Map<number, Buffer>(
  Object.entries(EVENT_TYPES).map(([type, { number }]) => [number, Buffer.from(type)]),
);

const at = (p: RecordPosition | undefined): string =>
  p ? `partition ${p.partition} offset ${p.offset}` : 'unknown position';

/**
 * Verifies producers' hash chains as records arrive, in any interleaving of partitions
 * (a producer's chain spans partitions, so cross-partition arrivals are buffered, not errors).
 * It names each defect and where it is, and keeps going: nothing is dropped.
 * Pure: no I/O; the caller feeds records and reads findings.
 */
export class ChainVerifier {
  private readonly tracks = new Map<string, ChainTrack>();
  /** Epochs waiting for a binding of their key, by producer: a binding looks only at its producer's. */
  private readonly awaitingKeys = new AwaitingKeys();
  private readonly findings: Finding[] = [];
  private records = 0;
  /** The chain of the previous record: consecutive records mostly share one. */
  private lastTrack: ChainTrack | undefined;
  /** Reused for every record; what outlives ingest() is copied into an Arrival. */
  private readonly layout = new EnvelopeLayout();
  /** Chains changed since the last takeChanged(): what a checkpoint writes (none if never checkpointed). */
  private changed: Set<ChainTrack> | undefined;

  /**
   * `verdicts`: seals already checked elsewhere (SealWorker); whatever it lacks is verified here.
   * `onSealed`: told of every run of events a valid seal has just covered (ProjectionGate).
   * `tracksChanges` false: never checkpointed, so takeChanged() has nothing to give.
   */
  constructor(
    private readonly trust: KeyTrust,
    private readonly verdicts?: SealVerdicts,
    private readonly onSealed?: (producerId: string, epoch: number, fromSeq: number, toSeq: number) => void,
    tracksChanges = true,
  ) {
    if (tracksChanges) this.changed = new Set();
  }

  /**
   * Whether the chain already holds this very record (same seq, same hash) from the log: a
   * relay that would write it again writes a copy, which every reader reports.
   */
  holds(producerId: string, epoch: number, seq: number, hash: Uint8Array): boolean {
    const t = this.tracks.get(`${producerId}\u0000${epoch}`);
    if (!t) return false;
    const earlier = seq < t.next ? t.seen.get(seq) : t.pending.get(seq);
    return earlier !== undefined && sameBytes(earlier.hash, hash);
  }

  /**
   * Gives up on what a chain holds beyond its last sealed event: the unsealed tail and the
   * records waiting past a hole. The chain rolls back to its last sealed event, so a genuine
   * event written there later takes its place (an unsealed record is no part of the chain).
   * Returns the seqs dropped (the caller reports them: it knows how long they waited).
   */
  abandonUnsealed(producerId: string, epoch: number): { fromSeq: number; toSeq: number } | undefined {
    const t = this.tracks.get(`${producerId}\u0000${epoch}`);
    if (!t) return undefined;
    this.changed?.add(t);
    const sealedTo = t.lastSealed?.seq ?? 0;
    let toSeq = t.next - 1;
    if (t.pending.size > 0) {
      toSeq = t.pending.seqs().reduce((m, seq) => Math.max(m, seq), toSeq);
      t.pending = new PendingArrivals();
    }
    if (toSeq <= sealedTo) return undefined;
    t.events -= t.next - 1 - sealedTo;
    t.next = sealedTo + 1;
    t.linkTo = t.lastSealed ?? (sealedTo === 0 ? 'genesis' : null);
    t.lastProcessed = t.lastSealed;
    t.unsealedFrom = null;
    for (const last of t.lastSeqByPartition) if (last[1] > sealedTo) last[1] = sealedTo;
    return { fromSeq: sealedTo + 1, toSeq };
  }

  /** Whether the epoch's key still waits for a binding. */
  awaitingKey(producerId: string, epoch: number): boolean {
    return this.tracks.get(`${producerId}\u0000${epoch}`)?.awaiting !== undefined;
  }

  /**
   * A binding for the producer was learned: each of its epochs waiting for one whose key the
   * trust now vouches for takes it, and the seals it met meanwhile are checked in order.
   */
  keyVouched(producerId: string): Finding[] {
    const before = this.findings.length;
    for (const t of this.awaitingKeys.of(producerId)) {
      if (!t.awaiting || !t.keyRaw) continue;
      const raw = t.keyRaw;
      if (!this.trust.keysFor(producerId, t.epoch).some((k) => Buffer.from(k).equals(raw))) continue;
      this.changed?.add(t);
      const { seals } = t.awaiting;
      t.awaiting = undefined;
      this.awaitingKeys.delete(t);
      t.key = raw;
      for (const { a, fromSeq } of seals) {
        // Checked ahead on the worker when it could guess the key (the epoch start it read).
        const ok = this.verdicts?.take(raw, a.hash, a.signature) ?? verifyHash(t.key, a.hash, a.signature);
        if (!ok) {
          this.addFinding({
            kind: 'bad-signature',
            ...where(t, a),
            position: a.pos,
            detail: `${who(t, a)} at ${at(a.pos)}: the seal does not verify with the epoch's key ${keyFingerprint(raw)}`,
          });
          continue;
        }
        t.sealed += a.seq - fromSeq + 1;
        this.onSealed?.(t.producerId, t.epoch, fromSeq, a.seq);
        t.lastSealed = a.kept();
      }
    }
    return this.findings.slice(before);
  }

  /** Gives up waiting for a binding of the epoch's key: an `unknown-producer-key` finding. */
  refuseKey(producerId: string, epoch: number, why: string): Finding[] {
    const t = this.tracks.get(`${producerId}\u0000${epoch}`);
    if (!t?.awaiting) return [];
    this.changed?.add(t);
    t.awaiting = undefined;
    this.awaitingKeys.delete(t);
    const before = this.findings.length;
    this.rejectKey(t, t.lastProcessed?.pos ?? { partition: -1, offset: '-1' }, why);
    return this.findings.slice(before);
  }

  /** The raw key the epoch's seals are checked with, once known and vouched for. */
  keyOf(producerId: string, epoch: number): Uint8Array | undefined {
    const t = this.tracks.get(`${producerId}\u0000${epoch}`);
    return t?.key ? t.keyRaw : undefined;
  }

  /** Feeds one record value; returns the findings it caused right away. */
  ingest(value: Uint8Array | null, pos: RecordPosition): Finding[] {
    const before = this.findings.length;
    this.records += 1;
    const l = this.layout;
    let bytes: Buffer;
    try {
      if (!value) throw new WireError('record has no value');
      bytes = asBuffer(value);
      scanEnvelope(bytes, l);
      if (l.producerIdStart === l.producerIdEnd || l.epoch < 1 || l.seq < 1) {
        throw new WireError('body has no producer position (producer id, epoch >= 1, seq >= 1)');
      }
    } catch (err) {
      if (!(err instanceof WireError)) throw err;
      this.addFinding({
        kind: 'undecodable',
        position: pos,
        detail: `record at ${at(pos)} is not an event envelope: ${err.message}`,
      });
      return this.findings.slice(before);
    }
    const t = this.track(bytes, l);
    this.changed?.add(t);
    const a = new Arrival(bytes, l, pos);
    this.checkType(t, a, l.payloadField);
    this.place(t, a);
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
        this.changed?.add(t);
        const resume = t.pending.lowest(t.next);
        const after = t.lastProcessed;
        this.addFinding({
          kind: 'gap',
          producerId: t.producerId,
          epoch: t.epoch,
          seq: t.next,
          toSeq: resume - 1,
          position: t.pending.get(resume)!.pos,
          detail:
            `${t.producerId} epoch ${t.epoch}: ${span(t.next, resume - 1)} missing` +
            (after ? ` after seq ${after.seq} at ${at(after.pos)}` : ' at the start of the epoch') +
            `; the chain resumes with seq ${resume} at ${at(t.pending.get(resume)!.pos)}`,
        });
        this.closeUnsealed(t, 'its seal lies beyond a gap');
        t.next = resume;
        t.linkTo = null;
        this.drain(t);
      }
    }
    return this.findings.slice(before);
  }

  /** The end of the input: gaps, then events no valid seal vouches for. */
  finish(): VerificationReport {
    this.flushGaps();
    for (const t of this.tracks.values()) {
      this.changed?.add(t);
      this.closeUnsealed(t, 'no valid seal follows them');
    }
    return this.report();
  }

  /**
   * The state of every chain changed since the last call (all of them the first time after
   * restore() or construction only if they changed), for a checkpoint stored with the offsets.
   */
  takeChanged(): ChainState[] {
    if (!this.changed) return [];
    const out = [...this.changed].map(chainState);
    this.changed = new Set();
    return out;
  }

  /** Every chain's state, changed or not. */
  chainStates(): ChainState[] {
    return [...this.tracks.values()].map(chainState);
  }

  /**
   * Continues from a checkpoint: each chain as it stood. What the checkpoint does not keep is the
   * window of recent hashes that tells a copy from a conflict: a record re-using a seq from before
   * the checkpoint is a `duplicate` (it is kept out either way).
   */
  restore(states: readonly ChainState[]): void {
    const layout = new EnvelopeLayout();
    for (const s of states) {
      const records = s.records.map((r) => {
        const bytes = Buffer.from(r.bytes, 'base64');
        const pos = { partition: r.partition, offset: r.offset };
        if (r.seq === undefined) {
          scanEnvelope(bytes, layout);
          return new Arrival(bytes, layout, pos);
        }
        // Its hash and place only: all a chain asks of the records it links to or names.
        const stub = new EnvelopeLayout();
        stub.seq = r.seq;
        stub.hashEnd = bytes.length;
        return new Arrival(bytes, stub, pos);
      });
      const ref = (i: number | null) => (i === null ? null : records[i]!);
      const keyRaw = s.keyRaw === undefined ? undefined : Buffer.from(s.keyRaw, 'hex');
      const t: ChainTrack = {
        producerId: s.producerId,
        producerIdBytes: Buffer.from(s.producerId),
        epoch: s.epoch,
        next: s.next,
        linkTo: s.linkTo === 'genesis' || s.linkTo === null ? s.linkTo : records[s.linkTo]!,
        key: s.key === 'vouched' && keyRaw ? keyRaw : s.key === 'refused' ? null : undefined,
        ...(keyRaw ? { keyRaw } : {}),
        ...(s.awaiting
          ? { awaiting: { seals: s.awaiting.map((w) => ({ a: records[w.record]!, fromSeq: w.fromSeq })) } }
          : {}),
        pending: new PendingArrivals(),
        lastSeqByPartition: s.lastSeqByPartition.map(([partition, seq]) => [partition, seq]),
        seen: new SeenRing(),
        unsealedFrom: ref(s.unsealedFrom),
        lastProcessed: ref(s.lastProcessed),
        lastSealed: ref(s.lastSealed),
        events: s.events,
        sealed: s.sealed,
      };
      for (const i of s.pending) t.pending.add(records[i]!, t.next);
      const id = `${s.producerId}\u0000${s.epoch}`;
      this.tracks.set(id, t);
      if (t.awaiting) this.awaitingKeys.add(t);
    }
    this.lastTrack = undefined;
  }

  /** Everything found so far, and each chain's state. */
  report(): VerificationReport {
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

  private addFinding(f: Finding): void {
    // A caller may pass a richer object as the position (a whole log record): keep only the position.
    const p = f.position;
    this.findings.push(p ? { ...f, position: { partition: p.partition, offset: p.offset } } : f);
  }

  private checkType(t: ChainTrack, a: Arrival, payloadField: number): void {
    // The common case, without decoding: the type is the name of the payload's field.
    const name = TYPE_NAMES.get(payloadField);
    if (name && rangesEqual(a.bytes, a.typeStart, a.typeEnd, name, 0, name.length)) return;
    const type = a.type;
    const expected = payloadFieldNumber(type);
    if (expected !== undefined && expected === payloadField) return;
    const why = !isEventType(type)
      ? `type "${type}" is not an event type this build knows`
      : payloadField === 0
        ? `type ${type} carries no payload`
        : `type ${type} carries the payload of field ${payloadField}, not ${expected}`;
    this.addFinding({
      kind: 'unknown-event-type',
      ...where(t, a),
      position: a.pos,
      detail: `${who(t, a)} at ${at(a.pos)}: ${why}`,
    });
  }

  private track(bytes: Buffer, l: EnvelopeLayout): ChainTrack {
    const last = this.lastTrack;
    if (
      last &&
      last.epoch === l.epoch &&
      rangesEqual(bytes, l.producerIdStart, l.producerIdEnd, last.producerIdBytes, 0, last.producerIdBytes.length)
    ) {
      return last;
    }
    const producerId = textAt(bytes, l.producerIdStart, l.producerIdEnd);
    const id = `${producerId}\u0000${l.epoch}`;
    let t = this.tracks.get(id);
    if (!t) {
      t = {
        producerId,
        producerIdBytes: ownBytes(bytes.subarray(l.producerIdStart, l.producerIdEnd)),
        epoch: l.epoch,
        next: 1,
        linkTo: 'genesis',
        key: undefined,
        pending: new PendingArrivals(),
        lastSeqByPartition: [],
        seen: new SeenRing(),
        unsealedFrom: null,
        lastProcessed: null,
        lastSealed: null,
        events: 0,
        sealed: 0,
      };
      this.tracks.set(id, t);
    }
    this.lastTrack = t;
    return t;
  }

  private place(t: ChainTrack, a: Arrival): void {
    const { seq } = a;
    const waiting = t.pending.get(seq);
    const earlier: Seen | undefined =
      seq < t.next ? t.seen.get(seq) : waiting && { hash: waiting.hash, pos: waiting.pos };
    if (earlier || seq < t.next) {
      const same = earlier ? sameBytes(earlier.hash, a.hash) : undefined;
      this.addFinding({
        kind: same === false ? 'conflict' : 'duplicate',
        ...where(t, a),
        position: a.pos,
        detail:
          same === false
            ? `${who(t, a)} at ${at(a.pos)} differs from the seq ${seq} already at ${at(earlier!.pos)}: two events claim one place in the chain`
            : `${who(t, a)} at ${at(a.pos)} is a copy of the one ` +
              (earlier ? `at ${at(earlier.pos)}` : 'verified earlier (beyond the retained window)'),
      });
      return;
    }
    const here = t.lastSeqByPartition.find(([partition]) => partition === a.partition);
    const lastHere = here?.[1];
    if (lastHere !== undefined && lastHere > seq) {
      this.addFinding({
        kind: 'reorder',
        ...where(t, a),
        position: a.pos,
        detail: `${who(t, a)} at ${at(a.pos)} comes after seq ${lastHere} in the same partition: the producer wrote them in the other order`,
      });
    } else if (here) here[1] = seq;
    else t.lastSeqByPartition.push([a.partition, seq]);

    if (seq > t.next) {
      t.pending.add(a, t.next);
      return;
    }
    this.process(t, a);
    this.drain(t);
  }

  private drain(t: ChainTrack): void {
    for (let a = t.pending.get(t.next); a; a = t.pending.get(t.next)) {
      t.pending.delete(a);
      this.process(t, a);
    }
  }

  private process(t: ChainTrack, a: Arrival): void {
    const { seq, bytes } = a;
    if (!chainHashMatches(bytes, a.prevHashStart, a.prevHashEnd, a.bodyStart, a.bodyEnd, a.hashStart, a.hashEnd)) {
      this.addFinding({
        kind: 'altered-body',
        ...where(t, a),
        position: a.pos,
        detail: `${who(t, a)} at ${at(a.pos)}: the body does not hash to the recorded hash; it was altered after it was written`,
      });
    }
    if (!linksTo(t.linkTo, a)) {
      this.addFinding({
        kind: 'broken-link',
        ...where(t, a),
        position: a.pos,
        detail:
          seq === 1
            ? `${who(t, a)} at ${at(a.pos)} does not start from the genesis hash`
            : `${who(t, a)} at ${at(a.pos)} does not link to seq ${seq - 1}: its prev_hash differs from that event's hash`,
      });
      // A seal vouches only for the events its hash chains back to: none before a broken link.
      t.unsealedFrom = null;
    }
    if (seq === 1) this.adoptEpochKey(t, a);
    const kept = a.kept();
    t.unsealedFrom ??= kept;
    if (a.signatureEnd > a.signatureStart) this.checkSeal(t, a, kept);

    t.seen.add(seq, bytes, a.hashStart, a.hashEnd, a);
    t.linkTo = kept;
    t.next = seq + 1;
    t.lastProcessed = kept;
    t.events += 1;
  }

  private adoptEpochKey(t: ChainTrack, a: Arrival): void {
    const { pos, type } = a;
    let started: events.ChainEpochStarted | undefined;
    try {
      started = events.EventBody.decode(a.body).chainEpochStarted;
    } catch {
      started = undefined;
    }
    if (type !== 'ChainEpochStarted' || !started) {
      this.addFinding({
        kind: 'missing-epoch-start',
        ...where(t, a),
        position: pos,
        detail: `${who(t, a)} at ${at(pos)} opens the epoch with ${type || 'no type'}, not ChainEpochStarted`,
      });
      return;
    }
    // Copied: the decoded key is a view into the record's bytes.
    const raw = ownBytes(started.publicKey);
    t.keyRaw = raw;
    const vouched = this.trust.keysFor(t.producerId, t.epoch).some((k) => Buffer.from(k).equals(raw));
    if (vouched) t.key = raw;
    else if (this.trust.awaitsBinding?.(t.producerId)) {
      t.awaiting = { seals: [] };
      this.awaitingKeys.add(t);
    } else this.rejectKey(t, pos, `is signed by key ${keyFingerprint(raw)}, which nobody vouches for`);
  }

  private rejectKey(t: ChainTrack, pos: RecordPosition, why: string): void {
    t.key = null;
    this.addFinding({
      kind: 'unknown-producer-key',
      producerId: t.producerId,
      epoch: t.epoch,
      position: pos,
      detail: `${t.producerId} epoch ${t.epoch} ${why}; its seals cannot be trusted`,
    });
  }

  /** `kept`: what the chain keeps of `a` (Arrival.kept) once sealed. */
  private checkSeal(t: ChainTrack, a: Arrival, kept: Arrival): void {
    const { pos, hash, signature } = a;
    if (t.awaiting) {
      // Checked once the key is bound; until then nothing of the epoch is sealed.
      t.awaiting.seals.push({ a, fromSeq: t.unsealedFrom!.seq });
      t.unsealedFrom = null;
      return;
    }
    if (t.key === undefined) {
      // No epoch start seen: accept a key vouched for the producer directly, if one verifies.
      const match = this.trust.keysFor(t.producerId).find((k) => verifyHash(k, hash, signature));
      if (!match) return this.rejectKey(t, pos, 'has no ChainEpochStarted and no vouched key verifies its seal');
      t.keyRaw = match;
      t.key = match;
    }
    if (t.key === null) return;
    const ok = this.verdicts?.take(t.keyRaw!, hash, signature) ?? verifyHash(t.key, hash, signature);
    if (!ok) {
      this.addFinding({
        kind: 'bad-signature',
        ...where(t, a),
        position: pos,
        detail: `${who(t, a)} at ${at(pos)}: the seal does not verify with the epoch's key ${keyFingerprint(t.keyRaw!)}`,
      });
      return;
    }
    t.sealed += a.seq - t.unsealedFrom!.seq + 1;
    this.onSealed?.(t.producerId, t.epoch, t.unsealedFrom!.seq, a.seq);
    t.unsealedFrom = null;
    t.lastSealed = kept;
  }

  private closeUnsealed(t: ChainTrack, why: string): void {
    const from = t.unsealedFrom;
    const to = t.lastProcessed;
    t.unsealedFrom = null;
    if (t.awaiting) {
      t.awaiting = undefined;
      this.awaitingKeys.delete(t);
      this.rejectKey(
        t,
        (from ?? to)?.pos ?? { partition: -1, offset: '-1' },
        'is signed by a key no binding vouches for',
      );
      return;
    }
    if (!from || !to || t.key === null) return;
    this.addFinding({
      kind: 'unsealed',
      producerId: t.producerId,
      epoch: t.epoch,
      seq: from.seq,
      toSeq: to.seq,
      position: from.pos,
      detail: `${t.producerId} epoch ${t.epoch}: ${span(from.seq, to.seq)} (from ${at(from.pos)}) carry no valid seal: ${why}`,
    });
  }
}

/** A chain as a checkpoint keeps it: each record it refers to once, by index. */
function chainState(t: ChainTrack): ChainState {
  const records: HeldRecordState[] = [];
  const index = new Map<Arrival, number>();
  // Records still to be processed or whose seal is still to be checked are kept whole; the ones
  // the chain only links to or names, by their hash (a checkpoint per batch stays small).
  const ref = (a: Arrival | null, whole = false): number | null => {
    if (!a) return null;
    let i = index.get(a);
    if (i === undefined) {
      i = records.length;
      index.set(a, i);
      records.push(
        whole
          ? { bytes: a.bytes.toString('base64'), partition: a.partition, offset: a.offset }
          : { bytes: a.hash.toString('base64'), seq: a.seq, partition: a.partition, offset: a.offset },
      );
    }
    return i;
  };
  const pending = t.pending.seqs().map((seq) => ref(t.pending.get(seq)!, true)!);
  const awaiting = t.awaiting?.seals.map(({ a, fromSeq }) => ({ record: ref(a, true)!, fromSeq }));
  const linkTo = t.linkTo === 'genesis' || t.linkTo === null ? t.linkTo : ref(t.linkTo);
  return {
    producerId: t.producerId,
    epoch: t.epoch,
    next: t.next,
    linkTo,
    key: t.key ? 'vouched' : t.key === null ? 'refused' : 'unknown',
    ...(t.keyRaw ? { keyRaw: Buffer.from(t.keyRaw).toString('hex') } : {}),
    ...(awaiting ? { awaiting } : {}),
    pending,
    lastSeqByPartition: t.lastSeqByPartition.map(([partition, seq]) => [partition, seq]),
    unsealedFrom: ref(t.unsealedFrom),
    lastProcessed: ref(t.lastProcessed),
    lastSealed: ref(t.lastSealed),
    events: t.events,
    sealed: t.sealed,
    records,
  };
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return Buffer.compare(a, b) === 0;
}

/** Whether a[aStart, aEnd) and b[bStart, bEnd) hold the same bytes, compared in place (no views). */
function rangesEqual(
  a: Uint8Array,
  aStart: number,
  aEnd: number,
  b: Uint8Array,
  bStart: number,
  bEnd: number,
): boolean {
  if (aEnd - aStart !== bEnd - bStart) return false;
  for (let i = 0; i < aEnd - aStart; i++) {
    if (a[aStart + i] !== b[bStart + i]) return false;
  }
  return true;
}

/** Whether the prev_hash of `a` is what the chain expects (anything, right after a gap). */
function linksTo(to: ChainTrack['linkTo'], a: Arrival): boolean {
  if (to === null) return true;
  if (to === 'genesis')
    return rangesEqual(a.bytes, a.prevHashStart, a.prevHashEnd, GENESIS_HASH, 0, GENESIS_HASH.length);
  return rangesEqual(to.bytes, to.hashStart, to.hashEnd, a.bytes, a.prevHashStart, a.prevHashEnd);
}

/** The record's chain position, for findings: the track names the producer and epoch. */
function who(t: ChainTrack, a: Arrival): string {
  return `${t.producerId} epoch ${t.epoch} seq ${a.seq}`;
}

function where(t: ChainTrack, a: Arrival): Pick<Finding, 'producerId' | 'epoch' | 'seq'> {
  return { producerId: t.producerId, epoch: t.epoch, seq: a.seq };
}

function span(from: number, to: number): string {
  return from === to ? `seq ${from} is` : `seq ${from} to ${to} are`;
}

/**
 * Epochs waiting for a binding, by producer. At a replay thousands of agents' epochs wait at
 * once, and each binding looked through all of them (a dispatcher restarted on the log of 10,000
 * hosts spent a tenth of its start there).
 */
class AwaitingKeys {
  private readonly byProducer = new Map<string, Set<ChainTrack>>();

  add(t: ChainTrack): void {
    let set = this.byProducer.get(t.producerId);
    if (!set) this.byProducer.set(t.producerId, (set = new Set()));
    set.add(t);
  }

  delete(t: ChainTrack): void {
    const set = this.byProducer.get(t.producerId);
    if (!set?.delete(t)) return;
    if (set.size === 0) this.byProducer.delete(t.producerId);
  }

  /** The producer's waiting epochs, as a list (the caller may delete while going through it). */
  of(producerId: string): ChainTrack[] {
    const set = this.byProducer.get(producerId);
    return set ? [...set] : [];
  }
}
