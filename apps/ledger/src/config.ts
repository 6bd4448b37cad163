import { serviceKeysFrom } from '@rebootless/ledger-store';
import { integer, serviceSettings, setting, type ConfigOf, type ConfigSpec, type Parser } from '@rebootless/service';

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
    default: '5000',
    description:
      'how long events of a chain not yet sealed wait for their seal; then they are an unsealed finding, never a fact',
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
