import { serviceSettings, type ConfigOf, type ConfigSpec } from '@rebootless/service';

export const SERVICE_NAME = 'builder';

export const builderSettings = {
  ...serviceSettings({ name: SERVICE_NAME, envPrefix: 'BUILDER', defaultPort: 50051 }),
} satisfies ConfigSpec;

export type BuilderConfig = ConfigOf<typeof builderSettings>;
