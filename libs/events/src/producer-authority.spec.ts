import { events } from '@rebootless/contracts';
import { EVENT_TYPES, EventType } from './event-types';
import { PRODUCER_AUTHORITY, authorityViolation, producerOf } from './producer-authority';

type Body = events.EventBody;

function body(producerId: string, type: EventType, stream: string, payload: Partial<Body> = {}): Body {
  return {
    type,
    stream,
    producer: { producerId, epoch: 1, seq: '7' },
    [EVENT_TYPES[type].field]: {},
    ...payload,
  } as unknown as Body;
}

describe('producer authority', () => {
  it('has a row for every event type, and no row for anything else', () => {
    expect(Object.keys(PRODUCER_AUTHORITY).sort()).toEqual(Object.keys(EVENT_TYPES).sort());
    for (const rule of Object.values(PRODUCER_AUTHORITY)) expect(rule.by.length).toBeGreaterThan(0);
  });

  it('reads the kind of producer from its id', () => {
    expect(producerOf('agent/web-02')).toEqual({ kind: 'agent', id: 'agent/web-02', hostId: 'web-02' });
    expect(producerOf('builder').kind).toBe('builder');
    expect(producerOf('dispatcher').kind).toBe('dispatcher');
    expect(producerOf('ledger').kind).toBe('service');
  });

  describe('given the agent of evil-01', () => {
    const evil = 'agent/evil-01';
    it('may report its own patch applied', () => {
      expect(
        authorityViolation(
          body(evil, 'PatchApplied', 'host/evil-01', { patchApplied: { hostId: 'evil-01' } as never }),
        ),
      ).toBeUndefined();
    });
    it('may not say that web-02 applied a patch, on any stream', () => {
      const aboutWeb = { patchApplied: { hostId: 'web-02' } as never };
      expect(authorityViolation(body(evil, 'PatchApplied', 'host/web-02', aboutWeb))).toBe(
        'agent/evil-01 seq 7 (PatchApplied): an agent may not write PatchApplied on stream "host/web-02"',
      );
      expect(authorityViolation(body(evil, 'PatchApplied', 'host/evil-01', aboutWeb))).toBe(
        'agent/evil-01 seq 7 (PatchApplied): the agent of evil-01 may speak only about its own host, not "web-02"',
      );
    });
    it('may not retract a patch, create a rollout or say a build succeeded', () => {
      for (const [type, stream] of [
        ['PatchRetracted', 'patch/p1'],
        ['RolloutCreated', 'rollout/r1'],
        ['BuildSucceeded', 'build/b1'],
        ['HostApplyRequested', 'host/evil-01'],
      ] as const) {
        expect(authorityViolation(body(evil, type, stream))).toBe(
          `agent/evil-01 seq 7 (${type}): an agent may not emit ${type}`,
        );
      }
    });
    it('may not answer a command sent to another host', () => {
      const b = body(evil, 'PatchApplied', 'host/evil-01', {
        patchApplied: { hostId: 'evil-01', commandId: 'c1' } as never,
      });
      expect(authorityViolation(b, (id) => (id === 'c1' ? 'web-02' : undefined))).toBe(
        'agent/evil-01 seq 7 (PatchApplied): it answers command c1, which was sent to web-02, not to evil-01',
      );
      expect(authorityViolation(b, () => 'evil-01')).toBeUndefined();
    });
    // Issue 21: clearing a quarantine is asked by the dispatcher and answered by the agent itself.
    it('may not ask for a quarantine to be cleared, nor answer a clear sent to another host', () => {
      expect(
        authorityViolation(
          body(evil, 'QuarantineClearRequested', 'host/evil-01', {
            quarantineClearRequested: { hostId: 'evil-01' } as never,
          }),
        ),
      ).toBe('agent/evil-01 seq 7 (QuarantineClearRequested): an agent may not emit QuarantineClearRequested');
      const cleared = body(evil, 'PatchQuarantineCleared', 'host/evil-01', {
        patchQuarantineCleared: { hostId: 'evil-01', commandId: 'q1' } as never,
      });
      expect(authorityViolation(cleared, () => 'evil-01')).toBeUndefined();
      expect(authorityViolation(cleared, (id) => (id === 'q1' ? 'web-02' : undefined))).toBe(
        'agent/evil-01 seq 7 (PatchQuarantineCleared): it answers command q1, which was sent to web-02, not to evil-01',
      );
      const forWeb = body(evil, 'PatchQuarantineCleared', 'host/evil-01', {
        patchQuarantineCleared: { hostId: 'web-02' } as never,
      });
      expect(authorityViolation(forWeb)).toMatch(/may speak only about its own host/);
    });
    it('writes its epoch start on its own producer stream', () => {
      expect(authorityViolation(body(evil, 'ChainEpochStarted', 'producer/agent/evil-01'))).toBeUndefined();
      expect(authorityViolation(body(evil, 'ChainEpochStarted', 'producer/agent/web-02'))).toMatch(/may not write/);
    });
  });

  it('lets the builder build and retract, never run rollouts or speak for hosts', () => {
    expect(authorityViolation(body('builder', 'PatchRetracted', 'patch/p1'))).toBeUndefined();
    expect(authorityViolation(body('builder', 'RolloutCreated', 'rollout/r1'))).toMatch(/a builder may not emit/);
    expect(authorityViolation(body('builder', 'PatchApplied', 'host/web-02'))).toMatch(/a builder may not emit/);
  });

  it('lets the dispatcher send commands only on the addressed host stream', () => {
    const cmd = { hostApplyRequested: { hostId: 'web-02' } as never };
    expect(authorityViolation(body('dispatcher', 'HostApplyRequested', 'host/web-02', cmd))).toBeUndefined();
    expect(authorityViolation(body('dispatcher', 'HostApplyRequested', 'host/web-03', cmd))).toMatch(/may not write/);
    expect(authorityViolation(body('dispatcher', 'PatchRetracted', 'patch/p1'))).toMatch(/a dispatcher may not emit/);
    const clear = { quarantineClearRequested: { hostId: 'web-02' } as never };
    expect(authorityViolation(body('dispatcher', 'QuarantineClearRequested', 'host/web-02', clear))).toBeUndefined();
    expect(authorityViolation(body('dispatcher', 'QuarantineClearRequested', 'host/web-03', clear))).toMatch(
      /may not write/,
    );
    expect(authorityViolation(body('dispatcher', 'PatchQuarantineCleared', 'host/web-02'))).toMatch(
      /a dispatcher may not emit/,
    );
  });

  it('lets any other service write only its own lifecycle and denials', () => {
    expect(authorityViolation(body('ledger', 'CallDenied', 'producer/ledger'))).toBeUndefined();
    expect(authorityViolation(body('ledger', 'CallDenied', 'producer/builder'))).toMatch(/may not write/);
    expect(authorityViolation(body('ledger', 'PatchPublished', 'patch/p1'))).toMatch(/a service may not emit/);
  });
});
