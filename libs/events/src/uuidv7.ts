import { randomFillSync } from 'node:crypto';

const HEX = Buffer.from('0123456789abcdef', 'latin1');

// Random bytes are drawn in bulk: one randomFillSync per id costs more than the rest of an event.
const POOL = new Uint8Array(4096);
let poolAt = POOL.length;

// One id is built at a time (synchronously), so its bytes and text share two scratch buffers:
// the text is made by one latin1 read of 36 ASCII bytes instead of dozens of concatenations.
const BYTES = new Uint8Array(16);
const TEXT = Buffer.alloc(36, '-'.charCodeAt(0));
// Where each byte's two hex digits go in the text (dashes after bytes 3, 5, 7 and 9).
const TEXT_AT = [0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34];

function random10(into: Uint8Array): void {
  if (poolAt + 10 > POOL.length) {
    randomFillSync(POOL);
    poolAt = 0;
  }
  for (let i = 0; i < 10; i++) into[6 + i] = POOL[poolAt + i]!;
  poolAt += 10;
}

/**
 * A UUIDv7 (RFC 9562): 48-bit unix milliseconds, then random bits, so ids sort by time.
 * `random` may be passed in for deterministic tests.
 */
export function uuidv7(nowMs: number = Date.now(), random?: Uint8Array): string {
  const b = BYTES;
  if (random) b.fill(0).set(random.subarray(0, 10), 6);
  else random10(b);
  let ms = Math.floor(nowMs);
  for (let i = 5; i >= 0; i--) {
    b[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  b[6] = 0x70 | (b[6]! & 0x0f);
  b[8] = 0x80 | (b[8]! & 0x3f);
  for (let i = 0; i < 16; i++) {
    const at = TEXT_AT[i]!;
    TEXT[at] = HEX[b[i]! >> 4]!;
    TEXT[at + 1] = HEX[b[i]! & 0x0f]!;
  }
  return TEXT.toString('latin1');
}

/** The millisecond timestamp inside a UUIDv7. */
export function uuidv7Time(id: string): number {
  return parseInt(id.replace(/-/g, '').slice(0, 12), 16);
}
