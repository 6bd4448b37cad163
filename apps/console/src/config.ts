// The console's environment, validated at boot (exit 78 with every problem named).
import * as nodePath from 'node:path';
import {
  boolean,
  hostPort,
  integer,
  oneOf,
  path,
  rawValue,
  setting,
  LOG_FORMATS,
  LOG_LEVELS,
  type ConfigOf,
  type ConfigSpec,
  type Env,
  type Setting,
  type TransportSecurity,
} from '@rebootless/service';

export const SERVICE_NAME = 'console';
export const DEFAULT_PORT = 7455;

/**
 * HTTPS with the stack's certificates from CONSOLE_PKI_DIR (or REBOOTLESS_PKI_DIR, whichever
 * layout the pki script writes), or plaintext only when REBOOTLESS_INSECURE says so explicitly.
 */
function consoleSecurity(): Setting<TransportSecurity> {
  const dirParser = path();
  const flagParser = boolean();
  return {
    env: ['CONSOLE_PKI_DIR', 'REBOOTLESS_PKI_DIR', 'REBOOTLESS_INSECURE'],
    description:
      'directory of the CA, certificates and token key (CONSOLE_PKI_DIR, else REBOOTLESS_PKI_DIR); or REBOOTLESS_INSECURE=true for plaintext HTTP and gRPC',
    read(env: Env) {
      const rawDir = rawValue(env, 'CONSOLE_PKI_DIR') ?? rawValue(env, 'REBOOTLESS_PKI_DIR');
      const rawInsecure = rawValue(env, 'REBOOTLESS_INSECURE');
      const insecure = rawInsecure === undefined ? false : flagParser.parse(rawInsecure);
      if (insecure === undefined) {
        return {
          ok: false,
          problems: [{ env: 'REBOOTLESS_INSECURE', value: rawInsecure, expected: flagParser.expected }],
        };
      }
      if (insecure) return { ok: true, value: { mode: 'insecure' } };
      const dir = rawDir === undefined ? undefined : dirParser.parse(rawDir);
      if (dir === undefined) {
        return {
          ok: false,
          problems: [
            {
              env: 'CONSOLE_PKI_DIR',
              value: rawDir,
              expected: 'a pki directory (node scripts/pki.mjs init), or REBOOTLESS_INSECURE=true for plaintext',
            },
          ],
        };
      }
      return { ok: true, value: { mode: 'tls', pkiDir: nodePath.resolve(dir) } };
    },
  };
}

export const consoleSettings = {
  listen: setting({
    env: 'CONSOLE_HTTP_ADDRESS',
    parser: hostPort(),
    default: `127.0.0.1:${DEFAULT_PORT}`,
    description: 'where the console serves HTTP(S) (host:port)',
  }),
  transport: consoleSecurity(),
  tokenPublicKey: setting({
    env: 'CONSOLE_TOKEN_PUBLIC_KEY',
    parser: path(),
    description:
      'the token public key that checks sign-in tokens (default: token.pub in the pki directory; required under REBOOTLESS_INSECURE)',
  }),
  ledgerAddress: setting({
    env: 'CONSOLE_LEDGER_ADDRESS',
    parser: hostPort(),
    default: '127.0.0.1:7453',
    description: "the ledger's gRPC address",
  }),
  dispatcherAddress: setting({
    env: 'CONSOLE_DISPATCHER_ADDRESS',
    parser: hostPort(),
    default: '127.0.0.1:7452',
    description: "the dispatcher's gRPC address",
  }),
  builderAddress: setting({
    env: 'CONSOLE_BUILDER_ADDRESS',
    parser: hostPort(),
    default: '127.0.0.1:7451',
    description: "the builder's gRPC address",
  }),
  deadlineDays: setting({
    env: 'CONSOLE_DEADLINE_DAYS',
    parser: integer(1, 365),
    default: '30',
    description: 'days from a fix for a host kernel being published to "exposed past deadline" (PCI-DSS 6.3.3: 30)',
  }),
  pageSize: setting({
    env: 'CONSOLE_PAGE_SIZE',
    parser: integer(10, 500),
    default: '50',
    description: 'hosts on one page of the fleet',
  }),
  logLevel: setting({
    env: 'LOG_LEVEL',
    parser: oneOf(LOG_LEVELS),
    default: 'info',
    description: 'least severe level written',
  }),
  // The services' one log shape (ADR 0008): one JSON object a line for journald and shippers.
  logFormat: setting({
    env: 'LOG_FORMAT',
    parser: oneOf(LOG_FORMATS),
    default: 'text',
    description: 'text for people, json for one JSON object per line',
  }),
} satisfies ConfigSpec;

export type ConsoleConfig = ConfigOf<typeof consoleSettings>;
