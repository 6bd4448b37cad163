import { appendToChain, generateSigningKey, startEpoch, type EventDraft } from '@rebootless/events';
import { agentKeyBindings } from './agent-key-binding';

const certified = { certificateFingerprint: 'ab'.repeat(32), certificateIdentity: 'web-a' };

function chain(producerId: string, hostId: string, extra: EventDraft[] = []) {
  const key = generateSigningKey();
  const start: EventDraft = {
    stream: `host/${hostId}`,
    payload: {
      type: 'ChainEpochStarted',
      data: { publicKey: key.rawPublicKey, previousEpoch: 0, reason: 1, detail: '' },
    },
  };
  const { events } = appendToChain(startEpoch(producerId, 2), [start, ...extra], key);
  return { key, envelopes: events.map((e) => e.envelope) };
}

describe('the bindings the gateway writes for a relayed batch', () => {
  it("given the host's own epoch start, then one AgentKeyBound on the host's stream names its key and the certificate", () => {
    const { key, envelopes } = chain('agent/web-a', 'web-a');
    const [binding, ...more] = agentKeyBindings('web-a', envelopes, certified);
    expect(more).toEqual([]);
    expect(binding).toEqual(
      expect.objectContaining({
        stream: 'host/web-a',
        payload: {
          type: 'AgentKeyBound',
          data: {
            hostId: 'web-a',
            producerId: 'agent/web-a',
            epoch: 2,
            publicKey: key.rawPublicKey,
            ...certified,
          },
        },
      }),
    );
  });

  it('given a batch without an epoch start, then it binds nothing', () => {
    const { envelopes } = chain('agent/web-a', 'web-a', [
      {
        stream: 'host/web-a',
        payload: {
          type: 'ServiceStarted',
          data: { service: 'agent', version: '1', instance: 'i', hostname: 'web-a', pid: 1, listenAddress: '' },
        },
      },
    ]);
    expect(agentKeyBindings('web-a', envelopes.slice(1), certified)).toEqual([]);
  });

  it("given another host's epoch start, then it binds nothing (the relay refuses it)", () => {
    const { envelopes } = chain('agent/web-b', 'web-b');
    expect(agentKeyBindings('web-a', envelopes, certified)).toEqual([]);
  });
});
