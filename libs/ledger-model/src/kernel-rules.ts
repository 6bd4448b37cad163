import { KernelRelease, livepatchFeatures, parseKernelRelease } from '@rebootless/kernel-model';
import { KernelReleaseError } from './errors';

/** Which disable order a kernel allows (LedgerService's DisableOrder). */
export type DisableOrder =
  /** 5.1 and later: any patch, in any order; its functions fall back to the next older patch or the original. */
  | 'any'
  /** Before 5.1: only the top of the stack; the patches above must go first. */
  | 'top-only';

/** The livepatch rules the undo planner and the stack model follow for one kernel release. */
export interface KernelRules {
  /** The release as `uname -r` printed it. */
  release: string;
  major: number;
  minor: number;
  patch: number;
  disableOrder: DisableOrder;
  /** `.replace = true` cumulative patches disable every older patch (5.1+). */
  atomicReplace: boolean;
  /** A disabled patch stays listed and may be enabled again (before 5.1). */
  disabledPatchPersists: boolean;
  /**
   * Which modules a forced transition pins until the next boot: before 5.18 every patch
   * registered at the time, since 5.18 only the ones whose old code may still run.
   */
  forcePins: 'every-patch' | 'removed-patches';
  /** One sentence for people, naming the rule and its origin. */
  explanation: string;
}

/** Anything after the version must start like a distribution suffix does ("-26-cloud-amd64", "+deb13", ".el8"). */
const SUFFIX = /^(?:[-+._~].*)?$/;

/**
 * Parses a release such as "6.1.0-26-cloud-amd64", "4.18.0-513.el8.x86_64" or "5.0.21" and
 * says which livepatch rules apply. Rules follow the upstream version (Documentation/livepatch/,
 * DESIGN.md section 5); distributions that backport (RHEL 8's 4.18 carries atomic replace) can be
 * described with `overrides`. Throws KernelReleaseError (invalid-argument, naming `field`).
 */
export function kernelRules(
  release: string,
  overrides: Partial<Pick<KernelRules, 'disableOrder' | 'atomicReplace' | 'disabledPatchPersists' | 'forcePins'>> = {},
  field = 'kernel_release',
): KernelRules {
  let parsed: KernelRelease;
  try {
    parsed = parseKernelRelease(release);
  } catch {
    throw new KernelReleaseError(release, field);
  }
  if (!SUFFIX.test(parsed.suffix)) throw new KernelReleaseError(release, field);
  const features = livepatchFeatures(parsed);
  const disableOrder: DisableOrder = overrides.disableOrder ?? (features.stacking === 'any-order' ? 'any' : 'top-only');
  const version = `${parsed.major}.${parsed.minor}`;
  const explanation =
    disableOrder === 'any'
      ? `${parsed.release} (upstream ${version}): since 5.1 any live patch may be disabled, in any order; ` +
        'each of its functions falls back to the next older patch or the original code'
      : `${parsed.release} (upstream ${version}): before 5.1 only the topmost live patch may be disabled; ` +
        'the patches above it must be disabled first';
  return {
    release: parsed.release,
    major: parsed.major,
    minor: parsed.minor,
    patch: parsed.patch,
    disableOrder,
    atomicReplace: overrides.atomicReplace ?? features.atomicReplace,
    disabledPatchPersists: overrides.disabledPatchPersists ?? features.disabledPatchPersists,
    forcePins: overrides.forcePins ?? features.forcePins,
    explanation,
  };
}
