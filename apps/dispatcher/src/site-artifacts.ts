// The dispatcher's side of the site artifact cache (ADR 0026): one FetchArtifact to the builder
// (with the dispatcher's own service certificate) fills @rebootless/artifacts' ArtifactCache, which
// the gateway serves to its agents. Everything here is plumbing; what is kept and when is the lib's.
import * as path from 'node:path';
import { Client, status, type ChannelCredentials, type ServiceError } from '@grpc/grpc-js';
import { ArtifactCache, ArtifactUpstreamError, type FetchedFromBuilder, type PinnedKey } from '@rebootless/artifacts';
import { builder } from '@rebootless/contracts';
import { rebootlessMeter } from '@rebootless/telemetry';

const FETCH_ARTIFACT_PATH = '/rebootless.builder.v1.BuildService/FetchArtifact';
const MAX_MODULE_BYTES = 64 * 1024 * 1024;

/** One FetchArtifact call to the builder, collected whole; its failures as the cache names them. */
export class BuilderArtifactSource {
  private readonly client: Client;

  constructor(
    readonly address: string,
    credentials: ChannelCredentials,
    private readonly timeoutMs = 60_000,
  ) {
    this.client = new Client(address, credentials, { 'grpc.max_receive_message_length': 8 * 1024 * 1024 });
  }

  fetch(digest: string): Promise<FetchedFromBuilder> {
    return new Promise((resolve, reject) => {
      const call = this.client.makeServerStreamRequest(
        FETCH_ARTIFACT_PATH,
        (m: builder.FetchArtifactRequest) => Buffer.from(builder.FetchArtifactRequest.encode(m).finish()),
        (b: Buffer) => builder.FetchArtifactResponse.decode(b),
        { artifactDigest: digest },
        { deadline: new Date(Date.now() + this.timeoutMs) },
      );
      let header: { manifestBytes: Buffer; signature: Buffer } | undefined;
      const chunks: Buffer[] = [];
      let bytes = 0;
      let settled = false;
      const fail = (error: ArtifactUpstreamError) => {
        if (settled) return;
        settled = true;
        call.cancel();
        reject(error);
      };
      call.on('data', (message: builder.FetchArtifactResponse) => {
        if (settled) return;
        if (message.header) {
          if (header) return fail(new ArtifactUpstreamError('refused', 'the builder sent a second header'));
          header = {
            manifestBytes: Buffer.from(message.header.manifest),
            signature: Buffer.from(message.header.manifestSignature),
          };
        } else if (message.chunk) {
          if (!header)
            return fail(new ArtifactUpstreamError('refused', 'the builder sent module bytes before the header'));
          bytes += message.chunk.length;
          if (bytes > MAX_MODULE_BYTES)
            return fail(new ArtifactUpstreamError('refused', `the module is larger than ${MAX_MODULE_BYTES} bytes`));
          chunks.push(Buffer.from(message.chunk));
        }
      });
      call.on('error', (error: ServiceError) => {
        if (settled) return;
        settled = true;
        reject(this.upstreamError(digest, error));
      });
      call.on('end', () => {
        if (settled) return;
        settled = true;
        if (!header) return reject(new ArtifactUpstreamError('refused', 'the builder sent no header'));
        resolve({ ...header, module: Buffer.concat(chunks) });
      });
    });
  }

  close(): void {
    this.client.close();
  }

  private upstreamError(digest: string, error: ServiceError): ArtifactUpstreamError {
    const said = `the builder at ${this.address} answered FetchArtifact ${digest} with ${status[error.code]}: ${error.details}`;
    switch (error.code) {
      case status.NOT_FOUND:
      case status.INVALID_ARGUMENT:
        return new ArtifactUpstreamError('not-found', said);
      case status.FAILED_PRECONDITION:
        return new ArtifactUpstreamError(/retracted/i.test(error.details) ? 'retracted' : 'refused', said);
      default:
        return new ArtifactUpstreamError(
          'unavailable',
          `the builder at ${this.address} (DISPATCHER_BUILDER_ADDRESS) did not serve ${digest}: ${status[error.code]} ${error.details}`,
        );
    }
  }
}

/**
 * How many FetchArtifact streams are sent at once. A server stream is written without regard to
 * how fast the agent reads, so each stream under way holds its module in memory: without a bound,
 * a wave of thousands of agents held thousands of copies (1.3 GB at 10,000 agents, bench:rollout).
 * A slot is held until the stream has finished or was cancelled.
 */
export class ServeSlots {
  private free: number;
  private readonly waiting: (() => void)[] = [];

  constructor(readonly size: number) {
    this.free = size;
  }

  /** Resolves with the release of a slot once one is free; releasing twice is harmless. */
  async acquire(): Promise<() => void> {
    if (this.free > 0) this.free -= 1;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next) next();
      else this.free += 1;
    };
  }
}

/** Nest's token for the cache; its value is null when DISPATCHER_BUILDER_ADDRESS is unset. */
export const SITE_ARTIFACTS = Symbol('SITE_ARTIFACTS');
export const SERVE_SLOTS = Symbol('SERVE_SLOTS');

export function openSiteArtifacts(input: {
  dataDir: string;
  maxBytes: number;
  source: BuilderArtifactSource;
  builderKeys: () => readonly PinnedKey[];
  retraction: (patchId: string, version: string) => string | undefined;
  warn: (message: string) => void;
}): ArtifactCache {
  return new ArtifactCache({
    dir: path.join(input.dataDir, 'artifact-cache'),
    maxBytes: input.maxBytes,
    fetchFromBuilder: (digest) => input.source.fetch(digest),
    builderKeys: input.builderKeys,
    retraction: input.retraction,
    onDamaged: (digest, detail) => input.warn(`artifact cache: dropped ${digest}: ${detail}`),
  });
}

/** The cache's counters as metrics (ADR 0019 naming), read when a scrape or an export asks. */
export function registerArtifactCacheMetrics(cache: ArtifactCache): void {
  const meter = rebootlessMeter();
  const requests = meter.createObservableCounter('rebootless.artifact_cache.requests', {
    description:
      'FetchArtifact requests the dispatcher answered, by result (hit: a kept copy; miss: fetched from the builder)',
  });
  const fetches = meter.createObservableCounter('rebootless.artifact_cache.builder_fetches', {
    description: 'FetchArtifact calls the dispatcher made to the builder',
  });
  const bytes = meter.createObservableCounter('rebootless.artifact_cache.bytes', {
    description: 'module bytes sent to agents (served) and received from the builder (fetched)',
    unit: 'By',
  });
  const dropped = meter.createObservableCounter('rebootless.artifact_cache.dropped', {
    description: 'copies dropped, by why (evicted: over the size bound; damaged: found altered while served)',
  });
  const kept = meter.createObservableGauge('rebootless.artifact_cache.kept_bytes', {
    description: 'module bytes the cache keeps now',
    unit: 'By',
  });
  meter.addBatchObservableCallback(
    (result) => {
      const c = cache.counters;
      result.observe(requests, c.hits, { result: 'hit' });
      result.observe(requests, c.misses, { result: 'miss' });
      result.observe(fetches, c.builderFetches);
      result.observe(bytes, c.bytesServed, { direction: 'served' });
      result.observe(bytes, c.bytesFetched, { direction: 'fetched' });
      result.observe(dropped, c.evictions, { why: 'evicted' });
      result.observe(dropped, c.damaged, { why: 'damaged' });
      result.observe(kept, cache.sizeBytes);
    },
    [requests, fetches, bytes, dropped, kept],
  );
}
