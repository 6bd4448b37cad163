import { events } from '@rebootless/contracts';
import { ChainHead, ChainedEvent, EventDraft, appendToChain, startEpoch } from './chain';
import { SigningKey, generateSigningKey } from './signing';
import { epochStart, serviceStarted } from './test-chain';
import { StaticKeyTrust } from './verifier';
import { GateOutput, ProjectionGate } from './projection-gate';
import { EnvelopeLayout, scanEnvelope } from './wire';

// docs/adr/0012, "Agent keys are vouched for": an agent epoch's key counts only through an
// AgentKeyBound the dispatcher sealed, and stops counting at AgentKeyRevoked.
const TIMEOUT = 5_000;
const HOST = 'web-02';
const AGENT = `agent/${HOST}`;
const dispatcherKey = generateSigningKey();
const forgedDispatcherKey = generateSigningKey();
const agentKey = generateSigningKey();
const trust = new StaticKeyTrust().vouch('dispatcher', dispatcherKey.rawPublicKey);

const bodyOf = (value: Uint8Array) => {
  const l = scanEnvelope(Buffer.from(value), new EnvelopeLayout());
  return events.EventBody.decode(value.subarray(l.bodyStart, l.bodyEnd));
};

/** A reader: a host's stream and the dispatcher's writes about it share partition 0 unless told. */
class Reader {
  readonly gate = new ProjectionGate<string>({ trust, unsealedTimeoutMs: TIMEOUT });
  readonly released: string[] = [];
  readonly findings: GateOutput<string>['findings'] = [];
  private readonly offsets = new Map<number, number>();

  offer(list: ChainedEvent[], now = 0, partition = 0): this {
    for (const e of list) {
      const body = bodyOf(e.envelope);
      const label = `${body.producer?.producerId}#${body.producer?.epoch}.${e.seq}`;
      const offset = this.offsets.get(partition) ?? 0;
      this.offsets.set(partition, offset + 1);
      this.take(this.gate.offer({ partition, offset: String(offset), value: e.envelope, body, item: label }, now));
    }
    return this;
  }

  expire(now: number): this {
    return this.take(this.gate.expire(now));
  }

  private take(out: GateOutput<string>): this {
    this.released.push(...out.released.map((r) => r.item));
    this.findings.push(...out.findings);
    return this;
  }
}

/** A producer's chain, written a batch (one seal) at a time. */
class Writer {
  private head: ChainHead;
  constructor(
    private readonly key: SigningKey,
    producerId: string,
    epoch = 1,
  ) {
    this.head = startEpoch(producerId, epoch);
  }

  append(...drafts: EventDraft[]): ChainedEvent[] {
    const r = appendToChain(this.head, drafts, this.key);
    this.head = r.head;
    return r.events;
  }
}

const dispatcherEpoch = (k: SigningKey): EventDraft => ({ ...epochStart(k), stream: 'producer/dispatcher' });
const onHost = (d: EventDraft): EventDraft => ({ ...d, stream: `host/${HOST}` });

const bound = (key: SigningKey, epoch = 1, producerId = AGENT): EventDraft =>
  onHost({
    stream: '',
    payload: {
      type: 'AgentKeyBound',
      data: {
        hostId: HOST,
        producerId,
        epoch,
        publicKey: key.rawPublicKey,
        certificateFingerprint: 'ab'.repeat(32),
        certificateIdentity: HOST,
      },
    },
  });

const revoked = (epoch: number): EventDraft =>
  onHost({
    stream: '',
    payload: { type: 'AgentKeyRevoked', data: { hostId: HOST, producerId: AGENT, epoch, reason: 'disk stolen' } },
  });

/** An agent's epoch: its start and `count - 1` more facts, sealed as one batch. */
function agentEpoch(key: SigningKey, epoch = 1, count = 3): { writer: Writer; events: ChainedEvent[] } {
  const writer = new Writer(key, AGENT, epoch);
  const drafts = [epochStart(key), ...Array.from({ length: count - 1 }, (_, i) => serviceStarted(i))];
  return { writer, events: writer.append(...drafts.map(onHost)) };
}

const labels = (producerId: string, epoch: number, from: number, to: number) =>
  Array.from({ length: to - from + 1 }, (_, i) => `${producerId}#${epoch}.${from + i}`);

