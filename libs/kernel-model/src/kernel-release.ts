/**
 * Kernel releases ("6.1.0-56-cloud-amd64", "5.14.0-427.el9.x86_64") and what the upstream
 * livepatch interface looks like on each. Derived from the upstream version only: distributions
 * backport livepatch features (RHEL 8's 4.18 has atomic replace), so every feature can be
 * overridden by configuration where a host is known to differ.
 */
export interface KernelRelease {
  /** The release exactly as `uname -r` prints it. */
  release: string;
  major: number;
  minor: number;
  patch: number;
  /** Everything after major.minor[.patch]: "-56-cloud-amd64". */
  suffix: string;
}

export function parseKernelRelease(release: string): KernelRelease {
  const match = /^(\d+)\.(\d+)(?:\.(\d+))?(.*)$/.exec(release.trim());
  if (!match) {
    throw new Error(`kernel release: expected "<major>.<minor>[.<patch>][suffix]", got ${JSON.stringify(release)}`);
  }
  return {
    release: release.trim(),
    major: Number(match[1]),
    minor: Number(match[2]),
    patch: match[3] === undefined ? 0 : Number(match[3]),
    suffix: match[4] ?? '',
  };
}

/** Compares upstream versions only (major.minor.patch); negative when a < b. */
export function compareKernelVersions(a: KernelRelease, b: KernelRelease): number {
  return a.major - b.major || a.minor - b.minor || a.patch - b.patch;
}

export function isAtLeast(release: KernelRelease, major: number, minor: number): boolean {
  return release.major > major || (release.major === major && release.minor >= minor);
}

export type StackingRule =
  /** 5.1+: any patch may be disabled; its functions fall back to the next older patch or the original. */
  | 'any-order'
  /** Before 5.1: only the topmost enabled patch may be disabled. */
  | 'top-only';

export interface LivepatchFeatures {
  /** CONFIG_LIVEPATCH exists at all (4.0+). */
  livepatch: boolean;
  /** The consistency model and the `transition` attribute (4.12+). */
  transitionAttribute: boolean;
  /** The write-only `force` attribute (4.15+). */
  forceAttribute: boolean;
  /**
   * Which modules a forced transition pins forever (klp_force_transition). Before 5.18 every
   * registered patch. Since 5.18 (upstream "livepatch: Don't block removal of patches that are
   * safe to unload") only the patches whose code may still run although they are being removed:
   * the patch of a forced disable, or the patches a forced atomic replace supersedes.
   */
  forcePins: 'every-patch' | 'removed-patches';
  stacking: StackingRule;
  /** `.replace = true` cumulative patches (5.1+). */
  atomicReplace: boolean;
  /**
   * Before 5.1 a patch was registered separately from being enabled: a disabled patch stayed in
   * sysfs (enabled=0) and could be enabled again. Since 5.1 it disappears once disabled.
   */
  disabledPatchPersists: boolean;
  /** `<object>/patched` (6.0+). */
  patchedAttribute: boolean;
  /** `<patch>/replace` (6.11+). */
  replaceAttribute: boolean;
  /** `<patch>/stack_order` (6.13+). */
  stackOrderAttribute: boolean;
}

export function livepatchFeatures(release: string | KernelRelease): LivepatchFeatures {
  const r = typeof release === 'string' ? parseKernelRelease(release) : release;
  const since51 = isAtLeast(r, 5, 1);
  return {
    livepatch: isAtLeast(r, 4, 0),
    transitionAttribute: isAtLeast(r, 4, 12),
    forceAttribute: isAtLeast(r, 4, 15),
    forcePins: isAtLeast(r, 5, 18) ? 'removed-patches' : 'every-patch',
    stacking: since51 ? 'any-order' : 'top-only',
    atomicReplace: since51,
    disabledPatchPersists: !since51,
    patchedAttribute: isAtLeast(r, 6, 0),
    replaceAttribute: isAtLeast(r, 6, 11),
    stackOrderAttribute: isAtLeast(r, 6, 13),
  };
}
