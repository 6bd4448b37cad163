import type { Timestamp } from './gen/google/protobuf/timestamp';

/** Exact to the millisecond, also before 1970 (protobuf wants nanos in [0, 1e9), never negative). */
export function toTimestamp(date: Date): Timestamp {
  const ms = date.getTime();
  if (Number.isNaN(ms)) throw new RangeError('toTimestamp: invalid Date');
  const seconds = Math.floor(ms / 1000);
  // seconds is a string: forceLong=string in generated code, longs: String at runtime.
  return { seconds: String(seconds), nanos: (ms - seconds * 1000) * 1_000_000 };
}

/** Drops anything finer than a millisecond: a Date cannot hold it. */
export function fromTimestamp(ts: Timestamp): Date {
  return new Date(Number(ts.seconds) * 1000 + Math.floor(ts.nanos / 1_000_000));
}
