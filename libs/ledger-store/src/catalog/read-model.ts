import { events } from '@rebootless/contracts';
import type { EventPayload } from '@rebootless/events';
import type { LedgerDatabase } from '../database';
import type { EventContext } from '../event-context';
import {
  type ArtifactRow,
  type BuildRow,
  type CveRow,
  type FunctionRef,
  type PatchRow,
  buildFromRow,
  patchFromRow,
} from './columns';

/** The builder's events: builds and the patch versions published from them. */
export type CatalogEvent = Extract<
  EventPayload,
  { type: 'BuildRequested' | 'BuildSucceeded' | 'BuildFailed' | 'PatchPublished' | 'PatchRetracted' }
>;

export const key = (a: string, b: string) => `${a}\u0000${b}`;

const fnRef = (f: events.PatchedFunction): FunctionRef => ({ object: f.object, name: f.name, sympos: f.sympos });
const cveRow = (c: events.Cve): CveRow => ({ id: c.id, severity: c.severity, cvssScore: c.cvssScore });

/**
 * The catalog read model: builds and published patch versions, all in memory (they are few),
 * the rows an event changed staged to be written.
 */
export class CatalogReadModel {
  readonly patches = new Map<string, PatchRow>();
  readonly builds = new Map<string, BuildRow>();
  private dirtyPatches = new Set<PatchRow>();
  private dirtyBuilds = new Set<BuildRow>();

  clear(): void {
    this.patches.clear();
    this.builds.clear();
    this.discardStaged();
  }

  async load(db: LedgerDatabase): Promise<void> {
    for (const r of await db.query('SELECT * FROM builds')) {
      const b = buildFromRow(r);
      this.builds.set(b.buildId, b);
    }
    for (const r of await db.query('SELECT * FROM patches')) {
      const p = patchFromRow(r);
      this.patches.set(key(p.patchId, p.version), p);
    }
  }

  evolve(ctx: EventContext, p: CatalogEvent): void {
    switch (p.type) {
      case 'BuildRequested':
        return this.onBuildRequested(ctx, p.data);
      case 'BuildSucceeded':
        return this.onBuildSucceeded(ctx, p.data);
      case 'BuildFailed': {
        const d = p.data;
        const build = this.builds.get(d.buildId);
        if (build) {
          build.failures.push({ kernelRelease: d.kernelRelease, stage: d.stage, code: d.code });
          this.dirtyBuilds.add(build);
          Object.assign(ctx, { patchId: build.patchId, version: build.version });
        }
        ctx.summary = `build ${d.buildId} failed for ${d.kernelRelease} at ${d.stage}`;
        return;
      }
      case 'PatchPublished':
        return this.onPublished(ctx, p.data);
      case 'PatchRetracted': {
        const d = p.data;
        const patch = this.patches.get(key(d.patchId, d.version));
        if (patch) {
          Object.assign(patch, { retracted: true, retractionReason: d.reason, retractedAt: ctx.at });
          this.dirtyPatches.add(patch);
        }
        Object.assign(ctx, { patchId: d.patchId, version: d.version });
        ctx.summary = `retracted ${d.patchId} ${d.version}: ${d.reason}`;
        return;
      }
      default: {
        const unrouted: never = p;
        throw new Error(`the catalog has no step for ${JSON.stringify(unrouted)}`);
      }
    }
  }

  /** The rows changed since the last take. */
  take(): { builds: BuildRow[]; patches: PatchRow[] } {
    const out = { builds: [...this.dirtyBuilds], patches: [...this.dirtyPatches] };
    this.discardStaged();
    return out;
  }

  discardStaged(): void {
    this.dirtyPatches = new Set();
    this.dirtyBuilds = new Set();
  }

  private onBuildRequested(ctx: EventContext, p: events.BuildRequested): void {
    const b: BuildRow = {
      buildId: p.buildId,
      patchId: p.patchId,
      version: p.version,
      patchName: p.patchName,
      description: p.description,
      cves: p.cves.map(cveRow),
      replace: p.replace,
      kernelReleases: [...p.kernelReleases],
      requestedAt: ctx.at,
      artifacts: [],
      failures: [],
    };
    this.builds.set(b.buildId, b);
    this.dirtyBuilds.add(b);
    Object.assign(ctx, { patchId: p.patchId, version: p.version });
    ctx.summary = `build ${p.buildId} of ${p.patchId} ${p.version} requested for ${p.kernelReleases.join(', ')}`;
  }

  private onBuildSucceeded(ctx: EventContext, p: events.BuildSucceeded): void {
    const m = p.manifest;
    const b = this.builds.get(p.buildId);
    const artifact: ArtifactRow = {
      kernelRelease: p.kernelRelease,
      artifactDigest: p.artifactDigest,
      vermagic: m?.vermagic ?? '',
      moduleName: m?.moduleName ?? '',
      functions: (m?.functions.length ? m.functions : p.changedFunctions).map(fnRef),
    };
    if (b) {
      b.artifacts = [...b.artifacts.filter((a) => a.kernelRelease !== p.kernelRelease), artifact];
      this.dirtyBuilds.add(b);
    }
    const patchId = m?.patchId ?? b?.patchId ?? '';
    const version = m?.version ?? b?.version ?? '';
    Object.assign(ctx, { patchId, version });
    ctx.summary = `built ${patchId} ${version} for ${p.kernelRelease} (${artifact.moduleName})`;
  }

  private onPublished(ctx: EventContext, p: events.PatchPublished): void {
    // Only what the event says: the build's manifests (module names, functions, description)
    // come from another stream, so queries join them; a replay may read the streams in any order.
    const patch: PatchRow = {
      patchId: p.patchId,
      version: p.version,
      patchName: p.patchName,
      description: '',
      cves: p.cves.map(cveRow),
      severity: p.severity,
      replace: p.replace,
      buildId: p.buildId,
      artifacts: p.artifacts.map((a) => ({
        kernelRelease: a.kernelRelease,
        artifactDigest: a.artifactDigest,
        vermagic: a.vermagic,
        moduleName: '',
        functions: [],
      })),
      publishedAt: ctx.at,
      publishedEventId: ctx.e.body.eventId,
      retracted: false,
      retractionReason: '',
      retractedAt: null,
    };
    this.patches.set(key(patch.patchId, patch.version), patch);
    this.dirtyPatches.add(patch);
    Object.assign(ctx, { patchId: p.patchId, version: p.version });
    ctx.summary = `published ${p.patchId} ${p.version} fixing ${p.cves.map((c) => c.id).join(', ') || 'no CVE'}`;
  }
}