describe('agent keys the dispatcher vouches for', () => {
  const dispatcherStart = () => new Writer(dispatcherKey, 'dispatcher');

  it('given an agent epoch nobody bound, when the timeout passes, then it is an unvouched key and nothing is released', () => {
    const agent = agentEpoch(agentKey);
    const r = new Reader().offer(agent.events, 0);
    expect(r.released).toEqual([]);
    expect(r.findings).toEqual([]);

    r.expire(TIMEOUT);

    expect(r.released).toEqual([]);
    expect(r.findings).toEqual([
      expect.objectContaining({
        kind: 'unknown-producer-key',
        producerId: AGENT,
        epoch: 1,
        detail: expect.stringContaining('binding'),
      }),
    ]);
  });

  it('given the dispatcher bound the key before relaying the epoch, then the agent epoch is released', () => {
    const d = dispatcherStart();
    const agent = agentEpoch(agentKey);
    const r = new Reader().offer([...d.append(dispatcherEpoch(dispatcherKey), bound(agentKey)), ...agent.events]);

    expect(r.findings).toEqual([]);
    expect(r.released).toEqual([...labels('dispatcher', 1, 1, 2), ...labels(AGENT, 1, 1, 3)]);
  });

  it('given the binding is read after the agent epoch (another partition), within the timeout, then the waiting epoch is released', () => {
    const d = dispatcherStart();
    const agent = agentEpoch(agentKey);
    const r = new Reader().offer(agent.events, 0).expire(TIMEOUT - 1);
    expect(r.released).toEqual([]);

    r.offer(d.append(dispatcherEpoch(dispatcherKey), bound(agentKey)), TIMEOUT - 1, 1);

    expect(r.findings).toEqual([]);
    expect(r.released).toEqual([...labels('dispatcher', 1, 1, 2), ...labels(AGENT, 1, 1, 3)]);
  });

  it('given an epoch nobody bound ahead of a binding in its partition, when both epochs have waited the timeout, then only the unbound one is refused', () => {
    // A Kafka writer's epoch holds the partition back; the genuine binding and epoch wait behind it.
    const forger = agentEpoch(forgedDispatcherKey, 7);
    const d = dispatcherStart();
    const agent = agentEpoch(agentKey);
    const r = new Reader().offer([
      ...forger.events,
      ...d.append(dispatcherEpoch(dispatcherKey), bound(agentKey)),
      ...agent.events,
    ]);
    expect(r.released).toEqual([]);

    r.expire(TIMEOUT);

    expect(r.findings.map((f) => [f.kind, f.producerId, f.epoch])).toEqual([['unknown-producer-key', AGENT, 7]]);
    expect(r.released).toEqual([...labels('dispatcher', 1, 1, 2), ...labels(AGENT, 1, 1, 3)]);
  });

  it('given a binding sealed by a dispatcher key nobody vouches for, then it binds nothing', () => {
    const forged = new Writer(forgedDispatcherKey, 'dispatcher');
    const agent = agentEpoch(agentKey);
    const r = new Reader()
      .offer([...forged.append(dispatcherEpoch(forgedDispatcherKey), bound(agentKey)), ...agent.events])
      .expire(TIMEOUT);

    expect(r.released).toEqual([]);
    expect(r.findings.map((f) => [f.kind, f.producerId])).toEqual([
      ['unknown-producer-key', 'dispatcher'],
      ['unknown-producer-key', AGENT],
    ]);
  });

  it('given an agent that binds its own key, then the binding is unauthorized and its epoch stays unvouched', () => {
    const agent = new Writer(agentKey, AGENT);
    const r = new Reader().offer(agent.append(onHost(epochStart(agentKey)), bound(agentKey))).expire(TIMEOUT);

    expect(r.released).toEqual([]);
    expect(r.findings.map((f) => f.kind)).toEqual(['unauthorized', 'unknown-producer-key']);
  });

  it('given a binding naming another host than its producer, then it binds nothing', () => {
    const d = dispatcherStart();
    const agent = agentEpoch(agentKey);
    const r = new Reader()
      .offer([...d.append(dispatcherEpoch(dispatcherKey), bound(agentKey, 1, 'agent/db-01')), ...agent.events])
      .expire(TIMEOUT);

    expect(r.released).toEqual(labels('dispatcher', 1, 1, 1)); // the binding is kept out too
    expect(r.findings.map((f) => [f.kind, f.producerId])).toEqual([
      ['unauthorized', 'dispatcher'],
      ['unknown-producer-key', AGENT],
    ]);
  });

  describe('revocation and rotation', () => {
    const d = dispatcherStart();
    const agent = agentEpoch(agentKey);
    const r = new Reader().offer([...d.append(dispatcherEpoch(dispatcherKey), bound(agentKey)), ...agent.events]);
    const releasedBefore = [...r.released];
    r.offer(d.append(revoked(1)));
    const later = agent.writer.append(onHost(serviceStarted(7)), onHost(serviceStarted(8)));
    r.offer(later);
    const rotatedKey = generateSigningKey();
    const rotated = agentEpoch(rotatedKey, 2);

    it('releases what the key signed before its revocation', () => {
      expect(releasedBefore).toEqual([...labels('dispatcher', 1, 1, 2), ...labels(AGENT, 1, 1, 3)]);
    });

    it("makes the revoked key's later events findings, never facts", () => {
      expect(r.released).toEqual([...releasedBefore, 'dispatcher#1.3']);
      expect(r.findings).toEqual([
        expect.objectContaining({
          kind: 'unknown-producer-key',
          producerId: AGENT,
          seq: 4,
          detail: expect.stringContaining('revoked'),
        }),
        expect.objectContaining({ kind: 'unknown-producer-key', producerId: AGENT, seq: 5 }),
      ]);
    });

    it('accepts a new epoch with a new key once the dispatcher binds it (rotation, re-enrolment)', () => {
      const before = r.released.length;
      r.offer([...d.append(bound(rotatedKey, 2)), ...rotated.events]);
      expect(r.released.slice(before)).toEqual(['dispatcher#1.4', ...labels(AGENT, 2, 1, 3)]);
    });

    it('never binds the revoked key again, even for a new epoch', () => {
      const replayed = agentEpoch(agentKey, 3);
      const before = r.findings.length;
      r.offer([...d.append(bound(agentKey, 3)), ...replayed.events]).expire(TIMEOUT);
      expect(r.findings.slice(before).map((f) => [f.kind, f.producerId, f.epoch])).toEqual([
        ['unauthorized', 'dispatcher', 1],
        ['unknown-producer-key', AGENT, 3],
      ]);
    });
  });
});
