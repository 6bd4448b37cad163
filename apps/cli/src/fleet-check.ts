// hosts check and upgrade, the pure parts: the Nagios answer over the hosts' verdicts, and
// which rollouts bring a selection of hosts up to date.
import { events, ledger } from '@rebootless/contracts';
import {
  CHECK_STATE_NAMES,
  CHECK_STATE_OF,
  checkState,
  type CheckState,
  type HostVerdict,
} from '@rebootless/ledger-model';
import { verdictLabel } from './views';

const V = ledger.HostVerdict;

/** The wire's verdict as the model names it; unspecified (an older ledger) is unknown. */
const MODEL_VERDICT: Readonly<Record<number, HostVerdict>> = {
  [V.HOST_VERDICT_UP_TO_DATE]: 'up-to-date',
  [V.HOST_VERDICT_PATCH_MISSING]: 'patch-missing',
  [V.HOST_VERDICT_EXPOSED_PAST_DEADLINE]: 'exposed-past-deadline',
  [V.HOST_VERDICT_REBOOT_REQUIRED]: 'reboot-required',
  [V.HOST_VERDICT_OFFLINE]: 'offline',
  [V.HOST_VERDICT_DRIFT]: 'drift',
};

export interface CheckResult {
  state: CheckState;
  /** The plugin output: one status line, then one line per host that is not OK. */
  text: string;
  counts: Record<string, number>;
}

/**
 * The answer of a Nagios/Icinga check, as check_uptrack gives for one host: "REBOOTLESS OK - ...",
 * performance data after the "|", the hosts that need attention on the following lines. No host
 * selected is UNKNOWN: a check that matches nothing must not look green.
 */
export function checkResult(hosts: readonly ledger.Host[]): CheckResult {
  const verdicts = hosts.map((h) => MODEL_VERDICT[h.verdict]);
  const counts: Record<string, number> = {};
  for (const v of Object.values(MODEL_VERDICT)) counts[v.replace(/-/g, '_')] = 0;
  for (const v of verdicts) if (v) counts[v.replace(/-/g, '_')]! += 1;
  const unknown = verdicts.some((v) => v === undefined);
  const state: CheckState = hosts.length === 0 || unknown ? 3 : checkState(verdicts as HostVerdict[]);
  const attention = hosts.filter((h) => CHECK_STATE_OF[MODEL_VERDICT[h.verdict] ?? 'offline'] !== 0);
  const perf = Object.entries(counts)
    .map(([k, n]) => `${k}=${n}`)
    .join(' ');
  const summary =
    hosts.length === 0
      ? 'no host matches the selection'
      : attention.length === 0
        ? `${hosts.length} of ${hosts.length} hosts up to date`
        : `${attention.length} of ${hosts.length} hosts need attention: ${attention
            .map((h) => `${h.facts?.hostId ?? '?'} ${verdictLabel(h.verdict)}`)
            .join(', ')}`;
  const details = attention.map(
    (h) => `${h.facts?.hostId ?? '?'}: ${[verdictLabel(h.verdict), ...h.verdictReasons].join('; ')}`,
  );
  return {
    state,
    counts,
    text: [`REBOOTLESS ${CHECK_STATE_NAMES[state]} - ${summary} | ${perf}`, ...details].join('\n'),
  };
}

/** One rollout of an upgrade: a patch version and the selected hosts that miss it. */
export interface UpgradeRollout {
  patch: events.PatchRef;
  hostIds: string[];
}

/**
 * The rollouts that bring the hosts up to date: one per patch version some host misses, for
 * exactly the hosts that miss it, in the order the ledger lists each host's missing patches
 * (oldest publication first).
 */
export function upgradeRollouts(hosts: readonly ledger.Host[]): UpgradeRollout[] {
  const byRef = new Map<string, UpgradeRollout>();
  for (const h of hosts) {
    for (const m of h.missingPatches) {
      const key = `${m.patchId}@${m.version}`;
      let rollout = byRef.get(key);
      if (!rollout) byRef.set(key, (rollout = { patch: { patchId: m.patchId, version: m.version }, hostIds: [] }));
      rollout.hostIds.push(h.facts?.hostId ?? '');
    }
  }
  return [...byRef.values()];
}
