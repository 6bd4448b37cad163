// What people read: each answer of the services as tables and fields. Pure.
import { builder, dispatcher, events, fromTimestamp, ledger, type Timestamp } from '@rebootless/contracts';
import { enumLabel } from './flags';
import { waveCounts } from './progress';
import { renderFields, renderTable } from './table';
import { formatDuration } from './time-input';

export function time(ts: Timestamp | undefined | null): string {
  if (!ts || (Number(ts.seconds) === 0 && ts.nanos === 0)) return '-';
  return fromTimestamp(ts)
    .toISOString()
    .replace(/\.000Z$/, 'Z');
}

const buildState = (s: builder.BuildState) => enumLabel(builder.BuildState, s, 'BUILD_STATE_');
const rolloutState = (s: dispatcher.RolloutState) => enumLabel(dispatcher.RolloutState, s, 'ROLLOUT_STATE_');
const severity = (s: events.Severity) => enumLabel(events.Severity, s, 'SEVERITY_');

export function actor(a: events.Actor | undefined | null): string {
  if (!a || !a.id) return '-';
  return a.origin ? `${a.id} (${a.origin})` : a.id;
}

function cves(list: readonly events.Cve[]): string {
  return list.map((c) => `${c.id} ${severity(c.severity)}${c.cvssScore ? ` ${c.cvssScore}` : ''}`).join(', ') || '-';
}

function patchRef(ref: events.PatchRef | undefined | null): string {
  return ref && ref.patchId ? `${ref.patchId} ${ref.version}` : '-';
}

function fn(f: events.PatchedFunction | undefined | null): string {
  if (!f) return '-';
  return `${f.object === 'vmlinux' ? '' : `${f.object}:`}${f.name}${f.sympos ? `,${f.sympos}` : ''}`;
}

// ---- builds -----------------------------------------------------------------------------

export function buildsTable(builds: readonly builder.Build[]): string {
  if (builds.length === 0) return 'no builds';
  return renderTable(
    [
      { header: 'BUILD' },
      { header: 'PATCH' },
      { header: 'VERSION' },
      { header: 'STATE' },
      { header: 'KERNELS', align: 'right' },
      { header: 'SUBMITTED' },
      { header: 'BY' },
    ],
    builds.map((b) => [
      b.buildId,
      b.patchId,
      b.version,
      buildState(b.state),
      `${b.kernels.filter((k) => k.state === builder.BuildState.BUILD_STATE_SUCCEEDED).length}/${b.kernels.length}`,
      time(b.submittedAt),
      actor(b.submittedBy),
    ]),
  );
}

export function buildDetail(b: builder.Build): string {
  const fields = renderFields([
    ['build', b.buildId],
    ['patch', `${b.patchId} ${b.version}${b.replace ? ' (replace)' : ''}`],
    ['state', buildState(b.state)],
    ['cves', cves(b.cves)],
    ['description', b.description || '-'],
    ['fix', `${enumLabel(events.FixSourceKind, b.sourceKind, 'FIX_SOURCE_KIND_')} sha256:${b.sourceSha256}`],
    ['submitted', `${time(b.submittedAt)} by ${actor(b.submittedBy)}`],
    ['finished', time(b.finishedAt)],
  ]);
  const kernels = renderTable(
    [{ header: 'KERNEL' }, { header: 'STATE' }, { header: 'STAGE' }, { header: 'MODULE' }, { header: 'ARTIFACT' }],
    b.kernels.map((k) => [
      k.kernelRelease,
      buildState(k.state),
      k.stage,
      k.manifest?.moduleName ?? '-',
      k.artifactDigest ? `sha256:${k.artifactDigest}` : '-',
    ]),
  );
  const functions = [...new Set(b.kernels.flatMap((k) => k.changedFunctions.map(fn)))];
  const diagnostics = b.kernels
    .filter((k) => k.diagnostics.length > 0)
    .map((k) => [`diagnostics for ${k.kernelRelease} (${k.stage}):`, ...k.diagnostics.map((d) => `  ${d}`)].join('\n'));
  return [
    fields,
    '',
    kernels,
    ...(functions.length ? ['', `changed functions: ${functions.join(', ')}`] : []),
    ...diagnostics.flatMap((d) => ['', d]),
  ].join('\n');
}

// ---- rollouts ---------------------------------------------------------------------------

function hostsDone(r: dispatcher.Rollout): string {
  const hosts = r.waves.flatMap((w) => w.hosts);
  const ok = hosts.filter((h) => h.state === dispatcher.HostRolloutState.HOST_ROLLOUT_STATE_SUCCEEDED).length;
  return `${ok}/${hosts.length}`;
}

