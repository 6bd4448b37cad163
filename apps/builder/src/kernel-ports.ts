// The kernel toolchain and the diff analysis as the coordinator sees them. The only file that
// knows those libraries' entry points.
import { analyseDiff, DiffParseError } from '@rebootless/diff-analysis';
import {
  KernelHeadersCache,
  compileLivepatchModule,
  isValidKernelRelease,
  requireDiffTool,
} from '@rebootless/kernel-toolchain';
import type { DiffAnalysis, DiffUnreadable } from './build-coordinator';
import type { BuildToolchain } from './kernel-build';

export function debianKernelToolchain(options: {
  cacheDir: string;
  fetchTimeoutMs: number;
  /** ADR 0013: without a sandbox, refuse to compile unless this is set. */
  allowUnsandboxed?: boolean;
}): BuildToolchain {
  return {
    // One cache object per fetch, so its log lines go to the build that waits for it; fetches of
    // one release are shared between them by the library.
    ensureHeaders: (release, signal, onLog) =>
      new KernelHeadersCache({ cacheDir: options.cacheDir, timeoutMs: options.fetchTimeoutMs, log: onLog }).ensure(
        release,
        signal,
      ),
    compileLivepatch: (compile) =>
      compileLivepatchModule({ ...compile, allowUnsandboxed: options.allowUnsandboxed ?? false }),
    requireDiffTool: () => requireDiffTool(),
  };
}

export function analyseUnifiedDiff(text: string): DiffAnalysis | DiffUnreadable {
  try {
    const report = analyseDiff(text);
    // A live patch replaces the functions the diff modifies; functions it adds travel with them.
    return { ...report, functions: report.functions.filter((f) => f.change === 'modified') };
  } catch (error) {
    if (error instanceof DiffParseError) return { unreadable: error.message };
    throw error;
  }
}

export { isValidKernelRelease };
