// What the API returns for a message from a service: plain JSON, timestamps as RFC 3339, bytes
// as base64, unset messages left out (proto-loader hands them out as null).
export type Plain = null | boolean | number | string | Plain[] | { [key: string]: Plain };

function isTimestamp(value: object): value is { seconds: string | number; nanos: number } {
  const keys = Object.keys(value);
  return keys.length === 2 && 'seconds' in value && 'nanos' in value;
}

export function timestampToIso(
  value: { seconds: string | number; nanos: number } | null | undefined,
): string | undefined {
  if (!value) return undefined;
  return new Date(Number(value.seconds) * 1000 + Math.floor(value.nanos / 1_000_000)).toISOString();
}

export function plain(value: unknown): Plain | undefined {
  if (value === null || value === undefined) return undefined;
  if (Buffer.isBuffer(value) || value instanceof Uint8Array) return Buffer.from(value).toString('base64');
  if (Array.isArray(value)) return value.map((v) => plain(v) ?? null);
  if (typeof value === 'object') {
    if (isTimestamp(value)) return timestampToIso(value) ?? null;
    const out: { [key: string]: Plain } = {};
    for (const [key, v] of Object.entries(value)) {
      const p = plain(v);
      if (p !== undefined) out[key] = p;
    }
    return out;
  }
  if (typeof value === 'bigint') return value.toString();
  return value as Plain;
}
