import { events } from '@rebootless/contracts';
import { AgentKeyBook, AgentKeyState, KeyEventSource } from './agent-key-book';
import { authorityViolation, commandAnswered, producerOf } from './producer-authority';
import { keyFingerprint } from './signing';
import { SealVerdicts } from './seal-verdicts';
import {
  ChainState,
  ChainVerifier,
  Finding,
  FindingKind,
  KeyTrust,
  RecordPosition,
  VerificationReport,
} from './verifier';
import { EnvelopeLayout, scanEnvelope } from './wire';

/**
 * Verified before applied (docs/adr/0012-verified-before-applied.md): the one path by which
 * every reader of the log (the ledger's projection, the dispatcher's follower) turns records
 * into facts. A record is released only once the chain verifier has accepted it (hash, link,
 * a valid seal covering it) and the producer authority table says it was the producer's to say.
 * Records wait, per partition and in offset order (a reader's folds rely on a partition's
 * order), until their verdict is known; a chain's tail still unsealed `unsealedTimeoutMs` after
 * it arrived is abandoned as an `unsealed` finding and never released.
 * Pure: no I/O, the clock is passed in.
 */

/** A verifier finding that keeps the record it names out of every read model. */
export const REJECTING_FINDINGS: ReadonlySet<FindingKind> = new Set<FindingKind>([
  'undecodable',
  'unknown-event-type',
  'altered-body',
  'broken-link',
  'bad-signature',
  'duplicate',
  'conflict',
  'unknown-producer-key',
  'missing-epoch-start',
  'unauthorized',
]);

export interface GateRecord<T> {
  partition: number;
  offset: string;
  /** The envelope as read from the log. */
  value: Uint8Array | null;
  /** Its body, decoded by the caller (undefined when it does not decode). */
  body: events.EventBody | undefined;
  /** What the caller wants back on release. */
  item: T;
  /**
   * When the record was written (its Kafka timestamp, ms), if known. A seal still in flight lands
   * within the wait after its batch was written, so a record written longer ago than the wait
   * (a replay, a restart) is judged as soon as the reader has read the log to its end; a
   * timestamp in the future counts for nothing (the wait then runs from arrival, as without one).
   */
  writtenAt?: number;
}

export interface GateOutput<T> {
  /** Accepted records, in each partition's order. */
  released: GateRecord<T>[];
  findings: Finding[];
}

interface Held<T> {
  record: GateRecord<T>;
  chain: string;
  seq: number;
  arrivedAt: number;
  verdict: 'waiting' | 'accepted' | 'rejected';
  /** The verdict the last checkpoint holds for it (none: not in a checkpoint yet). */
  saved?: 'waiting' | 'accepted' | 'rejected';
  /** A key event's: the records after it up to the seal that covered it (KeyEventSource). */
  sealedBy?: [number, string][];
}

/** A record the gate holds, as a checkpoint keeps it; `item` is what the caller keeps of it. */
export interface HeldRecordCheckpoint<S> {
  offset: string;
  verdict: 'waiting' | 'accepted' | 'rejected';
  item: S;
  /** A key event accepted: where the seal that covered it lies (KeyEventSource). */
  sealedBy?: [number, string][];
}

/**
 * What the gate needs to go on from where it stood without reading the log again
 * (docs/adr/0024): the chains and agent keys changed since the last checkpoint, the epochs
 * refused and the commands learned since then, and for each partition asked for, where its
 * reading stands and the records still held there. Stored in the transaction that commits the
 * read models of the same moment.
 */
export interface GateCheckpoint<S> {
  chains: ChainState[];
  agentKeys: AgentKeyState[];
  /** Epochs nobody vouches for, as [producerId, epoch]. */
  untrusted: [string, number][];
  /** Commands and the host each was sent to. */
  commands: [string, string][];
  partitions: PartitionCheckpoint<S>[];
}

/**
 * A partition in a checkpoint: where its reading stands, and its held records as a change to the
 * previous checkpoint's: those below `heldFrom` (all, when it is undefined) are no longer held,
 * and `held` are the records new or whose verdict changed since. restore() takes them whole.
 */
