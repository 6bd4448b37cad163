// The dispatcher's own errors, and its table for the shared error mapping (libs/service
// rpc-errors.ts): which error becomes which gRPC status, and the reason a client branches on.
import { status } from '@grpc/grpc-js';
import {
  RolloutForbiddenError,
  RolloutInputError,
  RolloutNotFoundError,
  RolloutPreconditionError,
} from '@rebootless/rollout';
import { ArtifactRetractedError, InvalidDigestError } from '@rebootless/artifacts';
import { PublishError } from '@rebootless/kafka';
import { RpcErrorMapping, rule } from '@rebootless/service';

export class InvalidRequestError extends Error {
  constructor(
    readonly field: string,
    reason: string,
  ) {
    super(`${field}: ${reason}`);
  }
}

/** A service the dispatcher needs (the ledger, the event log) cannot be reached. */
export class DependencyUnavailableError extends Error {}

export class PermissionError extends Error {}

// Host commands outside rollouts (ClearQuarantine, issue 21).
/** The host cannot take the command now (its agent is not connected, or refused it as it stands). */
export class HostPreconditionError extends Error {}

/** The agent was sent the command and did not answer in time. */
export class AgentNoAnswerError extends Error {}

/** FetchArtifact on a dispatcher that has no builder to fetch from (DISPATCHER_BUILDER_ADDRESS unset). */
export class ArtifactsNotServedError extends Error {}

/** No key of the host (or of the epoch asked for) is bound: nothing to revoke. */
export class AgentKeyNotFoundError extends Error {}

/** Another live dispatcher instance holds the rollout's lease: it alone writes the rollout's events (ADR 0025). */
export class RolloutDrivenElsewhereError extends Error {
  constructor(
    readonly rolloutId: string,
    readonly holder: string | undefined,
  ) {
    super(
      `rollout ${rolloutId} is driven by ${holder ? `dispatcher instance "${holder}"` : 'another dispatcher instance'}: ` +
        'call that instance, or this one again once it has stopped',
    );
  }
}

export const DISPATCHER_ERRORS = new RpcErrorMapping('dispatcher', [
  rule({ type: RolloutInputError, code: status.INVALID_ARGUMENT, reason: 'INVALID_ROLLOUT' }),
  rule({ type: InvalidRequestError, code: status.INVALID_ARGUMENT, reason: 'INVALID_FIELD' }),
  rule({ type: RolloutPreconditionError, code: status.FAILED_PRECONDITION, reason: 'ROLLOUT_PRECONDITION' }),
  rule({
    type: RolloutNotFoundError,
    code: status.NOT_FOUND,
    reason: 'ROLLOUT_NOT_FOUND',
    metadata: (e) => ({ rolloutId: e.rolloutId }),
  }),
  rule({ type: AgentKeyNotFoundError, code: status.NOT_FOUND, reason: 'AGENT_KEY_NOT_FOUND' }),
  rule({ type: DependencyUnavailableError, code: status.UNAVAILABLE, reason: 'DEPENDENCY_UNAVAILABLE' }),
  // Kafka did not take the events within the publisher's settling time: its message says
  // whether they were withdrawn (nothing written) or their fate is unknown.
  rule({ type: PublishError, code: status.UNAVAILABLE, reason: 'EVENT_LOG_UNAVAILABLE', logged: true }),
  rule({ type: PermissionError, code: status.PERMISSION_DENIED, reason: 'RELAY_REFUSED' }),
  rule({ type: RolloutForbiddenError, code: status.PERMISSION_DENIED, reason: 'ROLLOUT_FORBIDDEN' }),
  rule({ type: HostPreconditionError, code: status.FAILED_PRECONDITION, reason: 'HOST_PRECONDITION' }),
  rule({
    type: RolloutDrivenElsewhereError,
    code: status.FAILED_PRECONDITION,
    reason: 'ROLLOUT_DRIVEN_ELSEWHERE',
    metadata: (e) => ({ rolloutId: e.rolloutId, instance: e.holder ?? '' }),
  }),
  rule({ type: AgentNoAnswerError, code: status.UNAVAILABLE, reason: 'AGENT_NO_ANSWER' }),
  // The site artifact cache (ADR 0026). "retracted" in the message is what an agent recognises.
  rule({
    type: InvalidDigestError,
    code: status.INVALID_ARGUMENT,
    reason: 'INVALID_FIELD',
    fields: (e) => [{ field: 'artifact_digest', description: e.message }],
  }),
  rule({
    type: ArtifactRetractedError,
    code: status.FAILED_PRECONDITION,
    reason: 'PATCH_RETRACTED',
    subject: (e) => `patch/${e.patchId}`,
  }),
  rule({ type: ArtifactsNotServedError, code: status.FAILED_PRECONDITION, reason: 'ARTIFACTS_NOT_SERVED' }),
]);
