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

export function readTokenPrivateKey(dir: string): KeyObject {
  const file = path.join(dir, TOKEN_PRIVATE_KEY);
  if (!fs.existsSync(file)) throw new PkiError(`no token key at ${file}: run the pki script's init first`);
  return createPrivateKey(fs.readFileSync(file));
}

export function readTokenPublicKey(file: string): KeyObject {
  if (!fs.existsSync(file)) throw new PkiError(`no token public key at ${file}`);
  return createPublicKey(fs.readFileSync(file));
}