export interface PartitionCheckpoint<S> {
  partition: number;
  nextOffset: string;
  heldFrom?: string;
  held: HeldRecordCheckpoint<S>[];
}

export interface ProjectionGateOptions {
  /**
   * Service producers' keys (configuration). Agents' keys never come from it: they count only
   * through a released `AgentKeyBound` (the dispatcher's gateway vouches for them at enrolment,
   * having verified the host's certificate) and stop counting at `AgentKeyRevoked`. An agent
   * epoch waits for its binding as an unsealed tail waits for its seal, and becomes an
   * `unknown-producer-key` finding after the same timeout.
   */
  trust: KeyTrust;
  /** How long a chain's unsealed tail may wait for its seal before it becomes a finding. */
  unsealedTimeoutMs: number;
  verdicts?: SealVerdicts;
  /**
   * Default true. False: this gate is never checkpointed (the dispatcher, which reads the log from
   * the start; `ledger verify`), so it keeps neither where each agent key event lies and the
   * records that prove it (KeyEventSource, docs/adr/0028) nor what changed since a checkpoint. At
   * 100,000 hosts the sources were the largest part of a dispatcher's heap, and the changes grew
   * with the log for ever (ADR 0029).
   */
  checkpointed?: boolean;
}

/** Service keys from the reader's trust; agents' keys from the bindings the gate released. */
class BoundAgentTrust implements KeyTrust {
  constructor(
    private readonly services: KeyTrust,
    private readonly book: AgentKeyBook,
  ) {}

  keysFor(producerId: string, epoch?: number): readonly Uint8Array[] {
    if (producerOf(producerId).kind !== 'agent') return this.services.keysFor(producerId, epoch);
    const key = epoch === undefined ? undefined : this.book.keyFor(producerId, epoch);
    return key ? [key] : [];
  }

  awaitsBinding(producerId: string): boolean {
    return producerOf(producerId).kind === 'agent';
  }
}

const chainOf = (producerId: string, epoch: number) => `${producerId}\u0000${epoch}`;

export class ProjectionGate<T> {
  private readonly verifier: ChainVerifier;
  /** Each partition's records not yet released, in offset order. */
  private readonly queues = new Map<number, PartitionQueue<T>>();
  /** Each chain's records still waiting for a seal, by seq. */
  private readonly waiting = new Map<string, Map<number, Held<T>>>();
  /** Epochs whose key nobody vouches for: none of their records is released. */
  private readonly untrusted = new Set<string>();
  /** The host each command was sent to: an agent may answer only its own host's commands. */
  private readonly commandHosts = new Map<string, string>();
  private out: Finding[] = [];
  /** Each partition's offset after the last record offered. */
  private readonly nextOffsets = new Map<number, bigint>();
  /** Agents' keys the dispatcher bound and an operator did not revoke. */
  private readonly agentKeys: AgentKeyBook;
  /** Producers whose binding was learned while draining: their waiting epochs take their keys. */
  private newlyBound = new Set<string>();
  /** Refused epochs and commands learned since the last checkpoint. */
  private newUntrusted: string[] = [];
  private newCommands: [string, string][] = [];
  /** False: never checkpointed, so nothing is kept for a checkpoint. */
  private readonly checkpointed: boolean;

  constructor(private readonly opts: ProjectionGateOptions) {
    this.checkpointed = opts.checkpointed !== false;
    this.agentKeys = new AgentKeyBook(this.checkpointed);
    this.verifier = new ChainVerifier(
      new BoundAgentTrust(opts.trust, this.agentKeys),
      opts.verdicts,
      (producerId, epoch, from, to) => this.sealed(chainOf(producerId, epoch), from, to),
      this.checkpointed,
    );
  }

  /** Whether this very record (producer, epoch, seq and hash) was already read from the log. */
  holds(producerId: string, epoch: number, seq: number, hash: Uint8Array): boolean {
    return this.verifier.holds(producerId, epoch, seq, hash);
  }

  /** The raw key the verifier checks the epoch's seals with, once vouched for. */
  keyOf(producerId: string, epoch: number): Uint8Array | undefined {
    return this.verifier.keyOf(producerId, epoch);
  }

