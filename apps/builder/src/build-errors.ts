// The builder's refusals, each named for what it means; the controller maps them to gRPC codes.

export class BuildNotFoundError extends Error {
  constructor(readonly buildId: string) {
    super(`no build ${JSON.stringify(buildId.slice(0, 80))} on this builder`);
    this.name = 'BuildNotFoundError';
  }
}

export class BuildAlreadyFinishedError extends Error {
  constructor(buildId: string, state: string) {
    super(`build ${buildId} has already ended (${state}); there is nothing to cancel`);
    this.name = 'BuildAlreadyFinishedError';
  }
}

/** A retracted patch version is never built or served again. */
export class PatchVersionRetractedError extends Error {
  constructor(patchId: string, version: string, retractedAt: string, reason: string) {
    super(`patch ${patchId} version ${version} was retracted at ${retractedAt} (${reason}); submit a new version`);
    this.name = 'PatchVersionRetractedError';
  }
}

/** The builder lacks something the request needs (a diff tool); retrying elsewhere may work. */
export class BuilderPreconditionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'BuilderPreconditionError';
  }
}

export class PatchNotFoundError extends Error {
  constructor(patchId: string, version: string) {
    super(`no artifact of patch ${patchId} version ${version} was built here`);
    this.name = 'PatchNotFoundError';
  }
}

/** An event the caller's answer depends on could not be written; nothing was done. */
export class EventLogUnavailableError extends Error {
  constructor(what: string, cause: unknown) {
    super(
      `${what}: the event log did not take it (${cause instanceof Error ? cause.message : String(cause)}); nothing was done, try again`,
    );
    this.name = 'EventLogUnavailableError';
  }
}
