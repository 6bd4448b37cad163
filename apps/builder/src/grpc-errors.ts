// The one place the builder's errors become gRPC statuses (STYLE.md: one error mapping at each
// edge). Unknown errors are logged with their stack and answered INTERNAL without details.
import { status } from '@grpc/grpc-js';
import { RpcException } from '@nestjs/microservices';
import {
  ArtifactNotFoundError,
  InvalidDigestError,
  RetractedArtifactError,
  TamperedArtifactError,
} from '@rebootless/artifacts';
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

export interface ErrorLog {
  error(message: string, stack?: string): void;
}

const CODE_OF: readonly [new (...args: never[]) => Error, status][] = [
  [InvalidSubmissionError, status.INVALID_ARGUMENT],
  [InvalidPageTokenError, status.INVALID_ARGUMENT],
  [InvalidDigestError, status.INVALID_ARGUMENT],
  [QueueFullError, status.RESOURCE_EXHAUSTED],
  [BuildNotFoundError, status.NOT_FOUND],
  [PatchNotFoundError, status.NOT_FOUND],
  [ArtifactNotFoundError, status.NOT_FOUND],
  [BuildAlreadyFinishedError, status.FAILED_PRECONDITION],
  [BuilderPreconditionError, status.FAILED_PRECONDITION],
  [PatchVersionRetractedError, status.FAILED_PRECONDITION],
  [RetractedArtifactError, status.FAILED_PRECONDITION],
  // Corruption of stored data: never served, and an operator must look at the store.
  [TamperedArtifactError, status.DATA_LOSS],
  [EventLogUnavailableError, status.UNAVAILABLE],
];

export function statusOf(error: unknown): status | undefined {
  return CODE_OF.find(([type]) => error instanceof type)?.[1];
}

export function toRpcException(error: unknown, what: string, log: ErrorLog): RpcException {
  if (error instanceof RpcException) return error;
  const code = statusOf(error);
  if (code === undefined) {
    log.error(
      `${what} failed: ${error instanceof Error ? error.message : String(error)}`,
      error instanceof Error ? error.stack : undefined,
    );
    return new RpcException({ code: status.INTERNAL, message: `${what} failed on the builder (logged there)` });
  }
  if (error instanceof TamperedArtifactError) log.error(`${what} refused: ${error.message}`);
  return new RpcException({ code, message: (error as Error).message });
}
