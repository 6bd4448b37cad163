import { generateKeyPairSync, sign } from 'node:crypto';
import { mintToken, verifyToken } from './token';

const { privateKey, publicKey } = generateKeyPairSync('ed25519');
const forBuilder = { audience: 'builder', maxLifetimeSeconds: 12 * 3600 };

/** A token as a forger holding the real key would write it: any claims, signed. */
function signedClaims(claims: object): string {
  const payload = Buffer.from(JSON.stringify(claims)).toString('base64url');
  return `rbl1.${payload}.${sign(null, Buffer.from(`rbl1.${payload}`), privateKey).toString('base64url')}`;
}

describe('token audience and lifetime', () => {
  it('Given a token for every service ("rebootless"), When the builder verifies it, Then it is accepted', () => {
    const token = mintToken(privateKey, { sub: 'alice', roles: ['operator'], ttlSeconds: 3600 });
    expect(verifyToken(token, publicKey, forBuilder)).toMatchObject({ sub: 'alice', aud: ['rebootless'] });
  });

  it('Given a token for the ledger only, When the builder verifies it, Then it is refused naming both', () => {
    const token = mintToken(privateKey, { sub: 'alice', roles: ['auditor'], ttlSeconds: 3600, audience: ['ledger'] });
    expect(() => verifyToken(token, publicKey, forBuilder)).toThrow(
      'the token is meant for ledger, not builder (nor "rebootless")',
    );
    expect(verifyToken(token, publicKey, { ...forBuilder, audience: 'ledger' }).sub).toBe('alice');
  });

  it('Given a token minted to live 30 days, When a service with a 12 h bound verifies it, Then it is refused though unexpired', () => {
    const token = mintToken(privateKey, { sub: 'alice', roles: ['operator'], ttlSeconds: 30 * 86_400 });
    expect(() => verifyToken(token, publicKey, forBuilder)).toThrow(
      'the token was minted to live 2592000 s; this service accepts at most 43200 s',
    );
  });

  it('Given a token without an audience (the format before it), Then it is refused as incomplete', () => {
    const now = Math.floor(Date.now() / 1000);
    const token = signedClaims({ sub: 'alice', roles: ['operator'], iat: now, exp: now + 60, jti: 'x' });
    expect(() => verifyToken(token, publicKey, forBuilder)).toThrow(/incomplete .*aud/);
  });

  it('Given a bad audience to mint, Then the minting is refused', () => {
    expect(() =>
      mintToken(privateKey, { sub: 'alice', roles: ['operator'], ttlSeconds: 60, audience: ['Not A Service'] }),
    ).toThrow(/audience must be service names/);
  });
});
