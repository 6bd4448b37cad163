/** Milliseconds since the Unix epoch (UTC). Every instant in this library is one. */
export type EpochMillis = number;

export const DAY_MS = 24 * 60 * 60 * 1000;

/** An instant for people and for JSON: ISO 8601 in UTC. */
export function isoInstant(at: EpochMillis | null | undefined): string {
  return at === null || at === undefined ? '' : new Date(at).toISOString();
}
