import type { events } from '@rebootless/contracts';
import type { EpochMillis } from './time';

/** One kernel release's module of a published patch. */
export interface PublishedArtifact {
  kernelRelease: string;
  /** The module name the kernel shows under /sys/kernel/livepatch ('' when not known yet). */
  moduleName: string;
  functions: events.PatchedFunction[];
}

/**
 * A published patch version as the ledger knows it from PatchPublished (and BuildSucceeded for
 * module names and functions). The input of CVE exposure, of undo planning (earlier cumulative
 * versions) and of the stack fold (which published patch a module is).
 */
export interface PublishedPatch {
  patchId: string;
  version: string;
  replace: boolean;
  cves: events.Cve[];
  /** The patch's own severity, used for a CVE published without one. */
  severity: events.Severity;
  publishedAt: EpochMillis;
  publishedEventId: string;
  retracted: boolean;
  artifacts: PublishedArtifact[];
}

export interface PatchRef {
  patchId: string;
  version: string;
}

/** Lookups the stack fold needs to name what a host's kernel shows. */
export interface PatchCatalog {
  /** The published patch whose module this is on that kernel release. */
  byModule(moduleName: string, kernelRelease: string): PublishedPatch | undefined;
  byPatch(patchId: string, version: string): PublishedPatch | undefined;
}

/**
 * An in-memory catalog over published patches. A module name published for several releases
 * resolves per release first, then by name alone (module names normally carry the patch name).
 */
export function patchCatalog(patches: Iterable<PublishedPatch>): PatchCatalog {
  const byRef = new Map<string, PublishedPatch>();
  const byModuleRelease = new Map<string, PublishedPatch>();
  const byModuleName = new Map<string, PublishedPatch>();
  for (const patch of patches) {
    byRef.set(refKey(patch), patch);
    for (const a of patch.artifacts) {
      if (!a.moduleName) continue;
      byModuleRelease.set(`${a.kernelRelease}\u0000${a.moduleName}`, patch);
      // The newest publication wins for a bare module name.
      const known = byModuleName.get(a.moduleName);
      if (!known || known.publishedAt <= patch.publishedAt) byModuleName.set(a.moduleName, patch);
    }
  }
  return {
    byModule: (moduleName, kernelRelease) =>
      byModuleRelease.get(`${kernelRelease}\u0000${moduleName}`) ?? byModuleName.get(moduleName),
    byPatch: (patchId, version) => byRef.get(refKey({ patchId, version })),
  };
}

export const EMPTY_CATALOG: PatchCatalog = { byModule: () => undefined, byPatch: () => undefined };

export function refKey(ref: PatchRef): string {
  return `${ref.patchId}@${ref.version}`;
}

/** "cve-2024-1086-nf-tables 2", or the module name for a module rebootless did not publish. */
export function patchLabel(ref: { patchId: string; version: string; moduleName?: string }): string {
  if (!ref.patchId) return ref.moduleName || '(unknown module)';
  return ref.version ? `${ref.patchId} ${ref.version}` : ref.patchId;
}