export function rolloutsTable(rollouts: readonly dispatcher.Rollout[]): string {
  if (rollouts.length === 0) return 'no rollouts';
  return renderTable(
    [
      { header: 'ROLLOUT' },
      { header: 'KIND' },
      { header: 'PATCH' },
      { header: 'VERSION' },
      { header: 'STATE' },
      { header: 'WAVES', align: 'right' },
      { header: 'HOSTS OK', align: 'right' },
      { header: 'CREATED' },
      { header: 'BY' },
    ],
    rollouts.map((r) => [
      r.rolloutId,
      enumLabel(dispatcher.RolloutKind, r.kind, 'ROLLOUT_KIND_'),
      r.patchId,
      r.version || '-',
      rolloutState(r.state),
      `${r.waves.filter((w) => w.state === dispatcher.WaveState.WAVE_STATE_COMPLETED).length}/${r.waves.length}`,
      hostsDone(r),
      time(r.createdAt),
      actor(r.createdBy),
    ]),
  );
}

export function selectorText(s: events.HostSelector | undefined | null): string {
  if (!s) return 'every host';
  const parts = [
    ...s.kernelReleases.map((k) => `kernel ${k}`),
    ...Object.entries(s.labels ?? {}).map(([k, v]) => `${k}=${v}`),
    ...s.hostIds.map((h) => `host ${h}`),
  ];
  return parts.join(', ') || 'every host';
}

export function strategyText(s: events.RolloutStrategy | undefined | null): string {
  if (!s) return "the dispatcher's default";
  const waves = s.waves.map((w) => (w.percent ? `${w.percent}%` : `${w.count}`)).join(',');
  const parts = [
    s.canaryCount ? `canary ${s.canaryCount}` : '',
    s.canaryHostIds.length ? `canary hosts ${s.canaryHostIds.join(',')}` : '',
    waves ? `waves ${waves}` : '',
    s.maxInFlight ? `max ${s.maxInFlight} in flight` : '',
    s.soakSeconds ? `soak ${formatDuration(s.soakSeconds)}` : '',
    s.waveFailureBudget ? `wave failure budget ${s.waveFailureBudget}` : '',
    s.totalFailureBudget ? `total failure budget ${s.totalFailureBudget}` : '',
    s.approvalBeforeFirstWave ? 'approval before the first wave' : '',
    s.approvalBetweenWaves ? 'approval between waves' : '',
    s.onFailure ? `on failure ${enumLabel(events.FailurePolicy, s.onFailure, 'FAILURE_POLICY_')}` : '',
    s.window?.days ? `window ${s.window.days} ${s.window.startUtc}-${s.window.endUtc} UTC` : '',
  ];
  return parts.filter(Boolean).join(', ') || "the dispatcher's default";
}

export function rolloutDetail(r: dispatcher.Rollout, timeline: readonly ledger.AuditRecord[] = []): string {
  const fields = renderFields([
    ['rollout', `${r.rolloutId} (${enumLabel(dispatcher.RolloutKind, r.kind, 'ROLLOUT_KIND_')})`],
    ['patch', `${r.patchId} ${r.version || '(any version)'}`],
    ['state', `${rolloutState(r.state)}${r.stateReason ? `: ${r.stateReason}` : ''}`],
    ['hosts', selectorText(r.selector)],
    ['strategy', strategyText(r.strategy)],
    [
      'options',
      [r.allowForce ? 'allow force' : '', r.allowDowngrade ? 'allow downgrade' : ''].filter(Boolean).join(', ') || '-',
    ],
    ['created', `${time(r.createdAt)} by ${actor(r.createdBy)}`],
    ['updated', time(r.updatedAt)],
    [
      'skipped',
      r.skippedHostIds.length ? `${r.skippedHostIds.length} (already carry it): ${r.skippedHostIds.join(', ')}` : '-',
    ],
  ]);
  const waves = renderTable(
    [
      { header: 'WAVE' },
      { header: 'NAME' },
      { header: 'STATE' },
      { header: 'DONE', align: 'right' },
      { header: 'FAILED', align: 'right' },
      { header: 'STARTED' },
      { header: 'COMPLETED' },
    ],
    r.waves.map((w) => {
      const c = waveCounts(w);
      return [
        String(w.index),
        w.name,
        enumLabel(dispatcher.WaveState, w.state, 'WAVE_STATE_'),
        `${c.done}/${c.total}`,
        String(c.failed),
        time(w.startedAt),
        time(w.completedAt),
      ];
    }),
  );
  const hosts = renderTable(
    [{ header: 'WAVE' }, { header: 'HOST' }, { header: 'STATE' }, { header: 'UPDATED' }, { header: 'ERROR' }],
    r.waves.flatMap((w) =>
      w.hosts.map((h) => [
        w.name,
        h.hostId,
        `${enumLabel(dispatcher.HostRolloutState, h.state, 'HOST_ROLLOUT_STATE_')}${h.forced ? ' (forced)' : ''}`,
        time(h.updatedAt),
        h.error || '',
      ]),
    ),
  );
  return [
    fields,
    ...(r.waves.length ? ['', waves, '', hosts] : ['', 'no waves planned']),
    ...(timeline.length ? ['', 'timeline:', auditTable(timeline)] : []),
  ].join('\n');
}

