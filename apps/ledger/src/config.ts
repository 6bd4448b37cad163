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
    description: "service producers' public keys the ledger vouches for (agents' keys are bound at enrollment)",
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
  onlineWindowSeconds: setting({
    env: 'LEDGER_ONLINE_WINDOW_SECONDS',
    parser: integer(1, 86_400),
    default: '600',
    description: 'a host is online when its agent was heard from within this many seconds',
  }),
} satisfies ConfigSpec;

export type LedgerConfig = ConfigOf<typeof ledgerSettings>;
