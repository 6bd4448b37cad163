// The agent's rules, as pure functions of what it remembers and what the kernel shows. Time is
// passed in, never read; the Agent's I/O methods call these and act on the answer.
import type { events } from '@rebootless/contracts';
import type { AgentStateData, DesiredPatch, SeenCommand } from '../state/agent-state';
import { compareVersions } from '../verification';

const MINUTE = 60_000;
const DAY = 86_400_000;

/** A host down within this long after an apply, without a planned stop, quarantines that patch. */
export const CRASH_LOOP_WINDOW_MS = 10 * MINUTE;
/** A transition the agent did not start, still running after this long, is drift. */
export const STUCK_TRANSITION_MS = 5 * MINUTE;

// ---- the crash-loop guard ---------------------------------------------------------------------

export interface QuarantineSuspect {
  readonly patchId: string;
  readonly version: string;
  readonly why: string;
}

/**
 * On a new boot: the patch to quarantine, if the host went down during its apply, or soon after
 * it without a planned stop. Such a patch is not tried again until an operator clears it.
 */
export function crashLoopSuspect(
  remembered: Pick<AgentStateData, 'applying' | 'lastApplied' | 'cleanStop'>,
  previousBootId: string | undefined,
  now: number,
  windowMs = CRASH_LOOP_WINDOW_MS,
): QuarantineSuspect | undefined {
  const { applying, lastApplied } = remembered;
  if (applying)
    return { patchId: applying.patchId, version: applying.version, why: 'the host went down during its apply' };
  if (!lastApplied || lastApplied.bootId !== previousBootId || remembered.cleanStop) return undefined;
  const after = now - lastApplied.at;
  if (after >= windowMs) return undefined;
  return {
    patchId: lastApplied.patchId,
    version: lastApplied.version,
    why: `the host went down ${Math.round(after / 1000)} s after it was applied, without a planned stop`,
  };
}

export function isQuarantined(
  quarantined: AgentStateData['quarantined'],
  patch: { patchId: string; version: string },
): boolean {
  return quarantined.some((q) => q.patchId === patch.patchId && q.version === patch.version);
}

/** The quarantine without that patch version: an operator cleared it (ClearQuarantine). */
export function withoutQuarantine(
  quarantined: AgentStateData['quarantined'],
  patch: { patchId: string; version: string },
): AgentStateData['quarantined'] {
  return quarantined.filter((q) => !(q.patchId === patch.patchId && q.version === patch.version));
}

// ---- the command replay window ----------------------------------------------------------------

/**
 * The seen command ids after `commandId` arrives: expired memories dropped, the new one kept
 * until a day after the command expires (30 days when it names no expiry). After that it is
 * refused as expired anyway, so remembering it longer would only grow the file.
 */
export function rememberCommand(
  seen: AgentStateData['seenCommands'],
  commandId: string,
  expiresAt: number | undefined,
  now: number,
): AgentStateData['seenCommands'] {
  const until = (expiresAt ?? now + 30 * DAY) + DAY;
  return [...seen.filter((c) => c.until > now), { id: commandId, until }];
}

export function wasSeen(seen: AgentStateData['seenCommands'], commandId: string): boolean {
  return seen.some((c) => c.id === commandId);
}

/** The seen commands with the final answer to `commandId` kept beside its id. */
export function rememberAnswer(
  seen: AgentStateData['seenCommands'],
  commandId: string,
  answer: NonNullable<SeenCommand['answer']>,
): AgentStateData['seenCommands'] {
  return seen.map((c) => (c.id === commandId ? { ...c, answer } : c));
}

/**
 * What the agent answered to `commandId` when it first came, if it came and was answered: a
 * command sent again (its dispatcher restarted, or the agent reconnected to another instance
 * before its answer reached the log) gets that answer again, and nothing is done or recorded.
 */
export function answerOf(seen: AgentStateData['seenCommands'], commandId: string): SeenCommand['answer'] {
  return seen.find((c) => c.id === commandId)?.answer;
}

// ---- supersession ---------------------------------------------------------------------------

export interface AppliedModule {
  readonly patchId: string;
  readonly version: string;
  readonly moduleName: string;
  readonly replace: boolean;
  readonly cves: readonly { id: string }[];
}

/** The desired patches a newly applied module supersedes: all others for a replace patch, else older versions of the same patch. */
export function supersededBy(desired: readonly DesiredPatch[], applied: AppliedModule): DesiredPatch[] {
  return desired.filter(
    (d) => d.moduleName !== applied.moduleName && (applied.replace || d.patchId === applied.patchId),
  );
}

