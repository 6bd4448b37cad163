/** The query named something the ledger has never seen. */
export class NotFoundError extends Error {}

/** A request field is malformed; `field` names it as the proto does. */
export class InvalidArgumentError extends Error {
  constructor(
    readonly field: string,
    why: string,
  ) {
    super(`${field}: ${why}`);
  }
}

/** The request is well formed but the ledger's state does not allow the answer. */
export class PreconditionError extends Error {}
