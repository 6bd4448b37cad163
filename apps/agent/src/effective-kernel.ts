// The effective kernel, as `uptrack-uname -r` and `kcarectl --uname` print it: the running
// release plus the live patches that are fully in effect. Scripts and scanners that compare
// kernel versions read it; `uname -r` alone would say the host still runs unpatched code.
import type { agent } from '@rebootless/contracts';

/** One patch in effect, in the kernel's stack order (the last one wins for a shared function). */
export interface LivePatchInEffect {
  readonly moduleName: string;
  /** Known when this agent loaded it; a module loaded by hand is named by its module alone. */
  readonly patchId?: string;
  readonly version?: string;
}

export interface EffectiveKernel {
  readonly release: string;
  readonly livePatches: readonly LivePatchInEffect[];
  /** One word, like `uname -r`: `6.1.0-28-cloud-amd64+cve-2024-1086-2+...`. */
  readonly effective: string;
}

export function effectiveKernel(status: agent.GetStatusResponse): EffectiveKernel {
  const release = status.facts?.kernelRelease ?? '';
  const known = new Map(status.desiredModules.map((d) => [d.moduleName, d.patch]));
  // Enabled with its transition complete; a patch still patching or unpatching is not yet (or no longer) the code that runs.
  const livePatches = status.stack
    .filter((p) => p.enabled && !p.transition)
    .map((p): LivePatchInEffect => {
      const patch = known.get(p.moduleName);
      return patch
        ? { moduleName: p.moduleName, patchId: patch.patchId, version: patch.version }
        : { moduleName: p.moduleName };
    });
  const words = livePatches.map((p) => (p.patchId ? `${p.patchId}-${p.version}` : p.moduleName));
  return { release, livePatches, effective: [release, ...words].join('+') };
}
