import { createHash, sign, verify } from 'node:crypto';
import { generateSigningKey, signHash, signingKeyFromPem, signingKeyToPem, verifyHash } from './signing';

const hash = createHash('sha256').update('a chain link').digest();

describe('Ed25519 through libsodium', () => {
  it("signs byte for byte as OpenSSL does, so seals written before verify as they did and OpenSSL's verify ours", () => {
    const key = generateSigningKey();
    const ours = signHash(key, hash);
    expect(ours.equals(sign(null, hash, key.privateKey))).toBe(true);
    expect(verify(null, hash, key.publicKey, ours)).toBe(true);
    expect(verifyHash(key.rawPublicKey, hash, sign(null, hash, key.privateKey))).toBe(true);
  });

  it('keeps the key it signs with across PEM, as a restarted producer does', () => {
    const key = generateSigningKey();
    const again = signingKeyFromPem(signingKeyToPem(key));
    expect(again.rawPublicKey.equals(key.rawPublicKey)).toBe(true);
    expect(signHash(again, hash).equals(signHash(key, hash))).toBe(true);
  });

  it('refuses another key, an altered hash or signature, and malformed lengths', () => {
    const key = generateSigningKey();
    const other = generateSigningKey();
    const signature = signHash(key, hash);
    expect(verifyHash(key.rawPublicKey, hash, signature)).toBe(true);
    expect(verifyHash(other.rawPublicKey, hash, signature)).toBe(false);
    const altered = Buffer.from(hash);
    altered[0]! ^= 1;
    expect(verifyHash(key.rawPublicKey, altered, signature)).toBe(false);
    const flipped = Buffer.from(signature);
    flipped[10]! ^= 1;
    expect(verifyHash(key.rawPublicKey, hash, flipped)).toBe(false);
    expect(verifyHash(key.rawPublicKey, hash, signature.subarray(0, 63))).toBe(false);
    expect(verifyHash(key.rawPublicKey.subarray(0, 31), hash, signature)).toBe(false);
    expect(verifyHash(Buffer.alloc(32), hash, signature)).toBe(false);
  });
});

describe('Ed25519 where the native addon cannot load (a single-file bundle)', () => {
  it('signs and verifies through OpenSSL, the same signatures and verdicts', () => {
    jest.isolateModules(() => {
      jest.doMock('sodium-native', () => {
        throw new Error('no addon in this bundle');
      });
      const openssl = require('./signing') as typeof import('./signing');
      expect(openssl.ED25519_IMPLEMENTATION).toBe('openssl');
      const key = openssl.generateSigningKey();
      const signature = openssl.signHash(key, hash);
      expect(signature.equals(signHash(signingKeyFromPem(openssl.signingKeyToPem(key)), hash))).toBe(true);
      expect(openssl.verifyHash(key.rawPublicKey, hash, signature)).toBe(true);
      expect(verifyHash(key.rawPublicKey, hash, signature)).toBe(true);
      expect(openssl.verifyHash(generateSigningKey().rawPublicKey, hash, signature)).toBe(false);
    });
  });
});
