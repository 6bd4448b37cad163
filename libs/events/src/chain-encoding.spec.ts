import * as path from 'node:path';
import * as protobuf from 'protobufjs';
import { events } from '@rebootless/contracts';
import { toTimestamp } from '@rebootless/contracts';
import { EventDraft, appendToChain, decodeEvent, startEpoch } from './chain';
import { EVENT_TYPES, EventPayload, EventType, payloadFields } from './event-types';
import { generateSigningKey } from './signing';
import { readEnvelope } from './wire';

const PROTO_ROOT = path.join(__dirname, '../../../proto');
const root = new protobuf.Root();
root.resolvePath = (_origin, target) => path.join(PROTO_ROOT, target);
root.loadSync('rebootless/events/v1/envelope.proto', { keepCase: false });

/** A value in every field (nested messages, repeated fields, enums, non-ASCII and long text included). */
function filled(type: protobuf.Type, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const f of type.fieldsArray) {
    f.resolve();
    const one = (): unknown => {
      if (f.resolvedType instanceof protobuf.Type) return depth < 3 ? filled(f.resolvedType, depth + 1) : {};
      if (f.resolvedType instanceof protobuf.Enum) return Math.max(...Object.values(f.resolvedType.values));
      switch (f.type) {
        case 'string':
          return `${f.name}-ü-✓-${'x'.repeat(140)}`;
        case 'bytes':
          return Buffer.from([1, 2, 3, f.id]);
        case 'bool':
          return true;
        case 'double':
        case 'float':
          return 0.5;
        case 'int64':
        case 'sint64':
        case 'sfixed64':
          return -1_700_000_000_123;
        case 'uint64':
        case 'fixed64':
          return 1_700_000_000_123;
        case 'int32':
        case 'sint32':
        case 'sfixed32':
          return -7;
        default:
          return 7;
      }
    };
    if (f instanceof protobuf.MapField) {
      out[f.name] = { a: one(), 'b-ü': one() };
    } else out[f.name] = f.repeated ? [one(), one()] : one();
  }
  return out;
}

/** A payload of `type` with every field set, as the generated code decodes it. */
function fullPayload(type: EventType): EventPayload {
  const t = root.lookupType(`rebootless.events.v1.${type}`);
  const bytes = t.encode(t.fromObject(filled(t))).finish();
  const data = (events as unknown as Record<string, { decode(b: Uint8Array): unknown }>)[type]!.decode(bytes);
  return { type, data } as EventPayload;
}

describe('encoding events for the chain', () => {
  const key = generateSigningKey();

  it.each(Object.keys(EVENT_TYPES) as EventType[])(
    'writes a %s body that decodes, and encodes, exactly as the generated code',
    (type) => {
      // Given drafts of this type: every field set, then the fewest fields
      const payload = fullPayload(type);
      const drafts: EventDraft[] = [
        {
          stream: `host/h-ü-${'s'.repeat(200)}`,
          payload,
          actor: { kind: events.ActorKind.ACTOR_KIND_HOST, id: 'h1 ✓', origin: '10.0.0.1' },
          correlationId: 'rollout-1',
          causationId: 'cmd-9',
          occurredAt: new Date('1969-07-20T20:17:40.123Z'),
          eventId: 'e-1',
        },
        { stream: 's', payload },
        { stream: 's', payload, actor: { kind: events.ActorKind.ACTOR_KIND_UNSPECIFIED, id: '', origin: '' } },
      ];
      const head = startEpoch(`agent/${'p'.repeat(130)}`, 0xffffffff);
      const { events: written } = appendToChain({ ...head, seq: 2 ** 40 }, drafts, key, () => 1_700_000_000_456);

      let prevHash: Uint8Array = head.hash;
      written.forEach((e, i) => {
        const draft = drafts[i]!;
        // When the generated code encodes the same event
        const expected = events.EventBody.encode({
          eventId: draft.eventId ?? e.eventId,
          type,
          stream: draft.stream,
          occurredAt: toTimestamp(draft.occurredAt ?? new Date(1_700_000_000_456)),
          actor: draft.actor,
          correlationId: draft.correlationId ?? '',
          causationId: draft.causationId ?? '',
          producer: { producerId: head.producerId, epoch: head.epoch, seq: String(2 ** 40 + i + 1), prevHash },
          ...payloadFields(payload),
        }).finish();
        // Then both decode to the same event, and the bytes are the same too
        const { body } = decodeEvent(e.envelope);
        expect(body).toEqual(events.EventBody.decode(Buffer.from(expected)));
        expect(Buffer.from(readEnvelope(e.envelope).body)).toEqual(Buffer.from(expected));
        prevHash = e.hash;
      });
    },
  );

  it('hands out envelopes and hashes that stay put when the next batch is written', () => {
    const first = appendToChain(
      startEpoch('x', 1),
      [fullPayload('ServiceStarted')].map((payload) => ({ stream: 's', payload })),
      key,
    );
    const copy = Buffer.from(first.events[0]!.envelope);
    appendToChain(first.head, [{ stream: 's', payload: fullPayload('PatchApplied') }], key);
    expect(first.events[0]!.envelope).toEqual(copy);
    expect(first.head.hash).toEqual(first.events[0]!.hash);
  });
});
