import { randomFillSync } from 'node:crypto';

const HEX: string[] = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

// Random bytes are drawn in bulk: one randomFillSync per id costs more than the rest of an event.
const POOL = new Uint8Array(4096);
let poolAt = POOL.length;

function random10(into: Uint8Array): void {
  if (poolAt + 10 > POOL.length) {
    randomFillSync(POOL);
    poolAt = 0;
  }
  into.set(POOL.subarray(poolAt, poolAt + 10), 6);
  poolAt += 10;
}

/**
 * A UUIDv7 (RFC 9562): 48-bit unix milliseconds, then random bits, so ids sort by time.
 * `random` may be passed in for deterministic tests.
 */
export function uuidv7(nowMs: number = Date.now(), random?: Uint8Array): string {
  const b = new Uint8Array(16);
  if (random) b.set(random.subarray(0, 10), 6);
  else random10(b);
  let ms = Math.floor(nowMs);
  for (let i = 5; i >= 0; i--) {
    b[i] = ms % 256;
    ms = Math.floor(ms / 256);
  }
  b[6] = 0x70 | (b[6]! & 0x0f);
  b[8] = 0x80 | (b[8]! & 0x3f);
  let s = '';
  for (let i = 0; i < 16; i++) {
    s += HEX[b[i]!];
    if (i === 3 || i === 5 || i === 7 || i === 9) s += '-';
  }
  return s;
}

/** The millisecond timestamp inside a UUIDv7. */
export function uuidv7Time(id: string): number {
  return parseInt(id.replace(/-/g, '').slice(0, 12), 16);
}
