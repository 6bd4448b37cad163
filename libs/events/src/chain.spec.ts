import { GENESIS_HASH, appendToChain, chainHash, decodeEvent, sealEnvelope, startEpoch } from './chain';
import { generateSigningKey, verifyHash } from './signing';
import { epochStart, serviceStarted } from './test-chain';
import { readEnvelope } from './wire';
import { uuidv7Time } from './uuidv7';

describe('appending events to a producer chain', () => {
  const key = generateSigningKey();

  it('numbers, links and hashes every event, and seals the last of a batch', () => {
    // Given a new epoch
    const head = startEpoch('builder', 1);
    // When three events are appended at once
    const { events: written, head: after } = appendToChain(
      head,
      [epochStart(key), serviceStarted(1), serviceStarted(2)],
      key,
      () => 1_700_000_000_123,
    );
    // Then they carry seq 1..3, each hash covers its predecessor's hash and its body
    expect(written.map((e) => e.seq)).toEqual([1, 2, 3]);
    let prev: Uint8Array = GENESIS_HASH;
    for (const e of written) {
      const v = readEnvelope(e.envelope);
      expect(Buffer.from(v.prevHash)).toEqual(prev);
      expect(chainHash(v.prevHash, v.body)).toEqual(e.hash);
      prev = e.hash;
    }
    // And only the last one is sealed, with a signature that verifies
    expect(written.map((e) => e.sealed)).toEqual([false, false, true]);
    const last = readEnvelope(written[2]!.envelope);
    expect(verifyHash(key.rawPublicKey, last.hash, last.signature)).toBe(true);
    expect(after).toMatchObject({ producerId: 'builder', epoch: 1, seq: 3, hash: written[2]!.hash });
  });

  it('writes bodies that decode back to what the producer said', () => {
    const { events: written } = appendToChain(
      startEpoch('ledger', 4),
      [serviceStarted(7)],
      key,
      () => 1_700_000_000_123,
    );
    const { body } = decodeEvent(written[0]!.envelope);
    expect(body.type).toBe('ServiceStarted');
    expect(body.serviceStarted).toMatchObject({ instance: 'i7', pid: 7 });
    expect(body.producer).toMatchObject({ producerId: 'ledger', epoch: 4, seq: '1' });
    expect(body.occurredAt).toEqual({ seconds: '1700000000', nanos: 123_000_000 });
    expect(uuidv7Time(body.eventId)).toBe(1_700_000_000_123);
  });

  it('continues a chain across appends as if written at once', () => {
    const first = appendToChain(startEpoch('x', 1), [epochStart(key)], key);
    const second = appendToChain(first.head, [serviceStarted(1)], key);
    const v = readEnvelope(second.events[0]!.envelope);
    expect(v.seq).toBe(2);
    expect(Buffer.from(v.prevHash)).toEqual(first.head.hash);
  });

  it('seals later to the very bytes a seal at append gives, and leaves a sealed envelope as it is', () => {
    // Given the same event appended sealed, and appended unsealed (a producer sealing it when it sends)
    const draft = { ...serviceStarted(1), eventId: '0190f0f0-0000-7000-8000-000000000001' };
    const at = () => 1_700_000_000_123;
    const [sealedNow] = appendToChain(startEpoch('x', 1), [draft], key, at).events;
    const [unsealed] = appendToChain(startEpoch('x', 1), [draft], key, at, false).events;
    expect(unsealed!.sealed).toBe(false);
    expect(readEnvelope(unsealed!.envelope).signature.length).toBe(0);
    // When the unsealed one is sealed
    const sealedLater = sealEnvelope(unsealed!.envelope, key);
    // Then it is byte for byte the one sealed at append: same place, same hash, a signature that verifies
    expect(sealedLater).toEqual(sealedNow!.envelope);
    const v = readEnvelope(sealedLater);
    expect(verifyHash(key.rawPublicKey, v.hash, v.signature)).toBe(true);
    // And sealing what is sealed changes nothing, even with another key
    expect(sealEnvelope(sealedNow!.envelope, generateSigningKey())).toEqual(sealedNow!.envelope);
  });

  it('refuses an event without a stream and an epoch out of range', () => {
    expect(() => appendToChain(startEpoch('x', 1), [{ ...serviceStarted(1), stream: '' }], key)).toThrow(
      'event 0 (ServiceStarted) has no stream',
    );
    expect(() => startEpoch('x', 0)).toThrow('epoch must be an integer from 1');
    expect(() => startEpoch('', 1)).toThrow('producerId must not be empty');
  });
});
