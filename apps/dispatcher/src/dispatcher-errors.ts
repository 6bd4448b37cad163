// The one place the dispatcher's errors become gRPC statuses (STYLE.md: one error mapping at
// each edge). Unknown errors are logged with their stack and answered INTERNAL without details.
import { status } from '@grpc/grpc-js';
import { RpcException } from '@nestjs/microservices';
import {
  RolloutForbiddenError,
  RolloutInputError,
  RolloutNotFoundError,
  RolloutPreconditionError,
} from '@rebootless/rollout';

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

const CODE_OF: readonly [new (...args: never[]) => Error, status][] = [
  [RolloutInputError, status.INVALID_ARGUMENT],
  [InvalidRequestError, status.INVALID_ARGUMENT],
  [RolloutPreconditionError, status.FAILED_PRECONDITION],
  [RolloutNotFoundError, status.NOT_FOUND],
  [DependencyUnavailableError, status.UNAVAILABLE],
  [PermissionError, status.PERMISSION_DENIED],
  [RolloutForbiddenError, status.PERMISSION_DENIED],
];

export interface ErrorLog {
  error(message: string, stack?: string): void;
}

export function toRpcException(error: unknown, what: string, log: ErrorLog): RpcException {
  if (error instanceof RpcException) return error;
  const code = CODE_OF.find(([type]) => error instanceof type)?.[1];
  if (code === undefined) {
    log.error(
      `${what} failed: ${error instanceof Error ? error.message : String(error)}`,
      error instanceof Error ? error.stack : undefined,
    );
    return new RpcException({ code: status.INTERNAL, message: `${what} failed on the dispatcher (logged there)` });
  }
  return new RpcException({ code, message: (error as Error).message });
}