  /** Every chain's summary and what the verifier found, for a check of the whole log (`ledger verify`). */
  report(): VerificationReport {
    return this.verifier.report();
  }

  /**
   * Since when a held record counts as waiting for its seal: from its arrival, or from when the
   * reader caught up with the log if later, but never later than when it was written.
   */
  private waitingSince(h: Held<T>, liveSince: number): number {
    const since = Math.max(h.arrivedAt, liveSince);
    const written = h.record.writtenAt;
    return written !== undefined && Number.isFinite(written) && written < since ? written : since;
  }

  /** Feeds one record (in its partition's order); returns what is released and found. */
  offer(record: GateRecord<T>, now: number): GateOutput<T> {
    // An offset this partition has already given is a re-delivery, not a copy: a consumer group
    // that lost its coordinator (a broker died) rebalances and gives partitions again from where
    // nothing was committed. A true copy is the same event at another offset.
    const at = BigInt(record.offset);
    const next = this.nextOffsets.get(record.partition);
    if (next !== undefined && at < next) return { released: [], findings: [] };
    this.nextOffsets.set(record.partition, at + 1n);
    const { body } = record;
    const producer = body?.producer;
    const held: Held<T> = {
      record,
      chain: producer ? chainOf(producer.producerId, producer.epoch) : '',
      seq: producer ? Number(producer.seq) : 0,
      arrivedAt: now,
      verdict: 'waiting',
    };
    let queue = this.queues.get(record.partition);
    if (!queue) this.queues.set(record.partition, (queue = new PartitionQueue<T>()));
    queue.items.push(held);
    if (held.chain) {
      const chain = this.waiting.get(held.chain) ?? new Map<number, Held<T>>();
      this.waiting.set(held.chain, chain);
      if (!chain.has(held.seq)) chain.set(held.seq, held);
    }
    const pos: RecordPosition = { partition: record.partition, offset: record.offset };
    const found = this.verifier.ingest(record.value, pos);
    for (const f of found) {
      if (f.kind === 'unknown-producer-key') this.distrust(chainOf(f.producerId ?? '', f.epoch ?? 0));
      if (REJECTING_FINDINGS.has(f.kind) && f.position?.partition === pos.partition && f.position.offset === pos.offset)
        this.reject(held);
      this.out.push(f);
    }
    if (!body || !record.value || this.untrusted.has(held.chain)) this.reject(held);
    else if (held.verdict !== 'rejected') {
      const why = authorityViolation(body, (id) => this.commandHosts.get(id));
      if (why) {
        this.out.push({
          kind: 'unauthorized',
          producerId: producer?.producerId,
          epoch: producer?.epoch,
          seq: held.seq,
          position: pos,
          detail: `${why}; it is kept out of the read models`,
        });
        this.reject(held);
      }
    }
    return this.drain();
  }

  /** Whether expire() would judge anything now: a chain's waiting records have waited their whole timeout. */
  hasDue(now: number, liveSince = -Infinity): boolean {
    for (const chain of this.waiting.keys()) if (this.chainDue(chain, now, liveSince)) return true;
    return false;
  }

  /**
   * Whether a chain's waiting records are given up on now: one of them has waited the whole
   * timeout since it came (whatever it is dated), or every one of them was written longer ago
   * than that (a replay). A record a forger dates in the past does not hasten the judging of the
   * genuine records beside it; one it keeps appending does not put it off.
   */
  private chainDue(chain: string, now: number, liveSince: number): boolean {
    const held = [...(this.waiting.get(chain)?.values() ?? [])].filter((h) => h.verdict === 'waiting');
    const waited = (since: number) => now - since >= this.opts.unsealedTimeoutMs;
    if (held.some((h) => waited(Math.max(h.arrivedAt, liveSince)))) return true;
    return held.length > 0 && held.every((h) => waited(this.waitingSince(h, liveSince)));
  }

