// Thousands of simulated agents in one process (the fleet simulator, the benchmarks) ask the
// builder for the same module at the same moment. One FetchArtifact per digest serves every agent
// of the process that asks while it runs, and for `reuseMs` after: the bytes are shared, trust is
// not. Each agent still checks the signed manifest with its own pinned key, against its own
// command and kernel, and hashes the module itself before anything is kept or loaded
// (Agent.obtainArtifact). A real host runs one agent and has no use for this.
import type { Client, ServiceError } from '@grpc/grpc-js';
import type { ArtifactStore, StoredArtifact } from '@rebootless/artifacts';
import { CommandRefused } from '../verification';
import { ArtifactFetchError, fetchFailure } from './artifact-fetch';
import { openFetchArtifact, type ArtifactSourceKind } from './grpc-clients';

/** A download as the builder sent it: nothing in it is verified yet. */
export interface UnverifiedArtifact {
  readonly digest: string;
  readonly manifestBytes: Buffer;
  readonly signature: Buffer;
  readonly module: Buffer;
  /**
   * Puts the module into `store` once for every agent that shares the store (the store verifies
   * it again). Call only after the agent's own checks passed.
   */
  keep(store: ArtifactStore, put: () => Promise<StoredArtifact>): Promise<StoredArtifact>;
}

export interface SharedArtifactDownloadsOptions {
  /**
   * How long a finished download answers for the builder. A retraction made meanwhile reaches
   * these agents that much later, as if the builder had been asked a moment earlier. Default 2 s.
   */
  readonly reuseMs?: number;
  /** A download is cancelled past this many module bytes, whatever a manifest says. Default 64 MiB. */
  readonly maxBytes?: number;
  readonly now?: () => number;
}

interface Download {
  readonly promise: Promise<UnverifiedArtifact>;
  /** When the builder's answer arrived; undefined while the download runs. */
  doneAt?: number;
}

export class SharedArtifactDownloads {
  private readonly downloads = new WeakMap<Client, Map<string, Download>>();
  private readonly reuseMs: number;
  private readonly maxBytes: number;
  private readonly now: () => number;
  /** FetchArtifact calls made (tests and benchmarks read it). */
  fetches = 0;
  /** The same, by whom they asked: the dispatcher's site cache or the builder (ADR 0026). */
  readonly fetchesFrom: Record<ArtifactSourceKind, number> = { dispatcher: 0, builder: 0 };

  constructor(options: SharedArtifactDownloadsOptions = {}) {
    this.reuseMs = options.reuseMs ?? 2_000;
    this.maxBytes = options.maxBytes ?? 64 * 1024 * 1024;
    this.now = options.now ?? Date.now;
  }

  /** The module and its signed manifest, from the download under way or a recent one, else a new one. */
  fetch(
    client: Client,
    digest: string,
    timeoutMs: number,
    from: ArtifactSourceKind = 'builder',
  ): Promise<UnverifiedArtifact> {
    let byDigest = this.downloads.get(client);
    if (!byDigest) {
      byDigest = new Map();
      this.downloads.set(client, byDigest);
    }
    const found = byDigest.get(digest);
    if (found && (found.doneAt === undefined || this.now() - found.doneAt < this.reuseMs)) return found.promise;
    const map = byDigest;
    const download: Download = {
      promise: this.download(client, digest, timeoutMs, from).then(
        (artifact) => {
          download.doneAt = this.now();
          return artifact;
        },
        (error: unknown) => {
          // A failure answers only those who waited for it: the next agent asks again.
          if (map.get(digest) === download) map.delete(digest);
          throw error;
        },
      ),
    };
    byDigest.set(digest, download);
    return download.promise;
  }

  private download(
    client: Client,
    digest: string,
    timeoutMs: number,
    from: ArtifactSourceKind,
  ): Promise<UnverifiedArtifact> {
    this.fetches += 1;
    this.fetchesFrom[from] += 1;
    return new Promise((resolve, reject) => {
      const call = openFetchArtifact(client, { artifactDigest: digest }, new Date(Date.now() + timeoutMs), from);
      let header: { manifestBytes: Buffer; signature: Buffer } | undefined;
      const chunks: Buffer[] = [];
      let bytes = 0;
      let settled = false;
      const fail = (error: Error) => {
        if (settled) return;
        settled = true;
        call.cancel();
        reject(error);
      };
      call.on(
        'data',
        (message: { header?: { manifest: Uint8Array; manifestSignature: Uint8Array }; chunk?: Uint8Array }) => {
          if (settled) return;
          if (message.header) {
            if (header) return fail(new ArtifactFetchError('the builder sent a second header'));
            header = {
              manifestBytes: Buffer.from(message.header.manifest),
              signature: Buffer.from(message.header.manifestSignature),
            };
          } else if (message.chunk) {
            if (!header)
              return fail(
                new CommandRefused('bad-signature', 'the builder sent module bytes before the signed manifest'),
              );
            bytes += message.chunk.length;
            if (bytes > this.maxBytes)
              return fail(new ArtifactFetchError(`the module is larger than ${this.maxBytes} bytes`));
            chunks.push(Buffer.from(message.chunk));
          }
        },
      );
      call.on('error', (error: ServiceError) => {
        if (settled) return;
        settled = true;
        reject(fetchFailure(digest, error, from));
      });
      call.on('end', () => {
        if (settled) return;
        settled = true;
        if (!header) return reject(new CommandRefused('bad-signature', 'the builder sent no signed manifest'));
        resolve(unverified(digest, header, Buffer.concat(chunks)));
      });
    });
  }
}

function unverified(
  digest: string,
  header: { manifestBytes: Buffer; signature: Buffer },
  module: Buffer,
): UnverifiedArtifact {
  const kept = new WeakMap<ArtifactStore, Promise<StoredArtifact>>();
  return {
    digest,
    ...header,
    module,
    keep(store, put) {
      const found = kept.get(store);
      if (found) return found;
      const stored = put();
      kept.set(store, stored);
      // A failed put is tried again by the next agent, not remembered.
      stored.catch(() => kept.get(store) === stored && kept.delete(store));
      return stored;
    },
  };
}
