// TLS credentials for gRPC from a pki directory: servers demand a client certificate of the
// CA, clients present theirs and check the server's.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { checkServerIdentity as checkHostName, type PeerCertificate } from 'node:tls';
import { ChannelCredentials, ServerCredentials } from '@grpc/grpc-js';
import { describeIdentity, identityFromCertificate, type Identity } from './identity';
import { CA_CERT, PkiError, credentialPaths } from './pki';

export interface TlsMaterial {
  readonly ca: Buffer;
  readonly cert: Buffer;
  readonly key: Buffer;
  readonly identity: Identity;
}

export function loadTlsMaterial(dir: string, identity: Identity): TlsMaterial {
  const ca = path.join(dir, CA_CERT);
  const { cert, key } = credentialPaths(dir, identity);
  for (const file of [ca, cert, key]) {
    if (!fs.existsSync(file)) {
      throw new PkiError(
        `${file} is missing: mint it with "node scripts/pki.mjs issue ${identity.kind} ${identity.id} --dir ${dir}"`,
      );
    }
  }
  return { ca: fs.readFileSync(ca), cert: fs.readFileSync(cert), key: fs.readFileSync(key), identity };
}

export function serverCredentials(material: TlsMaterial): ServerCredentials {
  return ServerCredentials.createSsl(material.ca, [{ cert_chain: material.cert, private_key: material.key }], true);
}

/**
 * A client's credentials: its certificate, the CA, and the identity the server must prove. "Signed
 * by the CA" is not enough: every host's certificate is, so a host's key in a network attacker's
 * hands would otherwise pass for the dispatcher. The server's certificate must name `server` (or
 * one of the list, for a client whose one channel configuration reaches several services).
 */
export function channelCredentials(material: TlsMaterial, server: Identity | readonly Identity[]): ChannelCredentials {
  const expected = Array.isArray(server) ? (server as readonly Identity[]) : [server as Identity];
  if (expected.length === 0) throw new PkiError('a client must name the server identity it expects');
  return ChannelCredentials.createSsl(material.ca, material.key, material.cert, {
    checkServerIdentity: (hostname, cert) => serverIdentityError(hostname, cert, expected),
  });
}

/** Why `cert` is not acceptable from a server expected to be one of `expected`; undefined when it is. */
export function serverIdentityError(
  hostname: string,
  cert: PeerCertificate,
  expected: readonly Identity[],
): Error | undefined {
  const hostError = checkHostName(hostname, cert);
  if (hostError) return hostError;
  const named = identityFromCertificate(cert);
  if (named && expected.some((e) => e.kind === named.kind && e.id === named.id)) return undefined;
  return new Error(
    `the server's certificate names ${describeIdentity(named)}, not ${expected.map(describeIdentity).join(' or ')}`,
  );
}
