import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { serviceSettings, setting, text, type ConfigOf, type ConfigSpec } from '@rebootless/service';

export const SERVICE_NAME = 'agent';

/** The host's identity: systemd's machine id where there is one, else the hostname. */
function defaultHostId(): string {
  try {
    const id = readFileSync('/etc/machine-id', 'utf8').trim();
    if (id) return id;
  } catch {
    // No machine id (containers, minimal systems): fall back below.
  }
  return hostname();
}

export const agentSettings = {
  ...serviceSettings({ name: SERVICE_NAME, envPrefix: 'AGENT', defaultPort: 50054 }),
  hostId: setting({
    env: 'AGENT_HOST_ID',
    parser: text(),
    default: defaultHostId(),
    description: "this host's id in the fleet; the agent's events are signed as producer agent/<host id>",
  }),
} satisfies ConfigSpec;

export type AgentConfig = ConfigOf<typeof agentSettings>;
