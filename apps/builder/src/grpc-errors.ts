// The builder's table for the shared error mapping (libs/service rpc-errors.ts): which of its
// errors becomes which gRPC status, and the reason a client branches on.
import { status } from '@grpc/grpc-js';
import {
  ArtifactNotFoundError,
  InvalidDigestError,
  RetractedArtifactError,
  TamperedArtifactError,
} from '@rebootless/artifacts';
import { RpcErrorMapping, rule } from '@rebootless/service';
import {
  BuildAlreadyFinishedError,
  BuildNotFoundError,
  BuilderPreconditionError,
  EventLogUnavailableError,
  PatchNotFoundError,
  PatchVersionRetractedError,
} from './build-errors';
import { InvalidPageTokenError } from './build-listing';
import { QueueFullError } from './build-queue';
import { InvalidSubmissionError } from './submission';

export const BUILDER_ERRORS = new RpcErrorMapping('builder', [
  rule({ type: InvalidSubmissionError, code: status.INVALID_ARGUMENT, reason: 'INVALID_SUBMISSION' }),
  rule({
    type: InvalidPageTokenError,
    code: status.INVALID_ARGUMENT,
    reason: 'INVALID_PAGE_TOKEN',
    fields: (e) => [{ field: 'page_token', description: e.message.replace(/^page_token: /, '') }],
  }),
  rule({
    type: InvalidDigestError,
    code: status.INVALID_ARGUMENT,
    reason: 'INVALID_ARTIFACT_DIGEST',
    fields: (e) => [{ field: 'artifact_digest', description: e.message }],
  }),
  rule({ type: QueueFullError, code: status.RESOURCE_EXHAUSTED, reason: 'BUILD_QUEUE_FULL' }),
  rule({
    type: BuildNotFoundError,
    code: status.NOT_FOUND,
    reason: 'BUILD_NOT_FOUND',
    metadata: (e) => ({ buildId: e.buildId }),
  }),
  rule({ type: PatchNotFoundError, code: status.NOT_FOUND, reason: 'PATCH_NOT_BUILT' }),
  rule({
    type: ArtifactNotFoundError,
    code: status.NOT_FOUND,
    reason: 'ARTIFACT_NOT_FOUND',
    metadata: (e) => ({ artifactDigest: e.digest }),
  }),
  rule({ type: BuildAlreadyFinishedError, code: status.FAILED_PRECONDITION, reason: 'BUILD_ALREADY_FINISHED' }),
  rule({ type: BuilderPreconditionError, code: status.FAILED_PRECONDITION, reason: 'BUILDER_LACKS_PREREQUISITE' }),
  rule({ type: PatchVersionRetractedError, code: status.FAILED_PRECONDITION, reason: 'PATCH_RETRACTED' }),
  rule({
    type: RetractedArtifactError,
    code: status.FAILED_PRECONDITION,
    reason: 'PATCH_RETRACTED',
    subject: (e) => `patch/${e.retraction.patchId}`,
    metadata: (e) => ({ artifactDigest: e.digest, patchId: e.retraction.patchId, version: e.retraction.version }),
  }),
  // Corruption of stored data: never served, and an operator must look at the store.
  rule({ type: TamperedArtifactError, code: status.DATA_LOSS, reason: 'ARTIFACT_TAMPERED', logged: true }),
  rule({ type: EventLogUnavailableError, code: status.UNAVAILABLE, reason: 'EVENT_LOG_UNAVAILABLE' }),
]);
