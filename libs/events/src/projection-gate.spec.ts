import { events } from '@rebootless/contracts';
import { ChainedEvent, ChainHead, EventDraft, appendToChain, startEpoch } from './chain';
import { generateSigningKey } from './signing';
import { epochStart, serviceStarted } from './test-chain';
import { StaticKeyTrust } from './verifier';
import { GateOutput, ProjectionGate } from './projection-gate';
import { scanEnvelope, EnvelopeLayout } from './wire';

const TIMEOUT = 5_000;
const key = generateSigningKey();
const agentKey = generateSigningKey();
const forgerKey = generateSigningKey();
const dispatcherKey = generateSigningKey();
// Agents' keys count only through the dispatcher's binding (agent-key-binding.spec.ts): each
// reader starts with evil-01's epoch 1 bound, on a partition of its own.
const trust = new StaticKeyTrust().vouch('builder', key.rawPublicKey).vouch('dispatcher', dispatcherKey.rawPublicKey);
const BINDING_PARTITION = 99;
const evilBound = appendToChain(
  startEpoch('dispatcher', 1),
  [
    { ...epochStart(dispatcherKey), stream: 'producer/dispatcher' },
    {
      stream: 'host/evil-01',
      payload: {
        type: 'AgentKeyBound',
        data: {
          hostId: 'evil-01',
          producerId: 'agent/evil-01',
          epoch: 1,
          publicKey: agentKey.rawPublicKey,
          certificateFingerprint: '',
          certificateIdentity: 'evil-01',
        },
      },
    },
  ],
  dispatcherKey,
).events;

function bodyOf(value: Uint8Array): events.EventBody {
  const l = scanEnvelope(Buffer.from(value), new EnvelopeLayout());
  return events.EventBody.decode(value.subarray(l.bodyStart, l.bodyEnd));
}

/** A reader: offers records partition by partition, keeps what is released and found. */
class Reader {
  readonly gate = new ProjectionGate<string>({ trust, unsealedTimeoutMs: TIMEOUT });
  readonly released: string[] = [];
  readonly findings: GateOutput<string>['findings'] = [];
  private offsets = new Map<number, number>();

  constructor() {
    for (const e of evilBound) this.offer(e, BINDING_PARTITION);
    this.released.length = 0;
  }

  offer(e: ChainedEvent | Uint8Array, partition = 0, now = 0, writtenAt?: number): this {
    const value = e instanceof Uint8Array ? e : e.envelope;
    const offset = this.offsets.get(partition) ?? 0;
    this.offsets.set(partition, offset + 1);
    let body: events.EventBody | undefined;
    try {
      body = bodyOf(value);
    } catch {
      body = undefined;
    }
    const label = body ? `${body.producer?.producerId}#${body.producer?.seq}` : `raw@${partition}/${offset}`;
    const record = { partition, offset: String(offset), value, body, item: label };
    return this.take(this.gate.offer(writtenAt === undefined ? record : { ...record, writtenAt }, now));
  }

  /** The next records of `partition` come from `offset` again, as after a rebalance. */
  rewind(partition: number, offset = 0): this {
    this.offsets.set(partition, offset);
    return this;
  }

  expire(now: number, liveSince?: number): this {
    return this.take(this.gate.expire(now, liveSince));
  }

  private take(out: GateOutput<string>): this {
    this.released.push(...out.released.map((r) => r.item));
    this.findings.push(...out.findings);
    return this;
  }
}

const labels = (chain: ChainedEvent[]) => chain.map((e) => `${bodyOf(e.envelope).producer?.producerId}#${e.seq}`);

/** `count` events of `producerId` on its own stream, sealed every `batch`. */
function ownChain(k: typeof key, producerId: string, count: number, batch: number): ChainedEvent[] {
  const stream = producerId.startsWith('agent/') ? `host/${producerId.slice(6)}` : `producer/${producerId}`;
  let head = startEpoch(producerId, 1);
  const drafts = [epochStart(k), ...Array.from({ length: count - 1 }, (_, i) => serviceStarted(i))].map((d) => ({
    ...d,
    stream,
  }));
  const out: ChainedEvent[] = [];
  for (let i = 0; i < drafts.length; i += batch) {
    const r = appendToChain(head, drafts.slice(i, i + batch), k);
    head = r.head;
    out.push(...r.events);
  }
  return out;
}

