// google.rpc status details, the way every rebootless service sends them and any client reads
// them: a google.rpc.Status in the grpc-status-details-bin trailer, its details packed as Any.
import { Any } from './gen/google/protobuf/any';
import { BadRequest, ErrorInfo, PreconditionFailure } from './gen/google/rpc/error_details';
import { Status } from './gen/google/rpc/status';

export const STATUS_DETAILS_TRAILER = 'grpc-status-details-bin';

/** The details a client can branch on, beyond the status code. */
export interface StatusDetails {
  readonly errorInfo?: ErrorInfo;
  readonly badRequest?: BadRequest;
  readonly preconditionFailure?: PreconditionFailure;
}

export interface DecodedStatus extends StatusDetails {
  readonly code: number;
  readonly message: string;
}

const TYPE_URL = {
  errorInfo: 'type.googleapis.com/google.rpc.ErrorInfo',
  badRequest: 'type.googleapis.com/google.rpc.BadRequest',
  preconditionFailure: 'type.googleapis.com/google.rpc.PreconditionFailure',
} as const;

export function encodeStatusDetails(code: number, message: string, details: StatusDetails): Uint8Array {
  const packed: Any[] = [];
  if (details.errorInfo)
    packed.push({ typeUrl: TYPE_URL.errorInfo, value: ErrorInfo.encode(details.errorInfo).finish() });
  if (details.badRequest) {
    packed.push({ typeUrl: TYPE_URL.badRequest, value: BadRequest.encode(details.badRequest).finish() });
  }
  if (details.preconditionFailure) {
    packed.push({
      typeUrl: TYPE_URL.preconditionFailure,
      value: PreconditionFailure.encode(details.preconditionFailure).finish(),
    });
  }
  return Status.encode({ code, message, details: packed }).finish();
}

/** Reads a grpc-status-details-bin value; detail types it does not know are skipped, as gRPC's own clients do. */
export function decodeStatusDetails(bytes: Uint8Array): DecodedStatus {
  const status = Status.decode(bytes);
  let errorInfo: ErrorInfo | undefined;
  let badRequest: BadRequest | undefined;
  let preconditionFailure: PreconditionFailure | undefined;
  for (const detail of status.details) {
    if (detail.typeUrl === TYPE_URL.errorInfo) errorInfo = ErrorInfo.decode(detail.value);
    else if (detail.typeUrl === TYPE_URL.badRequest) badRequest = BadRequest.decode(detail.value);
    else if (detail.typeUrl === TYPE_URL.preconditionFailure)
      preconditionFailure = PreconditionFailure.decode(detail.value);
  }
  return {
    code: status.code,
    message: status.message,
    ...(errorInfo ? { errorInfo } : {}),
    ...(badRequest ? { badRequest } : {}),
    ...(preconditionFailure ? { preconditionFailure } : {}),
  };
}
