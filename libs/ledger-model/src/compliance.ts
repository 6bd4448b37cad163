import { events } from '@rebootless/contracts';
import { PatchRef, patchLabel, refKey } from './catalog';
import type { ExposureInterval, ExposureStart } from './exposure';
import { severityName } from './live-functions';
import { DAY_MS, EpochMillis, isoInstant } from './time';

/**
 * PCI-DSS v4.0 requirement 6.3.3: "critical or high-security patches/updates are installed within
 * one month of release". By default: critical CVEs, 30 days from when a host became exposed
 * (the fix's publication for its kernel, or its enrollment if later). Both are parameters.
 */
export const PCI_DSS_6_3_3 = Object.freeze({
  requirement: 'PCI-DSS v4.0 6.3.3',
  windowDays: 30,
  severities: Object.freeze([events.Severity.SEVERITY_CRITICAL]) as readonly events.Severity[],
});

/** A host (and optionally only one CVE) the operator exempted, with the reason an auditor will read. */
export interface Exemption {
  hostId: string;
  /** Unset: every CVE of the host. */
  cveId?: string;
  reason: string;
}

export interface ComplianceOptions {
  /** The instant the report is evaluated at: nothing after it is known. */
  asOf: EpochMillis;
  /** Days allowed from exposure to a live fix (default 30). */
  windowDays?: number;
  /** Severities in scope (default: critical only). */
  severities?: readonly events.Severity[];
  /**
   * Days allowed to make a fix live again after a reboot, revert or replace dropped it (default:
   * windowDays). Requirement 6.3.3 counts from a patch's release; the ledger gives a dropped fix the
   * same window again rather than flagging every reboot, and an assessor may shorten it.
   */
  reExposureWindowDays?: number;
  exemptions?: readonly Exemption[];
  /** The reporting period: only exposures that overlap it are evaluated. Unset bounds are open. */
  from?: EpochMillis;
  to?: EpochMillis;
  /**
   * The hosts in scope (a selector's result), exposed or not: rows of other hosts are left out,
   * and a host in scope without any row counts as compliant. Unset: the hosts the exposures name.
   */
  hostIds?: readonly string[];
}

export type ComplianceStatus = 'compliant' | 'non-compliant' | 'exempt';

/** One event a verdict rests on. */
export interface ComplianceEvidence {
  eventId: string;
  at: EpochMillis;
  what: string;
}

/** One host and one CVE: the verdict and the events it rests on. */
export interface HostCveCompliance {
  hostId: string;
  cveId: string;
  severity: events.Severity;
  status: ComplianceStatus;
  /** When the exposure the verdict rests on began. */
  exposedSince: EpochMillis;
  deadline: EpochMillis;
  /** When a fixing patch became live; null while still exposed. */
  fixedAt: EpochMillis | null;
  fixedBy: PatchRef | null;
  reason: string;
  /** Oldest first. */
  evidence: ComplianceEvidence[];
}

export interface CveComplianceSummary {
  cveId: string;
  severity: events.Severity;
  /** Every patch version published as a fix, for the kernels concerned. */
  fixedBy: PatchRef[];
  /** When the first fix was published. */
  fixPublishedAt: EpochMillis;
  hostsAffected: number;
  hostsPatchedInTime: number;
  hostsPatchedLate: number;
  /** Hosts still exposed as of the report. */
  unpatchedHostIds: string[];
}

export interface ComplianceReport {
  requirement: string;
  asOf: EpochMillis;
  windowDays: number;
  reExposureWindowDays: number;
  severities: events.Severity[];
  /** Sorted by host, then CVE. */
  rows: HostCveCompliance[];
  cves: CveComplianceSummary[];
  hostsInScope: number;
  /** Hosts whose every row is compliant or exempt. */
  hostsCompliant: number;
}

/**
 * Evaluates requirement 6.3.3 over CVE exposure intervals (cveExposure) as of an instant.
 * Each exposure must end (a fix live) within its window: a first exposure within `windowDays`,
 * one reopened by a reboot, revert or replace within `reExposureWindowDays`. A host and CVE is
 * non-compliant when any exposure overran (fixed late, or still exposed past its deadline),
 * exempt when listed, compliant otherwise (fixed in time, or still within its window).
 */
