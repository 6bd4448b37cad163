import { events } from '@rebootless/contracts';
import { AgentKeyState } from './agent-key-book';
import { ChainHead, EventDraft, appendToChain, startEpoch } from './chain';
import { agentKeyStateProblems } from './key-event-proof';
import { GateCheckpoint, GateRecord, ProjectionGate } from './projection-gate';
import { SetDigest } from './set-digest';
import { SigningKey, generateSigningKey } from './signing';
import { epochStart } from './test-chain';
import { StaticKeyTrust } from './verifier';
import { EnvelopeLayout, scanEnvelope } from './wire';

// A database administrator edits the gate's checkpoint (docs/adr/0028): every agent key it holds
// must be what a sealed record of the log says, and no chain may be vouched for by a key that
// neither the configuration nor those bindings vouch for. Pure: the log is an array.

const dispatcherKey = generateSigningKey();
const agentKey = generateSigningKey();
const dbaKey = generateSigningKey();
const trust = new StaticKeyTrust().vouch('dispatcher', dispatcherKey.rawPublicKey);

class Producer {
  head: ChainHead;
  constructor(
    id: string,
    readonly key: SigningKey,
    epoch = 1,
  ) {
    this.head = startEpoch(id, epoch);
  }
  write(...drafts: EventDraft[]): Uint8Array[] {
    const r = appendToChain(this.head, drafts, this.key);
    this.head = r.head;
    return r.events.map((e) => e.envelope);
  }
}

const onHost = (payload: EventDraft['payload']): EventDraft => ({ stream: 'host/h0', payload });
const binding = (key: SigningKey, epoch: number) =>
  onHost({
    type: 'AgentKeyBound',
    data: {
      hostId: 'h0',
      producerId: 'agent/h0',
      epoch,
      publicKey: key.rawPublicKey,
      certificateFingerprint: '',
      certificateIdentity: 'h0',
    },
  });
const revocation = (epoch: number) =>
  onHost({ type: 'AgentKeyRevoked', data: { hostId: 'h0', producerId: 'agent/h0', epoch, reason: 'stolen' } });

/** The log, one partition: the dispatcher binds the agent's key, the agent starts, the key is revoked. */
function history() {
  const dispatcher = new Producer('dispatcher', dispatcherKey);
  const agent = new Producer('agent/h0', agentKey);
  const log: Uint8Array[] = [
    ...dispatcher.write({ ...epochStart(dispatcherKey), stream: 'producer/dispatcher' }),
    ...dispatcher.write(binding(agentKey, 1)),
    ...agent.write({ ...epochStart(agentKey), stream: 'host/h0' }),
    ...dispatcher.write(revocation(1)),
  ];
  return { log, dispatcher };
}

function read(log: Uint8Array[]) {
  const gate = new ProjectionGate<null>({ trust, unsealedTimeoutMs: 1_000 });
  log.forEach((value, i) => {
    const l = scanEnvelope(Buffer.from(value), new EnvelopeLayout());
    const body = events.EventBody.decode(value.subarray(l.bodyStart, l.bodyEnd));
    gate.offer({ partition: 0, offset: String(i), value, body, item: null }, 0);
  });
  return gate.checkpoint([0], () => null);
}

const at = (log: Uint8Array[]) => (partition: number, offset: string) =>
  partition === 0 ? log[Number(offset)] : undefined;
const copy = <T>(x: T): T => JSON.parse(JSON.stringify(x)) as T;
const hex = (k: SigningKey) => k.rawPublicKey.toString('hex');

