import { PatchRef, PublishedPatch, refKey } from './catalog';
import type { ExposureInterval } from './exposure';
import { DAY_MS, EpochMillis } from './time';

/**
 * One word per host for the operator's first look (`hosts list`, the console, a Nagios check):
 * is this host where it should be? ADR 0019 gives the order and the Nagios mapping.
 */
export type HostVerdict =
  'up-to-date' | 'patch-missing' | 'exposed-past-deadline' | 'reboot-required' | 'offline' | 'drift';

/** Worst first: a host with several problems shows the one to act on first. */
export const VERDICT_ORDER: readonly HostVerdict[] = [
  'exposed-past-deadline',
  'drift',
  'offline',
  'reboot-required',
  'patch-missing',
  'up-to-date',
];

/** Nagios plugin states (as Uptrack's check_uptrack): 0 OK, 1 WARNING, 2 CRITICAL, 3 UNKNOWN. */
export type CheckState = 0 | 1 | 2 | 3;

export const CHECK_STATE_OF: Readonly<Record<HostVerdict, CheckState>> = {
  'up-to-date': 0,
  'patch-missing': 1,
  'reboot-required': 1,
  'exposed-past-deadline': 2,
  drift: 2,
  // The ledger cannot say what an offline host runs now.
  offline: 3,
};

export const CHECK_STATE_NAMES = ['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'] as const;

/** One patch on the host's stack now, as the verdict needs it. */
export interface LivePatch {
  /** '' for a module rebootless did not publish (loaded by hand). */
  patchId: string;
  version: string;
  moduleName: string;
  /** Enabled and out of transition: its code runs. */
  live: boolean;
  forced: boolean;
}

export interface VerdictInput {
  kernelRelease: string;
  online: boolean;
  stack: readonly LivePatch[];
  /** The catalog: every published version, retracted ones included (they are skipped). */
  published: readonly PublishedPatch[];
  /** The host's exposure intervals (those still open count). */
  exposures: readonly ExposureInterval[];
  /** The agent reported drift (DriftDetected) after its last inventory. */
  driftReported: boolean;
  asOf: EpochMillis;
  /** Days from a fix's publication for the host's kernel to its being live (PCI-DSS 6.3.3: 30). */
  deadlineDays: number;
  /** Versions its agent holds in quarantine (quarantinesAfter): it refuses them until cleared. */
  quarantined?: readonly PatchRef[];
}

export interface HostVerdictResult {
  verdict: HostVerdict;
  /** Every problem found, worst first, each a sentence naming what to look at. */
  reasons: string[];
  /**
   * What `rebootless upgrade` would roll out to this host, oldest publication first: never a
   * version its agent quarantined, which it would refuse until an operator clears it.
   */
  missing: PatchRef[];
}

/**
 * The published, non-retracted patch versions this host should run and does not: for each patch
 * id built for its kernel, the newest version, unless that version (or a newer one of the id) is
 * live, or a cumulative (replace) patch published after it is live or wanted: loading that one
 * disables every older patch.
 */
export function missingPatches(
  kernelRelease: string,
  stack: readonly LivePatch[],
  published: readonly PublishedPatch[],
): PatchRef[] {
  const forKernel = published.filter((p) => !p.retracted && p.artifacts.some((a) => a.kernelRelease === kernelRelease));
  const newest = new Map<string, PublishedPatch>();
  for (const p of forKernel) {
    const known = newest.get(p.patchId);
    if (!known || known.publishedAt < p.publishedAt) newest.set(p.patchId, p);
  }
  const byRef = new Map(published.map((p) => [refKey(p), p]));
  const live = stack.filter((s) => s.live && s.patchId !== '').map((s) => ({ s, p: byRef.get(refKey(s)) }));
  const wanted = [...newest.values()].filter((want) => {
    const sameId = live.filter((l) => l.s.patchId === want.patchId);
    return !sameId.some((l) => l.s.version === want.version || (l.p && l.p.publishedAt >= want.publishedAt));
  });
  // An atomic replace disables every older patch once enabled: whatever was published before the
  // newest cumulative patch, live or to be loaded, is carried by it or dropped by it anyway.
  const newestReplace = Math.max(
    -Infinity,
    ...live.filter((l) => l.p?.replace).map((l) => l.p!.publishedAt),
    ...wanted.filter((w) => w.replace).map((w) => w.publishedAt),
  );
  return wanted
    .filter((want) => want.publishedAt >= newestReplace)
    .sort((a, b) => a.publishedAt - b.publishedAt || (a.patchId < b.patchId ? -1 : 1))
    .map((p) => ({ patchId: p.patchId, version: p.version }));
}

/** The verdict on one host as of `asOf`, with every reason behind it. */
export function hostVerdict(input: VerdictInput): HostVerdictResult {
  const found: { verdict: HostVerdict; reason: string }[] = [];
  const deadlineMs = input.deadlineDays * DAY_MS;
  const late = input.exposures
    .filter((e) => e.exposedUntil === null && e.exposedFrom <= input.asOf)
    .filter((e) => input.asOf - Math.max(e.fixPublishedAt, e.exposedFrom) > deadlineMs)
    .map((e) => e.cveId);
  if (late.length > 0)
    found.push({
      verdict: 'exposed-past-deadline',
      reason: `exposed past the ${input.deadlineDays}-day deadline to ${[...new Set(late)].sort().join(', ')}`,
    });
  const unknown = input.stack.filter((s) => s.patchId === '').map((s) => s.moduleName);
  if (unknown.length > 0)
    found.push({ verdict: 'drift', reason: `live patch modules rebootless did not publish: ${unknown.join(', ')}` });
  if (input.driftReported)
    found.push({ verdict: 'drift', reason: 'the agent reported drift since its last inventory' });
  if (!input.online)
    found.push({ verdict: 'offline', reason: 'the agent has not been heard from within the online window' });
  const forced = input.stack.filter((s) => s.forced);
  if (forced.length > 0)
    found.push({
      verdict: 'reboot-required',
      reason: `forced transitions leave only a reboot to remove ${forced.map((s) => s.moduleName).join(', ')}`,
    });
  const isHeld = (m: PatchRef) =>
    (input.quarantined ?? []).some((q) => q.patchId === m.patchId && q.version === m.version);
  const wanted = missingPatches(input.kernelRelease, input.stack, input.published);
  const held = wanted.filter(isHeld);
  const missing = wanted.filter((m) => !isHeld(m));
  if (held.length > 0)
    found.push({
      verdict: 'patch-missing',
      reason: `quarantined by its agent, refused until an operator clears it (rebootless hosts clear-quarantine): ${held.map((m) => `${m.patchId} ${m.version}`).join(', ')}`,
    });
  if (missing.length > 0)
    found.push({
      verdict: 'patch-missing',
      reason: `published for ${input.kernelRelease} and not live: ${missing.map((m) => `${m.patchId} ${m.version}`).join(', ')}`,
    });
  found.sort((a, b) => VERDICT_ORDER.indexOf(a.verdict) - VERDICT_ORDER.indexOf(b.verdict));
  return { verdict: found[0]?.verdict ?? 'up-to-date', reasons: found.map((f) => f.reason), missing };
}

/** The state of a check over several hosts: any CRITICAL, else any UNKNOWN, else any WARNING, else OK. */
export function checkState(verdicts: readonly HostVerdict[]): CheckState {
  const states = new Set(verdicts.map((v) => CHECK_STATE_OF[v]));
  if (states.has(2)) return 2;
  if (states.has(3)) return 3;
  if (states.has(1)) return 1;
  return 0;
}