/** The desired patches once `applied` is live: it, plus every one it does not supersede. */
export function desiredAfterApply(
  desired: readonly DesiredPatch[],
  applied: AppliedModule,
  artifactDigest: string,
): DesiredPatch[] {
  const kept = desired.filter(
    (d) => !applied.replace && d.patchId !== applied.patchId && d.moduleName !== applied.moduleName,
  );
  return [
    ...kept,
    {
      patchId: applied.patchId,
      version: applied.version,
      moduleName: applied.moduleName,
      artifactDigest,
      replace: applied.replace,
      cves: applied.cves.map((c) => c.id),
    },
  ];
}

/** The newest version of a patch this host carries, against which a downgrade is judged. */
export function liveVersionOf(desired: readonly DesiredPatch[], patchId: string): string | undefined {
  return desired
    .filter((d) => d.patchId === patchId)
    .map((d) => d.version)
    .sort(compareVersions)
    .pop();
}

/**
 * The module a revert takes off: the one the command names (an undo planned by the ledger may
 * name a module this agent no longer lists), else the desired patch's; undefined when neither.
 */
export function moduleToRevert(
  desired: readonly DesiredPatch[],
  command: { patchId: string; version: string; moduleName: string },
): string | undefined {
  if (command.moduleName) return command.moduleName;
  return desired.find((d) => d.patchId === command.patchId && d.version === command.version)?.moduleName;
}

/** A module forced this boot can never be removed, only rebooted away. */
export function forcedThisBoot(forced: AgentStateData['forced'], moduleName: string, bootId: string): boolean {
  return forced.some((f) => f.moduleName === moduleName && f.bootId === bootId);
}

// ---- drift ----------------------------------------------------------------------------------

export type DriftKind = 'loaded-by-hand' | 'removed-by-hand' | 'transition-stuck';

export interface DriftFinding {
  readonly kind: DriftKind;
  readonly detail: string;
}

export interface DriftCheck {
  readonly findings: DriftFinding[];
  /** The stack differs from the last report (not only a slow transition): report the inventory. */
  readonly stackChanged: boolean;
  /** Since when each module has been seen in transition, for the next check. */
  readonly transitionSeen: ReadonlyMap<string, number>;
}

/**
 * Compares what the kernel shows with what the agent last reported. A module loaded or gone
 * without the agent is drift; so is a transition still running `stuckMs` after it was first seen
 * (reported once, then timed afresh).
 */
export function detectDrift(
  expected: readonly events.LivePatchState[],
  observed: readonly events.LivePatchState[],
  transitionSeen: ReadonlyMap<string, number>,
  now: number,
  stuckMs = STUCK_TRANSITION_MS,
): DriftCheck {
  const key = (p: events.LivePatchState) => `${p.moduleName}:${p.enabled}`;
  const exp = new Set(expected.map(key));
  const obs = new Set(observed.map(key));
  const findings: DriftFinding[] = [];
  const added = observed.filter((p) => !exp.has(key(p)));
  const removed = expected.filter((p) => !obs.has(key(p)));
  if (added.length > 0) {
    findings.push({
      kind: 'loaded-by-hand',
      detail: `not loaded by this agent: ${added.map((p) => p.moduleName).join(', ')}`,
    });
  }
  if (removed.length > 0) {
    findings.push({
      kind: 'removed-by-hand',
      detail: `gone without this agent: ${removed.map((p) => p.moduleName).join(', ')}`,
    });
  }
  const seen = new Map<string, number>();
  for (const p of observed.filter((x) => x.transition)) {
    const since = transitionSeen.get(p.moduleName) ?? now;
    if (now - since >= stuckMs) {
      findings.push({
        kind: 'transition-stuck',
        detail: `${p.moduleName} in transition for ${Math.round((now - since) / 1000)} s`,
      });
    } else {
      seen.set(p.moduleName, since);
    }
  }
  return { findings, stackChanged: findings.some((f) => f.kind !== 'transition-stuck'), transitionSeen: seen };
}

// ---- outbox delivery ------------------------------------------------------------------------

/** How long to wait before the next delivery after `failures` failed ones in a row: doubling from 250 ms, at most 30 s. */
export function deliveryBackoffMs(failures: number): number {
  return Math.min(30_000, 250 * 2 ** Math.min(Math.max(failures, 1) - 1, 8));
}
