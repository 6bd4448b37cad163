// The signed manifest of a patch artifact (DESIGN.md section 7). The builder encodes a
// events.v1.PatchManifest once, deterministically, and signs those bytes; the bytes travel with
// the signature (FetchArtifact's header, BuildSucceeded) and every verifier checks the signature
// over exactly them. Nobody re-encodes a decoded manifest to check it: a protobuf map may be
// re-encoded in another order, which would break a signature over the original.
import { createHash, type KeyObject } from 'node:crypto';
import { BinaryWriter } from '@bufbuild/protobuf/wire';
import { events } from '@rebootless/contracts';
import { keyFingerprint, rawPublicKey, signHash, verifyHash, type SigningKey } from '@rebootless/events';

export type PatchManifest = events.PatchManifest;

/** Lower-case hex sha256, as manifests and FetchArtifact name modules. */
export const DIGEST_PATTERN = /^[0-9a-f]{64}$/;

export function isDigest(text: string): boolean {
  return DIGEST_PATTERN.test(text);
}

export function sha256Hex(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** A manifest that cannot be signed as it is, or signed bytes that do not make a usable manifest. */
export class ManifestError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`manifest is incomplete: ${problems.join('; ')}`);
    this.name = 'ManifestError';
  }
}

/** What the builder hands out: the bytes exactly as signed, and the signature over them. */
export interface SignedManifest {
  readonly manifest: PatchManifest;
  readonly bytes: Buffer;
  readonly signature: Buffer;
}

/** Fields an agent relies on before it touches the kernel; a manifest without them is refused. */
export function manifestProblems(m: PatchManifest): string[] {
  const problems: string[] = [];
  const required: [keyof PatchManifest, string][] = [
    ['patchId', m.patchId],
    ['version', m.version],
    ['moduleName', m.moduleName],
    ['kernelRelease', m.kernelRelease],
    ['vermagic', m.vermagic],
    ['builtAt', m.builtAt],
  ];
  for (const [field, value] of required) {
    if (value.trim() === '') problems.push(`${field} is empty`);
  }
  if (!isDigest(m.sha256)) problems.push(`sha256 ${JSON.stringify(m.sha256)} is not 64 lower-case hex digits`);
  if (!/^[1-9][0-9]*$/.test(m.sizeBytes))
    problems.push(`sizeBytes ${JSON.stringify(m.sizeBytes)} is not a positive integer`);
  if (m.functions.length === 0) problems.push('functions is empty: a live patch replaces at least one function');
  return problems;
}

/**
 * The manifest's protobuf encoding with its fields in field-number order and the toolchain map's
 * entries sorted by key (bytewise UTF-8), so the same manifest always gives the same bytes
 * whatever order its map was filled in.
 */
export function encodeManifest(manifest: PatchManifest): Buffer {
  const writer = new BinaryWriter();
  // Fields 1 to 11 through the generated encoder (an empty map and empty 13/14 write nothing)...
  events.PatchManifest.encode({ ...manifest, toolchain: {}, builtAt: '', description: '' }, writer);
  // ...then 12 (the map) sorted, then 13 and 14, as the generated encoder would order them.
  const entries = Object.entries(manifest.toolchain).sort(([a], [b]) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
  for (const [key, value] of entries) {
    events.PatchManifest_ToolchainEntry.encode({ key, value }, writer.uint32((12 << 3) | 2).fork()).join();
  }
  if (manifest.builtAt !== '') writer.uint32((13 << 3) | 2).string(manifest.builtAt);
  if (manifest.description !== '') writer.uint32((14 << 3) | 2).string(manifest.description);
  return Buffer.from(writer.finish());
}

/**
 * Encodes and signs a manifest with the builder's Ed25519 key: the signature covers the encoded
 * bytes themselves. The same key seals the builder's event chain, where it signs 32-byte hashes;
 * a complete manifest is far longer than 32 bytes, so neither signature can pass for the other.
 */
export function signManifest(manifest: PatchManifest, key: SigningKey): SignedManifest {
  const problems = manifestProblems(manifest);
  if (problems.length > 0) throw new ManifestError(problems);
  const bytes = encodeManifest(manifest);
  return { manifest, bytes, signature: signHash(key, bytes) };
}

export type ManifestRefusal =
  'missing-signature' | 'malformed-signature' | 'bad-signature' | 'undecodable' | 'incomplete';

/** Why a signed manifest was refused; `reason` for programs, the message for people. */
export class ManifestVerificationError extends Error {
  constructor(
    readonly reason: ManifestRefusal,
    message: string,
  ) {
    super(message);
    this.name = 'ManifestVerificationError';
  }
}

/** The builder key an agent pins: a KeyObject or the raw 32-byte Ed25519 public key. */
export type PinnedKey = KeyObject | Uint8Array;

// A KeyObject's raw bytes need a DER export, which costs more than the verification itself when
// thousands of agents check one manifest each with the same pinned key: exported once per key.
const rawOfKeyObject = new WeakMap<KeyObject, Uint8Array>();

function rawKey(key: PinnedKey): Uint8Array {
  if (key instanceof Uint8Array) return key;
  let raw = rawOfKeyObject.get(key);
  if (!raw) rawOfKeyObject.set(key, (raw = rawPublicKey(key)));
  return raw;
}

/**
 * Checks the signature over the bytes as received, with the pinned builder key, and only then
 * decodes them. Returns the manifest; throws ManifestVerificationError saying what is wrong.
 */
export function verifyManifest(
  bytes: Uint8Array,
  signature: Uint8Array | undefined,
  pinnedBuilderKey: PinnedKey,
): PatchManifest {
  const key = rawKey(pinnedBuilderKey);
  if (signature === undefined || signature.length === 0) {
    throw new ManifestVerificationError('missing-signature', 'the manifest carries no signature');
  }
  if (signature.length !== 64) {
    throw new ManifestVerificationError(
      'malformed-signature',
      `the manifest signature has ${signature.length} bytes; an Ed25519 signature has 64`,
    );
  }
  if (bytes.length === 0 || !verifyHash(key, bytes, signature)) {
    throw new ManifestVerificationError(
      'bad-signature',
      `the manifest signature does not verify with the pinned builder key ${keyFingerprint(key)}: ` +
        'signed by another key, or the manifest or its signature was altered',
    );
  }
  let manifest: PatchManifest;
  try {
    manifest = events.PatchManifest.decode(bytes);
  } catch (error) {
    throw new ManifestVerificationError(
      'undecodable',
      `the manifest is signed but is not a PatchManifest: ${(error as Error).message}`,
    );
  }
  const problems = manifestProblems(manifest);
  if (problems.length > 0) {
    throw new ManifestVerificationError('incomplete', `the signed manifest is incomplete: ${problems.join('; ')}`);
  }
  return manifest;
}
