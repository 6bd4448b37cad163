import { events } from '@rebootless/contracts';
import { EventType, isEventType } from './event-types';

/**
 * Who may say what (docs/adr/0012-verified-before-applied.md). A valid seal proves who wrote an
 * event, not that they may say it: this one table says which kind of producer may emit which
 * event type, about which stream and which host. Every reader checks it (ProjectionGate) and so
 * does the dispatcher's gateway before it relays an agent's events. Pure: no I/O.
 */

/** The kinds of producer, from the producer id: `agent/<host>`, or a service's name. */
export type ProducerKind = 'agent' | 'builder' | 'dispatcher' | 'service';

export interface Producer {
  kind: ProducerKind;
  id: string;
  /** The host an agent speaks for. */
  hostId?: string;
}

export function producerOf(producerId: string): Producer {
  if (producerId.startsWith('agent/')) return { kind: 'agent', id: producerId, hostId: producerId.slice(6) };
  const service = producerId.split('/')[0];
  if (service === 'builder' || service === 'dispatcher') return { kind: service, id: producerId };
  return { kind: 'service', id: producerId };
}

/** Where an event may be written and about whom. */
interface Rule {
  /** Kinds of producer that may emit the type. */
  by: readonly ProducerKind[];
  /**
   * The streams allowed: `self` the producer's own `producer/<id>`, `host` an agent's own host
   * (or its producer stream), `command-host` the host the payload names, or a prefix.
   */
  streams: readonly ('self' | 'host' | 'build/' | 'patch/' | 'rollout/' | 'command-host')[];
  /** The host the payload names, when it names one. */
  hostOf?: (body: events.EventBody) => string | undefined;
}

const SERVICES: readonly ProducerKind[] = ['agent', 'builder', 'dispatcher', 'service'];
const hostOfFacts = (f: events.HostFacts | undefined) => f?.hostId;

/** Every event type has its row; the compiler checks none is missing. */
export const PRODUCER_AUTHORITY: { readonly [T in EventType]: Rule } = {
  // Every producer: its own lifecycle, its own chain, the calls it refused.
  ChainEpochStarted: { by: SERVICES, streams: ['self', 'host'] },
  ServiceStarted: { by: SERVICES, streams: ['self', 'host'] },
  ServiceStopped: { by: SERVICES, streams: ['self', 'host'] },
  CallDenied: { by: SERVICES, streams: ['self', 'host'] },
  // The builder: builds and patches. Retraction is an operator's action through the builder.
  BuildRequested: { by: ['builder'], streams: ['build/'] },
  BuildSucceeded: { by: ['builder'], streams: ['build/'] },
  BuildFailed: { by: ['builder'], streams: ['build/'] },
  PatchPublished: { by: ['builder'], streams: ['patch/'] },
  PatchRetracted: { by: ['builder'], streams: ['patch/'] },
  // The dispatcher: rollouts, and commands on the stream of the host they address.
  RolloutCreated: { by: ['dispatcher'], streams: ['rollout/'] },
  RolloutApproved: { by: ['dispatcher'], streams: ['rollout/'] },
  WaveStarted: { by: ['dispatcher'], streams: ['rollout/'] },
  HostApplyRequested: { by: ['dispatcher'], streams: ['command-host'], hostOf: (b) => b.hostApplyRequested?.hostId },
  HostRevertRequested: { by: ['dispatcher'], streams: ['command-host'], hostOf: (b) => b.hostRevertRequested?.hostId },
  WaveCompleted: { by: ['dispatcher'], streams: ['rollout/'] },
  RolloutPaused: { by: ['dispatcher'], streams: ['rollout/'] },
  RolloutResumed: { by: ['dispatcher'], streams: ['rollout/'] },
  RolloutAborted: { by: ['dispatcher'], streams: ['rollout/'] },
  RolloutCompleted: { by: ['dispatcher'], streams: ['rollout/'] },
  // The dispatcher's gateway verified the host's certificate: it alone binds and revokes agent keys.
  AgentKeyBound: { by: ['dispatcher'], streams: ['command-host'], hostOf: (b) => b.agentKeyBound?.hostId },
  AgentKeyRevoked: { by: ['dispatcher'], streams: ['command-host'], hostOf: (b) => b.agentKeyRevoked?.hostId },
  // An agent: facts about its own host only.
  HostEnrolled: { by: ['agent'], streams: ['host'], hostOf: (b) => hostOfFacts(b.hostEnrolled?.facts) },
  HostBooted: { by: ['agent'], streams: ['host'], hostOf: (b) => b.hostBooted?.hostId },
  HostInventoryReported: {
    by: ['agent'],
    streams: ['host'],
    hostOf: (b) => hostOfFacts(b.hostInventoryReported?.facts),
  },
  PatchApplyStarted: { by: ['agent'], streams: ['host'], hostOf: (b) => b.patchApplyStarted?.hostId },
  PatchApplied: { by: ['agent'], streams: ['host'], hostOf: (b) => b.patchApplied?.hostId },
  PatchApplyFailed: { by: ['agent'], streams: ['host'], hostOf: (b) => b.patchApplyFailed?.hostId },
  PatchReverted: { by: ['agent'], streams: ['host'], hostOf: (b) => b.patchReverted?.hostId },
  PatchRevertFailed: { by: ['agent'], streams: ['host'], hostOf: (b) => b.patchRevertFailed?.hostId },
  DriftDetected: { by: ['agent'], streams: ['host'], hostOf: (b) => b.driftDetected?.hostId },
  // Clearing a quarantine (issue 21): the operator's request through the dispatcher, on the
  // host's stream; the agent's answer about its own host.
  QuarantineClearRequested: {
    by: ['dispatcher'],
    streams: ['command-host'],
    hostOf: (b) => b.quarantineClearRequested?.hostId,
  },
  PatchQuarantineCleared: { by: ['agent'], streams: ['host'], hostOf: (b) => b.patchQuarantineCleared?.hostId },
};

