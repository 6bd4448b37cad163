// First, before anything loads grpc-js, kafkajs or NestJS: tracing patches them as they load.
import { startTelemetry } from '@rebootless/telemetry';
startTelemetry('dispatcher');

import { grpcServices } from '@rebootless/contracts';
import { bootService } from '@rebootless/service';
import { AppModule } from './app.module';
import { SERVICE_NAME, dispatcherProducerId, dispatcherSettings } from './config';
import { registerDispatcherMetrics } from './dispatcher-metrics';
import { RolloutEngine } from './rollout-engine';
import { SITE_ARTIFACTS, registerArtifactCacheMetrics } from './site-artifacts';
import type { ArtifactCache } from '@rebootless/artifacts';

// Wiring only. bootService validates the environment (exit 78 on a bad setting), opens the
// service's event chain (exit 69 when Kafka or the topic is missing), serves gRPC and
// grpc.health.v1.Health, records ServiceStarted / ServiceStopped, and stops cleanly on SIGTERM.
void bootService({
  name: SERVICE_NAME,
  module: AppModule,
  grpc: [grpcServices.rollout, grpcServices.agentGateway],
  config: dispatcherSettings,
  producerId: dispatcherProducerId,
  onStarted: (ctx) => {
    registerDispatcherMetrics(ctx.app.get(RolloutEngine));
    const artifacts = ctx.app.get<ArtifactCache | null>(SITE_ARTIFACTS);
    if (artifacts) registerArtifactCacheMetrics(artifacts);
  },
});
