import { events, ledger, toTimestamp } from '@rebootless/contracts';
import * as model from '@rebootless/ledger-model';
import { InvalidArgumentError, NotFoundError, PreconditionError } from './errors';
import { HostRow, intervalFromRow } from './projection';
import { toPublishedPatch } from './catalog/published';
import { withCatalog } from './stacks/read';
import { LedgerQueries, instantOf } from './queries';

// PlanUndo and ComplianceReport: the read models gathered, then libs/ledger-model's rules.

const ts = (ms: number | null | undefined) => (ms === null || ms === undefined ? undefined : toTimestamp(new Date(ms)));

/** The model's refusals as the ledger's errors (one mapping at the edge follows from these). */
function refusal(err: unknown): Error {
  if (!(err instanceof model.LedgerModelError)) return err as Error;
  if (err.kind === 'invalid-argument') return new InvalidArgumentError(err.field ?? 'request', err.message);
  if (err.kind === 'not-found') return new NotFoundError(err.message);
  return new PreconditionError(err.message);
}

const DISABLE_ORDER: Record<string, ledger.DisableOrder> = {
  any: ledger.DisableOrder.DISABLE_ORDER_ANY,
  'top-only': ledger.DisableOrder.DISABLE_ORDER_TOP_ONLY,
};

const STEP_KIND: Record<model.UndoStepKind, ledger.UndoStepKind> = {
  disable: ledger.UndoStepKind.UNDO_STEP_KIND_REVERT,
  'remove-module': ledger.UndoStepKind.UNDO_STEP_KIND_REVERT,
  apply: ledger.UndoStepKind.UNDO_STEP_KIND_APPLY,
  reboot: ledger.UndoStepKind.UNDO_STEP_KIND_REBOOT,
};

const code = (c: model.FunctionCode): ledger.FunctionCode => ({
  moduleName: c.moduleName,
  patch: c.patchId ? { patchId: c.patchId, version: c.version } : undefined,
});

/** The PlanUndo answer for one host: its recorded stack, fed to the domain's `planUndo`. */
export async function undoPlanForHost(
  q: LedgerQueries,
  hostId: string,
  patchId: string,
  /** Releases whose disable order is not their upstream version's (LEDGER_KERNEL_DISABLE_ORDER). */
  disableOrders: Readonly<Record<string, model.DisableOrder>> = {},
): Promise<ledger.PlanUndoResponse> {
  const h = await q.hostRow(hostId);
  if (!patchId) throw new InvalidArgumentError('patch_id', 'is required');
  const patches = await q.patchMap();
  const history = (await q.db.query('SELECT * FROM stack_intervals WHERE host_id = $1 ORDER BY stack_seq', [hostId]))
    .map(intervalFromRow)
    .map((i) => withCatalog(i, patches, i.appliedBy));
  const stack = history.filter((i) => i.removedAt === null);
  try {
    const target = [...stack].reverse().find((e) => e.patchId === patchId);
    const plan = model.planUndo({
      hostId,
      stack,
      patchId,
      kernelRelease: h.kernelRelease,
      ...(disableOrders[h.kernelRelease] ? { kernelOverrides: { disableOrder: disableOrders[h.kernelRelease] } } : {}),
      earlierCumulatives: [...patches.values()].filter((p) => p.replace).map(toPublishedPatch),
      ...(target ? { replacedOnHost: model.previousCumulativeOnHost(history, target) } : {}),
    });
    return {
      disableOrder: DISABLE_ORDER[plan.disableOrder] ?? ledger.DisableOrder.DISABLE_ORDER_UNSPECIFIED,
      steps: revertSteps(plan.steps),
      functions: plan.functions.map((f) => ({
        function: f.function,
        runsNow: code(f.runsNow),
        runsAfter: code(f.runsAfter),
      })),
      rebootRequired: plan.rebootRequired,
      warnings: [plan.rule, ...plan.warnings],
    };
  } catch (err) {
    throw refusal(err);
  }
}

