// TLS credentials for gRPC from a pki directory: servers demand a client certificate of the
// CA, clients present theirs and check the server's.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ChannelCredentials, ServerCredentials } from '@grpc/grpc-js';
import type { Identity } from './identity';
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

export function channelCredentials(material: TlsMaterial): ChannelCredentials {
  return ChannelCredentials.createSsl(material.ca, material.key, material.cert);
}
