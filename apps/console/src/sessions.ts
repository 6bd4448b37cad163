// Signed-in people, kept server-side: the browser holds only a random session id in an HttpOnly,
// SameSite=Strict cookie (Secure under HTTPS), never the token. Each session has its own CSRF
// token (synchroniser pattern) that every action must echo. A session ends with its token.
import { randomBytes, timingSafeEqual, type KeyObject } from 'node:crypto';
import { TokenError, verifyToken, type Role, type TokenExpectations } from '@rebootless/trust';
import { ApiError } from './api-error';

export const SESSION_COOKIE = 'rebootless_session';
const MAX_SESSIONS = 10_000;

export interface Session {
  readonly id: string;
  readonly token: string;
  readonly subject: string;
  readonly roles: readonly Role[];
  readonly expiresAt: Date;
  readonly csrf: string;
}

/** What the console asks of a token, as every service asks it (ADR 0013): meant for it, and short-lived. */
export const CONSOLE_TOKEN_EXPECTATIONS: TokenExpectations = { audience: 'console', maxLifetimeSeconds: 12 * 3600 };

export class SessionStore {
  private readonly sessions = new Map<string, Session>();

  constructor(
    private readonly tokenKey: KeyObject | undefined,
    private readonly now: () => Date = () => new Date(),
    private readonly expect: TokenExpectations = CONSOLE_TOKEN_EXPECTATIONS,
  ) {}

  /** Checks the token as every service will, and opens a session for the person it names. */
  signIn(token: string): Session {
    if (!this.tokenKey)
      throw new ApiError(
        'UNAVAILABLE',
        'sign-in is off: the console has no token public key (CONSOLE_TOKEN_PUBLIC_KEY)',
      );
    let claims;
    try {
      claims = verifyToken(token.trim(), this.tokenKey, this.expect, this.now().getTime());
    } catch (error) {
      if (error instanceof TokenError) throw new ApiError('UNAUTHENTICATED', `the token was refused: ${error.message}`);
      throw error;
    }
    this.sweep();
    const session: Session = {
      id: randomBytes(32).toString('base64url'),
      token: token.trim(),
      subject: claims.sub,
      roles: claims.roles,
      expiresAt: new Date(claims.exp * 1000),
      csrf: randomBytes(32).toString('base64url'),
    };
    this.sessions.set(session.id, session);
    return session;
  }

  /** A bearer token presented on an API call by a tool: checked, never stored. */
  checkBearer(token: string): { subject: string; roles: readonly Role[] } {
    if (!this.tokenKey)
      throw new ApiError('UNAVAILABLE', 'tokens cannot be checked: the console has no token public key');
    try {
      const claims = verifyToken(token, this.tokenKey, this.expect, this.now().getTime());
      return { subject: claims.sub, roles: claims.roles };
    } catch (error) {
      if (error instanceof TokenError)
        throw new ApiError('UNAUTHENTICATED', `the bearer token was refused: ${error.message}`);
      throw error;
    }
  }

  /** The session a cookie names, or why there is none. */
  find(id: string | undefined): Session {
    if (!id) throw new ApiError('UNAUTHENTICATED', 'not signed in: sign in with a token first');
    const session = this.sessions.get(id);
    if (!session) throw new ApiError('UNAUTHENTICATED', 'the session is unknown or has ended: sign in again');
    if (session.expiresAt <= this.now()) {
      this.sessions.delete(id);
      throw new ApiError(
        'UNAUTHENTICATED',
        `the session's token expired at ${session.expiresAt.toISOString()}: sign in again`,
      );
    }
    return session;
  }

  signOut(id: string | undefined): void {
    if (id) this.sessions.delete(id);
  }

  private sweep(): void {
    const now = this.now();
    for (const [id, s] of this.sessions) if (s.expiresAt <= now) this.sessions.delete(id);
    // Bounded: a flood of sign-ins cannot grow the map without end; the oldest go first.
    while (this.sessions.size >= MAX_SESSIONS) this.sessions.delete(this.sessions.keys().next().value!);
  }
}

export function csrfMatches(session: Session, presented: string | undefined): boolean {
  if (!presented) return false;
  const a = Buffer.from(session.csrf);
  const b = Buffer.from(presented);
  return a.length === b.length && timingSafeEqual(a, b);
}

export function sessionCookie(session: Session, secure: boolean): string {
  const maxAge = Math.max(0, Math.floor((session.expiresAt.getTime() - Date.now()) / 1000));
  return `${SESSION_COOKIE}=${session.id}; Path=/; HttpOnly; SameSite=Strict; Max-Age=${maxAge}${secure ? '; Secure' : ''}`;
}

export function clearedCookie(secure: boolean): string {
  return `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${secure ? '; Secure' : ''}`;
}

export function cookieValue(header: string | undefined, name: string): string | undefined {
  if (!header) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq > 0 && part.slice(0, eq).trim() === name) return part.slice(eq + 1).trim();
  }
  return undefined;
}
