import { createCipheriv, createHash } from 'node:crypto';
import { endianness } from 'node:os';

/**
 * A digest of a set of rows, kept up to date row by row: adding or removing one costs the same
 * whatever the set's size, and two sets digest alike only if they hold the same rows, in any
 * order (docs/adr/0028). It is a lattice hash: each row is expanded to 1,024 numbers of 16 bits
 * and the set's digest is their sum, number by number, modulo 2^16 (the construction Bellare and
 * Micciancio proposed, with the parameters Lewi et al. found to resist the known attacks on
 * smaller sums). The expansion is AES-256-CTR keyed by the row's SHA-256, a standard generator.
 * What the sum proves depends on who vouches for it: the ledger signs it with its checkpoint.
 */
export class SetDigest {
  private readonly sums = new Uint16Array(ELEMENTS);

  /** The element of a row: SHA-256 of its text, what add() and remove() take. */
  static element(row: string): Buffer {
    return createHash('sha256').update(row).digest();
  }

  add(element: Uint8Array): void {
    const v = expand(element);
    const sums = this.sums;
    // A Uint16Array keeps each sum modulo 2^16 by itself.
    for (let i = 0; i < ELEMENTS; i++) sums[i] = sums[i]! + v[i]!;
  }

  remove(element: Uint8Array): void {
    const v = expand(element);
    const sums = this.sums;
    for (let i = 0; i < ELEMENTS; i++) sums[i] = sums[i]! - v[i]!;
  }

  /** SHA-256 of the sums (little-endian): what is signed and compared. */
  digest(): Buffer {
    const bytes = Buffer.alloc(ELEMENTS * 2);
    for (let i = 0; i < ELEMENTS; i++) bytes.writeUInt16LE(this.sums[i]!, i * 2);
    return createHash('sha256').update(bytes).digest();
  }

  clear(): void {
    this.sums.fill(0);
  }
}

const ELEMENTS = 1024;
const ZEROS = Buffer.alloc(ELEMENTS * 2);
const IV = Buffer.alloc(16);

const LITTLE_ENDIAN = endianness() === 'LE';
const scratch = new Uint16Array(ELEMENTS);

/**
 * The row's 1,024 numbers: the generator's stream keyed by its element, read little-endian
 * (viewed in place on a little-endian machine). Valid until the next call.
 */
function expand(element: Uint8Array): Uint16Array {
  if (element.length !== 32) throw new Error(`a set element is a 32-byte SHA-256, got ${element.length} bytes`);
  const stream = createCipheriv('aes-256-ctr', element, IV).update(ZEROS);
  if (LITTLE_ENDIAN) {
    new Uint8Array(scratch.buffer).set(stream);
    return scratch;
  }
  for (let i = 0; i < ELEMENTS; i++) scratch[i] = stream[2 * i]! | (stream[2 * i + 1]! << 8);
  return scratch;
}
