import { DEFAULT_UNSEALED_TAIL_TIMEOUT_MS, serviceKeysFrom } from '@rebootless/ledger-store';
import {
  ConfigError,
  integer,
  serviceSettings,
  setting,
  text,
  type ConfigOf,
  type ConfigSpec,
  type Parser,
} from '@rebootless/service';

export const SERVICE_NAME = 'ledger';

/** PostgreSQL URL: postgres://user[:password]@host[:port]/database. */
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

/** `producer=key,...`, each key the raw 32-byte Ed25519 public key in hex or base64. */
function producerKeys(): Parser<string[]> {
  return {
    expected: 'a comma-separated list of producer=key (raw 32-byte Ed25519 key, hex or base64), e.g. builder=3b6a...',
    parse(raw) {
      const pairs = raw
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean);
      try {
        serviceKeysFrom(pairs, []);
        return pairs;
      } catch {
        return undefined;
      }
    },
  };
}

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

/** `release=any|top-only,...`: kernels whose livepatch disable order is not their upstream version's. */
function disableOrders(): Parser<Record<string, 'any' | 'top-only'>> {
  return {
    expected: 'a comma-separated list of release=any|top-only, e.g. 4.18.0-513.el8.x86_64=any',
    parse(raw) {
      const orders: Record<string, 'any' | 'top-only'> = {};
      for (const pair of raw
        .split(',')
        .map((p) => p.trim())
        .filter(Boolean)) {
        const at = pair.lastIndexOf('=');
        const release = pair.slice(0, at).trim();
        const order = pair.slice(at + 1).trim();
        if (at <= 0 || (order !== 'any' && order !== 'top-only')) return undefined;
        orders[release] = order;
      }
      return Object.keys(orders).length > 0 ? orders : undefined;
    },
  };
}

export const ledgerSettings = {
  ...serviceSettings({ name: SERVICE_NAME, envPrefix: 'LEDGER', defaultPort: 7453 }),
  databaseUrl: setting({
    env: 'DATABASE_URL',
    parser: postgresUrl(),
    description: 'PostgreSQL for the read models; unset: SQLite in <REBOOTLESS_DATA_DIR>/ledger.sqlite',
  }),
  groupId: setting({
    env: 'LEDGER_GROUP_ID',
    parser: text(),
    description:
      'the consumer group of the ledgers sharing this PostgreSQL database (default rebootless-ledger.<EVENTS_TOPIC>); ' +
      'one of them projects at a time and another takes over when it dies. Needs DATABASE_URL: a SQLite ledger is alone',
  }),
  instance: setting({
    env: 'LEDGER_INSTANCE',
    parser: text(),
    description:
      "this ledger's name among several sharing a database: its own events are written as producer ledger/<instance> " +
      '(unset: ledger). Each of several ledgers needs its own, as each keeps its own chain',
  }),
  groupSessionTimeoutMs: setting({
    env: 'LEDGER_GROUP_SESSION_TIMEOUT_MS',
    parser: integer(6_000, 300_000),
    default: '30000',
    description: 'how long the group waits for a ledger that stopped answering before another takes its partitions',
  }),
  trustedProducers: setting({
    env: 'LEDGER_TRUSTED_PRODUCERS',
    parser: producerKeys(),
    description:
      "service producers' public keys the ledger vouches for (agents' keys count only as the dispatcher's gateway bound them at enrolment)",
  }),
  trustedDataDirs: setting({
    env: 'LEDGER_TRUSTED_DATA_DIRS',
    parser: pathList(),
    description: "services' data dirs whose chain/ keys the ledger vouches for, when they run on this machine",
  }),
  unsealedTailTimeoutMs: setting({
    env: 'LEDGER_UNSEALED_TAIL_TIMEOUT_MS',
    parser: integer(100, 600_000),
    default: String(DEFAULT_UNSEALED_TAIL_TIMEOUT_MS),
    description:
      'how long events of a chain not yet sealed wait for their seal; then they are an unsealed finding, never a fact ' +
      "(shorter than a producer's re-send after a broker lost mid-send, genuine events are lost)",
  }),
  kernelDisableOrders: setting({
    env: 'LEDGER_KERNEL_DISABLE_ORDER',
    parser: disableOrders(),
    description:
      'kernel releases whose livepatch disable order differs from their upstream version (distribution backports); ' +
      'the undo planner follows it',
  }),
  onlineWindowSeconds: setting({
    env: 'LEDGER_ONLINE_WINDOW_SECONDS',
    parser: integer(1, 86_400),
    default: '600',
    description: 'a host is online when its agent was heard from within this many seconds',
  }),
} satisfies ConfigSpec;

export type LedgerConfig = ConfigOf<typeof ledgerSettings>;

/**
 * The group the ledger's consumer joins: on PostgreSQL the one its peers share (configured, or
 * one per topic); on SQLite none shared, as its database is one process's file.
 */
export function ledgerGroupId(config: LedgerConfig): string | undefined {
  if (!config.databaseUrl) {
    if (config.groupId !== undefined)
      throw new ConfigError([
        {
          env: 'LEDGER_GROUP_ID',
          value: config.groupId,
          expected:
            "to be unset without DATABASE_URL: ledgers share the projection only through one PostgreSQL database, and SQLite is one ledger's own file",
        },
      ]);
    return undefined;
  }
  return config.groupId ?? `rebootless-ledger.${config.eventsTopic}`;
}
