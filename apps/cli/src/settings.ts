// Where the services are and how to talk to them, from flags first, then the environment.
// Pure: the environment and the file system checks are passed in.
import { UsageError } from './errors';
import { bool, str, type Flags } from './flags';

export type ServiceName = 'builder' | 'dispatcher' | 'ledger';

export interface Endpoint {
  readonly service: ServiceName;
  readonly address: string;
  /** How the operator changes it, for error messages: "--builder or REBOOTLESS_BUILDER". */
  readonly howToChange: string;
}

export type Security = { readonly mode: 'insecure' } | { readonly mode: 'tls'; readonly pkiDir: string };

export type TokenSource =
  | { readonly kind: 'none' }
  | { readonly kind: 'value'; readonly token: string; readonly from: string }
  | { readonly kind: 'file'; readonly path: string };

export interface ConnectionSettings {
  readonly endpoints: Readonly<Record<ServiceName, Endpoint>>;
  readonly security: Security;
  readonly token: TokenSource;
}

export const DEFAULT_ADDRESSES: Readonly<Record<ServiceName, string>> = {
  builder: '127.0.0.1:7451',
  dispatcher: '127.0.0.1:7452',
  ledger: '127.0.0.1:7453',
};

type Env = Readonly<Record<string, string | undefined>>;

function envValue(env: Env, name: string): string | undefined {
  const value = env[name]?.trim();
  return value ? value : undefined;
}

function parseBool(text: string, name: string): boolean {
  if (/^(true|1|yes)$/i.test(text)) return true;
  if (/^(false|0|no)$/i.test(text)) return false;
  throw new UsageError(`${name}="${text}" is not true or false`);
}

/** host:port, [v6]:port; a bare host gets no default port: the message says which one. */
export function checkAddress(address: string, source: string): string {
  if (!/^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9.-]+):\d{1,5}$/.test(address) || Number(address.split(':').pop()) > 65535) {
    throw new UsageError(`${source} "${address}" is not HOST:PORT, e.g. 127.0.0.1:7451`);
  }
  return address;
}

export function resolveSettings(
  flags: Flags,
  env: Env,
  defaultPkiDir: string,
  exists: (p: string) => boolean,
): ConnectionSettings {
  const endpoint = (service: ServiceName): Endpoint => {
    const envName = `REBOOTLESS_${service.toUpperCase()}`;
    const flag = str(flags, service);
    const fromEnv = envValue(env, envName);
    const address =
      flag !== undefined
        ? checkAddress(flag, `--${service}`)
        : fromEnv !== undefined
          ? checkAddress(fromEnv, envName)
          : DEFAULT_ADDRESSES[service];
    return { service, address, howToChange: `--${service} or ${envName}` };
  };

  let security: Security;
  const pkiFlag = str(flags, 'pki');
  if (bool(flags, 'insecure') && pkiFlag !== undefined) {
    throw new UsageError(
      '--insecure and --pki contradict each other: give one (plaintext, or TLS with the pki directory)',
    );
  }
  if (bool(flags, 'insecure')) security = { mode: 'insecure' };
  else if (pkiFlag !== undefined) security = { mode: 'tls', pkiDir: pkiFlag };
  else {
    const envDir = envValue(env, 'REBOOTLESS_PKI_DIR');
    const rawInsecure = envValue(env, 'REBOOTLESS_INSECURE');
    const envInsecure = rawInsecure === undefined ? false : parseBool(rawInsecure, 'REBOOTLESS_INSECURE');
    if (envInsecure && envDir !== undefined) {
      throw new UsageError(
        'REBOOTLESS_INSECURE=true and REBOOTLESS_PKI_DIR are both set: unset one (or override with --pki or --insecure)',
      );
    }
    if (envInsecure) security = { mode: 'insecure' };
    else if (envDir !== undefined) security = { mode: 'tls', pkiDir: envDir };
    else if (exists(defaultPkiDir)) security = { mode: 'tls', pkiDir: defaultPkiDir };
    else {
      throw new UsageError(
        `no pki directory: pass --pki DIR or set REBOOTLESS_PKI_DIR (create one with: node scripts/pki.mjs init; ` +
          `the local stack uses ${defaultPkiDir}), or --insecure for services run with REBOOTLESS_INSECURE=true`,
      );
    }
  }

  let token: TokenSource = { kind: 'none' };
  const tokenFlag = str(flags, 'token');
  const envToken = envValue(env, 'REBOOTLESS_TOKEN');
  const envTokenFile = envValue(env, 'REBOOTLESS_TOKEN_FILE');
  if (tokenFlag !== undefined) token = { kind: 'value', token: tokenFlag.trim(), from: '--token' };
  else if (envToken !== undefined) token = { kind: 'value', token: envToken, from: 'REBOOTLESS_TOKEN' };
  else if (envTokenFile !== undefined) token = { kind: 'file', path: envTokenFile };

  return {
    endpoints: { builder: endpoint('builder'), dispatcher: endpoint('dispatcher'), ledger: endpoint('ledger') },
    security,
    token,
  };
}