  /**
   * Abandons every chain whose waiting records are due (chainDue): they become one `unsealed`
   * finding and are dropped. Call periodically, and only while the reader is caught up with the
   * log (`liveSince`: since when): a reader still replaying has not read the seals that exist yet,
   * and its own slowness must not turn genuine records into findings.
   */
  expire(now: number, liveSince = -Infinity): GateOutput<T> {
    const released: GateRecord<T>[] = [];
    const stale = [...this.waiting.keys()].filter((chain) => this.chainDue(chain, now, liveSince));
    for (const chain of stale) {
      // A chain judged before this one may have let through what this one waited for.
      if (!this.chainDue(chain, now, liveSince)) continue;
      const [agentId = '', agentEpoch = '0'] = chain.split('\u0000');
      if (this.verifier.awaitingKey(agentId, Number(agentEpoch))) {
        // Not a missing seal: nobody bound the key. The epoch is refused whole, as an unvouched key is.
        const first = [...(this.waiting.get(chain)?.values() ?? [])].reduce<Held<T> | undefined>(
          (m, h) => (!m || h.seq < m.seq ? h : m),
          undefined,
        );
        const waited = first ? now - this.waitingSince(first, liveSince) : this.opts.unsealedTimeoutMs;
        const key = this.verifier.keyOf(agentId, Number(agentEpoch));
        this.out.push(
          ...this.verifier.refuseKey(
            agentId,
            Number(agentEpoch),
            `waited ${waited} ms for a binding of its key${key ? ` ${keyFingerprint(key)}` : ''} that a vouched dispatcher sealed, and none came: nobody vouches for it`,
          ),
        );
        this.distrust(chain);
        // What the refused epoch held back moves on now: a binding behind it in its partition
        // may vouch for an epoch judged next, which must then not be refused with it.
        this.settle(released);
        continue;
      }
      const records = [...(this.waiting.get(chain)?.values() ?? [])].filter((h) => h.verdict === 'waiting');
      const [producerId = '', epochText = '0'] = chain.split('\u0000');
      const epoch = Number(epochText);
      this.verifier.abandonUnsealed(producerId, epoch);
      this.waiting.delete(chain);
      if (records.length === 0) continue;
      records.sort((a, b) => a.seq - b.seq);
      const first = records[0]!;
      const last = records[records.length - 1]!;
      const span = first.seq === last.seq ? `seq ${first.seq}` : `seq ${first.seq} to ${last.seq}`;
      const waited = now - this.waitingSince(first, liveSince);
      this.out.push({
        kind: 'unsealed',
        producerId,
        epoch,
        seq: first.seq,
        toSeq: last.seq,
        position: { partition: first.record.partition, offset: first.record.offset },
        detail:
          `${producerId} epoch ${epoch}: ${span} (${records.length} record(s), the first at partition ` +
          `${first.record.partition} offset ${first.record.offset}) waited ${waited} ms ` +
          `for a valid seal covering them and are kept out of the read models`,
      });
      for (const h of records) h.verdict = 'rejected';
    }
    this.settle(released);
    return { released, findings: this.takeFindings() };
  }

  /** Declares the holes still open as gaps (when caught up with the log); may release records. */
  flushGaps(): GateOutput<T> {
    this.out.push(...this.verifier.flushGaps());
    return this.drain();
  }

  /** The offset of the first record of `partition` not yet released: a reader's safe resume point. */
  heldFrom(partition: number): string | undefined {
    const q = this.queues.get(partition);
    return q?.items[q.head]?.record.offset;
  }

