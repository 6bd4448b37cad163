// What the builder has published, folded from its events (BuildSucceeded, PatchPublished,
// PatchRetracted): the dispatcher only rolls out what the log says is published and not retracted.
import type { events } from '@rebootless/contracts';

export interface PublishedBuild {
  kernelRelease: string;
  artifactDigest: string;
  vermagic: string;
}

export interface PatchVersion {
  patchId: string;
  version: string;
  buildId: string;
  replace: boolean;
  artifacts: ReadonlyMap<string, PublishedBuild>;
  /** Set once retracted: the reason. */
  retracted?: string;
  /** Publication order, so "the latest version" means the one published last. */
  order: number;
}

export class PatchCatalog {
  private readonly versions = new Map<string, Map<string, PatchVersion>>();
  /** build id -> kernel release -> module name, from BuildSucceeded manifests. */
  private readonly modules = new Map<string, Map<string, string>>();
  private published = 0;

  buildSucceeded(e: events.BuildSucceeded): void {
    const name = e.manifest?.moduleName;
    if (!name) return;
    let byRelease = this.modules.get(e.buildId);
    if (!byRelease) this.modules.set(e.buildId, (byRelease = new Map()));
    byRelease.set(e.kernelRelease, name);
  }

  patchPublished(e: events.PatchPublished): void {
    let byVersion = this.versions.get(e.patchId);
    if (!byVersion) this.versions.set(e.patchId, (byVersion = new Map()));
    byVersion.set(e.version, {
      patchId: e.patchId,
      version: e.version,
      buildId: e.buildId,
      replace: e.replace,
      artifacts: new Map(
        e.artifacts.map((a) => [
          a.kernelRelease,
          { kernelRelease: a.kernelRelease, artifactDigest: a.artifactDigest, vermagic: a.vermagic },
        ]),
      ),
      order: ++this.published,
    });
  }

  patchRetracted(e: events.PatchRetracted): void {
    const versions = this.versions.get(e.patchId);
    if (!versions) return;
    // An empty version retracts every version of the patch.
    for (const v of versions.values()) {
      if (!e.version || v.version === e.version) v.retracted = e.reason || 'retracted';
    }
  }

  /** The named version, or the latest published one when version is empty. */
  find(patchId: string, version: string): PatchVersion | undefined {
    const versions = this.versions.get(patchId);
    if (!versions) return undefined;
    if (version) return versions.get(version);
    let latest: PatchVersion | undefined;
    for (const v of versions.values()) if (!latest || v.order > latest.order) latest = v;
    return latest;
  }

  knows(patchId: string): boolean {
    return this.versions.has(patchId);
  }

  versionsOf(patchId: string): string[] {
    return [...(this.versions.get(patchId)?.keys() ?? [])];
  }

  /** The livepatch module name the build gave the patch for one release (from its signed manifest). */
  moduleName(patch: PatchVersion, kernelRelease: string): string | undefined {
    return this.modules.get(patch.buildId)?.get(kernelRelease);
  }
}