/** What a forger with the log in hand but not the producer's key can write after `head`. */
function forgeAfter(head: ChainHead, drafts: EventDraft[], seqAhead = 0): ChainedEvent {
  const at = { ...head, seq: head.seq + seqAhead };
  // A batch of two is sealed on its second event: the first carries no seal.
  const own = (d: EventDraft) => ({ ...d, stream: `producer/${head.producerId}` });
  return appendToChain(at, [...drafts, serviceStarted(99)].map(own), forgerKey).events[0]!;
}

describe('ProjectionGate', () => {
  const chain = ownChain(key, 'builder', 30, 10); // seals at seq 10, 20, 30

  describe('given a chain sealed every 10 events', () => {
    it('releases nothing before the seal, then the whole run in order', () => {
      const r = new Reader();
      chain.slice(0, 9).forEach((e) => r.offer(e));
      expect(r.released).toEqual([]);
      r.offer(chain[9]!);
      expect(r.released).toEqual(labels(chain.slice(0, 10)));
      chain.slice(10).forEach((e) => r.offer(e));
      expect(r.released).toEqual(labels(chain));
      expect(r.findings).toEqual([]);
    });

    it('keeps a partition in order: a sealed record waits behind an earlier one still waiting', () => {
      const r = new Reader();
      const other = ownChain(agentKey, 'agent/evil-01', 3, 3);
      // Given builder seq 1..9 waiting in partition 0 and a sealed agent chain behind them
      chain.slice(0, 9).forEach((e) => r.offer(e));
      r.offer(other[0]!, 0).offer(other[1]!, 0).offer(other[2]!, 0);
      expect(r.released).toEqual([]);
      // When the builder's seal arrives in another partition
      r.offer(chain[9]!, 1);
      // Then partition 0 is released in its own order
      expect(r.released).toEqual([...labels(chain.slice(0, 9)), ...labels(other), 'builder#10']);
      expect(r.gate.heldFrom(0)).toBeUndefined();
    });
  });

  describe('when a forger appends an unsealed record at head+1', () => {
    it('holds it, makes it an unsealed finding after the timeout, and projects the genuine events after it', () => {
      const r = new Reader();
      chain.slice(0, 10).forEach((e) => r.offer(e));
      const head: ChainHead = { producerId: 'builder', epoch: 1, seq: 10, hash: chain[9]!.hash };
      const forged = forgeAfter(head, [serviceStarted(666)]);
      r.offer(forged, 0, 1_000);
      expect(r.gate.heldFrom(0)).toBe('10');
      expect(r.gate.hasDue(1_000 + TIMEOUT - 1)).toBe(false);
      r.expire(1_000 + TIMEOUT - 1);
      expect(r.findings).toEqual([]);
      // The reader asks first whether anything is due (then checks it has read the log's ends).
      expect(r.gate.hasDue(1_000 + TIMEOUT)).toBe(true);
      expect(r.gate.hasDue(1_000 + TIMEOUT, 2_000)).toBe(false);
      r.expire(1_000 + TIMEOUT);
      expect(r.findings).toEqual([
        expect.objectContaining({ kind: 'unsealed', producerId: 'builder', seq: 11, toSeq: 11 }),
      ]);
      expect(r.findings[0]!.detail).toBe(
        'builder epoch 1: seq 11 (1 record(s), the first at partition 0 offset 10) waited 5000 ms for a valid seal covering them and are kept out of the read models',
      );
      // The genuine seq 11..20 arrive afterwards and are projected; the forged one never is
      chain.slice(10, 20).forEach((e) => r.offer(e, 0, 7_000));
      expect(r.released).toEqual(labels(chain.slice(0, 20)));
      expect(r.findings).toHaveLength(1);
    });
  });

  describe('when an unsealed record was written long before the reader reads it (a replay, a restart)', () => {
    it('judges it as soon as the reader is caught up: a seal still coming would have come by now', () => {
      const r = new Reader();
      chain.slice(0, 10).forEach((e) => r.offer(e));
      const head: ChainHead = { producerId: 'builder', epoch: 1, seq: 10, hash: chain[9]!.hash };
      // Written at 1,000, read at 100,000 by a reader caught up with the log at 100,000
      r.offer(forgeAfter(head, [serviceStarted(666)]), 0, 100_000, 1_000);
      expect(r.gate.hasDue(100_000, 100_000)).toBe(true);
      r.expire(100_000, 100_000);
      expect(r.findings[0]!.detail).toBe(
        'builder epoch 1: seq 11 (1 record(s), the first at partition 0 offset 10) waited 99000 ms for a valid seal covering them and are kept out of the read models',
      );
    });

    it("does not judge a genuine tail sooner because a forger's record beside it is dated in the past", () => {
      const r = new Reader();
      chain.slice(0, 10).forEach((e) => r.offer(e));
      // Genuine seq 11..19, written and read at 50,000; their seal (seq 20) is still on its way
      chain.slice(10, 19).forEach((e) => r.offer(e, 0, 50_000, 50_000));
      // A forger's record of the same chain, dated 0, in another partition
      const head: ChainHead = { producerId: 'builder', epoch: 1, seq: 19, hash: chain[18]!.hash };
      r.offer(forgeAfter(head, [serviceStarted(666)], 5), 1, 50_000, 0);
      expect(r.gate.hasDue(50_000 + TIMEOUT - 1, 50_000)).toBe(false);
      r.expire(50_000 + TIMEOUT - 1, 50_000);
      // The seal lands within the wait: the genuine records are released
      r.offer(chain[19]!, 0, 50_000 + TIMEOUT - 1, 50_000 + TIMEOUT - 1);
      expect(r.released).toEqual(labels(chain.slice(0, 20)));
      expect(r.findings).toEqual([]);
    });

    it('gives one written "in the future" no longer wait: the wait runs from its arrival', () => {
      const r = new Reader();
      chain.slice(0, 10).forEach((e) => r.offer(e));
      const head: ChainHead = { producerId: 'builder', epoch: 1, seq: 10, hash: chain[9]!.hash };
      r.offer(forgeAfter(head, [serviceStarted(666)]), 0, 1_000, Number.MAX_SAFE_INTEGER);
      expect(r.gate.hasDue(1_000 + TIMEOUT - 1)).toBe(false);
      expect(r.gate.hasDue(1_000 + TIMEOUT)).toBe(true);
    });

    it('waits the whole timeout for one written just now, however long the reader took to come to it', () => {
      const r = new Reader();
      chain.slice(0, 10).forEach((e) => r.offer(e));
      const head: ChainHead = { producerId: 'builder', epoch: 1, seq: 10, hash: chain[9]!.hash };
      r.offer(forgeAfter(head, [serviceStarted(666)]), 0, 50_000, 49_000);
      expect(r.gate.hasDue(49_000 + TIMEOUT - 1, 50_000)).toBe(false);
      expect(r.gate.hasDue(49_000 + TIMEOUT, 50_000)).toBe(true);
    });
  });

  describe('when the genuine producer writes on after a forged record took its place', () => {
    it('never lets the later genuine seal vouch for the forged record', () => {
      const r = new Reader();
      chain.slice(0, 10).forEach((e) => r.offer(e, 0, 0));
      const head: ChainHead = { producerId: 'builder', epoch: 1, seq: 10, hash: chain[9]!.hash };
      r.offer(forgeAfter(head, [serviceStarted(666)]), 1, 0);
      // The genuine seq 11 conflicts with it; seq 12 links to the genuine 11, not to the forged one
      chain.slice(10, 20).forEach((e) => r.offer(e, 0, 0));
      expect(r.findings.map((f) => [f.kind, f.seq])).toEqual([
        ['conflict', 11],
        ['broken-link', 12],
      ]);
      // The seal at 20 covers 12..20 only: the forged 11 still waits, then expires
      expect(r.released).not.toContain('builder#11');
      r.expire(TIMEOUT);
      expect(r.findings.map((f) => f.kind)).toContain('unsealed');
      expect(r.released).not.toContain('builder#11');
    });
  });

  describe('when a forger writes far ahead of the chain', () => {
    it('holds it as a gap, then an unsealed finding, and the genuine chain goes on', () => {
      const r = new Reader();
      chain.slice(0, 10).forEach((e) => r.offer(e, 0));
      const forged = forgeAfter(
        { producerId: 'builder', epoch: 1, seq: 10, hash: chain[9]!.hash },
        [serviceStarted(7)],
        1000,
      );
      r.offer(forged, 1, 0);
      r.expire(TIMEOUT);
      expect(r.findings).toEqual([expect.objectContaining({ kind: 'unsealed', producerId: 'builder', seq: 1011 })]);
      chain.slice(10).forEach((e) => r.offer(e, 0, TIMEOUT + 1));
      expect(r.released).toEqual(labels(chain));
    });
  });

  describe('when a sealed event of another producer is copied into the log', () => {
    it('is a duplicate finding, released once only', () => {
      const r = new Reader();
      chain.slice(0, 10).forEach((e) => r.offer(e, 0));
      r.offer(chain[4]!, 2);
      expect(r.findings).toEqual([
        expect.objectContaining({ kind: 'duplicate', seq: 5, position: { partition: 2, offset: '0' } }),
      ]);
      chain.slice(10, 20).forEach((e) => r.offer(e, 0));
      expect(r.released).toEqual(labels(chain.slice(0, 20)));
    });
  });

  describe('when a vouched producer says what is not its to say', () => {
    it('is an unauthorized finding; its own genuine events after it are released', () => {
      const r = new Reader();
      let head = startEpoch('agent/evil-01', 1);
      const write = (drafts: EventDraft[]) => {
        const out = appendToChain(head, drafts, agentKey);
        head = out.head;
        return out.events;
      };
      const start = write([{ ...epochStart(agentKey), stream: 'host/evil-01' }]);
      const lie = write([{ ...serviceStarted(1), stream: 'producer/builder' }]);
      const truth = write([{ ...serviceStarted(2), stream: 'producer/agent/evil-01' }]);
      [...start, ...lie, ...truth].forEach((e) => r.offer(e));
      expect(r.findings).toEqual([
        expect.objectContaining({ kind: 'unauthorized', producerId: 'agent/evil-01', seq: 2 }),
      ]);
      expect(r.findings[0]!.detail).toBe(
        'agent/evil-01 seq 2 (ServiceStarted): an agent may not write ServiceStarted on stream "producer/builder"; it is kept out of the read models',
      );
      expect(r.released).toEqual(['agent/evil-01#1', 'agent/evil-01#3']);
    });
  });

  it('releases nothing of an epoch whose key nobody vouches for', () => {
    const r = new Reader();
    ownChain(forgerKey, 'agent/web-02', 5, 5).forEach((e) => r.offer(e));
    r.expire(TIMEOUT); // no binding of it came in time
    expect(r.released).toEqual([]);
    expect(r.findings.map((f) => f.kind)).toContain('unknown-producer-key');
    expect(r.gate.holding).toBe(0);
  });

  it('takes a partition given again from its beginning (a consumer group rebalanced) for a re-delivery, not for copies', () => {
    // Given a reader that has been given the first 10 records of partition 0
    const r = new Reader();
    chain.slice(0, 10).forEach((e) => r.offer(e));
    // When its consumer group rebalances and the partition is given again from offset 0, then on
    r.rewind(0);
    chain.slice(0, 14).forEach((e) => r.offer(e));
    // Then nothing is released twice and nothing is a finding
    expect(r.findings).toEqual([]);
    expect(r.released).toEqual(labels(chain.slice(0, 14)).slice(0, r.released.length));
    expect(new Set(r.released).size).toBe(r.released.length);
  });

  it('still names a true copy: the same event at a new offset', () => {
    const r = new Reader();
    chain.slice(0, 10).forEach((e) => r.offer(e));
    r.offer(chain[3]!);
    expect(r.findings.map((f) => f.kind)).toEqual(['duplicate']);
  });

  it('releases no garbage, and goes on after it', () => {
    const r = new Reader();
    r.offer(Buffer.from('not an envelope'));
    chain.slice(0, 10).forEach((e) => r.offer(e));
    expect(r.findings.map((f) => f.kind)).toEqual(['undecodable']);
    expect(r.released).toEqual(labels(chain.slice(0, 10)));
  });
});