  /**
   * What changed since the last checkpoint, and for each of `partitions` its reading position
   * and the change to its held records (a partition never offered has none). Held records are
   * written once when they come and dropped once when they go, not every batch.
   */
  checkpoint<S>(partitions: Iterable<number>, itemState: (r: GateRecord<T>) => S): GateCheckpoint<S> {
    if (!this.checkpointed) throw new Error('this gate was made never to be checkpointed');
    const cp: GateCheckpoint<S> = {
      chains: this.verifier.takeChanged(),
      agentKeys: this.agentKeys.takeChanged(),
      untrusted: this.newUntrusted.map((c) => {
        const [producerId = '', epoch = '0'] = c.split('\u0000');
        return [producerId, Number(epoch)];
      }),
      commands: this.newCommands,
      partitions: [],
    };
    this.newUntrusted = [];
    this.newCommands = [];
    for (const partition of partitions) {
      const next = this.nextOffsets.get(partition);
      if (next === undefined) continue;
      const q = this.queues.get(partition);
      const held: HeldRecordCheckpoint<S>[] = [];
      for (let i = q?.head ?? 0; q && i < q.items.length; i++) {
        const h = q.items[i]!;
        if (h.saved === h.verdict) continue;
        h.saved = h.verdict;
        held.push({
          offset: h.record.offset,
          verdict: h.verdict,
          item: itemState(h.record),
          ...(h.sealedBy ? { sealedBy: h.sealedBy } : {}),
        });
      }
      const heldFrom = q?.items[q.head]?.record.offset;
      cp.partitions.push({ partition, nextOffset: next.toString(), ...(heldFrom ? { heldFrom } : {}), held });
    }
    return cp;
  }

  /**
   * Continues from a checkpoint (every row of it, merged): the gate then stands as it stood when
   * the checkpoint was taken, and the caller reads each partition on from its `nextOffset`.
   * `record` rebuilds each held record from what `checkpoint` kept of it. Held records wait
   * their whole timeout again from `now`, or from when they were written if `record` says.
   *
   * The checkpoint vouches for no key by itself (docs/adr/0028): a chain it says is vouched must
   * be signed by a key configured for the service, or bound to the agent's epoch by the agent
   * keys restored (which the caller checked against their records in the log first). Returns,
   * one sentence each, the chains for which neither holds; a caller that gets any must not go on
   * from this checkpoint.
   */
  restore<S>(
    cp: GateCheckpoint<S>,
    record: (partition: number, offset: string, item: S) => GateRecord<T>,
    now: number,
  ): string[] {
    const problems: string[] = [];
    this.agentKeys.restore(cp.agentKeys);
    this.agentKeys.takeChanged();
    for (const c of cp.chains) {
      if (c.key !== 'vouched') continue;
      const raw = c.keyRaw === undefined ? undefined : Buffer.from(c.keyRaw, 'hex');
      const agent = producerOf(c.producerId).kind === 'agent';
      const vouched =
        raw !== undefined &&
        (agent
          ? Buffer.from(this.agentKeys.keyFor(c.producerId, c.epoch) ?? []).equals(raw) ||
            this.agentKeys.isRevoked(c.producerId, raw)
          : this.opts.trust.keysFor(c.producerId, c.epoch).some((k) => Buffer.from(k).equals(raw)));
      if (!vouched)
        problems.push(
          `checkpoint_chains ${c.producerId}@${c.epoch}: its key ${c.keyRaw?.slice(0, 16) ?? '(none)'} is held vouched, ` +
            (agent
              ? 'but no binding of the epoch restored binds it'
              : 'but it is not a key configured for the service'),
        );
    }
    this.verifier.restore(cp.chains);
    for (const [producerId, epoch] of cp.untrusted) this.untrusted.add(chainOf(producerId, epoch));
    for (const [command, host] of cp.commands) this.commandHosts.set(command, host);
    for (const p of cp.partitions) {
      this.nextOffsets.set(p.partition, BigInt(p.nextOffset));
      if (p.held.length === 0) continue;
      const queue = new PartitionQueue<T>();
      this.queues.set(p.partition, queue);
      for (const h of p.held) {
        const r = record(p.partition, h.offset, h.item);
        const producer = r.body?.producer;
        const held: Held<T> = {
          record: r,
          chain: producer ? chainOf(producer.producerId, producer.epoch) : '',
          seq: producer ? Number(producer.seq) : 0,
          arrivedAt: now,
          verdict: h.verdict,
          saved: h.verdict,
          ...(h.sealedBy ? { sealedBy: h.sealedBy } : {}),
        };
        queue.items.push(held);
        if (held.verdict !== 'waiting' || !held.chain) continue;
        const chain = this.waiting.get(held.chain) ?? new Map<number, Held<T>>();
        this.waiting.set(held.chain, chain);
        if (!chain.has(held.seq)) chain.set(held.seq, held);
      }
    }
    return problems;
  }

