// The ledger's table for the shared error mapping (libs/service rpc-errors.ts): which of its
// errors becomes which gRPC status, and the reason a client branches on.
import { status } from '@grpc/grpc-js';
import { InvalidArgumentError, NotFoundError, PreconditionError } from '@rebootless/ledger-store';
import { RpcErrorMapping, rule } from '@rebootless/service';

export const LEDGER_ERRORS = new RpcErrorMapping('ledger', [
  rule({ type: InvalidArgumentError, code: status.INVALID_ARGUMENT, reason: 'INVALID_FIELD' }),
  rule({ type: NotFoundError, code: status.NOT_FOUND, reason: 'NOT_IN_LEDGER' }),
  // The ledger's only precondition: an undo its planner cannot carry out on that host.
  rule({ type: PreconditionError, code: status.FAILED_PRECONDITION, reason: 'UNDO_NOT_POSSIBLE' }),
]);