describe("a checkpoint's agent keys, read again from the log", () => {
  const { log, dispatcher } = history();
  const cp = read(log);
  const state = cp.agentKeys.find((k) => k.producerId === 'agent/h0')!;

  it('given the rows the gate wrote: each binding and revocation is what its record says', () => {
    expect(state).toMatchObject({ bound: [], revoked: [hex(agentKey)], revokedEpochs: [1] });
    expect(state.revocations).toEqual([[1, expect.objectContaining({ partition: 0, offset: '3', sealedBy: [] })]]);
    expect(agentKeyStateProblems(state, at(log), trust)).toEqual([]);
  });

  it('when a binding of their own key is added with no record, then the row is named and refused', () => {
    const planted: AgentKeyState = { ...copy(state), bound: [[2, hex(dbaKey)]] };
    expect(agentKeyStateProblems(planted, at(log), trust)).toEqual([
      `checkpoint_agent_keys agent/h0: the binding of epoch 2 to key ${hex(dbaKey).slice(0, 16)} names no record of the log that bound it`,
    ]);
  });

  it('when the binding names a genuine record that binds another key, then it is refused', () => {
    const source = { partition: 0, offset: '1', hash: hashAt(log, 1), sealedBy: [] };
    const planted: AgentKeyState = { ...copy(state), bound: [[2, hex(dbaKey), source]] };
    expect(agentKeyStateProblems(planted, at(log), trust)).toEqual([
      `checkpoint_agent_keys agent/h0: the binding of epoch 2 to key ${hex(dbaKey).slice(0, 16)} names the record at ` +
        `partition 0 offset 1, which binds agent/h0 epoch 1 to key ${hex(agentKey).slice(0, 16)}`,
    ]);
  });

  it('when the binding names a record the administrator wrote to the log as the dispatcher, then its seal does not verify', () => {
    const forged = new Producer('dispatcher', dbaKey).write(binding(dbaKey, 2));
    const withForgery = [...log, ...forged];
    const source = { partition: 0, offset: String(log.length), hash: hashAt(withForgery, log.length), sealedBy: [] };
    const planted: AgentKeyState = { ...copy(state), bound: [[2, hex(dbaKey), source]] };
    expect(agentKeyStateProblems(planted, at(withForgery), trust)).toEqual([
      `checkpoint_agent_keys agent/h0: the binding of epoch 2 to key ${hex(dbaKey).slice(0, 16)} is not believed: ` +
        `the seal over the record at partition 0 offset ${log.length} verifies with no key configured for dispatcher`,
    ]);
  });

  it('when the record named is another one at that position, then it is refused', () => {
    const source = { partition: 0, offset: '2', hash: hashAt(log, 1), sealedBy: [] };
    const planted: AgentKeyState = { ...copy(state), bound: [[1, hex(agentKey), source]] };
    expect(agentKeyStateProblems(planted, at(log), trust)).toEqual([
      `checkpoint_agent_keys agent/h0: the binding of epoch 1 to key ${hex(agentKey).slice(0, 16)} is not believed: ` +
        'the record at partition 0 offset 2 is another record than the one named (its hash differs)',
    ]);
  });

  it('when a revoked key is put back with its genuine binding, then the revocation the row names catches it', () => {
    const bound = read(log.slice(0, 3)).agentKeys.find((k) => k.producerId === 'agent/h0')!.bound;
    const unrevoked: AgentKeyState = { ...copy(state), bound, revoked: [], revokedEpochs: [] };
    expect(agentKeyStateProblems(unrevoked, at(log), trust)).toEqual([
      `checkpoint_agent_keys agent/h0: the binding of epoch 1 to key ${hex(agentKey).slice(0, 16)} keeps a key the revocation at partition 0 offset 3 revoked`,
    ]);
  });

  it('when an epoch is kept revoked with its revocation record dropped, then the row is refused', () => {
    const dropped: AgentKeyState = { ...copy(state), revocations: [] };
    expect(agentKeyStateProblems(dropped, at(log), trust)).toEqual([
      'checkpoint_agent_keys agent/h0: epoch 1 is kept revoked with no revocation record that says so',
    ]);
  });

  it('when a binding is sealed by a later record of the batch, then that record proves it', () => {
    const agent2 = generateSigningKey();
    const batch = dispatcher.write(binding(agent2, 2), revocation(9));
    const withBatch = [...log, ...batch];
    const cp2 = read(withBatch);
    const bound = cp2.agentKeys.find((k) => k.producerId === 'agent/h0')!.bound;
    expect(bound).toEqual([[2, hex(agent2), expect.objectContaining({ offset: '4', sealedBy: [[0, '5']] })]]);
    expect(agentKeyStateProblems(cp2.agentKeys[0]!, at(withBatch), trust)).toEqual([]);
    // Without the sealing record, nothing covers it.
    const unsealed: AgentKeyState = copy(cp2.agentKeys[0]!);
    unsealed.bound[0]![2]!.sealedBy = [];
    expect(agentKeyStateProblems(unsealed, at(withBatch), trust)).toEqual([
      `checkpoint_agent_keys agent/h0: the binding of epoch 2 to key ${hex(agent2).slice(0, 16)} is not believed: ` +
        'no seal covers the record at partition 0 offset 4 among the records named',
    ]);
  });
});