// ---- hosts ------------------------------------------------------------------------------

const entryState = (s: ledger.StackEntryState) => enumLabel(ledger.StackEntryState, s, 'STACK_ENTRY_STATE_');

function enabledPatches(stack: ledger.HostStack | undefined | null): string {
  const entries = (stack?.entries ?? []).filter((e) => e.state !== ledger.StackEntryState.STACK_ENTRY_STATE_DISABLED);
  return (
    entries
      .map(
        (e) =>
          `${e.patch?.patchId ? `${e.patch.patchId} ${e.patch.version}` : e.moduleName}${e.state === ledger.StackEntryState.STACK_ENTRY_STATE_IN_TRANSITION ? ' (in transition)' : ''}`,
      )
      .join(', ') || '-'
  );
}

export interface HostRow {
  readonly hostId: string;
  readonly kernel: string;
  readonly stack: ledger.HostStack | undefined;
  readonly rebootRequired: boolean;
  readonly lastSeen: Timestamp | undefined;
  /** Now only: a past stack has no verdict. */
  readonly verdict?: ledger.HostVerdict;
}

/** HOST_VERDICT_EXPOSED_PAST_DEADLINE → "exposed past deadline". */
export function verdictLabel(verdict: ledger.HostVerdict): string {
  return verdict === ledger.HostVerdict.HOST_VERDICT_UNSPECIFIED
    ? '-'
    : enumLabel(ledger.HostVerdict, verdict, 'HOST_VERDICT_').replace(/-/g, ' ');
}

export function hostsTable(rows: readonly HostRow[], at?: Date): string {
  if (rows.length === 0) return at ? `no host was enrolled at ${at.toISOString()}` : 'no hosts';
  return renderTable(
    [
      { header: 'HOST' },
      { header: 'KERNEL' },
      { header: 'LIVE PATCHES' },
      { header: 'REBOOT' },
      { header: at ? 'OBSERVED' : 'LAST SEEN' },
      ...(at ? [] : [{ header: 'VERDICT' }]),
    ],
    rows.map((r) => [
      r.hostId,
      r.kernel,
      enabledPatches(r.stack),
      r.rebootRequired ? 'required' : '-',
      time(at ? r.stack?.observedAt : r.lastSeen),
      ...(at ? [] : [verdictLabel(r.verdict ?? ledger.HostVerdict.HOST_VERDICT_UNSPECIFIED)]),
    ]),
  );
}

export function stackDetail(stack: ledger.HostStack | undefined | null): string {
  if (!stack) return 'no stack observed';
  const entries = stack.entries.length
    ? renderTable(
        [
          { header: 'POS', align: 'right' },
          { header: 'MODULE' },
          { header: 'PATCH' },
          { header: 'STATE' },
          { header: 'CVES' },
          { header: 'APPLIED' },
          { header: 'BY' },
          { header: 'ROLLOUT' },
        ],
        stack.entries.map((e) => [
          String(e.position),
          e.moduleName,
          patchRef(e.patch),
          `${entryState(e.state)}${e.replace ? ' replace' : ''}${e.forced ? ' FORCED' : ''}`,
          e.cveIds.join(',') || '-',
          time(e.appliedAt),
          actor(e.appliedBy),
          e.rolloutId || '-',
        ]),
      )
    : 'no live patches';
  const functions = stack.functions.length
    ? renderTable(
        [{ header: 'FUNCTION' }, { header: 'RUNS' }],
        stack.functions.map((f) => [fn(f.function), codeText(f.runs)]),
      )
    : '';
  return [
    renderFields([
      ['kernel', stack.effectiveKernel || stack.kernelRelease],
      ['boot', stack.bootId || '-'],
      ['observed', time(stack.observedAt)],
    ]),
    '',
    entries,
    ...(functions ? ['', functions] : []),
  ].join('\n');
}

