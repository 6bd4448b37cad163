import { rebootlessCacheDir } from '@rebootless/kernel-toolchain';

/**
 * $REBOOTLESS_KERNEL_LAB_CACHE_DIR, else $XDG_CACHE_HOME/rebootless/kernel-lab, else
 * ~/.cache/rebootless/kernel-lab: next to kernel-toolchain's headers cache (…/rebootless/kernels).
 */
export function defaultKernelLabCacheDir(): string {
  return rebootlessCacheDir('kernel-lab', 'REBOOTLESS_KERNEL_LAB_CACHE_DIR');
}
