// The one place the ledger's errors become gRPC statuses. Unknown errors are logged with their
// stack and answered INTERNAL without details.
import { status } from '@grpc/grpc-js';
import { RpcException } from '@nestjs/microservices';
import { InvalidArgumentError, NotFoundError, PreconditionError } from '@rebootless/ledger-store';

export interface ErrorLog {
  error(message: string, stack?: string): void;
}

const CODE_OF: readonly [new (...args: never[]) => Error, status][] = [
  [InvalidArgumentError, status.INVALID_ARGUMENT],
  [NotFoundError, status.NOT_FOUND],
  [PreconditionError, status.FAILED_PRECONDITION],
];

export function toRpcException(error: unknown, what: string, log: ErrorLog): RpcException {
  if (error instanceof RpcException) return error;
  const code = CODE_OF.find(([type]) => error instanceof type)?.[1];
  if (code === undefined) {
    log.error(
      `${what} failed: ${error instanceof Error ? error.message : String(error)}`,
      error instanceof Error ? error.stack : undefined,
    );
    return new RpcException({ code: status.INTERNAL, message: `${what} failed on the ledger (logged there)` });
  }
  return new RpcException({ code, message: (error as Error).message });
}
