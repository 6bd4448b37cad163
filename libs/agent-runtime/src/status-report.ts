// What `rebootless-agent status` prints, from AgentControl.GetStatus. Pure: the command only
// fetches the status and writes these lines. Exit codes follow `kcarectl --status`.
import { fromTimestamp, type agent } from '@rebootless/contracts';

export const STATUS_EXIT = {
  /** Every desired patch is live. */
  allLive: 0,
  /** Patches are desired and none is live. */
  noneApplied: 1,
  /** Some desired patches are live, some are not. */
  someMissing: 2,
  /** No patch was ever asked for this kernel and none is live: nothing covers it. */
  notCovered: 3,
} as const;

export function statusExitCode(status: agent.GetStatusResponse): number {
  const desired = status.desiredModules;
  if (desired.length === 0) return status.stack.length === 0 ? STATUS_EXIT.notCovered : STATUS_EXIT.allLive;
  const live = desired.filter((d) => d.live).length;
  if (live === desired.length) return STATUS_EXIT.allLive;
  return live === 0 ? STATUS_EXIT.noneApplied : STATUS_EXIT.someMissing;
}

/** The same facts as JSON, for scripts (`--json`). */
export function statusJson(status: agent.GetStatusResponse): object {
  const iso = (ts: agent.LastReport['sentAt']) => (ts ? fromTimestamp(ts).toISOString() : null);
  return {
    facts: status.facts ?? null,
    stack: status.stack,
    desired: status.desiredModules,
    quarantined: status.quarantined.map((q) => ({ ...q, since: iso(q.since) })),
    forcedModules: status.forcedModules,
    stalledTasks: status.stalledTasks,
    lastReport: status.lastReport
      ? {
          ...status.lastReport,
          sentAt: iso(status.lastReport.sentAt),
          acknowledgedAt: iso(status.lastReport.acknowledgedAt),
        }
      : null,
    exitCode: statusExitCode(status),
  };
}

/** Lines in the manner of `kpatch list` / `uptrack-show`: the stack oldest first, then what is missing. */
export function statusText(status: agent.GetStatusResponse, now: Date): string[] {
  const facts = status.facts;
  const lines: string[] = [];
  lines.push(`host:    ${facts?.hostId ?? '?'} (${facts?.hostname ?? '?'})`);
  lines.push(`kernel:  ${facts?.kernelRelease ?? '?'} ${facts?.kernelVersion ?? ''}`.trimEnd());
  lines.push(`boot id: ${facts?.bootId ?? '?'}`);
  const flags = facts?.taintFlags ?? [];
  lines.push(`taint:   ${facts?.tainted ?? '0'}${flags.length > 0 ? ` (${flags.join(', ')})` : ''}`);
  lines.push('');
  lines.push('Loaded patch modules (stack order, oldest first):');
  if (status.stack.length === 0) lines.push('  (none)');
  const cvesOf = new Map(status.desiredModules.map((d) => [d.moduleName, d]));
  status.stack.forEach((p, i) => {
    const state = p.transition ? (p.enabled ? 'patching' : 'unpatching') : p.enabled ? 'enabled' : 'disabled';
    const desired = cvesOf.get(p.moduleName);
    const what = desired
      ? `${desired.patch?.patchId ?? ''} ${desired.patch?.version ?? ''}${desired.cveIds.length > 0 ? ` [${desired.cveIds.join(', ')}]` : ''}`
      : 'not installed by this agent';
    const forced = status.forcedModules.includes(p.moduleName) ? ' FORCED (reboot required)' : '';
    const order = p.stackOrder ?? i + 1;
    lines.push(`  ${order}. ${p.moduleName} [${state}${p.replace ? ', replace' : ''}] ${what}${forced}`);
  });
  const missing = status.desiredModules.filter((d) => !d.live);
  if (missing.length > 0) {
    lines.push('');
    lines.push('Desired but not live:');
    for (const d of missing) {
      const q = status.quarantined.find(
        (x) => x.patch?.patchId === d.patch?.patchId && x.patch?.version === d.patch?.version,
      );
      lines.push(
        `  ${d.patch?.patchId ?? ''} ${d.patch?.version ?? ''} (${d.moduleName})${q ? ` QUARANTINED: ${q.reason}` : ''}`,
      );
    }
  }
  if (status.stalledTasks.length > 0) {
    lines.push('');
    lines.push('Tasks blocking the running transition:');
    for (const t of status.stalledTasks) {
      lines.push(`  pid ${t.pid} ${t.comm} (patch_state ${t.patchState})`);
      for (const frame of t.stack) lines.push(`      ${frame}`);
    }
  }
  lines.push('');
  const report = status.lastReport;
  const ago = (ts: agent.LastReport['sentAt']) =>
    ts ? `${Math.max(0, Math.round((now.getTime() - fromTimestamp(ts).getTime()) / 1000))} s ago` : 'never';
  lines.push(
    `dispatcher: ${report?.connected ? 'connected' : 'not connected'}; last report ${ago(report?.sentAt)}, ` +
      `last acknowledged ${ago(report?.acknowledgedAt)}; ${report?.pendingEvents ?? 0} event(s) waiting in the outbox`,
  );
  return lines;
}