describe('a gate restored from a checkpoint whose chains were edited', () => {
  const dispatcher = new Producer('dispatcher', dispatcherKey);
  const agent = new Producer('agent/h0', agentKey);
  const log = [
    ...dispatcher.write({ ...epochStart(dispatcherKey), stream: 'producer/dispatcher' }),
    ...dispatcher.write(binding(agentKey, 1)),
    ...agent.write({ ...epochStart(agentKey), stream: 'host/h0' }),
  ];
  const cp = read(log);
  const restore = (edited: GateCheckpoint<null>) =>
    new ProjectionGate<null>({ trust, unsealedTimeoutMs: 1_000 }).restore(
      edited,
      (partition, offset): GateRecord<null> => ({ partition, offset, value: null, body: undefined, item: null }),
      0,
    );

  it('given the rows as written: nothing to say', () => {
    expect(restore(copy(cp))).toEqual([]);
  });

  it("when an agent chain's key is swapped for the administrator's, then the chain is named", () => {
    const edited = copy(cp);
    edited.chains.find((c) => c.producerId === 'agent/h0')!.keyRaw = hex(dbaKey);
    expect(restore(edited)).toEqual([
      `checkpoint_chains agent/h0@1: its key ${hex(dbaKey).slice(0, 16)} is held vouched, but no binding of the epoch restored binds it`,
    ]);
  });

  it("when a service chain's key is swapped, then the chain is named", () => {
    const edited = copy(cp);
    edited.chains.find((c) => c.producerId === 'dispatcher')!.keyRaw = hex(dbaKey);
    expect(restore(edited)).toEqual([
      `checkpoint_chains dispatcher@1: its key ${hex(dbaKey).slice(0, 16)} is held vouched, but it is not a key configured for the service`,
    ]);
  });
});

describe('a set digest', () => {
  const rows = ['a', 'b', 'c', 'd'].map((r) => SetDigest.element(r));
  const of = (elements: Buffer[]) => {
    const d = new SetDigest();
    for (const e of elements) d.add(e);
    return d.digest().toString('hex');
  };

  it('is the same for the same rows in any order, and a removal undoes an addition', () => {
    expect(of([...rows].reverse())).toBe(of(rows));
    const d = new SetDigest();
    for (const e of [...rows, SetDigest.element('e')]) d.add(e);
    d.remove(SetDigest.element('e'));
    expect(d.digest().toString('hex')).toBe(of(rows));
  });

  it('differs when a row is missing, changed or doubled', () => {
    const digests = [
      of(rows),
      of(rows.slice(1)),
      of([SetDigest.element('a2'), ...rows.slice(1)]),
      of([...rows, rows[0]!]),
      of([]),
    ];
    expect(new Set(digests).size).toBe(digests.length);
  });
});

function hashAt(log: Uint8Array[], i: number): string {
  const l = scanEnvelope(Buffer.from(log[i]!), new EnvelopeLayout());
  return Buffer.from(log[i]!.subarray(l.hashStart, l.hashEnd)).toString('hex');
}
