// A build as the builder keeps it: one record per build, one part per kernel release, and the
// rules by which it moves. Pure: `evolve(record, change)` returns the next record; time comes in
// with each change. The record is plain JSON, so it is also what the builder writes to disk.
import { builder, events, toTimestamp } from '@rebootless/contracts';

export type Stage = 'queued' | 'analyse' | 'fetch-headers' | 'compile' | 'smoke' | 'sign' | 'store';
export type KernelState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';
export type OverallState = 'queued' | 'running' | 'succeeded' | 'failed' | 'cancelled';

export interface KernelArtifact {
  readonly digest: string;
  readonly manifest: events.PatchManifest;
  /** The manifest bytes as signed and the signature, hex: what BuildSucceeded carries. */
  readonly manifestHex: string;
  readonly signatureHex: string;
}

export interface KernelPart {
  readonly release: string;
  readonly state: KernelState;
  readonly stage: Stage;
  readonly artifact?: KernelArtifact;
  readonly functions: events.PatchedFunction[];
  readonly diagnostics: string[];
  /** The module's smoke test in a guest of its kernel, when this release had one. */
  readonly smoke?: events.SmokeTest;
  /** The gRPC status name a failure maps to (BuildFailed.code). */
  readonly code?: string;
  readonly startedAt?: number;
  readonly finishedAt?: number;
}

export interface BuildRecord {
  readonly buildId: string;
  readonly patchId: string;
  readonly patchName: string;
  readonly version: string;
  readonly description: string;
  readonly cves: events.Cve[];
  readonly severity: events.Severity;
  readonly replace: boolean;
  readonly moduleName: string;
  readonly sourceKind: events.FixSourceKind;
  readonly sourceSha256: string;
  readonly submittedBy: events.Actor;
  readonly submittedAt: number;
  readonly kernels: KernelPart[];
  readonly cancelled?: { readonly reason: string; readonly at: number };
  /** Set once every kernel part is final and the build's events are written. */
  readonly finishedAt?: number;
}

export type BuildChange =
  | { readonly kind: 'stage-started'; readonly release: string; readonly stage: Stage; readonly at: number }
  | {
      readonly kind: 'kernel-succeeded';
      readonly release: string;
      readonly artifact: KernelArtifact;
      readonly functions: events.PatchedFunction[];
      readonly diagnostics: string[];
      readonly smoke?: events.SmokeTest;
      readonly at: number;
    }
  | {
      readonly kind: 'kernel-failed';
      readonly release: string;
      readonly code: string;
      readonly diagnostics: string[];
      readonly at: number;
    }
  | { readonly kind: 'kernel-noted'; readonly release: string; readonly diagnostics: string[] }
  | { readonly kind: 'cancel-requested'; readonly reason: string; readonly at: number }
  | { readonly kind: 'finished'; readonly at: number };

export class BuildTransitionError extends Error {}

export function isFinalKernel(state: KernelState): boolean {
  return state === 'succeeded' || state === 'failed' || state === 'cancelled';
}

/** Every kernel part has ended (the build's events may still be on their way). */
export function allKernelsFinal(record: BuildRecord): boolean {
  return record.kernels.every((k) => isFinalKernel(k.state));
}

export function overallState(record: BuildRecord): OverallState {
  if (!allKernelsFinal(record)) {
    return record.kernels.some((k) => k.state !== 'queued') ? 'running' : 'queued';
  }
  if (record.cancelled) return 'cancelled';
  return record.kernels.some((k) => k.state === 'failed') ? 'failed' : 'succeeded';
}

export function newBuildRecord(
  init: Omit<BuildRecord, 'kernels' | 'cancelled' | 'finishedAt'> & { releases: readonly string[] },
): BuildRecord {
  const { releases, ...rest } = init;
  return {
    ...rest,
    kernels: releases.map((release) => ({ release, state: 'queued', stage: 'queued', functions: [], diagnostics: [] })),
  };
}

function kernelOf(record: BuildRecord, release: string): KernelPart {
  const part = record.kernels.find((k) => k.release === release);
  if (!part) throw new BuildTransitionError(`build ${record.buildId} has no kernel release ${release}`);
  return part;
}

function withKernel(record: BuildRecord, release: string, update: (part: KernelPart) => KernelPart): BuildRecord {
  return { ...record, kernels: record.kernels.map((k) => (k.release === release ? update(k) : k)) };
}

