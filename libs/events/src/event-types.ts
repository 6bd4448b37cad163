import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { events } from '@rebootless/contracts';

type Body = events.EventBody;

/**
 * Every event type DESIGN.md section 4 names, with its payload field in EventBody and that
 * field's number in envelope.proto (the wire reader checks type and payload agree without a full decode).
 */
export const EVENT_TYPES = {
  ChainEpochStarted: { field: 'chainEpochStarted', number: 100 },
  ServiceStarted: { field: 'serviceStarted', number: 101 },
  ServiceStopped: { field: 'serviceStopped', number: 102 },
  CallDenied: { field: 'callDenied', number: 103 },
  BuildRequested: { field: 'buildRequested', number: 200 },
  BuildSucceeded: { field: 'buildSucceeded', number: 201 },
  BuildFailed: { field: 'buildFailed', number: 202 },
  PatchPublished: { field: 'patchPublished', number: 203 },
  PatchRetracted: { field: 'patchRetracted', number: 204 },
  RolloutCreated: { field: 'rolloutCreated', number: 300 },
  RolloutApproved: { field: 'rolloutApproved', number: 301 },
  WaveStarted: { field: 'waveStarted', number: 302 },
  HostApplyRequested: { field: 'hostApplyRequested', number: 303 },
  HostRevertRequested: { field: 'hostRevertRequested', number: 304 },
  WaveCompleted: { field: 'waveCompleted', number: 305 },
  RolloutPaused: { field: 'rolloutPaused', number: 306 },
  RolloutResumed: { field: 'rolloutResumed', number: 307 },
  RolloutAborted: { field: 'rolloutAborted', number: 308 },
  RolloutCompleted: { field: 'rolloutCompleted', number: 309 },
  AgentKeyBound: { field: 'agentKeyBound', number: 310 },
  AgentKeyRevoked: { field: 'agentKeyRevoked', number: 311 },
  QuarantineClearRequested: { field: 'quarantineClearRequested', number: 320 },
  HostEnrolled: { field: 'hostEnrolled', number: 400 },
  HostBooted: { field: 'hostBooted', number: 401 },
  HostInventoryReported: { field: 'hostInventoryReported', number: 402 },
  PatchApplyStarted: { field: 'patchApplyStarted', number: 403 },
  PatchApplied: { field: 'patchApplied', number: 404 },
  PatchApplyFailed: { field: 'patchApplyFailed', number: 405 },
  PatchReverted: { field: 'patchReverted', number: 406 },
  PatchRevertFailed: { field: 'patchRevertFailed', number: 407 },
  DriftDetected: { field: 'driftDetected', number: 408 },
  PatchQuarantineCleared: { field: 'patchQuarantineCleared', number: 409 },
} as const satisfies Record<string, { field: keyof Body; number: number }>;

export type EventType = keyof typeof EVENT_TYPES;
type FieldOf<T extends EventType> = (typeof EVENT_TYPES)[T]['field'];
export type PayloadOf<T extends EventType> = NonNullable<Body[FieldOf<T>]>;

/** A payload tagged with its type: what producers hand to the chain. */
export type EventPayload = { [T in EventType]: { type: T; data: PayloadOf<T> } }[EventType];

const TYPE_BY_FIELD = new Map<string, EventType>(
  Object.entries(EVENT_TYPES).map(([type, { field }]) => [field, type as EventType]),
);

/** The payload field number a type must use, or undefined for a type this build does not know. */
export function payloadFieldNumber(type: string): number | undefined {
  return isEventType(type) ? EVENT_TYPES[type].number : undefined;
}

export function isEventType(name: string): name is EventType {
  return Object.prototype.hasOwnProperty.call(EVENT_TYPES, name);
}

/** A payload message's generated encoder. */
interface PayloadCodec<T> {
  encode(message: T, writer?: BinaryWriter): BinaryWriter;
}

// Each payload message is named after its event type; the compiler checks every one is there.
const PAYLOAD_CODECS: { readonly [T in EventType]: PayloadCodec<PayloadOf<T>> } = events;

/** Appends the payload as its EventBody oneof field (tag, length, message) with the generated encoder. */
export function encodePayloadField<T extends EventType>(
  payload: { type: T; data: PayloadOf<T> },
  writer: BinaryWriter,
): void {
  const { number } = EVENT_TYPES[payload.type];
  PAYLOAD_CODECS[payload.type].encode(payload.data, writer.uint32(number * 8 + 2).fork()).join();
}

/** Puts a tagged payload into the oneof of an EventBody. */
export function payloadFields(payload: EventPayload): Partial<Body> {
  return { [EVENT_TYPES[payload.type].field]: payload.data } as Partial<Body>;
}

/** Reads the oneof back; undefined when no known payload is set (a newer schema, or garbage). */
export function payloadOf(body: Body): EventPayload | undefined {
  for (const [field, type] of TYPE_BY_FIELD) {
    const data = body[field as keyof Body];
    if (data !== undefined) return { type, data } as EventPayload;
  }
  return undefined;
}
