import * as os from 'node:os';
import * as path from 'node:path';

/**
 * $REBOOTLESS_KERNEL_LAB_CACHE_DIR, else $XDG_CACHE_HOME/rebootless/kernel-lab, else
 * ~/.cache/rebootless/kernel-lab: next to kernel-toolchain's headers cache (…/rebootless/kernels).
 */
export function defaultKernelLabCacheDir(): string {
  const explicit = process.env['REBOOTLESS_KERNEL_LAB_CACHE_DIR'];
  if (explicit) return path.resolve(explicit);
  const xdg = process.env['XDG_CACHE_HOME'];
  const base = xdg && path.isAbsolute(xdg) ? xdg : path.join(os.homedir(), '.cache');
  return path.join(base, 'rebootless', 'kernel-lab');
}