/** The proto's REVERT is "disable and remove the module": a disable and its removal make one step. */
function revertSteps(steps: readonly model.UndoStep[]): ledger.UndoStep[] {
  const out: ledger.UndoStep[] = [];
  for (const s of steps) {
    const detail = s.automatic ? `${s.detail} (done by the agent with the step before)` : s.detail;
    const last = out[out.length - 1];
    if (s.kind === 'remove-module' && last?.kind === STEP_KIND.disable && last.moduleName === s.moduleName) {
      last.detail = `${last.detail}; ${detail}`;
      continue;
    }
    out.push({
      kind: STEP_KIND[s.kind],
      moduleName: s.moduleName,
      patch: s.patch,
      downgrade: s.downgrade,
      detail,
      automatic: s.automatic ?? false,
    });
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Compliance (PCI-DSS v4.0 6.3.3 by default: critical fixes live within 30 days of release)

const STATUS: Record<model.ComplianceStatus, ledger.ComplianceStatus> = {
  compliant: ledger.ComplianceStatus.COMPLIANCE_STATUS_COMPLIANT,
  'non-compliant': ledger.ComplianceStatus.COMPLIANCE_STATUS_NON_COMPLIANT,
  exempt: ledger.ComplianceStatus.COMPLIANCE_STATUS_EXEMPT,
};

export async function complianceReport(
  q: LedgerQueries,
  req: ledger.ComplianceReportRequest,
  now = Date.now(),
): Promise<ledger.ComplianceReportResponse> {
  const from = instantOf(req.from, 'from');
  const to = instantOf(req.to, 'to');
  if (from !== undefined && to !== undefined && from > to) throw new InvalidArgumentError('from', 'is after to');
  const asOf = instantOf(req.asOf, 'as_of') ?? to ?? now;
  if (req.deadlineDays > 3650) throw new InvalidArgumentError('deadline_days', 'is more than ten years');
  const minSeverity = req.minSeverity || events.Severity.SEVERITY_CRITICAL;
  const severities = [1, 2, 3, 4].filter((s) => s >= minSeverity) as events.Severity[];

  const hosts = (await q.hosts()).filter((h) => inScope(h, req.scope) && h.enrolledAt !== null && h.enrolledAt <= asOf);
  const exposures = await q.exposures(hosts, asOf);
  let report: model.ComplianceReport;
  try {
    report = model.complianceReport(exposures, {
      asOf,
      ...(req.deadlineDays ? { windowDays: req.deadlineDays } : {}),
      severities,
      exemptions: req.exemptHostIds.map((hostId) => ({ hostId, reason: 'exempted by the operator' })),
      ...(from !== undefined ? { from } : {}),
      ...(to !== undefined ? { to } : {}),
      hostIds: hosts.map((h) => h.hostId),
    });
  } catch (err) {
    throw refusal(err);
  }
  const cvesById = new Map<string, events.Cve>();
  for (const p of (await q.patchMap()).values()) for (const c of p.cves) cvesById.set(c.id, c);
  const format = req.format;
  const rendered =
    format === ledger.ReportFormat.REPORT_FORMAT_JSON
      ? JSON.stringify(model.complianceJson(report))
      : format === ledger.ReportFormat.REPORT_FORMAT_CSV
        ? model.complianceCsv(report)
        : format === ledger.ReportFormat.REPORT_FORMAT_TABLE
          ? model.complianceTable(report)
          : '';
  return {
    generatedAt: ts(now),
    hostsInScope: report.hostsInScope,
    hostsCompliant: report.hostsCompliant,
    cves: report.cves.map((c) => ({
      cve: cvesById.get(c.cveId) ?? { id: c.cveId, severity: c.severity, cvssScore: '' },
      fixedBy: c.fixedBy,
      fixPublishedAt: ts(c.fixPublishedAt),
      hostsAffected: c.hostsAffected,
      hostsPatchedInTime: c.hostsPatchedInTime,
      hostsPatchedLate: c.hostsPatchedLate,
      unpatchedHostIds: c.unpatchedHostIds,
    })),
    integrityFindings: await q.integrityFindingCount(),
    hosts: report.rows.map((r) => ({
      hostId: r.hostId,
      cveId: r.cveId,
      severity: r.severity,
      status: STATUS[r.status],
      exposedSince: ts(r.exposedSince),
      deadline: ts(r.deadline),
      fixedAt: ts(r.fixedAt),
      fixedBy: r.fixedBy ?? undefined,
      evidenceEventIds: r.evidence.map((e) => e.eventId),
      reason: r.reason,
    })),
    rendered,
    asOf: ts(asOf),
  };
}

function inScope(h: HostRow, scope: events.HostSelector | undefined): boolean {
  if (!scope) return true;
  if (scope.hostIds.length > 0 && !scope.hostIds.includes(h.hostId)) return false;
  if (scope.kernelReleases.length > 0 && !scope.kernelReleases.includes(h.kernelRelease)) return false;
  return Object.entries(scope.labels).every(([k, v]) => h.labels[k] === v);
}
