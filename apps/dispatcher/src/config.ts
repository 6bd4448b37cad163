import { SEAL_LANDS_WITHIN_MS } from '@rebootless/kafka';
import {
  hostPort,
  integer,
  serviceSettings,
  setting,
  type ConfigOf,
  type ConfigSpec,
  type Parser,
} from '@rebootless/service';

export const SERVICE_NAME = 'dispatcher';

function pathList(): Parser<string[]> {
  return {
    expected: 'a comma-separated list of directories',
    parse: (raw) => {
      const dirs = raw
        .split(',')
        .map((d) => d.trim())
        .filter(Boolean);
      return dirs.length > 0 && dirs.every((d) => !d.includes('\0')) ? dirs : undefined;
    },
  };
}

function postgresUrl(): Parser<string> {
  return {
    expected: 'a PostgreSQL URL, postgres://user@host:port/database',
    parse(raw) {
      try {
        const u = new URL(raw);
        return ['postgres:', 'postgresql:'].includes(u.protocol) && u.pathname.length > 1 ? raw : undefined;
      } catch {
        return undefined;
      }
    },
  };
}

function instanceName(): Parser<string> {
  return {
    expected: 'an instance name: 1-63 of a-z, 0-9 and -, starting with a letter or digit',
    parse: (raw) => (/^[a-z0-9][a-z0-9-]{0,62}$/.test(raw) ? raw : undefined),
  };
}

export const dispatcherSettings = {
  ...serviceSettings({ name: SERVICE_NAME, envPrefix: 'DISPATCHER', defaultPort: 7452 }),
  ledgerAddress: setting({
    env: 'DISPATCHER_LEDGER_ADDRESS',
    parser: hostPort(),
    default: '127.0.0.1:7453',
    description: "the ledger's gRPC address (host:port), asked for undo plans",
  }),
  builderAddress: setting({
    env: 'DISPATCHER_BUILDER_ADDRESS',
    parser: hostPort(),
    description:
      "the builder's gRPC address (host:port): the dispatcher fetches each artifact from it once and serves it to its agents (ADR 0026); unset: its agents fetch from the builder themselves",
  }),
  artifactCacheMiB: setting({
    env: 'DISPATCHER_ARTIFACT_CACHE_MIB',
    parser: integer(1, 1_048_576),
    default: '2048',
    description:
      'MiB of modules the artifact cache keeps under <data dir>/artifact-cache before the least recently served are evicted',
  }),
  artifactServes: setting({
    env: 'DISPATCHER_ARTIFACT_SERVES',
    parser: integer(1, 100_000),
    default: '64',
    description:
      'artifact streams sent at once (each holds its module in memory until sent); further agents wait their turn',
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
  trustedDataDirs: setting({
    env: 'DISPATCHER_TRUSTED_DATA_DIRS',
    parser: pathList(),
    description:
      "services' data dirs whose chain/ keys the dispatcher vouches for (the builder's): events of a producer nobody vouches for are never acted on",
  }),
  unsealedTailTimeoutMs: setting({
    env: 'DISPATCHER_UNSEALED_TAIL_TIMEOUT_MS',
    parser: integer(100, 600_000),
    default: String(SEAL_LANDS_WITHIN_MS),
    description:
      'how long events of a chain not yet sealed wait for their seal before they are a finding, never acted on ' +
      "(shorter than a producer's re-send after a broker lost mid-send, genuine events are ignored)",
  }),
  instance: setting({
    env: 'DISPATCHER_INSTANCE',
    parser: instanceName(),
    description:
      "this instance's name when several dispatchers share the rollouts (its chain is dispatcher/<name>); needs DISPATCHER_DATABASE_URL",
  }),
  databaseUrl: setting({
    env: 'DISPATCHER_DATABASE_URL',
    parser: postgresUrl(),
    description:
      'PostgreSQL shared by the dispatcher instances: rollout leases and where agents are connected (docs/adr/0025); needs DISPATCHER_INSTANCE',
  }),
} satisfies ConfigSpec;

export type DispatcherConfig = ConfigOf<typeof dispatcherSettings>;

/** The producer id of the instance's chain: `dispatcher` alone, `dispatcher/<instance>` among several. */
export function dispatcherProducerId(config: DispatcherConfig): string {
  if ((config.instance === undefined) !== (config.databaseUrl === undefined)) {
    const [set, unset] =
      config.instance === undefined
        ? ['DISPATCHER_DATABASE_URL', 'DISPATCHER_INSTANCE']
        : ['DISPATCHER_INSTANCE', 'DISPATCHER_DATABASE_URL'];
    process.stderr.write(
      `${SERVICE_NAME}: configuration error:\n  ${unset}: is required when ${set} is set (several instances need both)\n`,
    );
    process.exit(78);
  }
  return config.instance ? `${SERVICE_NAME}/${config.instance}` : SERVICE_NAME;
}
