import * as path from 'node:path';
import * as protobuf from 'protobufjs';
import { events } from '@rebootless/contracts';
import { EVENT_TYPES, EventType, payloadFields, payloadOf } from './event-types';
import { readEnvelope } from './wire';

const PROTO_ROOT = path.join(__dirname, '../../../proto');

// The default message of a type: what decoding zero bytes gives.
const emptyPayload = (type: EventType): unknown =>
  (events as unknown as Record<string, { decode(b: Uint8Array): unknown }>)[type]!.decode(new Uint8Array(0));

describe('the event type registry', () => {
  it('names the field number each payload really has on the wire', () => {
    for (const type of Object.keys(EVENT_TYPES) as EventType[]) {
      // Given an envelope whose body carries an empty payload of this type
      const body = events.EventBody.encode({
        eventId: 'e',
        type,
        stream: 's',
        correlationId: '',
        causationId: '',
        ...payloadFields({ type, data: emptyPayload(type) } as never),
      }).finish();
      const env = events.Envelope.encode({ body, hash: new Uint8Array(), signature: new Uint8Array() }).finish();
      // When the wire reader looks at it, then it sees the registered field number
      expect({ type, field: readEnvelope(env).payloadField }).toEqual({ type, field: EVENT_TYPES[type].number });
      // And the full decode finds the same type again
      expect(payloadOf(events.EventBody.decode(body))?.type).toBe(type);
    }
  });

  it('covers every payload of the EventBody oneof in envelope.proto, by name and number', () => {
    // Given the oneof as the proto file declares it
    const root = new protobuf.Root();
    root.resolvePath = (_origin, target) => path.join(PROTO_ROOT, target);
    root.loadSync('rebootless/events/v1/envelope.proto', { keepCase: false });
    const body = root.lookupType('rebootless.events.v1.EventBody');
    const declared = body.oneofs['payload']!.fieldsArray.map((f) => ({ field: f.name, number: f.id }));
    // Then the registry lists exactly those, so no event type can go unverified
    expect(Object.values(EVENT_TYPES).sort((a, b) => a.number - b.number)).toEqual(
      declared.sort((a, b) => a.number - b.number),
    );
  });
});
