import { Timestamp, toTimestamp } from '@rebootless/contracts';
import { InvalidArgumentError } from './errors';

// What every read model's queries share: instants from requests, timestamps in answers, pages.

export const MIN_SECONDS = -62135596800;
export const MAX_SECONDS = 253402300799;

/** An instant from a request: INVALID_ARGUMENT naming the field when it is not a valid Timestamp. */
export function instantOf(ts: Timestamp | undefined, field: string, required: true): number;
export function instantOf(ts: Timestamp | undefined, field: string, required?: false): number | undefined;
export function instantOf(ts: Timestamp | undefined, field: string, required = false): number | undefined {
  if (!ts) {
    if (required) throw new InvalidArgumentError(field, 'is required (a google.protobuf.Timestamp)');
    return undefined;
  }
  const seconds = Number(ts.seconds);
  if (!Number.isInteger(seconds) || seconds < MIN_SECONDS || seconds > MAX_SECONDS)
    throw new InvalidArgumentError(
      field,
      `seconds ${JSON.stringify(ts.seconds)} is not a whole number of seconds between 0001-01-01 and 9999-12-31`,
    );
  if (!Number.isInteger(ts.nanos) || ts.nanos < 0 || ts.nanos > 999_999_999)
    throw new InvalidArgumentError(field, `nanos ${ts.nanos} is outside 0 to 999999999`);
  return seconds * 1000 + Math.floor(ts.nanos / 1_000_000);
}

export const ts = (msValue: number | null | undefined): Timestamp | undefined =>
  msValue === null || msValue === undefined ? undefined : toTimestamp(new Date(msValue));

export interface PageToken {
  after: string;
}

export function pageSize(requested: number, def = 100, max = 1000): number {
  if (requested === 0) return def;
  return Math.min(requested, max);
}

export function decodeToken(token: string, field = 'page_token'): number {
  if (!token) return 0;
  const n = Number(Buffer.from(token, 'base64url').toString());
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError(field, 'is not a token this ledger handed out');
  return n;
}

export const encodeToken = (n: number) => Buffer.from(String(n)).toString('base64url');

/** A page token that names where the last page ended (a key), for lists read in key order. */
export const encodeAfterToken = (key: string) => Buffer.from(`after:${key}`).toString('base64url');

export function decodeAfterToken(token: string, field = 'page_token'): string {
  if (!token) return '';
  const text = Buffer.from(token, 'base64url').toString();
  if (!text.startsWith('after:')) throw new InvalidArgumentError(field, 'is not a token this ledger handed out');
  return text.slice('after:'.length);
}
