// The kernel toolchain and the diff analysis as the coordinator sees them. The only file that
// knows those libraries' entry points.
import { analyseDiff, DiffParseError } from '@rebootless/diff-analysis';
import {
  KernelHeadersCache,
  KernelProfileCache,
  ToolchainError,
  buildFromDiff,
  compileLivepatchModule,
  isValidKernelRelease,
  readModinfoEntries,
  type KernelProfile,
} from '@rebootless/kernel-toolchain';
import { KernelLab, profileKernelImage, smokeTestModule } from '@rebootless/kernel-lab';
import type { DiffAnalysis, DiffUnreadable } from './build-coordinator';
import type { BuildToolchain } from './kernel-build';

export function debianKernelToolchain(options: {
  cacheDir: string;
  fetchTimeoutMs: number;
  /** ADR 0013: without a sandbox, refuse to compile unless this is set. */
  allowUnsandboxed?: boolean;
  /** The kernel profiles diffs are built for (BUILDER_KERNEL_PROFILES), and where their builds are cached. */
  profiles: readonly KernelProfile[];
  profileCacheDir: string;
  /** BUILDER_SMOKE: 'profiles' smoke-tests every module built for a profile's kernel; 'off' none. */
  smoke: 'profiles' | 'off';
}): BuildToolchain {
  // One prepared lab (kernel image and initramfs) per profile build, made at its first smoke test.
  const labs = new Map<string, Promise<KernelLab>>();
  const profileFor = (release: string): KernelProfile => {
    const profile = options.profiles.find((p) => p.release === release);
    if (profile) return profile;
    const known = options.profiles.map((p) => `${p.name} (${p.release})`).join(', ');
    const message =
      `no kernel profile of this builder builds ${release} from a diff` +
      (known ? `: its profiles are ${known}` : ': it has none (BUILDER_KERNEL_PROFILES, e.g. "lab")') +
      ". A diff is built against a profile's own full kernel build; for other kernels submit livepatch module source, " +
      "which is compiled with the release's headers alone.";
    throw new ToolchainError('FAILED_PRECONDITION', 'diff-tool', message);
  };
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
    diffProfileFor: (release) => {
      const profile = profileFor(release);
      return { name: profile.name, release: profile.release };
    },
    buildFromDiff: async (build) => {
      const profile = profileFor(build.release);
      // A cold profile is built once (minutes); its progress goes to the builds that wait for it.
      const ready = await new KernelProfileCache({
        cacheDir: options.profileCacheDir,
        onProgress: build.onProfile,
      }).ensure(profile);
      build.onProfile(`kernel profile ${profile.name}: ${ready.fromCache ? 'cached' : 'built'}, ${ready.dir}`);
      const result = await buildFromDiff(ready, build.diff.toString('utf8'), {
        replace: build.replace,
        moduleName: build.moduleName,
        timeoutMs: build.timeoutMs,
        signal: build.signal,
        onLine: build.onLog,
        allowUnsandboxed: options.allowUnsandboxed ?? false,
      });
      const vermagic = Object.fromEntries(readModinfoEntries(result.module))['vermagic'] ?? '';
      return {
        module: result.module,
        vermagic,
        toolchain: {
          'klp-build': profile.source.version,
          profile: `${profile.name}-${ready.key}`,
          sandbox: result.sandbox,
        },
      };
    },
    smokes: (release) => options.smoke === 'profiles' && options.profiles.some((p) => p.release === release),
    smokeTest: async ({ release, module, moduleName, signal, onLog }) => {
      const profile = profileFor(release);
      const ready = await new KernelProfileCache({ cacheDir: options.profileCacheDir }).ensure(profile);
      let lab = labs.get(ready.key);
      if (!lab) {
        lab = KernelLab.prepare({ kernel: profileKernelImage(ready), log: onLog });
        labs.set(ready.key, lab);
        lab.catch(() => labs.delete(ready.key));
      }
      const result = await smokeTestModule(await lab, { name: moduleName, bytes: module }, { signal, onLog });
      return {
        kernelRelease: result.release,
        bootId: result.bootId,
        loadMs: String(result.loadMs),
        transitionMs: String(result.transitionMs),
        exercisedFiles: result.exercisedFiles,
        kernelLog: result.kernelLog.slice(-50),
      };
    },
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
