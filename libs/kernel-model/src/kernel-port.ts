import type { events } from '@rebootless/contracts';

/**
 * errno names the livepatch interface and kmod actually return. The agent reasons on these (EBUSY:
 * another transition or the module is in use; EINVAL: the write made no sense in this state).
 */
export type KernelErrorCode =
  | 'EBUSY' // another patch is in transition, or the module is in use (enabled, forced)
  | 'EINVAL' // writing the current value to enabled, force outside a transition, re-enabling...
  | 'ENOENT' // no such patch / module / file
  | 'EEXIST' // a module with that name is already loaded
  | 'EPERM' // not root, or module loading disabled
  | 'EACCES'
  | 'ENOEXEC' // invalid module format (vermagic, wrong architecture)
  | 'ENODEV' // livepatch not available in this kernel
  | 'EKEYREJECTED' // signature refused (lockdown, MODULE_SIG_FORCE)
  | 'ENOKEY'
  | 'EIO'; // anything the kernel or kmod reported that maps to no better code

export type KernelOperation =
  'loadModule' | 'removeModule' | 'setEnabled' | 'force' | 'listPatches' | 'stalledTasks' | 'read';

export class KernelError extends Error {
  override readonly name = 'KernelError';

  constructor(
    readonly code: KernelErrorCode,
    message: string,
    readonly operation?: KernelOperation,
    readonly moduleName?: string,
  ) {
    super(`${code}: ${message}`);
  }
}

export function isKernelError(error: unknown, code?: KernelErrorCode): error is KernelError {
  return error instanceof KernelError && (code === undefined || error.code === code);
}

export interface LoadModuleRequest {
  /** Path of the module file (.ko) on this host. */
  path: string;
  /**
   * What the module contains. The real kernel reads it from the module itself and ignores these;
   * the simulated kernel needs them to know what the patch replaces.
   */
  moduleName: string;
  functions: events.PatchedFunction[];
  replace: boolean;
}

/**
 * The agent's one narrow way into the kernel (DESIGN.md section 5): the upstream livepatch sysfs
 * interface plus insmod/rmmod. Implemented by `SimulatedKernel` (here) and `LivepatchSysfs`
 * (libs/agent-runtime). Every failure is a `KernelError`.
 */
export interface KernelPort {
  /** `uname -r`, e.g. "6.1.0-56-cloud-amd64". */
  kernelRelease(): Promise<string>;
  /** `uname -v`, e.g. "#1 SMP PREEMPT_DYNAMIC Debian 6.1.158-1 (2025-11-09)". */
  kernelVersion(): Promise<string>;
  /** `uname -m`, e.g. "x86_64". */
  arch(): Promise<string>;
  /** /proc/sys/kernel/random/boot_id: a new value means a new boot, and every live patch is gone. */
  bootId(): Promise<string>;
  /** /proc/sys/kernel/tainted as a number (decode with `decodeTaint`). */
  tainted(): Promise<number>;

  /**
   * insmod: loading a livepatch module enables it and starts its transition. Resolves once the
   * module is loaded (the transition usually still runs: poll `listPatches`).
   */
  loadModule(request: LoadModuleRequest): Promise<void>;
  /** rmmod: only a module whose patch is gone (disabled and transition complete) and never forced. */
  removeModule(moduleName: string): Promise<void>;
  /** Whether a module of that name is loaded (also once its patch is disabled and gone from sysfs). */
  moduleLoaded(moduleName: string): Promise<boolean>;

  /** Every patch under /sys/kernel/livepatch, in kernel stack order, oldest first. */
  listPatches(): Promise<events.LivePatchState[]>;
  /** Write 0/1 to enabled: disables, or reverses the patch's own transition. */
  setEnabled(moduleName: string, enabled: boolean): Promise<void>;
  /** Write 1 to force: ends the running transition unsafely. Only with an explicit operator flag. */
  force(moduleName: string): Promise<void>;
  /** Tasks not yet switched to the target state of the running transition (none when idle). */
  stalledTasks(): Promise<events.StalledTask[]>;
}

/** /proc/<pid>/patch_state values (include/linux/livepatch.h). */
export const KLP_UNDEFINED = -1;
export const KLP_UNPATCHED = 0;
export const KLP_PATCHED = 1;
