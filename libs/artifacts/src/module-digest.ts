import { createHash, type Hash } from 'node:crypto';

export type TamperKind =
  | 'incomplete'
  | 'manifest-unreadable'
  | 'manifest-signature'
  | 'manifest-digest-mismatch'
  | 'module-size-mismatch'
  | 'module-digest-mismatch';

/**
 * A module, or its stored manifest, is not what the signed manifest says: altered, truncated or
 * swapped on disk or on the way. Such an artifact is never served and never loaded.
 */
export class TamperedArtifactError extends Error {
  constructor(
    readonly digest: string,
    readonly kind: TamperKind,
    detail: string,
  ) {
    super(`artifact ${digest} is tampered or corrupt (${kind}): ${detail}`);
    this.name = 'TamperedArtifactError';
  }
}

/**
 * Checks a module as its bytes go by (the builder while it serves them, the agent while it
 * receives them) against the sha256 and size its signed manifest pins. `update` refuses as
 * soon as more bytes arrive than the manifest allows; `finish` refuses a short or altered module.
 */
export class ModuleDigestCheck {
  private readonly hash: Hash = createHash('sha256');
  private received = 0;
  private readonly expectedSize: number;

  constructor(readonly expected: { readonly sha256: string; readonly sizeBytes: string | number }) {
    this.expectedSize = Number(expected.sizeBytes);
  }

  get bytesSeen(): number {
    return this.received;
  }

  update(chunk: Uint8Array): void {
    this.received += chunk.length;
    if (this.received > this.expectedSize) {
      throw new TamperedArtifactError(
        this.expected.sha256,
        'module-size-mismatch',
        `more than the ${this.expectedSize} bytes the manifest pins (${this.received} so far)`,
      );
    }
    this.hash.update(chunk);
  }

  /** Throws unless exactly the pinned bytes went by. Returns the digest seen. */
  finish(): string {
    if (this.received !== this.expectedSize) {
      throw new TamperedArtifactError(
        this.expected.sha256,
        'module-size-mismatch',
        `${this.received} bytes where the manifest pins ${this.expectedSize} (truncated)`,
      );
    }
    const seen = this.hash.digest('hex');
    if (seen !== this.expected.sha256) {
      throw new TamperedArtifactError(
        this.expected.sha256,
        'module-digest-mismatch',
        `the module's sha256 is ${seen}, the manifest pins ${this.expected.sha256}`,
      );
    }
    return seen;
  }
}
