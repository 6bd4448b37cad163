import { Controller, Inject, Logger } from '@nestjs/common';
import type { Metadata, ServerUnaryCall } from '@grpc/grpc-js';
import { Observable } from 'rxjs';
import { builder, events } from '@rebootless/contracts';
import { callerActor } from '@rebootless/service';
import { principalOf } from '@rebootless/trust';
import { BuildCoordinator } from './build-coordinator';
import { BUILDER_ERRORS } from './grpc-errors';

function callerOf(metadata: Metadata | undefined, call: { getPeer(): string } | undefined): events.Actor {
  return callerActor(metadata, call?.getPeer() ?? '');
}

/** Serves rebootless.builder.v1.BuildService: decoding, status mapping, streams; the work is the coordinator's. */
@Controller()
@builder.BuildServiceControllerMethods()
export class BuildController implements builder.BuildServiceController {
  private readonly logger = new Logger('BuildService');

  constructor(@Inject(BuildCoordinator) private readonly builds: BuildCoordinator) {}

  async submitBuild(
    request: builder.SubmitBuildRequest,
    metadata?: Metadata,
    call?: ServerUnaryCall<unknown, unknown>,
  ): Promise<builder.SubmitBuildResponse> {
    try {
      return await this.builds.submit(request, callerOf(metadata, call));
    } catch (error) {
      throw BUILDER_ERRORS.toRpcException(error, 'SubmitBuild', this.logger);
    }
  }

  watchBuild(request: builder.WatchBuildRequest): Observable<builder.WatchBuildResponse> {
    return new Observable((subscriber) => {
      try {
        return this.builds.watch(request.buildId, {
          next: (update) => subscriber.next(update),
          complete: () => subscriber.complete(),
        });
      } catch (error) {
        subscriber.error(BUILDER_ERRORS.toRpcException(error, 'WatchBuild', this.logger));
        return undefined;
      }
    });
  }

  getBuild(request: builder.GetBuildRequest): builder.GetBuildResponse {
    try {
      return { build: this.builds.get(request.buildId) };
    } catch (error) {
      throw BUILDER_ERRORS.toRpcException(error, 'GetBuild', this.logger);
    }
  }

  listBuilds(request: builder.ListBuildsRequest): builder.ListBuildsResponse {
    try {
      return this.builds.list(request);
    } catch (error) {
      throw BUILDER_ERRORS.toRpcException(error, 'ListBuilds', this.logger);
    }
  }

  async cancelBuild(
    request: builder.CancelBuildRequest,
    metadata?: Metadata,
    call?: ServerUnaryCall<unknown, unknown>,
  ): Promise<builder.CancelBuildResponse> {
    try {
      return { build: await this.builds.cancel(request.buildId, request.reason, callerOf(metadata, call)) };
    } catch (error) {
      throw BUILDER_ERRORS.toRpcException(error, 'CancelBuild', this.logger);
    }
  }

  async retractPatch(
    request: builder.RetractPatchRequest,
    metadata?: Metadata,
    call?: ServerUnaryCall<unknown, unknown>,
  ): Promise<builder.RetractPatchResponse> {
    try {
      await this.builds.retract(request, callerOf(metadata, call));
      return {};
    } catch (error) {
      throw BUILDER_ERRORS.toRpcException(error, 'RetractPatch', this.logger);
    }
  }

  /**
   * The header (manifest bytes exactly as signed, and the signature) first, then the module in
   * chunks. The module is re-hashed before the header goes out and again while it streams; a
   * module that does not match its manifest is refused (DATA_LOSS) and never completed.
   */
  fetchArtifact(request: builder.FetchArtifactRequest, metadata?: Metadata): Observable<builder.FetchArtifactResponse> {
    // Who fetches (a dispatcher's site cache, or a host itself) is what the serve counter tells apart.
    const caller = principalOf(metadata)?.identity?.kind ?? 'unauthenticated';
    return new Observable((subscriber) => {
      let unsubscribed = false;
      void (async () => {
        const artifact = await this.builds.openArtifact(request.artifactDigest);
        subscriber.next({ header: { manifest: artifact.manifestBytes, manifestSignature: artifact.signature } });
        for await (const chunk of this.builds.artifactChunks(artifact)) {
          if (unsubscribed) return;
          subscriber.next({ chunk });
        }
        this.builds.noteArtifactServed(artifact.digest, caller);
        subscriber.complete();
      })().catch((error: unknown) =>
        subscriber.error(BUILDER_ERRORS.toRpcException(error, `FetchArtifact ${request.artifactDigest}`, this.logger)),
      );
      return () => {
        unsubscribed = true;
      };
    });
  }
}
