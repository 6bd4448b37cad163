import { serviceSettings, type ConfigOf, type ConfigSpec } from '@rebootless/service';

export const SERVICE_NAME = 'agent';

export const agentSettings = {
  ...serviceSettings({ name: SERVICE_NAME, envPrefix: 'AGENT', defaultPort: 50054 }),
} satisfies ConfigSpec;

export type AgentConfig = ConfigOf<typeof agentSettings>;
