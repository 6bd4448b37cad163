import { KeyObject, createPrivateKey, createPublicKey, randomBytes, sign, verify } from 'node:crypto';

// Ed25519 signatures are made and checked with libsodium (docs/adr/0031): about twice as fast
// as OpenSSL's here, and a fleet's seals are most of what the services and agents compute.
// Ed25519 is deterministic, so libsodium's signature is byte for byte OpenSSL's; libsodium also
// refuses a few keys and signatures OpenSSL takes (small-order points), none of which an honest
// producer makes. Keys stay KeyObjects on disk and in PEM, as before. Where the native addon
// cannot load (a single-file bundle, as the agent in the kernel lab's guest), OpenSSL does the
// same work: same signatures, same verdicts on every honest signature.

type Sodium = typeof import('sodium-native');

function loadSodium(): Sodium | undefined {
  try {
    return require('sodium-native') as Sodium;
  } catch {
    return undefined;
  }
}

const sodium = loadSodium();

/** Which implementation signs and verifies in this process. */
export const ED25519_IMPLEMENTATION: 'libsodium' | 'openssl' = sodium ? 'libsodium' : 'openssl';

/** An Ed25519 key pair; the raw public key is what events carry and configs pin. */
export interface SigningKey {
  readonly privateKey: KeyObject;
  readonly publicKey: KeyObject;
  readonly rawPublicKey: Buffer;
  /** libsodium's form of the private key (seed and public key), when libsodium signs. */
  readonly secretKey?: Buffer;
}

/**
 * A new key from 32 random bytes, imported as PKCS#8. Not generateKeyPairSync: Node 20 can
 * deadlock exporting a generated key while a garbage collection finalizes its generation job
 * (both take the key's mutex; seen in a fleet worker starting 16,000 agents, main thread parked
 * in ExportJWKEdKey under ~KeyGenJob).
 */
export function generateSigningKey(): SigningKey {
  const der = Buffer.concat([PKCS8_ED25519_PREFIX, randomBytes(32)]);
  return signingKeyFrom(createPrivateKey({ key: der, format: 'der', type: 'pkcs8' }));
}

export function signingKeyFromPem(pem: string): SigningKey {
  return signingKeyFrom(createPrivateKey(pem));
}

export function signingKeyToPem(key: SigningKey): string {
  return key.privateKey.export({ format: 'pem', type: 'pkcs8' }).toString();
}

function signingKeyFrom(privateKey: KeyObject): SigningKey {
  if (privateKey.asymmetricKeyType !== 'ed25519') {
    throw new Error(`expected an Ed25519 private key, got ${privateKey.asymmetricKeyType ?? 'unknown'}`);
  }
  const publicKey = createPublicKey(privateKey);
  const raw = rawPublicKey(publicKey);
  if (!sodium) return { privateKey, publicKey, rawPublicKey: raw };
  const derived = Buffer.alloc(sodium.crypto_sign_PUBLICKEYBYTES);
  const secretKey = Buffer.alloc(sodium.crypto_sign_SECRETKEYBYTES);
  sodium.crypto_sign_seed_keypair(derived, secretKey, ed25519Seed(privateKey));
  if (!derived.equals(raw)) throw new Error('libsodium derived another public key from this Ed25519 private key');
  return { privateKey, publicKey, rawPublicKey: raw, secretKey };
}

/** PKCS#8 of an Ed25519 key (RFC 8410): a fixed 16-byte prefix, then the 32-byte seed. */
const PKCS8_ED25519_PREFIX = Buffer.from('302e020100300506032b657004220420', 'hex');

function ed25519Seed(privateKey: KeyObject): Buffer {
  const der = privateKey.export({ format: 'der', type: 'pkcs8' });
  if (der.length !== 48 || !der.subarray(0, 16).equals(PKCS8_ED25519_PREFIX))
    throw new Error('this Ed25519 private key does not export as a plain PKCS#8 seed');
  return Buffer.from(der.subarray(16));
}

export function rawPublicKey(key: KeyObject): Buffer {
  const der = key.export({ format: 'der', type: 'spki' });
  return Buffer.from(der.subarray(der.length - 32));
}

// Parsing a key costs more than verifying with it, and a process checks thousands of signatures
// by the same few keys (an agent its builder's, the ledger each producer's). A KeyObject is
// immutable and found by the key's own bytes, so a cached one is exactly the key asked for.
const parsedKeys = new Map<string, KeyObject>();
const MAX_PARSED_KEYS = 4096;

export function publicKeyFromRaw(raw: Uint8Array): KeyObject {
  if (raw.length !== 32) throw new Error(`an Ed25519 public key has 32 bytes, got ${raw.length}`);
  const hex = Buffer.from(raw.buffer, raw.byteOffset, raw.length).toString('hex');
  let key = parsedKeys.get(hex);
  if (!key) {
    // As a JWK: OpenSSL takes the raw key directly, about ten times cheaper than decoding DER,
    // which counts when a replay meets thousands of agent epochs.
    const x = Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength).toString('base64url');
    key = createPublicKey({ key: { kty: 'OKP', crv: 'Ed25519', x }, format: 'jwk' });
    if (parsedKeys.size >= MAX_PARSED_KEYS) parsedKeys.clear();
    parsedKeys.set(hex, key);
  }
  return key;
}

/** Signs a message (a chain's hash, a manifest's bytes) with the producer's key. */
export function signHash(key: SigningKey, hash: Uint8Array): Buffer {
  if (!sodium || !key.secretKey) return sign(null, hash, key.privateKey);
  const signature = Buffer.alloc(sodium.crypto_sign_BYTES);
  sodium.crypto_sign_detached(signature, hash, key.secretKey);
  return signature;
}

/** Whether `signature` is the raw 32-byte Ed25519 key's over the message; false for malformed input. */
export function verifyHash(publicKey: Uint8Array, hash: Uint8Array, signature: Uint8Array): boolean {
  if (signature.length !== 64 || publicKey.length !== 32) return false;
  if (!sodium) return verify(null, hash, publicKeyFromRaw(publicKey), signature);
  return sodium.crypto_sign_verify_detached(signature, hash, publicKey);
}

/** Short, stable name for a key in messages: the first 16 hex digits of the raw key. */
export function keyFingerprint(raw: Uint8Array): string {
  return Buffer.from(raw).toString('hex').slice(0, 16);
}
