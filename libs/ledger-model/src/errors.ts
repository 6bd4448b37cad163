/**
 * How a caller should read a refusal; the gRPC edge maps it one to one:
 * invalid-argument → INVALID_ARGUMENT, not-found → NOT_FOUND, failed-precondition → FAILED_PRECONDITION.
 */
export type LedgerErrorKind = 'invalid-argument' | 'not-found' | 'failed-precondition';

/** Every refusal of this library: a kind for the edge, a message for people. */
export class LedgerModelError extends Error {
  constructor(
    readonly kind: LedgerErrorKind,
    message: string,
    /** The request field or fact the refusal is about, when there is one ("kernel_release"). */
    readonly field?: string,
  ) {
    super(message);
    this.name = new.target.name;
  }
}

/** A kernel release that is not "<major>.<minor>[.<patch>][suffix]". */
export class KernelReleaseError extends LedgerModelError {
  constructor(
    readonly release: string,
    field = 'kernel_release',
  ) {
    super(
      'invalid-argument',
      `${field}: expected a kernel release "<major>.<minor>[.<patch>][-suffix]" such as "6.1.0-26-cloud-amd64", got ${JSON.stringify(release)}`,
      field,
    );
  }
}

/** The patch is not on the host's stack now (never applied, already reverted, rebooted away). */
export class PatchNotOnStackError extends LedgerModelError {
  constructor(
    readonly hostId: string,
    readonly patchId: string,
  ) {
    super('not-found', `patch ${patchId} is not on the patch stack of host ${hostId}`, 'patch_id');
  }
}

/** The patch is on the stack but the kernel cannot act on it now (e.g. its transition is still running). */
export class UndoNotPossibleError extends LedgerModelError {
  constructor(message: string) {
    super('failed-precondition', message, 'patch_id');
  }
}
