// Domain errors of rollouts. The dispatcher maps each to one gRPC status at its edge.

/** The request itself is wrong, whatever the fleet looks like (INVALID_ARGUMENT); names the field. */
export class RolloutInputError extends Error {
  constructor(
    readonly field: string,
    reason: string,
  ) {
    super(`${field}: ${reason}`);
    this.name = 'RolloutInputError';
  }
}

/** The request is well formed but the fleet, the patch or the rollout is not in a state for it (FAILED_PRECONDITION). */
export class RolloutPreconditionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RolloutPreconditionError';
  }
}

export class RolloutNotFoundError extends Error {
  constructor(readonly rolloutId: string) {
    super(`no rollout ${rolloutId}`);
    this.name = 'RolloutNotFoundError';
  }
}

/** The caller may not do this to this rollout (PERMISSION_DENIED), e.g. approve their own rollout. */
export class RolloutForbiddenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'RolloutForbiddenError';
  }
}