export function complianceReport(exposures: readonly ExposureInterval[], options: ComplianceOptions): ComplianceReport {
  const asOf = options.asOf;
  const windowDays = options.windowDays ?? PCI_DSS_6_3_3.windowDays;
  const reExposureWindowDays = options.reExposureWindowDays ?? windowDays;
  const severities = [...(options.severities ?? PCI_DSS_6_3_3.severities)];
  const from = options.from ?? -Infinity;
  const to = options.to ?? Infinity;
  const scope = options.hostIds ? new Set(options.hostIds) : undefined;

  const groups = new Map<string, ExposureInterval[]>();
  for (const e of exposures) {
    if (!severities.includes(e.severity) || e.exposedFrom > asOf) continue;
    if (scope && !scope.has(e.hostId)) continue;
    const until = clip(e, asOf);
    if (e.exposedFrom > to || (until !== null && until < from)) continue;
    const key = `${e.hostId}\u0000${e.cveId}`;
    const list = groups.get(key);
    if (list) list.push(e);
    else groups.set(key, [e]);
  }

  const rows = [...groups.values()]
    .map((list) =>
      verdict(
        list.sort((a, b) => a.exposedFrom - b.exposedFrom),
        asOf,
        windowDays,
        reExposureWindowDays,
        options.exemptions ?? [],
      ),
    )
    .sort((a, b) => cmp(a.hostId, b.hostId) || cmp(a.cveId, b.cveId));

  const hosts = new Map<string, boolean>((options.hostIds ?? []).map((id) => [id, true]));
  for (const r of rows) hosts.set(r.hostId, (hosts.get(r.hostId) ?? true) && r.status !== 'non-compliant');
  return {
    requirement: PCI_DSS_6_3_3.requirement,
    asOf,
    windowDays,
    reExposureWindowDays,
    severities,
    rows,
    cves: summarize(rows, [...groups.values()].flat()),
    hostsInScope: hosts.size,
    hostsCompliant: [...hosts.values()].filter(Boolean).length,
  };
}

const INITIAL: readonly ExposureStart[] = ['fix-published', 'enrolled', 'kernel-changed'];

function clip(e: ExposureInterval, asOf: EpochMillis): EpochMillis | null {
  return e.exposedUntil !== null && e.exposedUntil <= asOf ? e.exposedUntil : null;
}

function verdict(
  list: ExposureInterval[],
  asOf: EpochMillis,
  windowDays: number,
  reExposureWindowDays: number,
  exemptions: readonly Exemption[],
): HostCveCompliance {
  const first = list[0]!;
  const judged = list.map((e) => {
    const days = INITIAL.includes(e.openedBy) ? windowDays : reExposureWindowDays;
    const deadline = e.exposedFrom + days * DAY_MS;
    const until = clip(e, asOf);
    return { e, deadline, until, late: (until ?? asOf) > deadline };
  });
  const evidence = evidenceOf(list, asOf);
  const decisive = judged.find((j) => j.late) ?? judged[judged.length - 1]!;
  const { e, deadline, until } = decisive;
  const fixed = until !== null && e.closedBy === 'patched';
  const base = {
    hostId: first.hostId,
    cveId: first.cveId,
    severity: first.severity,
    exposedSince: e.exposedFrom,
    deadline,
    fixedAt: fixed ? until : null,
    fixedBy: fixed ? e.fixedBy : null,
    evidence,
  };
  const exemption = exemptions.find((x) => x.hostId === first.hostId && (!x.cveId || x.cveId === first.cveId));
  if (exemption) return { ...base, status: 'exempt', reason: `exempt: ${exemption.reason}` };
  const day = (t: EpochMillis) => isoInstant(t).slice(0, 10);
  const after = (t: EpochMillis) => `${Math.round(((t - e.exposedFrom) / DAY_MS) * 10) / 10} days`;
  const reopened = INITIAL.includes(e.openedBy) ? '' : ` (exposed again: ${e.openedBy})`;
  let reason: string;
  if (!decisive.late) {
    reason =
      until === null
        ? `exposed since ${day(e.exposedFrom)}${reopened}, within the deadline ${day(deadline)}`
        : fixed
          ? `fixed by ${patchLabel(e.fixedBy ?? { patchId: '', version: '' })} ${after(until)} after exposure${reopened}, before the deadline ${day(deadline)}`
          : `no longer exposed after ${after(until)} (booted a kernel without this fix), before the deadline ${day(deadline)}`;
  } else if (until === null) {
    reason = `still exposed${reopened}, ${Math.floor((asOf - deadline) / DAY_MS)} day(s) past the deadline ${day(deadline)}`;
  } else {
    reason = fixed
      ? `fixed late by ${patchLabel(e.fixedBy ?? { patchId: '', version: '' })} ${after(until)} after exposure${reopened}, deadline was ${day(deadline)}`
      : `exposed${reopened} past the deadline ${day(deadline)} until it booted a kernel without this fix`;
  }
  return { ...base, status: decisive.late ? 'non-compliant' : 'compliant', reason };
}

