// Which patch versions a host's agent holds in quarantine, from its own facts: the crash-loop
// guard's PatchApplyFailed (stage `crash-loop-guard`) puts one there, an operator's
// PatchQuarantineCleared takes it out (issue 21). Pure: the store hands the facts in order.

/** The stage the agent's crash-loop guard records its quarantine at. */
export const CRASH_LOOP_GUARD_STAGE = 'crash-loop-guard';

export type QuarantineFact =
  | {
      readonly type: 'PatchApplyFailed';
      readonly eventId: string;
      readonly at: number;
      readonly patchId: string;
      readonly version: string;
      readonly stage: string;
      readonly error: string;
    }
  | {
      readonly type: 'PatchQuarantineCleared';
      readonly eventId: string;
      readonly at: number;
      readonly patchId: string;
      readonly version: string;
    };

export interface Quarantine {
  readonly patchId: string;
  readonly version: string;
  readonly reason: string;
  readonly since: number;
  readonly eventId: string;
}

const keyOf = (f: { patchId: string; version: string }) => `${f.patchId}\u0000${f.version}`;

/** The quarantines still in force after `facts` (in the order they happened), oldest first. */
export function quarantinesAfter(facts: readonly QuarantineFact[]): Quarantine[] {
  const held = new Map<string, Quarantine>();
  for (const f of facts) {
    switch (f.type) {
      case 'PatchApplyFailed':
        // Other failed applies are no quarantine; a second guard record of the same version keeps the first.
        if (f.stage !== CRASH_LOOP_GUARD_STAGE || held.has(keyOf(f))) break;
        held.set(keyOf(f), {
          patchId: f.patchId,
          version: f.version,
          reason: f.error.replace(/^quarantined: /, ''),
          since: f.at,
          eventId: f.eventId,
        });
        break;
      case 'PatchQuarantineCleared':
        held.delete(keyOf(f));
        break;
      default: {
        const unknown: never = f;
        throw new Error(`no quarantine rule for ${JSON.stringify(unknown)}`);
      }
    }
  }
  return [...held.values()];
}