function codeText(code: ledger.FunctionCode | undefined | null): string {
  if (!code || !code.moduleName) return 'original kernel code';
  return `${code.moduleName}${code.patch?.patchId ? ` (${patchRef(code.patch)})` : ' (not published by rebootless)'}`;
}

export function hostDetail(host: ledger.Host): string {
  const f = host.facts;
  return [
    renderFields([
      ['host', f?.hostId ?? '-'],
      ['hostname', f?.hostname || '-'],
      ['kernel', `${f?.kernelRelease ?? '-'} ${f?.kernelVersion ?? ''}`.trim()],
      ['distro', f?.distro || '-'],
      [
        'labels',
        Object.entries(f?.labels ?? {})
          .map(([k, v]) => `${k}=${v}`)
          .join(', ') || '-',
      ],
      ['tainted', f?.taintFlags?.length ? `${f.tainted} (${f.taintFlags.join(',')})` : String(f?.tainted ?? 0)],
      ['agent', f?.agentVersion || '-'],
      ['reboot', host.rebootRequired ? 'required (a forced patch can only be rebooted away)' : 'not required'],
      ['verdict', [verdictLabel(host.verdict), ...host.verdictReasons].join('; ')],
      // Only when there is one: the agent refuses these until an operator clears them.
      ...host.quarantined.map((q): [string, string] => [
        'quarantined',
        `${q.patch?.patchId ?? '-'} ${q.patch?.version ?? '-'} since ${time(q.since)}: ${q.reason}`,
      ]),
      ['enrolled', time(host.enrolledAt)],
      ['last seen', time(host.lastSeenAt)],
    ]),
    '',
    stackDetail(host.stack),
  ].join('\n');
}

export function stackAtDetail(hostId: string, at: Date, answer: ledger.GetHostStackAtResponse): string {
  const evidence = answer.asOf;
  return [
    `host ${hostId} as of ${at.toISOString()}`,
    evidence?.body
      ? `evidence: ${evidence.body.type} at ${time(evidence.body.occurredAt)} (${evidence.position?.producerId} seq ${evidence.position?.seq}, partition ${evidence.position?.partition} offset ${evidence.position?.offset})${evidence.summary ? `: ${evidence.summary}` : ''}`
      : 'evidence: -',
    '',
    stackDetail(answer.stack),
  ].join('\n');
}

// ---- undo -------------------------------------------------------------------------------

export function undoPlanDetail(host: string, patch: string, plan: ledger.PlanUndoResponse): string {
  const order = enumLabel(ledger.DisableOrder, plan.disableOrder, 'DISABLE_ORDER_');
  const steps = plan.steps.length
    ? renderTable(
        [
          { header: 'STEP', align: 'right' },
          { header: 'ACTION' },
          { header: 'MODULE' },
          { header: 'PATCH' },
          { header: 'DETAIL' },
        ],
        plan.steps.map((s, i) => [
          String(i + 1),
          `${enumLabel(ledger.UndoStepKind, s.kind, 'UNDO_STEP_KIND_')}${s.downgrade ? ' (downgrade)' : ''}`,
          s.moduleName || '-',
          patchRef(s.patch),
          s.detail,
        ]),
      )
    : 'nothing to do';
  const functions = plan.functions.length
    ? renderTable(
        [{ header: 'FUNCTION' }, { header: 'RUNS NOW' }, { header: 'RUNS AFTER' }],
        plan.functions.map((f) => [fn(f.function), codeText(f.runsNow), codeText(f.runsAfter)]),
      )
    : '';
  return [
    `undo ${patch} on ${host} (disable order: ${order === 'any' ? 'any patch, any order (5.1+)' : order === 'top-only' ? 'only the top of the stack (before 5.1)' : order})`,
    '',
    steps,
    ...(functions ? ['', functions] : []),
    ...(plan.rebootRequired ? ['', 'a reboot is required: a forced patch cannot be removed otherwise'] : []),
    ...plan.warnings.map((w) => `warning: ${w}`),
  ].join('\n');
}

// ---- audit, patches, reports, integrity --------------------------------------------------

export function auditTable(records: readonly ledger.AuditRecord[]): string {
  if (records.length === 0) return 'no events';
  return renderTable(
    [{ header: 'TIME' }, { header: 'TYPE' }, { header: 'ACTOR' }, { header: 'STREAM' }, { header: 'SUMMARY' }],
    records.map((r) => [
      time(r.body?.occurredAt),
      r.body?.type ?? '-',
      actor(r.body?.actor),
      r.body?.stream ?? '-',
      r.summary,
    ]),
  );
}

