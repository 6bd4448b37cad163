// One word per host for the fleet page, from the ledger's facts only: what its agent observed
// and which fixes exist for its kernel. Pure: the instant and the deadline are passed in.

export const VERDICTS = [
  'offline',
  'exposed-past-deadline',
  'drift',
  'reboot-required',
  'patch-missing',
  'up-to-date',
] as const;
export type Verdict = (typeof VERDICTS)[number];

export const VERDICT_LABEL: Readonly<Record<Verdict, string>> = {
  'up-to-date': 'up to date',
  'patch-missing': 'patch missing',
  'exposed-past-deadline': 'exposed past deadline',
  'reboot-required': 'reboot required',
  offline: 'offline',
  drift: 'drift',
};

/** The parts of a ledger Host the verdict reads. */
export interface HostFacts {
  readonly kernelRelease: string;
  readonly online: boolean;
  readonly rebootRequired: boolean;
  readonly entries: readonly {
    readonly moduleName: string;
    readonly patchId?: string;
    readonly state: string;
    readonly cveIds: readonly string[];
  }[];
}

/** A published fix: which kernels it was built for, which CVEs it closes, since when. */
export interface Fix {
  readonly patchId: string;
  readonly version: string;
  readonly kernelReleases: readonly string[];
  readonly cveIds: readonly string[];
  readonly publishedAt: Date;
  readonly retracted: boolean;
}

export interface MissingFix {
  readonly cveId: string;
  readonly patchId: string;
  readonly version: string;
  /** When the host became exposed: the first fix for its kernel was published. */
  readonly since: Date;
  readonly deadline: Date;
}

export interface HostVerdict {
  readonly verdict: Verdict;
  readonly missing: readonly MissingFix[];
  /** Live modules rebootless never published (loaded by hand). */
  readonly unknownModules: readonly string[];
}

const DAY_MS = 86_400_000;
const LIVE = new Set(['STACK_ENTRY_STATE_ENABLED', 'STACK_ENTRY_STATE_IN_TRANSITION']);

export function hostVerdict(host: HostFacts, fixes: readonly Fix[], now: Date, deadlineDays: number): HostVerdict {
  const live = host.entries.filter((e) => LIVE.has(e.state));
  const fixed = new Set(live.flatMap((e) => e.cveIds));
  const unknownModules = live.filter((e) => !e.patchId).map((e) => e.moduleName);
  const firstFix = new Map<string, Fix>();
  for (const fix of fixes) {
    if (fix.retracted || !fix.kernelReleases.includes(host.kernelRelease)) continue;
    for (const cve of fix.cveIds) {
      const known = firstFix.get(cve);
      if (!known || fix.publishedAt < known.publishedAt) firstFix.set(cve, fix);
    }
  }
  const missing: MissingFix[] = [...firstFix.entries()]
    .filter(([cve]) => !fixed.has(cve))
    .map(([cveId, fix]) => ({
      cveId,
      patchId: fix.patchId,
      version: fix.version,
      since: fix.publishedAt,
      deadline: new Date(fix.publishedAt.getTime() + deadlineDays * DAY_MS),
    }))
    .sort((a, b) => a.cveId.localeCompare(b.cveId));
  const verdict: Verdict = !host.online
    ? 'offline'
    : missing.some((m) => m.deadline < now)
      ? 'exposed-past-deadline'
      : unknownModules.length > 0
        ? 'drift'
        : host.rebootRequired
          ? 'reboot-required'
          : missing.length > 0
            ? 'patch-missing'
            : 'up-to-date';
  return { verdict, missing, unknownModules };
}
