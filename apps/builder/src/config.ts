import { defaultKernelCacheDir, defaultProfileCacheDir, KERNEL_PROFILES } from '@rebootless/kernel-toolchain';
import {
  boolean,
  integer,
  oneOf,
  path,
  serviceSettings,
  setting,
  type ConfigOf,
  type ConfigSpec,
  type Parser,
} from '@rebootless/service';

export const SERVICE_NAME = 'builder';

/** gRPC refuses messages over 4 MiB by default; a fix must fit in one SubmitBuild message. */
export const MAX_FIX_BYTES_CEILING = 4_000_000;

export const builderSettings = {
  ...serviceSettings({ name: SERVICE_NAME, envPrefix: 'BUILDER', defaultPort: 7451 }),
  queueSize: setting({
    env: 'BUILDER_QUEUE_SIZE',
    parser: integer(1, 10_000),
    default: '16',
    description: 'builds that may wait for a worker; one more is refused with RESOURCE_EXHAUSTED',
  }),
  workers: setting({
    env: 'BUILDER_WORKERS',
    parser: integer(1, 64),
    default: '2',
    description: 'kernel releases compiled at the same time',
  }),
  compileTimeoutMs: setting({
    env: 'BUILDER_COMPILE_TIMEOUT_MS',
    parser: integer(1_000, 3_600_000),
    default: '300000',
    description: 'time limit of one compile (make and the compiler are killed when it passes)',
  }),
  fetchTimeoutMs: setting({
    env: 'BUILDER_FETCH_TIMEOUT_MS',
    parser: integer(1_000, 3_600_000),
    default: '600000',
    description: "time limit of fetching one release's Debian header packages",
  }),
  maxFixBytes: setting({
    env: 'BUILDER_MAX_FIX_BYTES',
    parser: integer(1_024, MAX_FIX_BYTES_CEILING),
    default: '1048576',
    description: 'largest fix (module source or diff) a SubmitBuild may carry',
  }),
  kernelCacheDir: setting({
    env: 'BUILDER_KERNEL_CACHE_DIR',
    parser: path(),
    default: defaultKernelCacheDir(),
    description: "where Debian's linux-headers and linux-kbuild packages are downloaded and unpacked",
  }),
  kernelProfiles: setting({
    env: 'BUILDER_KERNEL_PROFILES',
    parser: profileNames(),
    default: '',
    description:
      "kernel profiles this builder builds diffs for with klp-build (issue 18): each one's full kernel build is " +
      'made once (minutes) and cached; empty: diffs are refused',
  }),
  kernelProfileCacheDir: setting({
    env: 'BUILDER_KERNEL_PROFILE_CACHE_DIR',
    parser: path(),
    default: defaultProfileCacheDir(),
    description: "where the kernel profiles' source, original builds and module-signing keys are kept",
  }),
  smoke: setting({
    env: 'BUILDER_SMOKE',
    parser: oneOf(['profiles', 'off']),
    default: 'profiles',
    description:
      "'profiles': every module built for a kernel profile is loaded, exercised and unloaded in a QEMU guest of " +
      "that kernel before it is published (a failure fails the build); 'off': not (a developer machine without QEMU)",
  }),
  insecureUnsandboxedCompile: setting({
    env: 'BUILDER_INSECURE_UNSANDBOXED_COMPILE',
    parser: boolean(),
    default: 'false',
    description:
      'compile without the bubblewrap sandbox when this machine has none (a developer machine only: the ' +
      "operator's source then sees every file the builder can read, its keys included); ADR 0013",
  }),
} satisfies ConfigSpec;

export type BuilderConfig = ConfigOf<typeof builderSettings>;

function profileNames(): Parser<readonly string[]> {
  const known = Object.keys(KERNEL_PROFILES);
  return {
    expected: `a comma-separated list of kernel profiles (${known.join(', ')}), or nothing`,
    parse: (raw) => {
      const names = raw
        .split(',')
        .map((n) => n.trim())
        .filter((n) => n !== '');
      return names.every((n) => known.includes(n)) ? [...new Set(names)] : undefined;
    },
  };
}
