import { WireError, readEnvelope } from './wire';
import { generateSigningKey } from './signing';
import { writeChain } from './test-chain';

describe('reading an envelope off the wire', () => {
  const [event] = writeChain(generateSigningKey(), 'agent/h1', 1, 1);

  it('finds the chain position without decoding the payload', () => {
    const v = readEnvelope(event!.envelope);
    expect(v).toMatchObject({
      producerId: 'agent/h1',
      epoch: 1,
      seq: 1,
      type: 'ChainEpochStarted',
      payloadField: 100,
      stream: 'producer/test',
    });
    expect(v.hash).toHaveLength(32);
    expect(v.signature).toHaveLength(64);
  });

  it.each([
    ['an empty record', Buffer.alloc(0), 'envelope has no body'],
    ['a truncated record', Buffer.from(event!.envelope).subarray(0, 40), 'runs past the end'],
    ['an endless varint', Buffer.alloc(12, 0xff), 'varint'],
    ['an unsupported wire type', Buffer.from([0x0b]), 'unsupported wire type 3'],
  ])('refuses %s with a WireError that says why', (_name, bytes, message) => {
    expect(() => readEnvelope(bytes)).toThrow(WireError);
    expect(() => readEnvelope(bytes)).toThrow(message);
  });
});
