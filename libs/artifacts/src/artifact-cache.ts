// A site's copy of the builder's artifacts (docs/adr/0026): each module is fetched from the
// builder once, kept under its digest in a bounded directory, and served to every host that asks.
// The cache carries bytes; it vouches for nothing. The builder's header (manifest bytes as signed,
// signature) is passed through untouched and every agent verifies both itself. What the cache
// checks is for its own hygiene: what it keeps must hash to the digest it is kept under, and a
// copy found damaged while it was served is dropped so the next request fetches it again.
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { events } from '@rebootless/contracts';
import { ArtifactStore, DEFAULT_CHUNK_BYTES, InvalidDigestError } from './artifact-store';
import { isDigest, verifyManifest, type PatchManifest, type PinnedKey } from './manifest';

/** What the builder answered for one digest, as received: nothing in it is trusted yet. */
export interface FetchedFromBuilder {
  readonly manifestBytes: Buffer;
  readonly signature: Buffer;
  readonly module: Buffer;
}

/** Why the builder gave no artifact; the dispatcher maps each to a gRPC status. */
export type UpstreamFailure = 'not-found' | 'retracted' | 'unavailable' | 'refused';

export class ArtifactUpstreamError extends Error {
  override readonly name = 'ArtifactUpstreamError';

  constructor(
    readonly failure: UpstreamFailure,
    message: string,
  ) {
    super(message);
  }
}

/** The cache will not serve this artifact: its patch version was retracted. */
export class ArtifactRetractedError extends Error {
  override readonly name = 'ArtifactRetractedError';

  constructor(
    readonly digest: string,
    readonly patchId: string,
    readonly version: string,
    readonly reason: string,
  ) {
    super(`artifact ${digest} belongs to patch ${patchId} version ${version}, retracted: ${reason}`);
  }
}

export interface ArtifactCacheOptions {
  /** The cache's directory (an ArtifactStore layout). */
  readonly dir: string;
  /** Bytes of modules kept before the least recently served are evicted. */
  readonly maxBytes: number;
  /** One FetchArtifact from the builder. */
  readonly fetchFromBuilder: (digest: string) => Promise<FetchedFromBuilder>;
  /** The builder keys a manifest may be signed with; empty: the signature is left to the agents alone. */
  readonly builderKeys: () => readonly PinnedKey[];
  /** Why a patch version was retracted, once the log says so; undefined while it is not. */
  readonly retraction: (patchId: string, version: string) => string | undefined;
  readonly chunkBytes?: number;
  readonly now?: () => number;
  /** Told when a kept copy was found damaged and dropped (the operator's log). */
  readonly onDamaged?: (digest: string, detail: string) => void;
}

export interface CacheCounters {
  /** Requests answered from a kept copy. */
  hits: number;
  /** Requests that needed a fetch from the builder (their own or one already under way). */
  misses: number;
  /** FetchArtifact calls made to the builder. */
  builderFetches: number;
  /** Module bytes sent to hosts. */
  bytesServed: number;
  /** Module bytes received from the builder. */
  bytesFetched: number;
  /** Copies dropped to stay under maxBytes. */
  evictions: number;
  /** Copies found damaged while served, and dropped. */
  damaged: number;
}

interface Entry {
  readonly digest: string;
  readonly manifest: PatchManifest;
  readonly manifestBytes: Buffer;
  readonly signature: Buffer;
  readonly sizeBytes: number;
  lastServed: number;
}

/** One artifact on its way to a host: the builder's header as it was signed, then the module's bytes. */
export interface ServedArtifact {
  readonly digest: string;
  readonly manifestBytes: Buffer;
  readonly signature: Buffer;
  readonly sizeBytes: number;
  /** Whether the copy was already kept (no builder fetch for this request). */
  readonly hit: boolean;
  /**
   * The module as kept, hashed on the way out. Sent in full whatever the hash says: the agent's
   * own check is what refuses a damaged module; a mismatch here only drops the copy afterwards.
   */
  chunks(): AsyncGenerator<Buffer>;
  /** Closes the file if the chunks were not read to the end. */
  close(): Promise<void>;
}

const MODULE_FILE = 'module.ko';

export class ArtifactCache {
  private readonly store: ArtifactStore;
  private readonly entries = new Map<string, Entry>();
  private readonly fetching = new Map<string, Promise<Entry>>();
  private readonly chunkBytes: number;
  private readonly now: () => number;
  private keptBytes = 0;
  readonly counters: CacheCounters = {
    hits: 0,
    misses: 0,
    builderFetches: 0,
    bytesServed: 0,
    bytesFetched: 0,
    evictions: 0,
    damaged: 0,
  };

