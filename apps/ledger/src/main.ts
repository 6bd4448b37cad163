import { grpcServices } from '@rebootless/contracts';
import { bootService } from '@rebootless/service';
import { AppModule } from './app.module';
import { SERVICE_NAME, ledgerSettings } from './config';

// Wiring only. bootService validates the environment (exit 78 on a bad setting), serves gRPC
// and grpc.health.v1.Health, and stops cleanly on SIGTERM/SIGINT. Its onStarted(ctx) and
// onStopping(ctx, reason) hooks are where the event publisher announces ServiceStarted and is
// flushed and closed; they are not wired yet.
void bootService({
  name: SERVICE_NAME,
  module: AppModule,
  grpc: [grpcServices.ledger],
  config: ledgerSettings,
});
