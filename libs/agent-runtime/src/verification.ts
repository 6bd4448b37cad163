// What the agent checks before it touches the kernel (DESIGN.md section 7). Pure: the caller
// passes the clock, what it has seen and what it runs; nothing here reads a file or the kernel.
// The checks run in the order the bytes arrive: the command first (expired, replayed), then the
// signed manifest (before a byte of the module is downloaded), then the module as it streams.
import {
  ManifestVerificationError,
  TamperedArtifactError,
  ModuleDigestCheck,
  verifyManifest,
  type PatchManifest,
  type PinnedKey,
} from '@rebootless/artifacts';

export type RefusalReason =
  | 'invalid-command'
  | 'expired'
  | 'replayed'
  | 'bad-signature'
  | 'manifest-mismatch'
  | 'wrong-kernel-release'
  | 'wrong-vermagic'
  | 'retracted'
  | 'downgrade'
  | 'quarantined'
  | 'oversized'
  | 'truncated'
  | 'digest-mismatch';

/** A command refused before the kernel was touched; `reason` for programs, the message for people. */
export class CommandRefused extends Error {
  override readonly name = 'CommandRefused';

  constructor(
    readonly reason: RefusalReason,
    detail: string,
  ) {
    super(`${reason}: ${detail}`);
  }
}

export interface CommandFacts {
  readonly commandId: string;
  /** Absent means the command never expires; the dispatcher always sets it. */
  readonly expiresAt?: Date;
}

/** Expired or replayed commands are refused before anything is fetched. */
export function checkCommand(command: CommandFacts, now: Date, seen: (commandId: string) => boolean): void {
  if (command.commandId.trim() === '') throw new CommandRefused('invalid-command', 'command_id is empty');
  if (seen(command.commandId)) {
    throw new CommandRefused('replayed', `command ${command.commandId} was already received once`);
  }
  if (command.expiresAt && command.expiresAt.getTime() <= now.getTime()) {
    throw new CommandRefused(
      'expired',
      `command ${command.commandId} expired at ${command.expiresAt.toISOString()} (now ${now.toISOString()})`,
    );
  }
}

export interface ApplyRequestFacts {
  readonly patchId: string;
  readonly version: string;
  readonly kernelRelease: string;
  readonly artifactDigest: string;
  readonly allowDowngrade: boolean;
}

export interface RunningKernelFacts {
  /** `uname -r`. */
  readonly release: string;
  /** `uname -v`: tells whether the kernel is SMP, which vermagic records. */
  readonly version: string;
}

export interface ManifestCheckInput {
  readonly manifestBytes: Uint8Array;
  readonly signature: Uint8Array | undefined;
  readonly pinnedBuilderKey: PinnedKey;
  readonly request: ApplyRequestFacts;
  readonly kernel: RunningKernelFacts;
  /** Whether the agent knows this patch version to be retracted (and why). */
  readonly retracted: (patchId: string, version: string) => string | undefined;
  /** The version of this patch the host runs now, if any (rollback protection). */
  readonly liveVersion: string | undefined;
  readonly quarantined: (patchId: string, version: string) => string | undefined;
  /** Largest module the agent accepts, whatever a manifest claims. */
  readonly maxArtifactBytes: number;
}

/**
 * The signature first (with the pinned key, over the bytes as received), then what the signed
 * manifest says against the command and the running kernel. Returns the manifest.
 */
export function checkManifest(input: ManifestCheckInput): PatchManifest {
  let manifest: PatchManifest;
  try {
    manifest = verifyManifest(input.manifestBytes, input.signature, input.pinnedBuilderKey);
  } catch (error) {
    if (error instanceof ManifestVerificationError) throw new CommandRefused('bad-signature', error.message);
    throw error;
  }
  const { request, kernel } = input;
  if (manifest.sha256 !== request.artifactDigest) {
    throw new CommandRefused(
      'manifest-mismatch',
      `the command names artifact ${request.artifactDigest} but the signed manifest pins ${manifest.sha256}`,
    );
  }
  if (manifest.patchId !== request.patchId || manifest.version !== request.version) {
    throw new CommandRefused(
      'manifest-mismatch',
      `the command names patch ${request.patchId} ${request.version} but the signed manifest is ` +
        `${manifest.patchId} ${manifest.version}`,
    );
  }
  if (manifest.kernelRelease !== kernel.release) {
    throw new CommandRefused(
      'wrong-kernel-release',
      `the module is built for kernel ${manifest.kernelRelease}, this host runs ${kernel.release}`,
    );
  }
  if (request.kernelRelease !== '' && request.kernelRelease !== kernel.release) {
    throw new CommandRefused(
      'wrong-kernel-release',
      `the command targets kernel ${request.kernelRelease}, this host runs ${kernel.release}`,
    );
  }
  const vermagicProblem = vermagicMismatch(manifest.vermagic, kernel);
  if (vermagicProblem) throw new CommandRefused('wrong-vermagic', vermagicProblem);
  const retraction = input.retracted(manifest.patchId, manifest.version);
  if (retraction !== undefined) {
    throw new CommandRefused('retracted', `patch ${manifest.patchId} ${manifest.version} is retracted: ${retraction}`);
  }
  const quarantine = input.quarantined(manifest.patchId, manifest.version);
  if (quarantine !== undefined) {
    throw new CommandRefused(
      'quarantined',
      `patch ${manifest.patchId} ${manifest.version} is quarantined on this host: ${quarantine}`,
    );
  }
  if (input.liveVersion !== undefined && compareVersions(manifest.version, input.liveVersion) < 0) {
    if (!request.allowDowngrade) {
      throw new CommandRefused(
        'downgrade',
        `version ${manifest.version} is older than the live ${input.liveVersion} and the command does not allow a downgrade`,
      );
    }
  }
  const size = Number(manifest.sizeBytes);
  if (size > input.maxArtifactBytes) {
    throw new CommandRefused(
      'oversized',
      `the manifest announces ${size} bytes; this agent accepts modules of at most ${input.maxArtifactBytes}`,
    );
  }
  return manifest;
}

