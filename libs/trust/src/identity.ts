// Who is on the other end of a TLS connection. Every certificate the project's pki mints names
// exactly one identity in a URI subject alternative name, so a service never has to guess from a
// common name: urn:rebootless:host:<host id>, urn:rebootless:service:<name>, urn:rebootless:user:<name>.
import type { PeerCertificate } from 'node:tls';

export type IdentityKind = 'host' | 'service' | 'user';

export interface Identity {
  readonly kind: IdentityKind;
  readonly id: string;
}

const PREFIX = 'urn:rebootless:';
const KINDS: readonly IdentityKind[] = ['host', 'service', 'user'];
// Host ids are machine ids or host names; keep them to characters that survive a URI and a file name.
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

export class IdentityError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'IdentityError';
  }
}

export function identityUri(identity: Identity): string {
  checkIdentity(identity);
  return `${PREFIX}${identity.kind}:${identity.id}`;
}

export function checkIdentity(identity: Identity): void {
  if (!KINDS.includes(identity.kind)) throw new IdentityError(`unknown identity kind "${identity.kind}"`);
  if (!ID_PATTERN.test(identity.id)) {
    throw new IdentityError(
      `"${identity.id}" is not a valid ${identity.kind} id: 1 to 128 letters, digits, ".", "_" or "-", starting with a letter or digit`,
    );
  }
}

export function parseIdentityUri(uri: string): Identity | undefined {
  if (!uri.startsWith(PREFIX)) return undefined;
  const rest = uri.slice(PREFIX.length);
  const colon = rest.indexOf(':');
  if (colon < 0) return undefined;
  const kind = rest.slice(0, colon) as IdentityKind;
  const id = rest.slice(colon + 1);
  if (!KINDS.includes(kind) || !ID_PATTERN.test(id)) return undefined;
  return { kind, id };
}

/**
 * The identity a peer certificate names, from its URI SANs. A certificate that names none, or
 * more than one, names nobody: the caller gets no identity rather than the first guess.
 */
export function identityFromCertificate(
  cert: Pick<PeerCertificate, 'subjectaltname'> | undefined,
): Identity | undefined {
  const sans = cert?.subjectaltname;
  if (!sans) return undefined;
  const found = sans
    .split(/,\s*/)
    .filter((entry) => entry.startsWith('URI:'))
    .map((entry) => parseIdentityUri(entry.slice(4)))
    .filter((identity): identity is Identity => identity !== undefined);
  return found.length === 1 ? found[0] : undefined;
}

export function describeIdentity(identity: Identity | undefined): string {
  return identity ? `${identity.kind}:${identity.id}` : 'no certificate identity';
}
