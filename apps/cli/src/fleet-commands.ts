// hosts check (a Nagios/Icinga plugin) and upgrade (every missing patch, through rollouts).
import { dispatcher, ledger } from '@rebootless/contracts';
import { allPages } from './build-commands';
import type { CommandContext } from './context';
import { CliError, UsageError } from './errors';
import { ExitCode } from './exit-codes';
import { checkResult, upgradeRollouts } from './fleet-check';
import { bool, createRolloutRequest, hostSelector, isEmptySelector, list, optionalCount, parseLabels } from './flags';
import { renderTable } from './table';
import { verdictLabel } from './views';

/** The hosts a selector names (all given must match), with their verdicts; a --host the ledger does not know is NOT_FOUND. */
export async function selectedHosts(ctx: CommandContext): Promise<ledger.Host[]> {
  const kernels = list(ctx.flags, 'kernel');
  const hostIds = list(ctx.flags, 'host');
  const verdictDeadlineDays = optionalCount(ctx.flags, 'deadline-days', 1) ?? 0;
  const hosts = await allPages(undefined, async (pageToken, pageSize) => {
    const page = await ctx.calls.unary<ledger.ListHostsResponse>('ledger', 'ListHosts', {
      pageSize,
      pageToken,
      kernelRelease: kernels.length === 1 ? kernels[0]! : '',
      labels: parseLabels(list(ctx.flags, 'label')),
      carriesPatchId: '',
      exposedToCveId: '',
      verdictDeadlineDays,
    });
    return { items: page.hosts, next: page.nextPageToken };
  });
  const unknown = hostIds.filter((id) => !hosts.some((h) => h.facts?.hostId === id));
  if (unknown.length > 0) {
    // Tell a typo from a host the other filters left out.
    for (const id of unknown) await ctx.calls.unary('ledger', 'GetHost', { hostId: id, verdictDeadlineDays });
  }
  return hosts.filter(
    (h) =>
      (kernels.length === 0 || kernels.includes(h.facts?.kernelRelease ?? '')) &&
      (hostIds.length === 0 || hostIds.includes(h.facts?.hostId ?? '')),
  );
}

/** Nagios plugin exit codes: the check's state, never the CLI's own codes. */
export const CHECK_UNKNOWN = 3;

export async function hostsCheck(ctx: CommandContext): Promise<ExitCode> {
  const hosts = await selectedHosts(ctx);
  const result = checkResult(hosts);
  ctx.answer(result.text, () => ({
    state: ['OK', 'WARNING', 'CRITICAL', 'UNKNOWN'][result.state],
    exitCode: result.state,
    counts: result.counts,
    hosts: hosts.map((h) => ({
      hostId: h.facts?.hostId ?? '',
      verdict: ledger.HostVerdict[h.verdict],
      reasons: h.verdictReasons,
    })),
  }));
  return result.state as number as ExitCode;
}

export async function upgrade(ctx: CommandContext): Promise<ExitCode> {
  if (isEmptySelector(hostSelector(ctx.flags))) {
    throw new UsageError(
      'upgrade needs the hosts to bring up to date: --kernel RELEASE, --label KEY=VALUE or --host HOST (repeatable; all given must match)',
    );
  }
  const hosts = await selectedHosts(ctx);
  if (hosts.length === 0) throw new CliError('no host matches the selection', ExitCode.NotFound);
  const plan = upgradeRollouts(hosts);
  const perHost = hosts.map((h) => ({
    hostId: h.facts?.hostId ?? '',
    kernelRelease: h.facts?.kernelRelease ?? '',
    verdict: h.verdict,
    patches: h.missingPatches,
  }));
  if (bool(ctx.flags, 'dry-run')) {
    ctx.answer(
      `dry run: nothing was created\n${renderTable(
        [{ header: 'HOST' }, { header: 'KERNEL' }, { header: 'VERDICT' }, { header: 'WOULD GET' }],
        perHost.map((h) => [
          h.hostId,
          h.kernelRelease,
          verdictLabel(h.verdict),
          h.patches.map((p) => `${p.patchId} ${p.version}`).join(', ') || '- (up to date)',
        ]),
      )}`,
      () => ({
        dryRun: true,
        hosts: perHost.map((h) => ({ ...h, verdict: ledger.HostVerdict[h.verdict] })),
        rollouts: plan.map((r) => ({ ...r.patch, hostIds: r.hostIds })),
      }),
    );
    return ExitCode.Ok;
  }
  if (plan.length === 0) {
    ctx.answer(`${hosts.length} host(s) selected, every one up to date: nothing to roll out`, () => ({ rollouts: [] }));
    return ExitCode.Ok;
  }
  // One rollout per patch version, for exactly the hosts that miss it; the strategy flags (waves,
  // approval, window) apply to each, and the dispatcher's own rules (approval by default) hold.
  const created: dispatcher.Rollout[] = [];
  for (const r of plan) {
    const request = createRolloutRequest({
      ...ctx.flags,
      patch: r.patch.patchId,
      version: r.patch.version,
      host: r.hostIds,
      kernel: [],
      label: [],
    });
    const { rollout } = await ctx.calls.unary<dispatcher.CreateRolloutResponse>('dispatcher', 'CreateRollout', request);
    if (!rollout) throw new CliError('the dispatcher answered CreateRollout without the rollout', ExitCode.Internal);
    created.push(rollout);
  }
  ctx.answer(
    renderTable(
      [{ header: 'ROLLOUT' }, { header: 'PATCH' }, { header: 'STATE' }, { header: 'HOSTS' }],
      created.map((r, i) => [
        r.rolloutId,
        `${r.patchId} ${r.version}`,
        dispatcher.RolloutState[r.state]?.slice('ROLLOUT_STATE_'.length).toLowerCase().replace(/_/g, '-') ?? '',
        plan[i]!.hostIds.join(', '),
      ]),
    ),
    () => ({
      rollouts: created.map((r, i) => ({
        rolloutId: r.rolloutId,
        patchId: r.patchId,
        version: r.version,
        state: dispatcher.RolloutState[r.state],
        hostIds: plan[i]!.hostIds,
      })),
    }),
  );
  return ExitCode.Ok;
}
