/**
 * PostgreSQL's text form of a one-dimensional array (`{1,"a b",NULL}`), for the column types the
 * read models use. The upserts pass one array per column; building the literal when a batch is
 * staged, instead of letting the driver serialize the arrays when the statement is sent, keeps
 * that work off the chain of writes (docs/adr/0005).
 */
import type { CopyColumnType } from './copy-binary';

const NEEDS_ESCAPE = /["\\]/g;

export function pgArrayLiteral(type: CopyColumnType, values: readonly unknown[]): string {
  const parts = new Array<string>(values.length);
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v === null || v === undefined) parts[i] = 'NULL';
    else if (type === 'text') {
      const s = String(v);
      parts[i] = `"${s.includes('"') || s.includes('\\') ? s.replace(NEEDS_ESCAPE, '\\$&') : s}"`;
    } else if (type === 'bytea') {
      // The element is bytea's hex input (\x...), its backslash escaped for the array literal.
      parts[i] = `"\\\\x${Buffer.from(v as Uint8Array).toString('hex')}"`;
    } else parts[i] = wholeNumber(type, v);
  }
  return `{${parts.join(',')}}`;
}

function wholeNumber(type: string, v: unknown): string {
  if (typeof v === 'bigint') return String(v);
  if (typeof v === 'number' && Number.isInteger(v)) return String(v);
  // BIGINT values past 2^53 travel as decimal strings.
  if (typeof v === 'string' && /^-?\d+$/.test(v)) return v;
  throw new Error(`${type} array: ${String(v)} is not a whole number`);
}
