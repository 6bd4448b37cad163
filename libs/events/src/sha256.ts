import { createHash, hash as oneShotHash } from 'node:crypto';

/**
 * sha256 as a string of 32 char codes (latin1). crypto.hash (Node >= 20.12) hashes in one
 * call, without a Hash object per event, and a short string costs less than a Buffer.
 */
export const sha256Binary: (data: Uint8Array) => string =
  typeof oneShotHash === 'function'
    ? (data) => oneShotHash('sha256', data, 'binary')
    : (data) => createHash('sha256').update(data).digest('binary');

// Holds `prev_hash || body` while it is hashed; grows to the largest body seen.
let scratch = Buffer.allocUnsafe(4096);

/**
 * Whether `bytes[hashStart, hashEnd)` is sha256(prev_hash || body), with prev_hash and body
 * also given as ranges of `bytes` (DESIGN.md section 4). Allocates no Buffer for the digest.
 */
export function chainHashMatches(
  bytes: Uint8Array,
  prevStart: number,
  prevEnd: number,
  bodyStart: number,
  bodyEnd: number,
  hashStart: number,
  hashEnd: number,
): boolean {
  if (hashEnd - hashStart !== 32) return false;
  const prevLen = prevEnd - prevStart;
  const size = prevLen + bodyEnd - bodyStart;
  if (size > scratch.length) scratch = Buffer.allocUnsafe(Math.max(size, scratch.length * 2));
  for (let i = 0; i < prevLen; i++) scratch[i] = bytes[prevStart + i]!;
  scratch.set(bytes.subarray(bodyStart, bodyEnd), prevLen);
  const digest = sha256Binary(scratch.subarray(0, size));
  for (let i = 0; i < 32; i++) {
    if (bytes[hashStart + i] !== digest.charCodeAt(i)) return false;
  }
  return true;
}
