import { hostPort, integer, serviceSettings, setting, type ConfigOf, type ConfigSpec } from '@rebootless/service';

export const SERVICE_NAME = 'dispatcher';

export const dispatcherSettings = {
  ...serviceSettings({ name: SERVICE_NAME, envPrefix: 'DISPATCHER', defaultPort: 7452 }),
  ledgerAddress: setting({
    env: 'DISPATCHER_LEDGER_ADDRESS',
    parser: hostPort(),
    default: '127.0.0.1:7453',
    description: "the ledger's gRPC address (host:port), asked for undo plans",
  }),
  silenceGraceSeconds: setting({
    env: 'DISPATCHER_SILENCE_GRACE_SECONDS',
    parser: integer(1, 86_400),
    default: '60',
    description:
      'how long a host of the running wave may stay disconnected after its apply before it counts as gone silent',
  }),
  tickIntervalMs: setting({
    env: 'DISPATCHER_TICK_INTERVAL_MS',
    parser: integer(50, 60_000),
    default: '1000',
    description: 'how often rollouts are looked at for what time alone changes (soak, deadlines, windows)',
  }),
} satisfies ConfigSpec;

export type DispatcherConfig = ConfigOf<typeof dispatcherSettings>;
