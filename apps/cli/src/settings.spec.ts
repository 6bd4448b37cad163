import { resolveSettings } from './settings';

const flags = (f: Record<string, string | boolean> = {}) => f;
const none = () => false;

describe('connection settings', () => {
  it('takes addresses from flags, then the environment, then the defaults', () => {
    const settings = resolveSettings(
      flags({ builder: '10.0.0.5:7000', insecure: true }),
      { REBOOTLESS_BUILDER: '10.0.0.9:1', REBOOTLESS_LEDGER: 'ledger.internal:7453' },
      '/repo/.data/pki',
      none,
    );
    expect(settings.endpoints.builder).toEqual({
      service: 'builder',
      address: '10.0.0.5:7000',
      howToChange: '--builder or REBOOTLESS_BUILDER',
    });
    expect(settings.endpoints.ledger.address).toBe('ledger.internal:7453');
    expect(settings.endpoints.dispatcher.address).toBe('127.0.0.1:7452');
  });

  it('refuses an address without a port', () => {
    expect(() =>
      resolveSettings(flags({ insecure: true }), { REBOOTLESS_DISPATCHER: 'localhost' }, '/x', none),
    ).toThrow('REBOOTLESS_DISPATCHER "localhost" is not HOST:PORT, e.g. 127.0.0.1:7451');
  });

  it('uses TLS from --pki, REBOOTLESS_PKI_DIR or the local stack’s pki; plaintext only when told', () => {
    expect(resolveSettings(flags({ pki: '/a' }), { REBOOTLESS_INSECURE: 'true' }, '/d', none).security).toEqual({
      mode: 'tls',
      pkiDir: '/a',
    });
    expect(resolveSettings(flags(), { REBOOTLESS_PKI_DIR: '/b' }, '/d', none).security).toEqual({
      mode: 'tls',
      pkiDir: '/b',
    });
    expect(resolveSettings(flags(), {}, '/d', (p) => p === '/d').security).toEqual({ mode: 'tls', pkiDir: '/d' });
    expect(resolveSettings(flags(), { REBOOTLESS_INSECURE: '1' }, '/d', none).security).toEqual({ mode: 'insecure' });
    expect(resolveSettings(flags({ insecure: true }), { REBOOTLESS_PKI_DIR: '/b' }, '/d', none).security).toEqual({
      mode: 'insecure',
    });
  });

  it('refuses to guess when nothing settles transport security, or when it contradicts itself', () => {
    expect(() => resolveSettings(flags(), {}, '/repo/.data/pki', none)).toThrow(
      'no pki directory: pass --pki DIR or set REBOOTLESS_PKI_DIR (create one with: node scripts/pki.mjs init; the local stack uses /repo/.data/pki), or --insecure for services run with REBOOTLESS_INSECURE=true',
    );
    expect(() =>
      resolveSettings(flags(), { REBOOTLESS_INSECURE: 'true', REBOOTLESS_PKI_DIR: '/b' }, '/d', none),
    ).toThrow(/REBOOTLESS_INSECURE=true and REBOOTLESS_PKI_DIR are both set/);
    expect(() => resolveSettings(flags({ insecure: true, pki: '/a' }), {}, '/d', none)).toThrow(
      /--insecure and --pki contradict each other/,
    );
    expect(() => resolveSettings(flags(), { REBOOTLESS_INSECURE: 'maybe' }, '/d', none)).toThrow(
      'REBOOTLESS_INSECURE="maybe" is not true or false',
    );
  });

  it('takes the token from --token, REBOOTLESS_TOKEN, then REBOOTLESS_TOKEN_FILE', () => {
    const env = { REBOOTLESS_TOKEN: 'env-token', REBOOTLESS_TOKEN_FILE: '/t', REBOOTLESS_INSECURE: 'true' };
    expect(resolveSettings(flags({ token: 'flag-token' }), env, '/d', none).token).toEqual({
      kind: 'value',
      token: 'flag-token',
      from: '--token',
    });
    expect(resolveSettings(flags(), env, '/d', none).token).toEqual({
      kind: 'value',
      token: 'env-token',
      from: 'REBOOTLESS_TOKEN',
    });
    expect(resolveSettings(flags(), { ...env, REBOOTLESS_TOKEN: '' }, '/d', none).token).toEqual({
      kind: 'file',
      path: '/t',
    });
    expect(resolveSettings(flags({ insecure: true }), {}, '/d', none).token).toEqual({ kind: 'none' });
  });
});
