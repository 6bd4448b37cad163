import type { events } from '@rebootless/contracts';
import { PatchRef, PublishedPatch, refKey } from './catalog';
import type { StackInterval } from './stack';
import type { EpochMillis } from './time';

/** From `from` on, the host runs this kernel release (enrollment, or a boot into another kernel). */
export interface KernelPeriod {
  release: string;
  from: EpochMillis;
  /** The HostEnrolled / HostBooted / HostInventoryReported event that said so. */
  eventId: string;
}

/** What the exposure of one host is computed from. */
export interface HostHistory {
  hostId: string;
  enrolledAt: EpochMillis;
  enrolledEventId: string;
  /** Oldest first; the first one normally starts at enrollment. */
  kernels: readonly KernelPeriod[];
  /** Every stack interval of the host, open and closed, any order. */
  intervals: readonly StackInterval[];
}

/** A fix for one CVE published for one kernel release. */
export interface FixPublication {
  cveId: string;
  severity: events.Severity;
  kernelRelease: string;
  patchId: string;
  version: string;
  publishedAt: EpochMillis;
  /** The PatchPublished event. */
  eventId: string;
}

/** Why an exposure began. */
export type ExposureStart =
  /** A fix was published for the host's kernel. */
  | 'fix-published'
  /** The host enrolled after the fix was published. */
  | 'enrolled'
  /** The host booted a kernel for which a fix was already published. */
  | 'kernel-changed'
  /** The fixing patch stopped being live; the interval's removal reason says why. */
  | 'rebooted'
  | 'reverted'
  | 'replaced'
  | 'forced'
  | 'inventory'
  /** The fixing patch was disabled but stayed listed (before 5.1). */
  | 'disabled';

/** Why an exposure ended. */
export type ExposureEnd =
  /** A patch fixing the CVE became live. */
  | 'patched'
  /** The host booted a kernel for which no fix is published. */
  | 'kernel-changed';

/** One stretch of time during which a host was exposed to a CVE that had a published fix. */
export interface ExposureInterval {
  hostId: string;
  cveId: string;
  severity: events.Severity;
  kernelRelease: string;
  exposedFrom: EpochMillis;
  /** null: still exposed (as of the evaluation). */
  exposedUntil: EpochMillis | null;
  openedBy: ExposureStart;
  openedEventId: string;
  closedBy: ExposureEnd | null;
  closedEventId: string | null;
  /** The patch that ended it ('patched'). */
  fixedBy: PatchRef | null;
  /** The first fix published for the host's kernel: the compliance deadline counts from here. */
  fixPublishedAt: EpochMillis;
  fixPublishedEventId: string;
  fixPublishedBy: PatchRef;
}

/** Every (CVE, kernel release) fix a set of published patches carries; retracted patches fix nothing. */
export function fixPublications(patches: Iterable<PublishedPatch>): FixPublication[] {
  const fixes: FixPublication[] = [];
  for (const p of patches) {
    if (p.retracted) continue;
    for (const a of p.artifacts) {
      for (const c of p.cves) {
        fixes.push({
          cveId: c.id,
          severity: c.severity || p.severity,
          kernelRelease: a.kernelRelease,
          patchId: p.patchId,
          version: p.version,
          publishedAt: p.publishedAt,
          eventId: p.publishedEventId,
        });
      }
    }
  }
  return fixes;
}

interface Change {
  at: EpochMillis;
  eventId: string;
  cause: ExposureStart | 'patched';
}

/**
 * Per CVE with a published fix for a kernel the host ran, the intervals during which the host
 * was exposed: from when the fix was published for its kernel (or the host enrolled or booted
 * that kernel later) until a patch fixing it was live, and again each time that patch stopped
 * being live (a reboot, a revert, a replace by a patch without the fix) until one was live again.
 * A patch fixes a CVE when its interval lists the CVE or a fix publication names its version.
 * Instants after `asOf` are not known yet: intervals still open then have exposedUntil null.
 */
export function cveExposure(host: HostHistory, fixes: readonly FixPublication[], asOf = Infinity): ExposureInterval[] {
  const kernels = [...host.kernels].filter((k) => k.from <= asOf).sort((a, b) => a.from - b.from);
  const releases = new Set(kernels.map((k) => k.release));
  const relevant = fixes.filter((f) => releases.has(f.kernelRelease) && f.publishedAt <= asOf);
  const fixingRefs = new Map<string, Set<string>>();
  for (const f of fixes) {
    let refs = fixingRefs.get(f.cveId);
    if (!refs) fixingRefs.set(f.cveId, (refs = new Set()));
    refs.add(refKey(f));
  }
  const cves = [...new Set(relevant.map((f) => f.cveId))].sort();
  const result: ExposureInterval[] = [];
  for (const cveId of cves) {
    result.push(
      ...exposureToOne(
        host,
        kernels,
        relevant.filter((f) => f.cveId === cveId),
        fixingRefs.get(cveId)!,
        cveId,
        asOf,
      ),
    );
  }
  return result;
}

