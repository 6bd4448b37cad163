// What went wrong, as the status a caller or a BuildFailed event states. One place decides it, so
// a toolchain error, a cancel and a bug are told apart the same way everywhere.
import { ArtifactRejectedError, ManifestError } from '@rebootless/artifacts';
import { SmokeTestFailed } from '@rebootless/kernel-lab';
import { isToolchainError } from '@rebootless/kernel-toolchain';
import type { Stage } from './build-record';
import { VermagicMismatchError, type StageFailure } from './kernel-build';

export class BuildCancelledError extends Error {
  constructor(readonly reason: string) {
    super(reason ? `cancelled: ${reason}` : 'cancelled');
    this.name = 'BuildCancelledError';
  }
}

export function stageFailureOf(error: unknown, stage: Stage, signal: AbortSignal): StageFailure {
  if (signal.aborted) {
    const reason = signal.reason instanceof BuildCancelledError ? signal.reason : new BuildCancelledError('');
    return { code: 'CANCELLED', stage, diagnostics: [`${reason.message} (during ${stage})`], message: reason.message };
  }
  if (isToolchainError(error)) {
    const diagnostics = error.diagnostics.length > 0 ? error.diagnostics : [error.message];
    return { code: error.code, stage: error.stage, diagnostics, message: error.message };
  }
  if (error instanceof SmokeTestFailed) {
    // The module's fault, not the builder's: the author reads the kernel's own lines.
    const first = `smoke test (${error.step}) in a guest of the target kernel: ${error.message}`;
    return { code: 'FAILED_PRECONDITION', stage: 'smoke', diagnostics: [first, ...error.evidence], message: first };
  }
  if (
    error instanceof VermagicMismatchError ||
    error instanceof ManifestError ||
    error instanceof ArtifactRejectedError
  ) {
    return { code: 'INTERNAL', stage, diagnostics: [error.message], message: error.message };
  }
  const message = error instanceof Error ? error.message : String(error);
  return { code: 'INTERNAL', stage, diagnostics: [`internal error in ${stage}: ${message}`], message };
}
