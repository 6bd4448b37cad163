/** Where the lab failed: fetching the kernel, assembling the initramfs, or running the guest. */
export type KernelLabStage = 'kernel-image' | 'initramfs' | 'bundle' | 'boot' | 'guest';

/** Every failure of the lab that is not Debian's or the toolchain's own (those stay ToolchainErrors). */
export class KernelLabError extends Error {
  override readonly name = 'KernelLabError';

  constructor(
    readonly stage: KernelLabStage,
    message: string,
    /** The last console lines of the guest, or a tool's output, when there are any. */
    readonly log: string[] = [],
  ) {
    super(message);
  }
}
