/** gRPC-style status codes the builder maps 1:1 onto its own responses. */
export type ToolchainErrorCode =
  'FAILED_PRECONDITION' | 'INVALID_ARGUMENT' | 'NOT_FOUND' | 'DEADLINE_EXCEEDED' | 'CANCELLED' | 'INTERNAL';

/** Where in the pipeline it failed. */
export type ToolchainStage = 'fetch-headers' | 'compile' | 'diff-tool';

/**
 * Every failure of this library. `diagnostics` are short, human-readable lines meant to be shown to
 * the patch author as they are (compiler errors with file:line, the missing tool, the unknown
 * release); `log` keeps the full (path-relativised) output of the child process, when there was one.
 */
export class ToolchainError extends Error {
  override readonly name = 'ToolchainError';

  constructor(
    readonly code: ToolchainErrorCode,
    readonly stage: ToolchainStage,
    message: string,
    readonly diagnostics: string[] = [message],
    readonly log: string[] = [],
  ) {
    super(message);
  }
}

export function isToolchainError(value: unknown): value is ToolchainError {
  return value instanceof ToolchainError;
}