/**
 * vermagic is "<release> SMP preempt mod_unload modversions": the kernel refuses a module whose
 * release differs (ENOEXEC), and an SMP kernel one built without SMP. Checked here so that a
 * mismatched module never reaches the kernel at all.
 */
export function vermagicMismatch(vermagic: string, kernel: RunningKernelFacts): string | undefined {
  const words = vermagic.trim().split(/\s+/);
  if (words[0] !== kernel.release) {
    return `the module's vermagic ${JSON.stringify(vermagic)} names kernel ${words[0] ?? '(none)'}, this host runs ${kernel.release}`;
  }
  const smpKernel = /\bSMP\b/.test(kernel.version);
  if (smpKernel !== words.includes('SMP')) {
    return `the module's vermagic ${JSON.stringify(vermagic)} does not match this ${smpKernel ? 'SMP' : 'non-SMP'} kernel (${kernel.version})`;
  }
  return undefined;
}

/**
 * The module as it streams in, against the sha256 and size its signed manifest pins: refused as
 * soon as it grows past the size, and at the end when short or altered.
 */
export class ModuleReceipt {
  private readonly check: ModuleDigestCheck;

  constructor(readonly manifest: PatchManifest) {
    this.check = new ModuleDigestCheck(manifest);
  }

  get bytesSeen(): number {
    return this.check.bytesSeen;
  }

  add(chunk: Uint8Array): void {
    try {
      this.check.update(chunk);
    } catch (error) {
      throw asRefusal(error);
    }
  }

  finish(): void {
    try {
      this.check.finish();
    } catch (error) {
      throw asRefusal(error);
    }
  }
}

function asRefusal(error: unknown): unknown {
  if (!(error instanceof TamperedArtifactError)) return error;
  if (error.kind === 'module-size-mismatch') {
    return new CommandRefused(/\(truncated\)/.test(error.message) ? 'truncated' : 'oversized', error.message);
  }
  return new CommandRefused('digest-mismatch', error.message);
}

/** Every check on a complete download at once: the command, the manifest, then the module. */
export function verifyArtifact(
  input: ManifestCheckInput & {
    readonly command: CommandFacts;
    readonly now: Date;
    readonly seen: (commandId: string) => boolean;
    readonly module: Iterable<Uint8Array>;
  },
): PatchManifest {
  checkCommand(input.command, input.now, input.seen);
  const manifest = checkManifest(input);
  const receipt = new ModuleReceipt(manifest);
  for (const chunk of input.module) receipt.add(chunk);
  receipt.finish();
  return manifest;
}

/**
 * Orders patch versions the way people number them: dot- or dash-separated parts, numeric parts
 * numerically ("1.10" > "1.9"), a numeric part above a textual one. Negative when a < b.
 */
export function compareVersions(a: string, b: string): number {
  const pa = a.split(/[.\-+~]/);
  const pb = b.split(/[.\-+~]/);
  for (let i = 0; i < Math.max(pa.length, pb.length); i++) {
    const x = pa[i];
    const y = pb[i];
    if (x === undefined) return -1;
    if (y === undefined) return 1;
    const nx = /^\d+$/.test(x) ? Number(x) : undefined;
    const ny = /^\d+$/.test(y) ? Number(y) : undefined;
    if (nx !== undefined && ny !== undefined) {
      if (nx !== ny) return nx - ny;
    } else if (nx !== undefined) {
      return 1;
    } else if (ny !== undefined) {
      return -1;
    } else if (x !== y) {
      return x < y ? -1 : 1;
    }
  }
  return 0;
}
