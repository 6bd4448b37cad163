// Strict checks on everything that reaches a command line, a Makefile or a file name. They run
// before anything else is done with the input.
import * as path from 'node:path';
import { ToolchainError, type ToolchainStage } from './errors';

/**
 * A Debian kernel release (the `uname -r` of its image): version, then an ABI number (`-56`) or a
 * Debian suffix (`+deb12`, `+bpo`), then the flavour (`-cloud-amd64`, `-rt-arm64`, `-amd64`).
 * Examples: 6.1.0-56-cloud-amd64, 6.12.117+deb12-cloud-amd64, 6.12.12+bpo-cloud-amd64. The flavour's
 * last part has a letter (amd64, arm64), so a bare 6.1.0-56 is not taken for a release.
 */
export const KERNEL_RELEASE_PATTERN =
  /^[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,4}(?:-[0-9]{1,5}|\+[a-z0-9]{1,16})?(?:-[a-z0-9]{1,24}){0,2}-(?=[0-9]*[a-z])[a-z0-9]{1,24}$/;

/** A kernel module name the livepatch is built as (also its C file and Kbuild object name). */
export const MODULE_NAME_PATTERN = /^[a-z0-9_]{1,55}$/;

/** Directories handed to make (M=, -C): no spaces, no make or shell metacharacters. */
const SAFE_PATH_PATTERN = /^\/[A-Za-z0-9._+@/-]*$/;

export function isValidKernelRelease(release: unknown): release is string {
  return typeof release === 'string' && release.length <= 64 && KERNEL_RELEASE_PATTERN.test(release);
}

export function assertKernelRelease(
  release: unknown,
  stage: ToolchainStage = 'fetch-headers',
): asserts release is string {
  if (isValidKernelRelease(release)) return;
  const shown = typeof release === 'string' ? JSON.stringify(release.slice(0, 80)) : typeof release;
  throw new ToolchainError(
    'INVALID_ARGUMENT',
    stage,
    `invalid kernel release ${shown}: expected a Debian kernel release such as 6.1.0-56-cloud-amd64 ` +
      `or 6.12.117+deb12-cloud-amd64 (digits, dots, one -N or +suffix, then the flavour)`,
  );
}

export function assertModuleName(name: unknown): asserts name is string {
  if (typeof name === 'string' && MODULE_NAME_PATTERN.test(name)) return;
  const shown = typeof name === 'string' ? JSON.stringify(name.slice(0, 80)) : typeof name;
  throw new ToolchainError(
    'INVALID_ARGUMENT',
    'compile',
    `invalid module name ${shown}: expected 1 to 55 characters of a-z, 0-9 and _`,
  );
}

/** An absolute, normalised directory path that make and Kbuild can take verbatim. */
export function assertSafeDir(dir: unknown, what: string, stage: ToolchainStage): asserts dir is string {
  const ok =
    typeof dir === 'string' &&
    dir.length <= 1024 &&
    SAFE_PATH_PATTERN.test(dir) &&
    dir.length > 1 &&
    !dir.endsWith('/') &&
    path.posix.normalize(dir) === dir;
  if (ok) return;
  const shown = typeof dir === 'string' ? JSON.stringify(dir.slice(0, 200)) : typeof dir;
  throw new ToolchainError(
    'INVALID_ARGUMENT',
    stage,
    `${what} ${shown} must be an absolute, normalised path of letters, digits and . _ + @ - / only ` +
      `(make cannot take spaces or metacharacters in M= and -C)`,
  );
}

/** Major.minor of a release: 6.1 for 6.1.0-56-cloud-amd64, 6.12 for 6.12.117+deb12-cloud-amd64. */
export function releaseMajorMinor(release: string): string {
  const m = /^([0-9]+)\.([0-9]+)\./.exec(release);
  if (!m) throw new ToolchainError('INVALID_ARGUMENT', 'fetch-headers', `invalid kernel release ${release}`);
  return `${m[1]}.${m[2]}`;
}

/** Orders kernel releases by their numbers (6.1.0-9 < 6.1.0-10 < 6.12.1+deb12). */
export function compareReleases(a: string, b: string): number {
  const split = (s: string) => s.split(/([0-9]+)/).filter((p) => p !== '');
  const pa = split(a);
  const pb = split(b);
  for (let i = 0; i < Math.min(pa.length, pb.length); i++) {
    const x = pa[i]!;
    const y = pb[i]!;
    const nx = /^[0-9]+$/.test(x);
    const ny = /^[0-9]+$/.test(y);
    if (nx && ny) {
      const d = Number(x) - Number(y);
      if (d !== 0) return d;
    } else if (x !== y) {
      return x < y ? -1 : 1;
    }
  }
  return pa.length - pb.length;
}
