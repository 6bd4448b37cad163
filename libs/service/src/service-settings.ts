// Settings every rebootless service shares. Each app spreads `serviceSettings(...)` into its own
// spec in apps/<svc>/src/config.ts and adds what is specific to it.
import {
  boolean,
  formatHostPort,
  hostPort,
  hostPortList,
  integer,
  oneOf,
  path,
  port,
  rawValue,
  setting,
  text,
  type ConfigProblem,
  type ConfigSpec,
  type Env,
  type HostPort,
  type Setting,
} from './config';

export const DEFAULT_BIND_HOST = '127.0.0.1';

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'verbose'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export const LOG_FORMATS = ['text', 'json'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/**
 * Where the gRPC server listens: `<PREFIX>_GRPC_ADDRESS` (host:port) or `<PREFIX>_GRPC_PORT`
 * (bound on 127.0.0.1). Setting both is refused rather than guessing which one was meant.
 */
export function grpcListenAddress(envPrefix: string, defaultPort: number): Setting<HostPort> {
  const addressVar = `${envPrefix}_GRPC_ADDRESS`;
  const portVar = `${envPrefix}_GRPC_PORT`;
  const addressParser = hostPort();
  const portParser = port();
  return {
    env: [addressVar, portVar],
    description: `gRPC listen address (host:port), or only the port via ${portVar}`,
    defaultText: formatHostPort({ host: DEFAULT_BIND_HOST, port: defaultPort }),
    read(env: Env) {
      const rawAddress = rawValue(env, addressVar);
      const rawPort = rawValue(env, portVar);
      const problems: ConfigProblem[] = [];
      const address = rawAddress === undefined ? undefined : addressParser.parse(rawAddress);
      const parsedPort = rawPort === undefined ? undefined : portParser.parse(rawPort);
      if (rawAddress !== undefined && address === undefined) {
        problems.push({ env: addressVar, value: rawAddress, expected: addressParser.expected });
      }
      if (rawAddress !== undefined && rawPort !== undefined) {
        // Unsetting the port fixes this whatever its value, so that is the one thing to say.
        problems.push({
          env: portVar,
          value: rawPort,
          expected: `to be unset when ${addressVar} is set (set one or the other)`,
        });
      } else if (rawPort !== undefined && parsedPort === undefined) {
        problems.push({ env: portVar, value: rawPort, expected: portParser.expected });
      }
      if (problems.length > 0) return { ok: false, problems };
      return {
        ok: true,
        value: address ?? { host: DEFAULT_BIND_HOST, port: parsedPort ?? defaultPort },
      };
    },
  };
}

/** How the service's gRPC server (and its own clients) secure their connections. */
export type TransportSecurity = { readonly mode: 'tls'; readonly pkiDir: string } | { readonly mode: 'insecure' };

/**
 * TLS with client certificates from REBOOTLESS_PKI_DIR, or plaintext only when
 * REBOOTLESS_INSECURE says so explicitly: no setting at all is refused, never guessed.
 */
export function transportSecurity(): Setting<TransportSecurity> {
  const dirVar = 'REBOOTLESS_PKI_DIR';
  const insecureVar = 'REBOOTLESS_INSECURE';
  const dirParser = path();
  const flagParser = boolean();
  return {
    env: [dirVar, insecureVar],
    description: `directory of the CA, certificates and token key (node scripts/pki.mjs init); or ${insecureVar}=true for plaintext without authentication`,
    read(env: Env) {
      const rawDir = rawValue(env, dirVar);
      const rawInsecure = rawValue(env, insecureVar);
      const insecure = rawInsecure === undefined ? false : flagParser.parse(rawInsecure);
      if (insecure === undefined) {
        return { ok: false, problems: [{ env: insecureVar, value: rawInsecure, expected: flagParser.expected }] };
      }
      if (insecure && rawDir !== undefined) {
        return {
          ok: false,
          problems: [{ env: insecureVar, value: rawInsecure, expected: `to be unset or false when ${dirVar} is set` }],
        };
      }
      if (insecure) return { ok: true, value: { mode: 'insecure' } };
      const dir = rawDir === undefined ? undefined : dirParser.parse(rawDir);
      if (dir === undefined) {
        return {
          ok: false,
          problems: [
            {
              env: dirVar,
              value: rawDir,
              expected: `a pki directory (create one with: node scripts/pki.mjs init), or ${insecureVar}=true for plaintext`,
            },
          ],
        };
      }
      return { ok: true, value: { mode: 'tls', pkiDir: dir } };
    },
  };
}

export interface ServiceIdentity {
  /** Short service name, e.g. "ledger": used in logs, the default data dir and error messages. */
  readonly name: string;
  /** Prefix of the service's own variables, e.g. "LEDGER" for LEDGER_GRPC_PORT. */
  readonly envPrefix: string;
  readonly defaultPort: number;
}

export function serviceSettings(service: ServiceIdentity) {
  return {
    grpcListen: grpcListenAddress(service.envPrefix, service.defaultPort),
    dataDir: setting({
      env: 'REBOOTLESS_DATA_DIR',
      parser: path(),
      default: `.data/${service.name}`,
      description: "directory for this service's local state (created at boot if missing)",
    }),
    kafkaBrokers: setting({
      env: 'KAFKA_BROKERS',
      parser: hostPortList(),
      default: '127.0.0.1:9092',
      description: 'Kafka bootstrap brokers (host:port, comma-separated) where the service writes its events',
    }),
    eventsTopic: setting({
      env: 'EVENTS_TOPIC',
      parser: text(),
      default: 'rebootless.events.v1',
      description: 'the event log topic (created beforehand with npm run kafka:topic; never auto-created)',
    }),
    logLevel: setting({
      env: 'LOG_LEVEL',
      parser: oneOf(LOG_LEVELS),
      default: 'info',
      description: 'least severe level written',
    }),
    logFormat: setting({
      env: 'LOG_FORMAT',
      parser: oneOf(LOG_FORMATS),
      default: 'text',
      description: 'text for people, json for one JSON object per line',
    }),
    transport: transportSecurity(),
    maxTokenLifetimeSeconds: setting({
      env: 'REBOOTLESS_TOKEN_MAX_LIFETIME_SECONDS',
      parser: integer(60, 7 * 86_400),
      default: '43200',
      description: 'operator tokens minted to live longer than this (exp - iat, seconds) are refused; ADR 0013',
    }),
  } satisfies ConfigSpec;
}

/** The part of a loaded configuration that bootService relies on. */
export interface ServiceConfig {
  readonly grpcListen: HostPort;
  readonly dataDir: string;
  readonly kafkaBrokers: readonly HostPort[];
  readonly eventsTopic: string;
  readonly logLevel: LogLevel;
  readonly logFormat: LogFormat;
  readonly transport: TransportSecurity;
  readonly maxTokenLifetimeSeconds: number;
}