  constructor(private readonly options: ArtifactCacheOptions) {
    if (!(options.maxBytes > 0)) throw new Error(`the artifact cache needs a positive size, not ${options.maxBytes}`);
    this.store = new ArtifactStore({ dir: options.dir });
    this.chunkBytes = options.chunkBytes ?? DEFAULT_CHUNK_BYTES;
    this.now = options.now ?? Date.now;
    // What an earlier run kept is served again; each copy is hashed whenever it is served.
    for (const digest of this.store.list()) {
      const entry = this.readEntry(digest);
      if (entry) this.remember(entry);
      else this.drop(digest);
    }
    this.evictBeyond(options.maxBytes, '');
  }

  /** Bytes of modules kept now. */
  get sizeBytes(): number {
    return this.keptBytes;
  }

  /** Digests kept now. */
  digests(): string[] {
    return [...this.entries.keys()].sort();
  }

  /** Where a kept module lives (tests, operators). */
  modulePath(digest: string): string {
    return path.join(this.store.entryDir(digest), MODULE_FILE);
  }

  /**
   * The artifact from the kept copy, or fetched from the builder once for every request that
   * asks while the fetch runs. Throws InvalidDigestError, ArtifactRetractedError or
   * ArtifactUpstreamError.
   */
  async serve(digest: string): Promise<ServedArtifact> {
    if (!isDigest(digest)) throw new InvalidDigestError(digest);
    let entry = this.entries.get(digest);
    const hit = entry !== undefined;
    if (entry) this.counters.hits += 1;
    else {
      this.counters.misses += 1;
      entry = await this.fill(digest);
    }
    const reason = this.options.retraction(entry.manifest.patchId, entry.manifest.version);
    if (reason !== undefined) {
      throw new ArtifactRetractedError(digest, entry.manifest.patchId, entry.manifest.version, reason);
    }
    entry.lastServed = this.now();
    // Opened before the header goes out: an eviction meanwhile unlinks the file, not our handle.
    let handle: fs.promises.FileHandle;
    try {
      handle = await fs.promises.open(this.modulePath(digest), 'r');
    } catch (error) {
      this.forget(entry, `its module cannot be read: ${(error as Error).message}`);
      return this.serve(digest);
    }
    return this.served(entry, handle, hit);
  }

  private served(entry: Entry, handle: fs.promises.FileHandle, hit: boolean): ServedArtifact {
    let closed = false;
    const close = async () => {
      if (closed) return;
      closed = true;
      await handle.close();
    };
    return {
      digest: entry.digest,
      manifestBytes: entry.manifestBytes,
      signature: entry.signature,
      sizeBytes: entry.sizeBytes,
      hit,
      close,
      chunks: () => this.stream(entry, handle, close),
    };
  }

  private async *stream(
    entry: Entry,
    handle: fs.promises.FileHandle,
    close: () => Promise<void>,
  ): AsyncGenerator<Buffer> {
    const hash = createHash('sha256');
    let bytes = 0;
    try {
      for (;;) {
        const buffer = Buffer.allocUnsafe(this.chunkBytes);
        const { bytesRead } = await handle.read(buffer, 0, this.chunkBytes, null);
        if (bytesRead === 0) break;
        const chunk = buffer.subarray(0, bytesRead);
        hash.update(chunk);
        bytes += bytesRead;
        this.counters.bytesServed += bytesRead;
        yield chunk;
      }
    } finally {
      await close();
    }
    const seen = hash.digest('hex');
    if (seen !== entry.digest || bytes !== entry.sizeBytes) {
      this.forget(
        entry,
        `the kept module has ${bytes} bytes hashing to ${seen}, not the ${entry.sizeBytes} bytes the digest names; ` +
          'it was served, the receiving agent refuses it, and the next request fetches it again',
      );
    }
  }

  private fill(digest: string): Promise<Entry> {
    const running = this.fetching.get(digest);
    if (running) return running;
    const fill = this.fetchAndKeep(digest).finally(() => this.fetching.delete(digest));
    this.fetching.set(digest, fill);
    return fill;
  }

