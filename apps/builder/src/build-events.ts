// The builder's events (DESIGN.md section 4), drafted from its records. Pure: the coordinator
// publishes them. Streams: build/<id> for a build's own events, patch/<id> for what a patch
// means to the fleet (published, retracted); the build id is the correlation id throughout.
import type { events } from '@rebootless/contracts';
import type { EventDraft } from '@rebootless/events';
import { publishedArtifacts, type BuildRecord, type KernelPart } from './build-record';

export function buildStream(buildId: string): string {
  return `build/${buildId}`;
}

export function patchStream(patchId: string): string {
  return `patch/${patchId}`;
}

export function buildRequested(record: BuildRecord): EventDraft {
  return {
    stream: buildStream(record.buildId),
    actor: record.submittedBy,
    correlationId: record.buildId,
    occurredAt: new Date(record.submittedAt),
    payload: {
      type: 'BuildRequested',
      data: {
        buildId: record.buildId,
        patchId: record.patchId,
        patchName: record.patchName,
        version: record.version,
        description: record.description,
        cves: record.cves,
        replace: record.replace,
        kernelReleases: record.kernels.map((k) => k.release),
        sourceKind: record.sourceKind,
        sourceSha256: record.sourceSha256,
      },
    },
  };
}

export function buildSucceeded(record: BuildRecord, part: KernelPart, actor: events.Actor): EventDraft {
  const artifact = part.artifact;
  if (part.state !== 'succeeded' || !artifact)
    throw new Error(`${part.release} of build ${record.buildId} has no artifact`);
  return {
    stream: buildStream(record.buildId),
    actor,
    correlationId: record.buildId,
    payload: {
      type: 'BuildSucceeded',
      data: {
        buildId: record.buildId,
        kernelRelease: part.release,
        artifactDigest: artifact.digest,
        manifest: artifact.manifest,
        manifestSignature: Buffer.from(artifact.signatureHex, 'hex'),
        changedFunctions: part.functions,
        durationMs: String(Math.max(0, (part.finishedAt ?? 0) - (part.startedAt ?? part.finishedAt ?? 0))),
        ...(part.smoke ? { smoke: part.smoke } : {}),
      },
    },
  };
}

export function buildFailed(record: BuildRecord, part: KernelPart, actor: events.Actor): EventDraft {
  return {
    stream: buildStream(record.buildId),
    actor,
    correlationId: record.buildId,
    payload: {
      type: 'BuildFailed',
      data: {
        buildId: record.buildId,
        kernelRelease: part.release,
        stage: part.stage,
        diagnostics: part.diagnostics,
        code: part.code ?? 'INTERNAL',
      },
    },
  };
}

/** PatchPublished when the build ended with at least one artifact and was not cancelled. */
export function patchPublished(record: BuildRecord, actor: events.Actor): EventDraft | undefined {
  const artifacts = publishedArtifacts(record);
  if (record.cancelled || artifacts.length === 0) return undefined;
  return {
    stream: patchStream(record.patchId),
    actor,
    correlationId: record.buildId,
    payload: {
      type: 'PatchPublished',
      data: {
        patchId: record.patchId,
        version: record.version,
        buildId: record.buildId,
        artifacts,
        cves: record.cves,
        replace: record.replace,
        severity: record.severity,
        patchName: record.patchName,
      },
    },
  };
}

export function patchRetracted(
  retraction: { patchId: string; version: string; reason: string },
  actor: events.Actor,
): EventDraft {
  return {
    stream: patchStream(retraction.patchId),
    actor,
    payload: {
      type: 'PatchRetracted',
      data: { patchId: retraction.patchId, version: retraction.version, reason: retraction.reason },
    },
  };
}
