// The fleet page's one word per host is the ledger's verdict (Host.verdict, ADR 0019), the same
// answer `rebootless hosts list` and `hosts check` give; the console only names it for its URLs
// and pages. Pure: a ledger Host message (as the runtime loader hands it out) in, the view out.

/** Worst first, as the ledger ranks them; `unknown` when the ledger gave none (an older ledger). */
export const VERDICTS = [
  'exposed-past-deadline',
  'drift',
  'offline',
  'reboot-required',
  'patch-missing',
  'up-to-date',
  'unknown',
] as const;
export type Verdict = (typeof VERDICTS)[number];

export const VERDICT_LABEL: Readonly<Record<Verdict, string>> = {
  'exposed-past-deadline': 'exposed past deadline',
  drift: 'drift',
  offline: 'offline',
  'reboot-required': 'reboot required',
  'patch-missing': 'patch missing',
  'up-to-date': 'up to date',
  unknown: 'unknown',
};

/** The ledger's HostVerdict enum names (proto-loader `enums: String`) to the console's words. */
const FROM_LEDGER: Readonly<Record<string, Verdict>> = {
  HOST_VERDICT_EXPOSED_PAST_DEADLINE: 'exposed-past-deadline',
  HOST_VERDICT_DRIFT: 'drift',
  HOST_VERDICT_OFFLINE: 'offline',
  HOST_VERDICT_REBOOT_REQUIRED: 'reboot-required',
  HOST_VERDICT_PATCH_MISSING: 'patch-missing',
  HOST_VERDICT_UP_TO_DATE: 'up-to-date',
};

/** The parts of a ledger Host the verdict view reads. */
export interface LedgerHostVerdict {
  readonly verdict?: string;
  readonly verdictReasons?: readonly string[];
  readonly missingPatches?: readonly { readonly patchId: string; readonly version: string }[];
}

export interface HostVerdict {
  readonly verdict: Verdict;
  /** Every problem the ledger found, worst first, each a sentence. */
  readonly reasons: readonly string[];
  /** The published, non-retracted patch versions for its kernel it does not run. */
  readonly missing: readonly { readonly patchId: string; readonly version: string }[];
}

export function verdictOf(host: LedgerHostVerdict): HostVerdict {
  return {
    verdict: FROM_LEDGER[host.verdict ?? ''] ?? 'unknown',
    reasons: [...(host.verdictReasons ?? [])],
    missing: (host.missingPatches ?? []).map((p) => ({ patchId: p.patchId, version: p.version })),
  };
}
