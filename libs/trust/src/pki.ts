// A development public-key infrastructure minted with the openssl command: one CA, then a
// certificate per service, per agent (naming its host) and per operator client, each naming its
// identity in a URI SAN (identity.ts), plus the Ed25519 key pair that signs operator tokens.
// openssl runs with argument arrays; nothing from input reaches a shell.
import { execFile } from 'node:child_process';
import { generateKeyPairSync, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { promisify } from 'node:util';
import { checkIdentity, identityUri, type Identity } from './identity';

const run = promisify(execFile);

export const CA_CERT = 'ca.crt';
const CA_KEY = 'ca.key';
export const TOKEN_PRIVATE_KEY = 'token.key';
export const TOKEN_PUBLIC_KEY = 'token.pub';

export class PkiError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PkiError';
  }
}

/** Where an identity's certificate and key live in a pki directory. */
export function credentialPaths(dir: string, identity: Identity): { cert: string; key: string } {
  checkIdentity(identity);
  const base = path.join(dir, `${identity.kind}-${identity.id}`);
  return { cert: `${base}.crt`, key: `${base}.key` };
}

async function openssl(args: string[]): Promise<void> {
  try {
    await run('openssl', args, { timeout: 30_000 });
  } catch (error) {
    const e = error as NodeJS.ErrnoException & { stderr?: string };
    if (e.code === 'ENOENT') throw new PkiError('the openssl command is not installed (Debian package openssl)');
    throw new PkiError(`openssl ${args[0]} failed: ${(e.stderr ?? e.message).trim()}`);
  }
}

