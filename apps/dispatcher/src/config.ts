import { serviceSettings, type ConfigOf, type ConfigSpec } from '@rebootless/service';

export const SERVICE_NAME = 'dispatcher';

export const dispatcherSettings = {
  ...serviceSettings({ name: SERVICE_NAME, envPrefix: 'DISPATCHER', defaultPort: 50052 }),
} satisfies ConfigSpec;

export type DispatcherConfig = ConfigOf<typeof dispatcherSettings>;