function evidenceOf(list: ExposureInterval[], asOf: EpochMillis): ComplianceEvidence[] {
  const items = new Map<string, ComplianceEvidence>();
  const add = (eventId: string | null, at: EpochMillis | null, what: string) => {
    if (!eventId || at === null || items.has(eventId)) return;
    items.set(eventId, { eventId, at, what });
  };
  for (const e of list) {
    add(
      e.fixPublishedEventId,
      e.fixPublishedAt,
      `fix ${patchLabel(e.fixPublishedBy)} published for ${e.kernelRelease}`,
    );
    add(e.openedEventId, e.exposedFrom, `exposed (${e.openedBy})`);
    const until = clip(e, asOf);
    if (until !== null) {
      add(
        e.closedEventId,
        until,
        e.closedBy === 'patched'
          ? `fix live: ${patchLabel(e.fixedBy ?? { patchId: '', version: '' })}`
          : 'booted a kernel without this fix',
      );
    }
  }
  return [...items.values()].sort((a, b) => a.at - b.at);
}

function summarize(rows: HostCveCompliance[], exposures: ExposureInterval[]): CveComplianceSummary[] {
  const byCve = new Map<string, HostCveCompliance[]>();
  for (const r of rows) byCve.set(r.cveId, [...(byCve.get(r.cveId) ?? []), r]);
  return [...byCve.entries()]
    .sort(([a], [b]) => cmp(a, b))
    .map(([cveId, list]) => {
      const mine = exposures.filter((e) => e.cveId === cveId);
      const fixes = new Map<string, PatchRef>();
      for (const e of mine) fixes.set(refKey(e.fixPublishedBy), e.fixPublishedBy);
      return {
        cveId,
        severity: list[0]!.severity,
        fixedBy: [...fixes.values()].sort((a, b) => cmp(refKey(a), refKey(b))),
        fixPublishedAt: Math.min(...mine.map((e) => e.fixPublishedAt)),
        hostsAffected: list.length,
        hostsPatchedInTime: list.filter((r) => r.fixedAt !== null && r.status === 'compliant').length,
        hostsPatchedLate: list.filter((r) => r.fixedAt !== null && r.status === 'non-compliant').length,
        unpatchedHostIds: list.filter((r) => r.fixedAt === null).map((r) => r.hostId),
      };
    });
}

function cmp(a: string, b: string): number {
  return a < b ? -1 : a > b ? 1 : 0;
}

/** The columns of every rendering, in order. */
export const COMPLIANCE_COLUMNS = [
  'host',
  'cve',
  'severity',
  'status',
  'exposed_since',
  'deadline',
  'fixed_at',
  'fixed_by',
  'reason',
  'evidence',
] as const;

/** A row as JSON-ready plain data: instants as ISO 8601 strings (UTC), severity by name. */
export interface ComplianceRowJson {
  host: string;
  cve: string;
  severity: string;
  status: ComplianceStatus;
  exposed_since: string;
  deadline: string;
  fixed_at: string | null;
  fixed_by: PatchRef | null;
  reason: string;
  evidence: { event_id: string; at: string; what: string }[];
}

