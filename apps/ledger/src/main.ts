// First, before anything loads grpc-js, kafkajs or NestJS: tracing patches them as they load.
import { startTelemetry } from '@rebootless/telemetry';
startTelemetry('ledger');

import { grpcServices } from '@rebootless/contracts';
import { ConfigError, answerVersion, bootService, formatConfigProblem, loadConfig } from '@rebootless/service';
import { AppModule } from './app.module';
import { SERVICE_NAME, ledgerGroupId, ledgerSettings } from './config';
import { registerLedgerMetrics } from './ledger-metrics';
import { LEDGER_RUNTIME, LedgerRuntime } from './ledger-runtime';
import { rebuild } from './rebuild';

// Wiring only. `main.js rebuild [--json]` empties the read models and replays the log from
// offset 0, then exits; without arguments the service boots (bootService: configuration check,
// event chain, gRPC + health, ServiceStarted/Stopped, clean SIGTERM) and projects as events come.
const [command, ...args] = process.argv.slice(2);
if (answerVersion(`rebootless-${SERVICE_NAME}`)) {
  process.exit(0);
} else if (command === 'rebuild') {
  void rebuild(args);
} else if (command !== undefined) {
  process.stderr.write(
    `ledger: unknown command ${JSON.stringify(command)}; usage: main.js [rebuild [--json]] | --version [--json]\n`,
  );
  process.exit(64);
} else {
  // The settings' one rule across two of them (a consumer group needs PostgreSQL), checked before
  // boot like each setting alone: a configuration error, exit 78.
  try {
    ledgerGroupId(loadConfig(ledgerSettings, process.env));
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    process.stderr.write(
      ['ledger: configuration error:', ...error.problems.map((p) => `  ${formatConfigProblem(p)}`)].join('\n') + '\n',
    );
    process.exit(78);
  }
  void bootService({
    name: SERVICE_NAME,
    module: AppModule,
    grpc: [grpcServices.ledger],
    config: ledgerSettings,
    producerId: (config) => (config.instance ? `ledger/${config.instance}` : SERVICE_NAME),
    onStarted: async (ctx) => {
      const runtime = ctx.app.get<LedgerRuntime>(LEDGER_RUNTIME);
      await runtime.consumer.start();
      registerLedgerMetrics(runtime);
      ctx.logger.log(`ledger: projecting ${ctx.config.eventsTopic} into ${runtime.db.description}`);
    },
    onStopping: async (ctx) => {
      await ctx.app.get<LedgerRuntime>(LEDGER_RUNTIME).consumer.stop();
    },
  });
}
