import { serviceSettings, type ConfigOf, type ConfigSpec } from '@rebootless/service';

export const SERVICE_NAME = 'ledger';

export const ledgerSettings = {
  ...serviceSettings({ name: SERVICE_NAME, envPrefix: 'LEDGER', defaultPort: 50053 }),
} satisfies ConfigSpec;

export type LedgerConfig = ConfigOf<typeof ledgerSettings>;