  /** How many records wait for their verdict. */
  get holding(): number {
    let n = 0;
    for (const q of this.queues.values()) n += q.items.length - q.head;
    return n;
  }

  private sealed(chain: string, from: number, to: number): void {
    const waiting = this.waiting.get(chain);
    if (!waiting) return;
    // A key event keeps where its seal lies: a checkpoint names the records that prove it. The
    // dispatcher's bindings come thirty to a seal: their paths are suffixes of one list, and
    // share its positions.
    if (this.checkpointed) {
      let tail: [number, string][] | undefined;
      /** The last seq of the sealed stretch not held here: a path through it cannot be given. */
      let gap = from;
      for (let seq = from; seq <= to; seq++) {
        const h = waiting.get(seq);
        if (!h || h.verdict !== 'waiting' || !(h.record.body?.agentKeyBound || h.record.body?.agentKeyRevoked))
          continue;
        if (!tail) {
          tail = [];
          for (let next = from + 1; next <= to; next++) {
            const n = waiting.get(next);
            if (!n) gap = next;
            tail.push(n ? [n.record.partition, n.record.offset] : [-1, '']);
          }
        }
        if (seq >= gap) h.sealedBy = tail.slice(seq - from);
      }
    }
    for (let seq = from; seq <= to; seq++) {
      const h = waiting.get(seq);
      if (!h) continue;
      waiting.delete(seq);
      if (h.verdict === 'waiting') h.verdict = 'accepted';
    }
    if (waiting.size === 0) this.waiting.delete(chain);
  }

  /** An epoch nobody vouches for: what of it already waits is rejected with it. */
  private distrust(chain: string): void {
    if (this.checkpointed && !this.untrusted.has(chain)) this.newUntrusted.push(chain);
    this.untrusted.add(chain);
    for (const h of this.waiting.get(chain)?.values() ?? []) h.verdict = 'rejected';
    this.waiting.delete(chain);
  }

  private reject(h: Held<T>): void {
    h.verdict = 'rejected';
    const chain = this.waiting.get(h.chain);
    if (chain?.get(h.seq) === h) chain.delete(h.seq);
  }

  /**
   * Checked again on release: a command still waiting for its seal when its answer was offered
   * is known by now if it sits before the answer in the same partition, as a host's commands do.
   */
  private answersAnotherHost(body: events.EventBody | undefined): string | undefined {
    if (!body || this.commandHosts.size === 0) return undefined;
    const command = commandAnswered(body);
    const to = command ? this.commandHosts.get(command) : undefined;
    if (to === undefined) return undefined;
    return authorityViolation(body, (id) => this.commandHosts.get(id));
  }

  /** The revoked key the record's agent epoch is signed with, if it is revoked. */
  private revokedKeyOf(body: events.EventBody | undefined): Uint8Array | undefined {
    const p = body?.producer;
    if (!this.agentKeys.revokes || !p || !p.producerId.startsWith('agent/')) return undefined;
    const key = this.verifier.keyOf(p.producerId, p.epoch);
    return key && this.agentKeys.isRevoked(p.producerId, key) ? key : undefined;
  }

  /** A record of a revoked epoch, released after the revocation: a finding, not a fact. */
  private revokedFinding(r: GateRecord<T>, key: Uint8Array): Finding {
    const p = r.body?.producer;
    const what = `${p?.producerId} epoch ${p?.epoch} seq ${p?.seq} at partition ${r.partition} offset ${r.offset}`;
    return {
      kind: 'unknown-producer-key',
      producerId: p?.producerId,
      epoch: p?.epoch,
      seq: Number(p?.seq ?? 0),
      position: { partition: r.partition, offset: r.offset },
      detail: `${what} is signed by key ${keyFingerprint(key)}, which was revoked before it; it is kept out of the read models`,
    };
  }