export function evolve(record: BuildRecord, change: BuildChange): BuildRecord {
  if (record.finishedAt !== undefined) {
    throw new BuildTransitionError(`build ${record.buildId} has finished; it takes no ${change.kind}`);
  }
  switch (change.kind) {
    case 'stage-started': {
      const part = kernelOf(record, change.release);
      if (isFinalKernel(part.state)) {
        throw new BuildTransitionError(
          `${change.release} of build ${record.buildId} is ${part.state}; it cannot start ${change.stage}`,
        );
      }
      return withKernel(record, change.release, (k) => ({
        ...k,
        state: 'running',
        stage: change.stage,
        startedAt: k.startedAt ?? change.at,
      }));
    }
    case 'kernel-succeeded': {
      const part = kernelOf(record, change.release);
      if (part.state !== 'running') {
        throw new BuildTransitionError(
          `${change.release} of build ${record.buildId} is ${part.state}; only a running part succeeds`,
        );
      }
      return withKernel(record, change.release, (k) => ({
        ...k,
        state: 'succeeded',
        artifact: change.artifact,
        functions: change.functions,
        diagnostics: [...k.diagnostics, ...change.diagnostics],
        ...(change.smoke ? { smoke: change.smoke } : {}),
        finishedAt: change.at,
      }));
    }
    case 'kernel-failed': {
      const part = kernelOf(record, change.release);
      if (isFinalKernel(part.state)) return record; // a late report (e.g. the compiler after a cancel)
      const state: KernelState = change.code === 'CANCELLED' ? 'cancelled' : 'failed';
      return withKernel(record, change.release, (k) => ({
        ...k,
        state,
        code: change.code,
        diagnostics: [...k.diagnostics, ...change.diagnostics],
        finishedAt: change.at,
      }));
    }
    case 'kernel-noted':
      return withKernel(record, change.release, (k) => ({
        ...k,
        diagnostics: [...k.diagnostics, ...change.diagnostics],
      }));
    case 'cancel-requested': {
      if (record.cancelled || allKernelsFinal(record)) return record;
      // Parts not started yet end here; running ones end when their worker has stopped.
      return {
        ...record,
        cancelled: { reason: change.reason, at: change.at },
        kernels: record.kernels.map((k) =>
          k.state === 'queued'
            ? {
                ...k,
                state: 'cancelled',
                code: 'CANCELLED',
                diagnostics: [...k.diagnostics, cancelLine(change.reason)],
                finishedAt: change.at,
              }
            : k,
        ),
      };
    }
    case 'finished': {
      if (!allKernelsFinal(record)) {
        throw new BuildTransitionError(
          `build ${record.buildId} cannot finish while a kernel release is still building`,
        );
      }
      return { ...record, finishedAt: change.at };
    }
    default: {
      const unknown: never = change;
      throw new BuildTransitionError(`unknown change ${JSON.stringify(unknown)}`);
    }
  }
}

export function cancelLine(reason: string): string {
  return reason ? `cancelled: ${reason}` : 'cancelled';
}

/** Kernel parts that produced an artifact, for PatchPublished. */
export function publishedArtifacts(record: BuildRecord): events.PublishedArtifact[] {
  return record.kernels.flatMap((k) =>
    k.state === 'succeeded' && k.artifact
      ? [{ kernelRelease: k.release, artifactDigest: k.artifact.digest, vermagic: k.artifact.manifest.vermagic }]
      : [],
  );
}

const STATE_CODE: Record<OverallState | KernelState, builder.BuildState> = {
  queued: builder.BuildState.BUILD_STATE_QUEUED,
  running: builder.BuildState.BUILD_STATE_RUNNING,
  succeeded: builder.BuildState.BUILD_STATE_SUCCEEDED,
  failed: builder.BuildState.BUILD_STATE_FAILED,
  cancelled: builder.BuildState.BUILD_STATE_CANCELLED,
};

export function stateCode(state: OverallState | KernelState): builder.BuildState {
  return STATE_CODE[state];
}

/** The state callers see: a build is final only once its events are written. */
export function visibleState(record: BuildRecord): builder.BuildState {
  return record.finishedAt === undefined && allKernelsFinal(record)
    ? stateCode('running')
    : stateCode(overallState(record));
}

/** The record as BuildService answers it. */
export function toBuildMessage(record: BuildRecord): builder.Build {
  return {
    buildId: record.buildId,
    patchId: record.patchId,
    patchName: record.patchName,
    version: record.version,
    description: record.description,
    cves: record.cves,
    replace: record.replace,
    sourceKind: record.sourceKind,
    sourceSha256: record.sourceSha256,
    state: visibleState(record),
    kernels: record.kernels.map((k) => ({
      kernelRelease: k.release,
      state: stateCode(k.state),
      stage: k.stage,
      artifactDigest: k.artifact?.digest ?? '',
      ...(k.artifact ? { manifest: k.artifact.manifest } : {}),
      changedFunctions: k.functions,
      diagnostics: k.diagnostics,
      ...(k.smoke ? { smoke: k.smoke } : {}),
    })),
    submittedBy: record.submittedBy,
    submittedAt: toTimestamp(new Date(record.submittedAt)),
    ...(record.finishedAt !== undefined ? { finishedAt: toTimestamp(new Date(record.finishedAt)) } : {}),
  };
}
