import { generateKeyPairSync } from 'node:crypto';
import { mintToken } from '@rebootless/trust';
import { ApiError } from './api-error';
import { cookieValue, csrfMatches, sessionCookie, SessionStore } from './sessions';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const T0 = Date.UTC(2026, 11, 6, 4, 0, 0);

function given(now = T0) {
  let clock = now;
  const store = new SessionStore(publicKey, () => new Date(clock));
  return { store, advance: (ms: number) => (clock += ms) };
}

const codeOf = (f: () => unknown) => {
  try {
    f();
  } catch (error) {
    return error instanceof ApiError ? `${error.status} ${error.code}` : String(error);
  }
  return 'no error';
};

describe('SessionStore', () => {
  it('opens a session for the person a valid token names, with their roles', () => {
    const { store } = given();
    const session = store.signIn(mintToken(privateKey, { sub: 'alice', roles: ['operator'], ttlSeconds: 600 }, T0));
    expect(store.find(session.id)).toMatchObject({ subject: 'alice', roles: ['operator'] });
    expect(session.id).not.toEqual(session.csrf);
  });

  it('refuses a token signed by another key, naming why', () => {
    const other = generateKeyPairSync('ed25519').privateKey;
    const { store } = given();
    expect(
      codeOf(() => store.signIn(mintToken(other, { sub: 'mallory', roles: ['operator'], ttlSeconds: 600 }, T0))),
    ).toBe('401 UNAUTHENTICATED');
  });

  it('ends the session when its token expires', () => {
    const { store, advance } = given();
    const session = store.signIn(mintToken(privateKey, { sub: 'alice', roles: ['auditor'], ttlSeconds: 60 }, T0));
    advance(61_000);
    expect(codeOf(() => store.find(session.id))).toBe('401 UNAUTHENTICATED');
  });

  it('knows no session it did not open, and none after sign-out', () => {
    const { store } = given();
    expect(codeOf(() => store.find('guessed'))).toBe('401 UNAUTHENTICATED');
    expect(codeOf(() => store.find(undefined))).toBe('401 UNAUTHENTICATED');
    const session = store.signIn(mintToken(privateKey, { sub: 'alice', roles: ['auditor'], ttlSeconds: 60 }, T0));
    store.signOut(session.id);
    expect(codeOf(() => store.find(session.id))).toBe('401 UNAUTHENTICATED');
  });

  it("accepts only the session's own CSRF token", () => {
    const { store } = given();
    const a = store.signIn(mintToken(privateKey, { sub: 'alice', roles: ['operator'], ttlSeconds: 60 }, T0));
    const b = store.signIn(mintToken(privateKey, { sub: 'bob', roles: ['operator'], ttlSeconds: 60 }, T0));
    expect(csrfMatches(a, a.csrf)).toBe(true);
    expect(csrfMatches(a, b.csrf)).toBe(false);
    expect(csrfMatches(a, undefined)).toBe(false);
    expect(csrfMatches(a, '')).toBe(false);
  });

  it('writes an HttpOnly, SameSite=Strict cookie, Secure under HTTPS, that reads back', () => {
    const { store } = given(Date.now());
    const session = store.signIn(mintToken(privateKey, { sub: 'alice', roles: ['operator'], ttlSeconds: 60 }));
    const cookie = sessionCookie(session, true);
    expect(cookie).toMatch(/; HttpOnly; SameSite=Strict; Max-Age=\d+; Secure$/);
    expect(cookieValue(`other=1; ${cookie.split(';')[0]}`, 'rebootless_session')).toBe(session.id);
  });
});