  private async fetchAndKeep(digest: string): Promise<Entry> {
    this.counters.builderFetches += 1;
    const fetched = await this.options.fetchFromBuilder(digest);
    this.counters.bytesFetched += fetched.module.length;
    const manifest = this.checkedManifest(digest, fetched);
    // The store refuses a module that does not hash to the manifest's sha256 and size.
    let stored;
    try {
      ({ artifact: stored } = await this.store.put({
        module: fetched.module,
        signed: { manifest, bytes: fetched.manifestBytes, signature: fetched.signature },
      }));
    } catch (error) {
      throw new ArtifactUpstreamError('refused', `the builder's answer for ${digest}: ${(error as Error).message}`);
    }
    if (stored.digest !== digest) {
      throw new ArtifactUpstreamError('refused', `the builder answered ${digest} with module ${stored.digest}`);
    }
    const entry: Entry = {
      digest,
      manifest,
      manifestBytes: fetched.manifestBytes,
      signature: fetched.signature,
      sizeBytes: fetched.module.length,
      lastServed: this.now(),
    };
    this.remember(entry);
    this.evictBeyond(this.options.maxBytes, digest);
    return entry;
  }

  private checkedManifest(digest: string, fetched: FetchedFromBuilder): PatchManifest {
    const keys = this.options.builderKeys();
    let manifest: PatchManifest | undefined;
    if (keys.length === 0) {
      try {
        manifest = events.PatchManifest.decode(fetched.manifestBytes);
      } catch (error) {
        throw new ArtifactUpstreamError(
          'refused',
          `the builder's manifest for ${digest} is unreadable: ${String(error)}`,
        );
      }
    } else {
      const problems: string[] = [];
      for (const key of keys) {
        try {
          manifest = verifyManifest(fetched.manifestBytes, fetched.signature, key);
          break;
        } catch (error) {
          problems.push((error as Error).message);
        }
      }
      if (!manifest) {
        throw new ArtifactUpstreamError('refused', `the manifest of ${digest} is not the builder's: ${problems[0]}`);
      }
    }
    if (manifest.sha256 !== digest) {
      throw new ArtifactUpstreamError(
        'refused',
        `asked for ${digest}, the builder sent the manifest of ${manifest.sha256}`,
      );
    }
    return manifest;
  }

  private remember(entry: Entry): void {
    const known = this.entries.get(entry.digest);
    if (known) this.keptBytes -= known.sizeBytes;
    this.entries.set(entry.digest, entry);
    this.keptBytes += entry.sizeBytes;
  }

  /** Least recently served first, never `keep` (the copy just fetched): one artifact larger than the bound still serves. */
  private evictBeyond(maxBytes: number, keep: string): void {
    if (this.keptBytes <= maxBytes) return;
    const oldest = [...this.entries.values()]
      .filter((e) => e.digest !== keep)
      .sort((a, b) => a.lastServed - b.lastServed);
    for (const entry of oldest) {
      if (this.keptBytes <= maxBytes) break;
      this.entries.delete(entry.digest);
      this.keptBytes -= entry.sizeBytes;
      this.drop(entry.digest);
      this.counters.evictions += 1;
    }
  }

  /** Drops a damaged copy, unless a fresh one has replaced it meanwhile. */
  private forget(entry: Entry, detail: string): void {
    if (this.entries.get(entry.digest) !== entry) return;
    this.entries.delete(entry.digest);
    this.keptBytes -= entry.sizeBytes;
    this.drop(entry.digest);
    this.counters.damaged += 1;
    this.options.onDamaged?.(entry.digest, detail);
  }

  private drop(digest: string): void {
    fs.rmSync(this.store.entryDir(digest), { recursive: true, force: true });
  }

  /** A copy kept by an earlier run, if its manifest reads and names this digest; the module is hashed when served. */
  private readEntry(digest: string): Entry | undefined {
    const dir = this.store.entryDir(digest);
    try {
      const manifestBytes = fs.readFileSync(path.join(dir, 'manifest.pb'));
      const signature = fs.readFileSync(path.join(dir, 'manifest.sig'));
      const manifest = events.PatchManifest.decode(manifestBytes);
      const sizeBytes = fs.statSync(path.join(dir, MODULE_FILE)).size;
      if (manifest.sha256 !== digest || Number(manifest.sizeBytes) !== sizeBytes) return undefined;
      return { digest, manifest, manifestBytes, signature, sizeBytes, lastServed: 0 };
    } catch {
      return undefined;
    }
  }
}