/** Creates the CA and the token key in `dir` unless they exist; returns whether it created them. */
export async function ensureCertificateAuthority(dir: string): Promise<boolean> {
  fs.mkdirSync(dir, { recursive: true, mode: 0o700 });
  const caCert = path.join(dir, CA_CERT);
  const caKey = path.join(dir, CA_KEY);
  if (fs.existsSync(caCert) && fs.existsSync(caKey)) return false;
  await openssl([
    'req',
    '-x509',
    '-new',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    caKey,
    '-out',
    caCert,
    '-days',
    '3650',
    '-subj',
    '/O=rebootless/CN=rebootless development CA',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  fs.chmodSync(caKey, 0o600);
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  fs.writeFileSync(path.join(dir, TOKEN_PRIVATE_KEY), privateKey.export({ type: 'pkcs8', format: 'pem' }), {
    mode: 0o600,
  });
  fs.writeFileSync(path.join(dir, TOKEN_PUBLIC_KEY), publicKey.export({ type: 'spki', format: 'pem' }));
  return true;
}

/**
 * Issues a certificate for `identity` signed by the CA in `dir` (created first if missing), for
 * both TLS server and client use on loopback. Keeps an existing one unless `renew`.
 */
export async function issueCertificate(
  dir: string,
  identity: Identity,
  opts: { renew?: boolean; days?: number; dnsNames?: readonly string[] } = {},
): Promise<{ cert: string; key: string; created: boolean }> {
  const paths = credentialPaths(dir, identity);
  if (!opts.renew && fs.existsSync(paths.cert) && fs.existsSync(paths.key)) return { ...paths, created: false };
  await ensureCertificateAuthority(dir);
  const work = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-pki-'));
  try {
    const csr = path.join(work, 'request.csr');
    const ext = path.join(work, 'extensions.cnf');
    const dns = ['localhost', ...(opts.dnsNames ?? [])];
    fs.writeFileSync(
      ext,
      [
        'basicConstraints=critical,CA:FALSE',
        'keyUsage=critical,digitalSignature,keyEncipherment',
        'extendedKeyUsage=serverAuth,clientAuth',
        `subjectAltName=URI:${identityUri(identity)},${dns.map((d) => `DNS:${d}`).join(',')},IP:127.0.0.1,IP:::1`,
      ].join('\n') + '\n',
    );
    await openssl([
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      paths.key,
      '-out',
      csr,
      '-subj',
      `/O=rebootless/OU=${identity.kind}/CN=${identity.id}`,
    ]);
    fs.chmodSync(paths.key, 0o600);
    await openssl([
      'x509',
      '-req',
      '-in',
      csr,
      '-CA',
      path.join(dir, CA_CERT),
      '-CAkey',
      path.join(dir, CA_KEY),
      '-set_serial',
      `0x${BigInt(Date.now()).toString(16)}${Math.floor(Math.random() * 0xffffff).toString(16)}`,
      '-days',
      String(opts.days ?? 825),
      '-extfile',
      ext,
      '-out',
      paths.cert,
    ]);
    return { ...paths, created: true };
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}

/** The files that must never leave the pki tool's own directory. */
export const AUTHORITY_SECRETS: readonly string[] = [CA_KEY, TOKEN_PRIVATE_KEY];

/**
 * Where a party's own directory goes by default: `<pki dir>/../identities/<kind>-<id>`, beside the
 * pki tool's directory, never inside it.
 */
export function partyDirectory(pkiDir: string, name: string): string {
  if (!/^[a-z0-9][a-z0-9._-]{0,62}$/.test(name))
    throw new PkiError(`party directory name ${JSON.stringify(name)} is not [a-z0-9._-], 1 to 63 characters`);
  return path.join(path.dirname(path.resolve(pkiDir)), 'identities', name);
}

/**
 * Lays out one party's directory (0700): the CA certificate, the certificate and key (0600) of each
 * of its identities (one for a service or a host; every simulated host for the demo fleet), the
 * token public key, and any other public keys it needs (e.g. builder.pub for agents). The CA key
 * and the token-signing key stay in `pkiDir`. Existing files are replaced, so a renewed
 * certificate reaches its party.
 */
export function exportParty(
  pkiDir: string,
  dest: string,
  identities: readonly Identity[],
  publicKeys: Readonly<Record<string, Buffer | string>> = {},
): { dir: string; files: string[] } {
  const root = path.resolve(pkiDir);
  const out = path.resolve(dest);
  if (out === root || out.startsWith(`${root}${path.sep}`))
    throw new PkiError(`a party's directory must not be inside the pki directory ${root}: ${out}`);
  fs.mkdirSync(out, { recursive: true, mode: 0o700 });
  fs.chmodSync(out, 0o700);
  const files: string[] = [];
  const put = (name: string, data: Buffer | string, mode: number) => {
    if (AUTHORITY_SECRETS.includes(name)) throw new PkiError(`${name} never leaves the pki directory`);
    const file = path.join(out, name);
    fs.rmSync(file, { force: true });
    fs.writeFileSync(file, data, { mode });
    fs.chmodSync(file, mode);
    files.push(name);
  };
  const read = (file: string) => {
    if (!fs.existsSync(file)) throw new PkiError(`${file} is missing: run the pki script's init or issue first`);
    return fs.readFileSync(file);
  };
  put(CA_CERT, read(path.join(root, CA_CERT)), 0o644);
  put(TOKEN_PUBLIC_KEY, read(path.join(root, TOKEN_PUBLIC_KEY)), 0o644);
  for (const identity of identities) {
    const { cert, key } = credentialPaths(root, identity);
    put(path.basename(cert), read(cert), 0o644);
    put(path.basename(key), read(key), 0o600);
  }
  for (const [name, data] of Object.entries(publicKeys)) {
    if (!/^[a-z0-9][a-z0-9._-]*\.pub$/.test(name)) throw new PkiError(`public key file name ${name} must end in .pub`);
    put(name, data, 0o644);
  }
  return { dir: out, files: files.sort() };
}

export function readTokenPrivateKey(dir: string): KeyObject {
  const file = path.join(dir, TOKEN_PRIVATE_KEY);
  if (!fs.existsSync(file)) throw new PkiError(`no token key at ${file}: run the pki script's init first`);
  return createPrivateKey(fs.readFileSync(file));
}

export function readTokenPublicKey(file: string): KeyObject {
  if (!fs.existsSync(file)) throw new PkiError(`no token public key at ${file}`);
  return createPublicKey(fs.readFileSync(file));
}