/** The command an agent's event answers, when it answers one. */
export function commandAnswered(body: events.EventBody): string | undefined {
  const id =
    body.patchApplyStarted?.commandId ??
    body.patchApplied?.commandId ??
    body.patchApplyFailed?.commandId ??
    body.patchReverted?.commandId ??
    body.patchRevertFailed?.commandId ??
    body.patchQuarantineCleared?.commandId;
  return id || undefined;
}

/**
 * Why `body` is not the producer's to say, in a sentence, or undefined when it may say it.
 * `commandHost`: the host a command was sent to, when the reader knows the command.
 */
export function authorityViolation(
  body: events.EventBody,
  commandHost?: (commandId: string) => string | undefined,
): string | undefined {
  const producerId = body.producer?.producerId ?? '';
  const p = producerOf(producerId);
  const what = `${producerId} seq ${body.producer?.seq ?? '?'} (${body.type})`;
  if (!isEventType(body.type)) return `${what}: ${body.type} is not an event type this build knows`;
  const rule = PRODUCER_AUTHORITY[body.type];
  if (!rule.by.includes(p.kind)) return `${what}: ${a(p.kind)} may not emit ${body.type}`;
  const named = rule.hostOf?.(body);
  const stream = body.stream;
  const streamOk = rule.streams.some((s) => {
    if (s === 'self') return stream === `producer/${producerId}`;
    if (s === 'host')
      return p.kind === 'agent' && (stream === `host/${p.hostId}` || stream === `producer/${producerId}`);
    if (s === 'command-host') return named !== undefined && stream === `host/${named}`;
    return stream.startsWith(s) && stream.length > s.length;
  });
  if (!streamOk) return `${what}: ${a(p.kind)} may not write ${body.type} on stream "${stream}"`;
  if (p.kind === 'agent' && rule.hostOf && named !== p.hostId)
    return `${what}: the agent of ${p.hostId} may speak only about its own host, not "${named ?? ''}"`;
  if (p.kind === 'agent' && commandHost) {
    const command = commandAnswered(body);
    const to = command ? commandHost(command) : undefined;
    if (to !== undefined && to !== p.hostId)
      return `${what}: it answers command ${command}, which was sent to ${to}, not to ${p.hostId}`;
  }
  return undefined;
}

const a = (kind: ProducerKind) => (kind === 'agent' ? 'an agent' : `a ${kind}`);
