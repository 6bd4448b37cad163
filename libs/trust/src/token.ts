// Operator bearer tokens: a small signed claim set, Ed25519 over the exact encoded claims.
// Format: "rbl1.<base64url(JSON claims)>.<base64url(signature)>". Minted by the pki script with
// the token key; every service holds only the public half, so a service cannot mint tokens.
import { randomUUID, sign, verify, type KeyObject } from 'node:crypto';

// release-manager: may start a rollout without an approval (CreateRolloutRequest.skip_approval); ADR 0013.
export const ROLES = ['operator', 'approver', 'auditor', 'release-manager'] as const;
export type Role = (typeof ROLES)[number];

export interface TokenClaims {
  /** The person (or automation) the token speaks for: the "user identity" of PCI-DSS 10.2.2. */
  readonly sub: string;
  readonly roles: readonly Role[];
  /** Issued at and expiry, seconds since the epoch. */
  readonly iat: number;
  readonly exp: number;
  readonly jti: string;
  /** Who may accept it: service names (builder, dispatcher, ledger) or "rebootless", every one of them. */
  readonly aud: readonly string[];
}

/** The audience every service accepts. */
export const ANY_SERVICE_AUDIENCE = 'rebootless';
/** The longest lifetime (exp - iat) a service accepts by default: a working day, not a month. */
export const DEFAULT_MAX_TOKEN_LIFETIME_SECONDS = 12 * 3600;

/** What a service demands of a token besides its signature and expiry. */
export interface TokenExpectations {
  /** The service's own name: the token's aud must hold it or "rebootless". */
  readonly audience: string;
  /** Tokens minted to live longer than this are refused, whatever their exp says. */
  readonly maxLifetimeSeconds: number;
}

export class TokenError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'TokenError';
  }
}

const VERSION = 'rbl1';
// Long enough for any real claim set, short enough that garbage is refused before parsing.
const MAX_TOKEN_LENGTH = 4096;

export function isRole(value: string): value is Role {
  return (ROLES as readonly string[]).includes(value);
}

export function mintToken(
  privateKey: KeyObject,
  claims: { sub: string; roles: readonly Role[]; ttlSeconds: number; audience?: readonly string[] },
  nowMs = Date.now(),
): string {
  const aud = [...new Set(claims.audience ?? [ANY_SERVICE_AUDIENCE])];
  if (aud.length === 0 || !aud.every((a) => /^[a-z][a-z0-9-]{0,62}$/.test(a)))
    throw new TokenError(`the audience must be service names or "${ANY_SERVICE_AUDIENCE}", got ${JSON.stringify(aud)}`);
  if (!/^[A-Za-z0-9][A-Za-z0-9._@-]{0,127}$/.test(claims.sub)) {
    throw new TokenError(`subject "${claims.sub}" must be 1 to 128 letters, digits, ".", "_", "@" or "-"`);
  }
  if (claims.roles.length === 0) throw new TokenError(`a token needs at least one role (${ROLES.join(', ')})`);
  for (const role of claims.roles) {
    if (!isRole(role)) throw new TokenError(`unknown role "${role}" (known: ${ROLES.join(', ')})`);
  }
  if (!Number.isInteger(claims.ttlSeconds) || claims.ttlSeconds <= 0) {
    throw new TokenError(`the token lifetime must be a positive number of seconds, got ${claims.ttlSeconds}`);
  }
  const iat = Math.floor(nowMs / 1000);
  const body: TokenClaims = {
    sub: claims.sub,
    roles: [...new Set(claims.roles)],
    iat,
    exp: iat + claims.ttlSeconds,
    jti: randomUUID(),
    aud,
  };
  const payload = Buffer.from(JSON.stringify(body)).toString('base64url');
  const signature = sign(null, Buffer.from(`${VERSION}.${payload}`), privateKey).toString('base64url');
  return `${VERSION}.${payload}.${signature}`;
}

/**
 * The claims of a token signed with `publicKey`, valid at `nowMs`, meant for `expect.audience` and
 * minted to live no longer than `expect.maxLifetimeSeconds`; TokenError says why not.
 */
export function verifyToken(
  token: string,
  publicKey: KeyObject,
  expect: TokenExpectations,
  nowMs = Date.now(),
): TokenClaims {
  if (token.length > MAX_TOKEN_LENGTH) throw new TokenError(`the token is longer than ${MAX_TOKEN_LENGTH} characters`);
  const parts = token.split('.');
  if (parts.length !== 3 || parts[0] !== VERSION) {
    throw new TokenError(`not a rebootless token (expected "${VERSION}.<claims>.<signature>")`);
  }
  const [, payload, signature] = parts as [string, string, string];
  const signed = Buffer.from(`${VERSION}.${payload}`);
  if (!verify(null, signed, publicKey, Buffer.from(signature, 'base64url'))) {
    throw new TokenError('the token signature does not verify with the configured token key');
  }
  let claims: unknown;
  try {
    claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8'));
  } catch {
    throw new TokenError('the token claims are not JSON');
  }
  const c = claims as Partial<TokenClaims>;
  if (
    typeof c.sub !== 'string' ||
    !Array.isArray(c.roles) ||
    !c.roles.every((r) => typeof r === 'string' && isRole(r)) ||
    typeof c.iat !== 'number' ||
    typeof c.exp !== 'number' ||
    typeof c.jti !== 'string' ||
    !Array.isArray(c.aud) ||
    !c.aud.every((a) => typeof a === 'string')
  ) {
    throw new TokenError('the token claims are incomplete (sub, roles, iat, exp, jti, aud)');
  }
  if (!c.aud.includes(expect.audience) && !c.aud.includes(ANY_SERVICE_AUDIENCE)) {
    throw new TokenError(
      `the token is meant for ${c.aud.join(', ') || 'nobody'}, not ${expect.audience} (nor "${ANY_SERVICE_AUDIENCE}")`,
    );
  }
  if (c.exp - c.iat > expect.maxLifetimeSeconds) {
    throw new TokenError(
      `the token was minted to live ${c.exp - c.iat} s; this service accepts at most ${expect.maxLifetimeSeconds} s`,
    );
  }
  const now = Math.floor(nowMs / 1000);
  if (now >= c.exp) throw new TokenError(`the token expired at ${new Date(c.exp * 1000).toISOString()}`);
  // A minute of clock skew between the minting machine and the service.
  if (c.iat > now + 60)
    throw new TokenError(`the token is issued in the future (${new Date(c.iat * 1000).toISOString()})`);
  return c as TokenClaims;
}
