// Everything a kernel test needs before its first boot, with the time each step took: the release
// (resolved from Debian now, never hard-coded), the kernel image, the bundled guest programs and
// the initramfs. Then any number of guests boot from it.
import { currentDebianCloudRelease } from '@rebootless/kernel-toolchain';
import { bundleGuestProgram, guestProgramEntry, type GuestBundle } from './bundle';
import { defaultKernelLabCacheDir } from './cache-dir';
import { buildInitramfs, GUEST_PROBE_PORT, pruneInitramfs, type GuestService, type Initramfs } from './initramfs';
import { GuestVm, type GuestVmOptions } from './guest-vm';
import { KernelImageCache, type KernelImage } from './kernel-image';

export interface KernelLabOptions {
  /** Default: what linux-image-cloud-amd64 points at now. */
  release?: string;
  /** A kernel of the project's own (a profile's build, profileKernelImage()) instead of Debian's. */
  kernel?: KernelImage;
  cacheDir?: string;
  log?: (line: string) => void;
  /** Also bundle /guest/sysfs-port.js: the agent's LivepatchSysfs, runnable through the probe. */
  withSysfsPort?: boolean;
  /** More bundled programs (e.g. the agent) and services started after the probe. */
  bundles?: GuestBundle[];
  services?: GuestService[];
  /** Data files bundled programs read at run time (e.g. grpcHealthCheckAsset()). */
  files?: { path: string; data: Buffer; mode?: number }[];
}

export class KernelLab {
  private constructor(
    readonly release: string,
    readonly kernel: KernelImage,
    readonly initramfs: Initramfs,
    /** Milliseconds per preparation step. */
    readonly timings: Record<string, number>,
    readonly cacheDir: string,
  ) {}

  static async prepare(opts: KernelLabOptions = {}): Promise<KernelLab> {
    const timings: Record<string, number> = {};
    const timed = async <T>(step: string, fn: () => Promise<T>): Promise<T> => {
      const started = Date.now();
      try {
        return await fn();
      } finally {
        timings[step] = Date.now() - started;
      }
    };
    const cacheDir = opts.cacheDir ?? defaultKernelLabCacheDir();
    const release =
      opts.kernel?.release ?? opts.release ?? (await timed('resolveRelease', () => currentDebianCloudRelease()));
    const images = new KernelImageCache({ cacheDir, log: opts.log });
    const kernel = opts.kernel ?? (await timed('kernelImage', () => images.ensure(release)));
    const bundles = await timed('bundle', async () => {
      const out = [await bundleGuestProgram(guestProgramEntry('probe'), 'probe.js')];
      if (opts.withSysfsPort) out.push(await bundleGuestProgram(guestProgramEntry('sysfs-port'), 'sysfs-port.js'));
      return [...out, ...(opts.bundles ?? [])];
    });
    const services: GuestService[] = [
      { name: 'probe', argv: ['/bin/node', '/guest/probe.js', String(GUEST_PROBE_PORT)] },
      ...(opts.services ?? []),
    ];
    const initramfs = await timed('initramfs', () =>
      buildInitramfs({ kernel, bundles, services, files: opts.files }, { cacheDir }),
    );
    pruneInitramfs(cacheDir);
    opts.log?.(
      `kernel-lab: ${release}, initramfs ${initramfs.contentHash} ${(initramfs.sizeBytes / 1e6).toFixed(1)} MB ` +
        `(${initramfs.built ? 'built' : 'cached'})`,
    );
    return new KernelLab(release, kernel, initramfs, timings, cacheDir);
  }

  /** Boots a guest from this lab's kernel and initramfs. */
  boot(options: Omit<GuestVmOptions, 'kernel' | 'initramfs'> = {}): Promise<GuestVm> {
    return GuestVm.start({ cacheDir: this.cacheDir, ...options, kernel: this.kernel, initramfs: this.initramfs });
  }
}
