// Content-addressed artifacts in a directory: a module is stored under the sha256 of its bytes,
// next to the manifest bytes exactly as signed and the signature. Nothing is served on trust:
// every open re-hashes the module and checks it against the signed manifest, and serving hashes
// it once more while the bytes go out.
//
// Layout under the store's directory:
//   objects/<first two hex digits>/<digest>/module.ko, manifest.pb, manifest.sig
//   tmp/             entries being written (renamed into objects/ when complete)
//   quarantine/      entries found damaged when a good copy of the same digest was stored
//   retractions.json patches an operator retracted; never served again
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { events } from '@rebootless/contracts';
import {
  ManifestVerificationError,
  isDigest,
  manifestProblems,
  sha256Hex,
  verifyManifest,
  type PatchManifest,
  type PinnedKey,
  type SignedManifest,
} from './manifest';
import { ModuleDigestCheck, TamperedArtifactError } from './module-digest';

const MODULE_FILE = 'module.ko';
const MANIFEST_FILE = 'manifest.pb';
const SIGNATURE_FILE = 'manifest.sig';
const RETRACTIONS_FILE = 'retractions.json';
export const DEFAULT_CHUNK_BYTES = 64 * 1024;

export class InvalidDigestError extends Error {
  constructor(readonly digest: string) {
    super(`${JSON.stringify(digest)} is not an artifact digest: expected 64 lower-case hex digits (a sha256)`);
    this.name = 'InvalidDigestError';
  }
}

export class ArtifactNotFoundError extends Error {
  constructor(readonly digest: string) {
    super(`no artifact ${digest} in the store`);
    this.name = 'ArtifactNotFoundError';
  }
}

export class RetractedArtifactError extends Error {
  constructor(
    readonly digest: string,
    readonly retraction: Retraction,
  ) {
    super(
      `artifact ${digest} belongs to patch ${retraction.patchId} version ${retraction.version}, ` +
        `retracted at ${retraction.retractedAt}: ${retraction.reason}`,
    );
    this.name = 'RetractedArtifactError';
  }
}

/** A module and its manifest put into the store do not agree, or the manifest is not signed by the store's key. */
export class ArtifactRejectedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ArtifactRejectedError';
  }
}

export interface Retraction {
  readonly patchId: string;
  readonly version: string;
  readonly reason: string;
  /** ISO-8601. */
  readonly retractedAt: string;
  /** Whether the PatchRetracted event was written; a retraction not yet announced is announced again. */
  readonly announced: boolean;
}

/** An artifact whose module was hashed and found to match its signed manifest. */
export interface StoredArtifact {
  readonly digest: string;
  readonly manifest: PatchManifest;
  /** The encoded manifest exactly as signed. */
  readonly manifestBytes: Buffer;
  readonly signature: Buffer;
  readonly sizeBytes: number;
  readonly modulePath: string;
}

export interface ArtifactStoreOptions {
  readonly dir: string;
  /**
   * The builder's public key. When given, a manifest whose signature does not verify with it is
   * refused on put and treated as tampered on open.
   */
  readonly builderKey?: PinnedKey;
  readonly now?: () => Date;
}

interface RetractionsFile {
  version: 1;
  retractions: Retraction[];
}

export class ArtifactStore {
  readonly dir: string;
  private readonly objectsDir: string;
  private readonly tmpDir: string;
  private readonly quarantineDir: string;
  private readonly retractionsPath: string;
  private readonly now: () => Date;
  private retractionList: Retraction[];

  constructor(private readonly options: ArtifactStoreOptions) {
    this.dir = path.resolve(options.dir);
    this.objectsDir = path.join(this.dir, 'objects');
    this.tmpDir = path.join(this.dir, 'tmp');
    this.quarantineDir = path.join(this.dir, 'quarantine');
    this.retractionsPath = path.join(this.dir, RETRACTIONS_FILE);
    this.now = options.now ?? (() => new Date());
    fs.mkdirSync(this.objectsDir, { recursive: true });
    fs.mkdirSync(this.tmpDir, { recursive: true });
    // Leftovers of writes a crash interrupted: never visible under objects/, safe to drop.
    for (const leftover of fs.readdirSync(this.tmpDir)) {
      fs.rmSync(path.join(this.tmpDir, leftover), { recursive: true, force: true });
    }
    this.retractionList = this.loadRetractions();
  }

  /** Where an artifact lives (whether or not it is there). */
  entryDir(digest: string): string {
    if (!isDigest(digest)) throw new InvalidDigestError(digest);
    return path.join(this.objectsDir, digest.slice(0, 2), digest);
  }

