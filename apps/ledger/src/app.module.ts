import { Inject, Module, OnApplicationShutdown } from '@nestjs/common';
import { SERVICE_CONFIG } from '@rebootless/service';
import type { LedgerConfig } from './config';
import { LedgerController } from './ledger.controller';
import { LEDGER_RUNTIME, LedgerRuntime } from './ledger-runtime';

@Module({
  controllers: [LedgerController],
  providers: [
    {
      provide: LEDGER_RUNTIME,
      inject: [SERVICE_CONFIG],
      useFactory: (config: LedgerConfig) => LedgerRuntime.open(config),
    },
  ],
})
export class AppModule implements OnApplicationShutdown {
  constructor(@Inject(LEDGER_RUNTIME) private readonly runtime: LedgerRuntime) {}

  async onApplicationShutdown(): Promise<void> {
    await this.runtime.close();
  }
}
