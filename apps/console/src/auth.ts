// Who is asking, for every request: a session cookie (browsers) or a bearer token (tools).
// Actions from a session must carry the session's CSRF token; a bearer token is not ambient
// (a page on another site cannot make the browser send it), so it needs none.
import type { Request } from 'express';
import { ApiError } from './api-error';
import type { Caller } from './backends';
import type { PageUser } from './html';
import { SESSION_COOKIE, cookieValue, csrfMatches, type SessionStore } from './sessions';

export interface Asker {
  readonly caller: Caller;
  readonly user: PageUser;
  readonly sessionId?: string;
}

export function asker(sessions: SessionStore, req: Request, opts: { action: boolean }): Asker {
  const authorization = req.headers.authorization;
  if (authorization !== undefined) {
    const m = /^Bearer (\S+)$/.exec(authorization);
    if (!m) throw new ApiError('UNAUTHENTICATED', 'the Authorization header must be "Bearer <token>"');
    const who = sessions.checkBearer(m[1]!);
    return { caller: { token: m[1]! }, user: { subject: who.subject, roles: who.roles, csrf: '' } };
  }
  const session = sessions.find(cookieValue(req.headers.cookie, SESSION_COOKIE));
  if (opts.action) {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const presented = req.header('x-csrf-token') ?? (typeof body['_csrf'] === 'string' ? body['_csrf'] : undefined);
    if (!csrfMatches(session, presented)) {
      throw new ApiError('FORBIDDEN', 'the request carries no valid CSRF token (X-CSRF-Token header or _csrf field)');
    }
  }
  return {
    caller: { token: session.token },
    user: { subject: session.subject, roles: session.roles, csrf: session.csrf },
    sessionId: session.id,
  };
}