  /**
   * Stores a module with its signed manifest. The module must hash to the manifest's sha256 and
   * size. If an intact artifact with that digest is already stored it is kept as it was (an
   * artifact never changes once stored) and returned with `existing: true`; a damaged one is
   * moved to quarantine/ and replaced.
   */
  async put(input: {
    module: Uint8Array;
    signed: SignedManifest;
  }): Promise<{ artifact: StoredArtifact; existing: boolean }> {
    const { module, signed } = input;
    const digest = sha256Hex(module);
    const manifest = this.checkedManifest(signed);
    if (manifest.sha256 !== digest) {
      throw new ArtifactRejectedError(`the module's sha256 is ${digest} but its manifest pins ${manifest.sha256}`);
    }
    if (Number(manifest.sizeBytes) !== module.length) {
      throw new ArtifactRejectedError(
        `the module has ${module.length} bytes but its manifest pins ${manifest.sizeBytes}`,
      );
    }
    const target = this.entryDir(digest);
    const existing = await this.openIntact(digest);
    if (existing) return { artifact: existing, existing: true };

    const staging = path.join(this.tmpDir, `${digest}.${process.pid}.${randomBytes(4).toString('hex')}`);
    fs.mkdirSync(staging);
    try {
      writeSynced(path.join(staging, MODULE_FILE), module);
      writeSynced(path.join(staging, MANIFEST_FILE), signed.bytes);
      writeSynced(path.join(staging, SIGNATURE_FILE), signed.signature);
      syncDir(staging);
      fs.mkdirSync(path.dirname(target), { recursive: true });
      if (fs.existsSync(target)) this.quarantine(digest);
      fs.renameSync(staging, target);
      syncDir(path.dirname(target));
    } catch (error) {
      fs.rmSync(staging, { recursive: true, force: true });
      // Another writer may have placed the same digest between our check and our rename.
      const placed = await this.openIntact(digest);
      if (placed) return { artifact: placed, existing: true };
      throw error;
    }
    return {
      artifact: {
        digest,
        manifest,
        manifestBytes: Buffer.from(signed.bytes),
        signature: Buffer.from(signed.signature),
        sizeBytes: module.length,
        modulePath: path.join(target, MODULE_FILE),
      },
      existing: false,
    };
  }

  /**
   * The artifact, after re-hashing its module against its signed manifest. Throws
   * InvalidDigestError, ArtifactNotFoundError, TamperedArtifactError or RetractedArtifactError.
   */
  async open(digest: string): Promise<StoredArtifact> {
    const artifact = await this.openVerified(digest);
    const retraction = this.retraction(artifact.manifest.patchId, artifact.manifest.version);
    if (retraction) throw new RetractedArtifactError(digest, retraction);
    return artifact;
  }

  /**
   * The module's bytes in chunks, hashed again as they are read. The last chunk is held back
   * until the whole file has been hashed: if the file changed since `open`, the stream fails
   * with TamperedArtifactError before the module is complete on the other side.
   */
  async *chunks(artifact: StoredArtifact, chunkBytes = DEFAULT_CHUNK_BYTES): AsyncGenerator<Buffer> {
    const check = new ModuleDigestCheck({ sha256: artifact.digest, sizeBytes: artifact.sizeBytes });
    let handle: fs.promises.FileHandle;
    try {
      handle = await fs.promises.open(artifact.modulePath, 'r');
    } catch (error) {
      throw new TamperedArtifactError(
        artifact.digest,
        'incomplete',
        `its module cannot be read: ${(error as Error).message}`,
      );
    }
    try {
      let held: Buffer | undefined;
      for (;;) {
        const buffer = Buffer.allocUnsafe(chunkBytes);
        const { bytesRead } = await handle.read(buffer, 0, chunkBytes, null);
        if (bytesRead === 0) break;
        const chunk = buffer.subarray(0, bytesRead);
        check.update(chunk);
        if (held) yield held;
        held = chunk;
      }
      check.finish();
      if (held) yield held;
    } finally {
      await handle.close();
    }
  }

  /** Digests of every artifact stored, intact or not. */
  list(): string[] {
    const out: string[] = [];
    for (const shard of safeReaddir(this.objectsDir)) {
      for (const digest of safeReaddir(path.join(this.objectsDir, shard))) {
        if (isDigest(digest) && digest.startsWith(shard)) out.push(digest);
      }
    }
    return out.sort();
  }

  /** The stored manifest of an artifact as signed, without re-hashing the module (listing, retraction). */
  readManifest(digest: string): PatchManifest | undefined {
    try {
      return events.PatchManifest.decode(fs.readFileSync(path.join(this.entryDir(digest), MANIFEST_FILE)));
    } catch {
      return undefined;
    }
  }

  // ---- retractions ------------------------------------------------------------------------

  retraction(patchId: string, version: string): Retraction | undefined {
    return this.retractionList.find((r) => r.patchId === patchId && r.version === version);
  }

  retractions(): readonly Retraction[] {
    return this.retractionList;
  }

  /**
   * Records that a patch version must never be served again. Idempotent: retracting it again
   * keeps the first reason and time and says `newly: false`.
   */
  retract(input: { patchId: string; version: string; reason: string }): { retraction: Retraction; newly: boolean } {
    const found = this.retraction(input.patchId, input.version);
    if (found) return { retraction: found, newly: false };
    const retraction: Retraction = { ...input, retractedAt: this.now().toISOString(), announced: false };
    this.saveRetractions([...this.retractionList, retraction]);
    return { retraction, newly: true };
  }