export interface ComplianceReportJson {
  requirement: string;
  as_of: string;
  window_days: number;
  re_exposure_window_days: number;
  severities: string[];
  hosts_in_scope: number;
  hosts_compliant: number;
  rows: ComplianceRowJson[];
  cves: {
    cve: string;
    severity: string;
    fixed_by: PatchRef[];
    fix_published_at: string;
    hosts_affected: number;
    hosts_patched_in_time: number;
    hosts_patched_late: number;
    unpatched_host_ids: string[];
  }[];
}

export function complianceJson(report: ComplianceReport): ComplianceReportJson {
  return {
    requirement: report.requirement,
    as_of: isoInstant(report.asOf),
    window_days: report.windowDays,
    re_exposure_window_days: report.reExposureWindowDays,
    severities: report.severities.map(severityName),
    hosts_in_scope: report.hostsInScope,
    hosts_compliant: report.hostsCompliant,
    rows: report.rows.map((r) => ({
      host: r.hostId,
      cve: r.cveId,
      severity: severityName(r.severity),
      status: r.status,
      exposed_since: isoInstant(r.exposedSince),
      deadline: isoInstant(r.deadline),
      fixed_at: r.fixedAt === null ? null : isoInstant(r.fixedAt),
      fixed_by: r.fixedBy,
      reason: r.reason,
      evidence: r.evidence.map((e) => ({ event_id: e.eventId, at: isoInstant(e.at), what: e.what })),
    })),
    cves: report.cves.map((c) => ({
      cve: c.cveId,
      severity: severityName(c.severity),
      fixed_by: c.fixedBy,
      fix_published_at: isoInstant(c.fixPublishedAt),
      hosts_affected: c.hostsAffected,
      hosts_patched_in_time: c.hostsPatchedInTime,
      hosts_patched_late: c.hostsPatchedLate,
      unpatched_host_ids: c.unpatchedHostIds,
    })),
  };
}

function cells(r: HostCveCompliance): string[] {
  return [
    r.hostId,
    r.cveId,
    severityName(r.severity),
    r.status,
    isoInstant(r.exposedSince),
    isoInstant(r.deadline),
    isoInstant(r.fixedAt),
    r.fixedBy ? patchLabel(r.fixedBy) : '',
    r.reason,
    r.evidence.map((e) => `${e.eventId}@${isoInstant(e.at)}`).join(' '),
  ];
}

/**
 * RFC 4180 CSV (CRLF line ends): a header, then one line per host and CVE. A field holding a
 * comma, a quote or a line break is quoted with its quotes doubled; a field a spreadsheet would
 * read as a formula (=, +, -, @, tab, CR first) is prefixed with an apostrophe, since host names
 * and reasons come from outside.
 */
export function complianceCsv(report: ComplianceReport): string {
  const lines = [COMPLIANCE_COLUMNS.join(','), ...report.rows.map((r) => cells(r).map(csvField).join(','))];
  return lines.join('\r\n') + '\r\n';
}

export function csvField(value: string): string {
  const safe = /^[=+\-@\t\r]/.test(value) ? `'${value}` : value;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

/** Aligned columns for a terminal, after a header naming the requirement, the instant and the totals. */
export function complianceTable(report: ComplianceReport): string {
  const header = ['HOST', 'CVE', 'SEVERITY', 'STATUS', 'EXPOSED SINCE', 'DEADLINE', 'FIXED AT', 'FIXED BY', 'REASON'];
  const body = report.rows.map((r) =>
    cells(r)
      .slice(0, header.length)
      .map((c) => c.replace(/[\r\n\t]+/g, ' ')),
  );
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((row) => row[i]!.length)));
  const line = (row: string[]) =>
    row
      .map((c, i) => (i === row.length - 1 ? c : c.padEnd(widths[i]!)))
      .join('  ')
      .trimEnd();
  const title =
    `${report.requirement} as of ${isoInstant(report.asOf)}: ${report.severities.map(severityName).join('/')} fixes live within ` +
    `${report.windowDays} days; ${report.hostsCompliant} of ${report.hostsInScope} host(s) compliant`;
  return [title, line(header), ...body.map(line)].join('\n') + '\n';
}
