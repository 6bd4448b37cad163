// The exit codes scripts may rely on (documented in apps/cli/README.md). One table, so the
// README, the error mapping and the tests cannot drift apart.
import { status } from '@grpc/grpc-js';

export enum ExitCode {
  Ok = 0,
  /** The operation ran and failed: a build failed, a rollout was aborted, the ledger has findings. */
  OperationFailed = 1,
  /** The command line or the local setup is wrong: unknown command, missing flag, bad value, no pki. */
  Usage = 2,
  /** The service could not be reached (not running, wrong address, TLS mismatch) or did not answer in time. */
  Unreachable = 3,
  NotFound = 4,
  /** No token, a bad or expired token, or a token without the role the call needs. */
  Denied = 5,
  /** The service refused the request as given: invalid argument, failed precondition, already exists. */
  Rejected = 6,
  /** The service is busy (queue full) or the write raced another one: try again later. */
  Busy = 7,
  /** The service does not implement this call (an older or unfinished service). */
  Unimplemented = 8,
  /** An internal error in the service or the CLI; the message says what is known. */
  Internal = 10,
  /** Interrupted (Ctrl-C) while watching; the operation itself goes on in the service. */
  Interrupted = 130,
}

const BY_STATUS: Readonly<Record<number, ExitCode>> = {
  [status.OK]: ExitCode.Ok,
  [status.UNAVAILABLE]: ExitCode.Unreachable,
  [status.DEADLINE_EXCEEDED]: ExitCode.Unreachable,
  [status.NOT_FOUND]: ExitCode.NotFound,
  [status.UNAUTHENTICATED]: ExitCode.Denied,
  [status.PERMISSION_DENIED]: ExitCode.Denied,
  [status.INVALID_ARGUMENT]: ExitCode.Rejected,
  [status.FAILED_PRECONDITION]: ExitCode.Rejected,
  [status.ALREADY_EXISTS]: ExitCode.Rejected,
  [status.OUT_OF_RANGE]: ExitCode.Rejected,
  [status.RESOURCE_EXHAUSTED]: ExitCode.Busy,
  [status.ABORTED]: ExitCode.Busy,
  [status.UNIMPLEMENTED]: ExitCode.Unimplemented,
  [status.CANCELLED]: ExitCode.Interrupted,
};

/** The exit code for a gRPC status the service answered with. */
export function exitCodeForStatus(code: number): ExitCode {
  return BY_STATUS[code] ?? ExitCode.Internal;
}
