// First, before anything loads grpc-js, kafkajs or NestJS: tracing patches them as they load.
import { startTelemetry } from '@rebootless/telemetry';
startTelemetry('builder');

import { grpcServices } from '@rebootless/contracts';
import { bootService } from '@rebootless/service';
import { AppModule } from './app.module';
import { BuildCoordinator } from './build-coordinator';
import { registerBuilderMetrics } from './builder-metrics';
import { SERVICE_NAME, builderSettings } from './config';

// Wiring only. bootService validates the environment (exit 78 on a bad setting), opens the
// service's event chain (exit 69 when Kafka or the topic is missing), serves gRPC and
// grpc.health.v1.Health, records ServiceStarted / ServiceStopped, and stops cleanly on SIGTERM.
void bootService({
  name: SERVICE_NAME,
  module: AppModule,
  grpc: [grpcServices.build],
  config: builderSettings,
  onStarted: (ctx) => registerBuilderMetrics(ctx.app.get(BuildCoordinator)),
});