  /** Notes that the PatchRetracted event for this retraction is in the log. */
  markAnnounced(patchId: string, version: string): void {
    this.saveRetractions(
      this.retractionList.map((r) => (r.patchId === patchId && r.version === version ? { ...r, announced: true } : r)),
    );
  }

  // ---- internals ----------------------------------------------------------------------------

  private checkedManifest(signed: SignedManifest): PatchManifest {
    if (this.options.builderKey) {
      try {
        return verifyManifest(signed.bytes, signed.signature, this.options.builderKey);
      } catch (error) {
        throw new ArtifactRejectedError(`the manifest is not signed by the builder key: ${(error as Error).message}`);
      }
    }
    const manifest = events.PatchManifest.decode(signed.bytes);
    const problems = manifestProblems(manifest);
    if (problems.length > 0) throw new ArtifactRejectedError(`the manifest is incomplete: ${problems.join('; ')}`);
    return manifest;
  }

  /** Like open() without the retraction check; undefined when absent or damaged. */
  private async openIntact(digest: string): Promise<StoredArtifact | undefined> {
    try {
      return await this.openVerified(digest);
    } catch (error) {
      if (error instanceof ArtifactNotFoundError || error instanceof TamperedArtifactError) return undefined;
      throw error;
    }
  }

  private async openVerified(digest: string): Promise<StoredArtifact> {
    const dir = this.entryDir(digest);
    if (!fs.existsSync(dir)) throw new ArtifactNotFoundError(digest);
    const read = (file: string): Buffer => {
      try {
        return fs.readFileSync(path.join(dir, file));
      } catch (error) {
        throw new TamperedArtifactError(digest, 'incomplete', `${file} cannot be read: ${(error as Error).message}`);
      }
    };
    const manifestBytes = read(MANIFEST_FILE);
    const signature = read(SIGNATURE_FILE);
    let manifest: PatchManifest;
    if (this.options.builderKey) {
      try {
        manifest = verifyManifest(manifestBytes, signature, this.options.builderKey);
      } catch (error) {
        if (!(error instanceof ManifestVerificationError)) throw error;
        throw new TamperedArtifactError(digest, 'manifest-signature', `its stored manifest: ${error.message}`);
      }
    } else {
      try {
        manifest = events.PatchManifest.decode(manifestBytes);
      } catch (error) {
        throw new TamperedArtifactError(digest, 'manifest-unreadable', (error as Error).message);
      }
    }
    if (manifest.sha256 !== digest) {
      throw new TamperedArtifactError(
        digest,
        'manifest-digest-mismatch',
        `its stored manifest pins sha256 ${manifest.sha256}, not the digest it is stored under`,
      );
    }
    const modulePath = path.join(dir, MODULE_FILE);
    const check = new ModuleDigestCheck(manifest);
    let stream: fs.ReadStream;
    try {
      stream = fs.createReadStream(modulePath, { highWaterMark: DEFAULT_CHUNK_BYTES });
      for await (const chunk of stream) check.update(chunk as Buffer);
    } catch (error) {
      if (error instanceof TamperedArtifactError) throw error;
      throw new TamperedArtifactError(
        digest,
        'incomplete',
        `${MODULE_FILE} cannot be read: ${(error as Error).message}`,
      );
    }
    check.finish();
    return { digest, manifest, manifestBytes, signature, sizeBytes: check.bytesSeen, modulePath };
  }

  private quarantine(digest: string): void {
    fs.mkdirSync(this.quarantineDir, { recursive: true });
    const to = path.join(this.quarantineDir, `${digest}.${this.now().getTime()}.${randomBytes(2).toString('hex')}`);
    fs.renameSync(this.entryDir(digest), to);
  }

  private loadRetractions(): Retraction[] {
    let raw: string;
    try {
      raw = fs.readFileSync(this.retractionsPath, 'utf8');
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === 'ENOENT') return [];
      throw error;
    }
    // A retraction list that cannot be read must stop the service: serving without it could hand
    // out a patch an operator retracted.
    let parsed: RetractionsFile;
    try {
      parsed = JSON.parse(raw) as RetractionsFile;
    } catch (error) {
      throw new Error(`retraction list ${this.retractionsPath} is unreadable: ${(error as Error).message}`);
    }
    if (parsed.version !== 1 || !Array.isArray(parsed.retractions)) {
      throw new Error(`retraction list ${this.retractionsPath} has an unknown format`);
    }
    return parsed.retractions;
  }

  private saveRetractions(list: Retraction[]): void {
    const file: RetractionsFile = { version: 1, retractions: list };
    const tmp = path.join(this.tmpDir, `${RETRACTIONS_FILE}.${process.pid}.${randomBytes(4).toString('hex')}`);
    writeSynced(tmp, Buffer.from(JSON.stringify(file, null, 2) + '\n'));
    fs.renameSync(tmp, this.retractionsPath);
    syncDir(this.dir);
    this.retractionList = list;
  }
}

function writeSynced(file: string, data: Uint8Array): void {
  const fd = fs.openSync(file, 'wx', 0o644);
  try {
    fs.writeSync(fd, data);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function syncDir(dir: string): void {
  const fd = fs.openSync(dir, 'r');
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch {
    return [];
  }
}