function exposureToOne(
  host: HostHistory,
  kernels: KernelPeriod[],
  fixes: FixPublication[],
  fixingRefs: Set<string>,
  cveId: string,
  asOf: EpochMillis,
): ExposureInterval[] {
  const fixesCve = (i: StackInterval) =>
    i.cves.some((c) => c.id === cveId) || (i.patchId !== '' && fixingRefs.has(refKey(i)));
  const protecting = host.intervals.filter((i) => fixesCve(i) && i.liveFrom !== null && i.liveFrom <= asOf);

  // Every instant at which the answer may change, with the event that changed it.
  const changes: Change[] = [{ at: host.enrolledAt, eventId: host.enrolledEventId, cause: 'enrolled' }];
  for (const k of kernels) changes.push({ at: k.from, eventId: k.eventId, cause: 'kernel-changed' });
  for (const f of fixes) changes.push({ at: f.publishedAt, eventId: f.eventId, cause: 'fix-published' });
  for (const i of protecting) {
    changes.push({ at: i.liveFrom!, eventId: i.liveFromEventId ?? i.appliedEventId, cause: 'patched' });
    if (i.liveUntil !== null && i.liveUntil <= asOf) {
      changes.push({ at: i.liveUntil, eventId: i.liveUntilEventId ?? i.removedEventId ?? '', cause: stopCause(i) });
    }
  }
  changes.sort((a, b) => a.at - b.at);

  const kernelAt = (t: EpochMillis) => {
    let current: KernelPeriod | undefined;
    for (const k of kernels) if (k.from <= t) current = k;
    return current;
  };
  const firstFix = (release: string, t: EpochMillis) =>
    fixes
      .filter((f) => f.kernelRelease === release && f.publishedAt <= t)
      .sort((a, b) => a.publishedAt - b.publishedAt)[0];
  const fixerAt = (t: EpochMillis) =>
    protecting
      .filter((i) => i.liveFrom! <= t && (i.liveUntil === null || t < i.liveUntil))
      .sort((a, b) => a.liveFrom! - b.liveFrom!)[0];

  const intervals: ExposureInterval[] = [];
  let open: ExposureInterval | undefined;
  const instants = [...new Set(changes.map((c) => c.at))];
  for (const at of instants) {
    const here = changes.filter((c) => c.at === at);
    const kernel = at >= host.enrolledAt ? kernelAt(at) : undefined;
    const fix = kernel ? firstFix(kernel.release, at) : undefined;
    const fixer = fixerAt(at);
    const exposed = fix !== undefined && fixer === undefined;
    if (open && (!exposed || open.kernelRelease !== kernel?.release)) {
      const patched = fixer !== undefined;
      open.exposedUntil = at;
      open.closedBy = patched ? 'patched' : 'kernel-changed';
      open.closedEventId = patched
        ? (here.find((c) => c.cause === 'patched')?.eventId ?? fixer.liveFromEventId ?? fixer.appliedEventId)
        : (here.find((c) => c.cause === 'kernel-changed')?.eventId ?? here[0]!.eventId);
      open.fixedBy = patched ? { patchId: fixer.patchId, version: fixer.version } : null;
      intervals.push(open);
      open = undefined;
    }
    if (exposed && !open && kernel && fix) {
      const cause = openingCause(here);
      open = {
        hostId: host.hostId,
        cveId,
        severity: fix.severity,
        kernelRelease: kernel.release,
        exposedFrom: at,
        exposedUntil: null,
        openedBy: cause.cause as ExposureStart,
        openedEventId: cause.eventId,
        closedBy: null,
        closedEventId: null,
        fixedBy: null,
        fixPublishedAt: fix.publishedAt,
        fixPublishedEventId: fix.eventId,
        fixPublishedBy: { patchId: fix.patchId, version: fix.version },
      };
    }
  }
  if (open) intervals.push(open);
  return intervals;
}

/** Of the changes at one instant, the one that best explains an exposure starting then. */
function openingCause(here: Change[]): Change {
  const order: (ExposureStart | 'patched')[] = [
    'rebooted',
    'reverted',
    'replaced',
    'forced',
    'inventory',
    'disabled',
    'enrolled',
    'kernel-changed',
    'fix-published',
  ];
  return [...here].sort((a, b) => order.indexOf(a.cause) - order.indexOf(b.cause))[0]!;
}

function stopCause(i: StackInterval): ExposureStart {
  if (i.removalReason === null || i.liveUntil !== i.removedAt) return 'disabled';
  return i.removalReason;
}