  /**
   * A released binding or revocation changes which agent keys count. Returns false for a
   * binding that binds nothing (a finding, kept out of the read models).
   */
  private learn(h: Held<T>, pos: RecordPosition): boolean {
    const body = h.record.body;
    if (!body) return true;
    const source = this.checkpointed ? keyEventSource(h) : undefined;
    if (body.agentKeyBound) {
      const why = this.agentKeys.bind(body.agentKeyBound, source);
      if (why)
        this.out.push({
          kind: 'unauthorized',
          producerId: body.producer?.producerId,
          epoch: body.producer?.epoch,
          seq: Number(body.producer?.seq ?? 0),
          position: pos,
          detail: `${body.producer?.producerId} seq ${body.producer?.seq} (AgentKeyBound) binds nothing: ${why}`,
        });
      else this.newlyBound.add(body.agentKeyBound.producerId);
      return !why;
    }
    if (body.agentKeyRevoked) this.agentKeys.revoke(body.agentKeyRevoked, source);
    return true;
  }

  private drain(): GateOutput<T> {
    const released: GateRecord<T>[] = [];
    this.settle(released);
    return { released, findings: this.takeFindings() };
  }

  /** Releases what may be released, learning bindings as they come, into `released`. */
  private settle(released: GateRecord<T>[]): void {
    do {
      for (const producerId of this.newlyBound) this.out.push(...this.verifier.keyVouched(producerId));
      this.newlyBound.clear();
      this.drainOnce(released);
    } while (this.newlyBound.size > 0);
  }

  private takeFindings(): Finding[] {
    const findings = this.out;
    this.out = [];
    return findings;
  }

  private drainOnce(released: GateRecord<T>[]): void {
    for (const [partition, queue] of this.queues) {
      const { items } = queue;
      let i = queue.head;
      for (; i < items.length && items[i]!.verdict !== 'waiting'; i++) {
        const h = items[i]!;
        items[i] = undefined as unknown as Held<T>; // released: nothing keeps it
        if (h.verdict !== 'accepted') continue;
        const revoked = this.revokedKeyOf(h.record.body);
        if (revoked) {
          this.out.push(this.revokedFinding(h.record, revoked));
          continue;
        }
        const pos = { partition: h.record.partition, offset: h.record.offset };
        const misanswered = this.answersAnotherHost(h.record.body);
        if (misanswered) {
          this.out.push({
            kind: 'unauthorized',
            producerId: h.record.body?.producer?.producerId,
            epoch: h.record.body?.producer?.epoch,
            seq: h.seq,
            position: pos,
            detail: `${misanswered}; it is kept out of the read models`,
          });
          continue;
        }
        if (!this.learn(h, pos)) continue;
        released.push(h.record);
        const cmd =
          h.record.body?.hostApplyRequested ??
          h.record.body?.hostRevertRequested ??
          h.record.body?.quarantineClearRequested;
        if (cmd?.commandId) {
          // A checkpoint stores each command once (its first host), as the table keeps the first row.
          if (this.checkpointed && !this.commandHosts.has(cmd.commandId))
            this.newCommands.push([cmd.commandId, cmd.hostId]);
          this.commandHosts.set(cmd.commandId, cmd.hostId);
        }
      }
      if (i === items.length) this.queues.delete(partition);
      else queue.advance(i);
    }
  }
}

const sourceLayout = new EnvelopeLayout();

/** Where a key event was read and what proves it, when its seal was seen (not after a restore from before 0028). */
function keyEventSource<T>(h: Held<T>): KeyEventSource | undefined {
  const { value, partition, offset } = h.record;
  if (!value || !h.sealedBy) return undefined;
  const l = scanEnvelope(value, sourceLayout);
  const hash = Buffer.from(value.buffer, value.byteOffset + l.hashStart, l.hashEnd - l.hashStart).toString('hex');
  return { partition, offset, hash, sealedBy: h.sealedBy };
}

/** One partition's held records: a list and the index of its first, compacted now and then. */
class PartitionQueue<T> {
  items: Held<T>[] = [];
  head = 0;

  advance(to: number): void {
    this.head = to;
    if (this.head > 1024 && this.head * 2 > this.items.length) {
      this.items = this.items.slice(this.head);
      this.head = 0;
    }
  }
}
