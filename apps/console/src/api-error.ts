// The one error shape of the console's API (documented in the OpenAPI document as "Error"):
//   { "error": { "status": 404, "code": "NOT_FOUND", "message": "no host web-99" } }
// Every failure becomes one of these; nothing else (no stack trace) ever reaches a client.
import { status as GrpcStatus } from '@grpc/grpc-js';

export type ErrorCode =
  'BAD_REQUEST' | 'UNAUTHENTICATED' | 'FORBIDDEN' | 'NOT_FOUND' | 'CONFLICT' | 'UNAVAILABLE' | 'INTERNAL';

const STATUS_OF: Readonly<Record<ErrorCode, number>> = {
  BAD_REQUEST: 400,
  UNAUTHENTICATED: 401,
  FORBIDDEN: 403,
  NOT_FOUND: 404,
  CONFLICT: 409,
  UNAVAILABLE: 503,
  INTERNAL: 500,
};

export class ApiError extends Error {
  readonly status: number;
  constructor(
    readonly code: ErrorCode,
    message: string,
  ) {
    super(message);
    this.name = 'ApiError';
    this.status = STATUS_OF[code];
  }

  get body(): { error: { status: number; code: ErrorCode; message: string } } {
    return { error: { status: this.status, code: this.code, message: this.message } };
  }
}

export const badRequest = (message: string) => new ApiError('BAD_REQUEST', message);
export const notFound = (message: string) => new ApiError('NOT_FOUND', message);

/** A service's answer, as the console's caller should see it: its gRPC code honestly translated. */
export function fromGrpc(service: string, code: number, details: string): ApiError {
  switch (code) {
    case GrpcStatus.INVALID_ARGUMENT:
      return new ApiError('BAD_REQUEST', details);
    case GrpcStatus.NOT_FOUND:
      return new ApiError('NOT_FOUND', details);
    case GrpcStatus.PERMISSION_DENIED:
      return new ApiError('FORBIDDEN', details);
    case GrpcStatus.UNAUTHENTICATED:
      return new ApiError('UNAUTHENTICATED', details);
    case GrpcStatus.FAILED_PRECONDITION:
    case GrpcStatus.ALREADY_EXISTS:
    case GrpcStatus.ABORTED:
      return new ApiError('CONFLICT', details);
    case GrpcStatus.UNAVAILABLE:
    case GrpcStatus.DEADLINE_EXCEEDED:
      return new ApiError('UNAVAILABLE', `the ${service} did not answer: ${details}`);
    default:
      return new ApiError('INTERNAL', `the ${service} failed (see the console's log)`);
  }
}