export function patchesTable(patches: readonly ledger.Patch[]): string {
  if (patches.length === 0) return 'no patches';
  return renderTable(
    [
      { header: 'PATCH' },
      { header: 'VERSION' },
      { header: 'SEVERITY' },
      { header: 'CVES' },
      { header: 'KERNELS', align: 'right' },
      { header: 'HOSTS', align: 'right' },
      { header: 'PUBLISHED' },
      { header: 'RETRACTED' },
    ],
    patches.map((p) => [
      p.patchId,
      p.version,
      severity(p.severity),
      p.cves.map((c) => c.id).join(',') || '-',
      String(p.artifacts.length),
      String(p.hostsCarrying),
      time(p.publishedAt),
      p.retracted ? p.retractionReason || 'yes' : '-',
    ]),
  );
}

export const PCI_HEADERS = [
  'cve',
  'severity',
  'fixed_by',
  'fix_published_at',
  'hosts_affected',
  'patched_in_time',
  'patched_late',
  'unpatched',
  'unpatched_hosts',
] as const;

export function pciRows(report: ledger.ComplianceReportResponse): string[][] {
  return report.cves.map((c) => [
    c.cve?.id ?? '',
    c.cve ? severity(c.cve.severity) : '',
    c.fixedBy.map(patchRef).join(' '),
    time(c.fixPublishedAt),
    String(c.hostsAffected),
    String(c.hostsPatchedInTime),
    String(c.hostsPatchedLate),
    String(c.unpatchedHostIds.length),
    c.unpatchedHostIds.join(' '),
  ]);
}

export const PCI_HOST_HEADERS = [
  'host',
  'cve',
  'severity',
  'status',
  'exposed_since',
  'deadline',
  'fixed_at',
  'fixed_by',
  'reason',
] as const;

/** One row per host and CVE: the verdict an auditor samples. */
export function pciHostRows(report: ledger.ComplianceReportResponse): string[][] {
  return report.hosts.map((h) => [
    h.hostId,
    h.cveId,
    severity(h.severity),
    enumLabel(ledger.ComplianceStatus, h.status, 'COMPLIANCE_STATUS_'),
    time(h.exposedSince),
    time(h.deadline),
    time(h.fixedAt),
    patchRef(h.fixedBy),
    h.reason,
  ]);
}

export function pciReport(report: ledger.ComplianceReportResponse, asOf: Date, deadlineDays: number): string {
  const rows = pciRows(report);
  return [
    renderFields([
      ['as of', asOf.toISOString()],
      ['generated', time(report.generatedAt)],
      ['deadline', `${deadlineDays} days from a fix's publication`],
      ['hosts', `${report.hostsCompliant}/${report.hostsInScope} compliant`],
      [
        'log integrity',
        report.integrityFindings === 0
          ? 'intact'
          : `${report.integrityFindings} findings: run rebootless ledger verify`,
      ],
    ]),
    '',
    rows.length
      ? renderTable(
          [
            { header: 'CVE' },
            { header: 'SEVERITY' },
            { header: 'FIXED BY' },
            { header: 'FIX PUBLISHED' },
            { header: 'AFFECTED', align: 'right' },
            { header: 'IN TIME', align: 'right' },
            { header: 'LATE', align: 'right' },
            { header: 'UNPATCHED', align: 'right' },
            { header: 'UNPATCHED HOSTS' },
          ],
          rows.map((r) => [...r.slice(0, 8), r[8] || '-']),
        )
      : 'no CVEs in scope',
  ].join('\n');
}

export function integrityDetail(result: ledger.VerifyIntegrityResponse): string {
  const head = `${result.findings.length === 0 ? 'intact' : `${result.findings.length} findings`}: ${result.eventsChecked} events of ${result.producersChecked} producers checked at ${time(result.verifiedAt)}`;
  if (result.findings.length === 0) return head;
  return [
    head,
    '',
    renderTable(
      [
        { header: 'FINDING' },
        { header: 'PRODUCER' },
        { header: 'EPOCH', align: 'right' },
        { header: 'SEQ', align: 'right' },
        { header: 'PARTITION/OFFSET' },
        { header: 'DETAIL' },
      ],
      result.findings.map((f) => [
        enumLabel(ledger.IntegrityFindingKind, f.kind, 'INTEGRITY_FINDING_KIND_'),
        f.position?.producerId ?? '-',
        String(f.position?.epoch ?? '-'),
        String(f.position?.seq ?? '-'),
        f.position ? `${f.position.partition}/${f.position.offset}` : '-',
        f.detail,
      ]),
    ),
  ].join('\n');
}
