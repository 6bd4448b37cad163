// hosts list|show, audit, report pci|vex and ledger verify (LedgerService).
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { toTimestamp, events, ledger } from '@rebootless/contracts';
import { allPages } from './build-commands';
import type { CommandContext } from './context';
import { CliError, UsageError } from './errors';
import { ExitCode } from './exit-codes';
import { bool, hostSelector, isEmptySelector, list, optionalCount, parseLabels, parseSeverity, str } from './flags';
import { renderCsv, renderTable } from './table';
import { parseInstant } from './time-input';
import {
  PCI_HEADERS,
  PCI_HOST_HEADERS,
  pciHostRows,
  auditTable,
  hostDetail,
  hostsTable,
  integrityDetail,
  pciReport,
  pciRows,
  stackAtDetail,
  type HostRow,
} from './views';

const L = 'rebootless.ledger.v1';

const REPORT_FORMATS: Readonly<Record<string, ledger.ReportFormat>> = {
  table: ledger.ReportFormat.REPORT_FORMAT_TABLE,
  json: ledger.ReportFormat.REPORT_FORMAT_JSON,
  csv: ledger.ReportFormat.REPORT_FORMAT_CSV,
};

function instantFlag(ctx: CommandContext, name: string): Date | undefined {
  const text = str(ctx.flags, name);
  return text === undefined ? undefined : parseInstant(text, `--${name}`, ctx.now());
}

/** Runs `work` over `items`, at most `limit` at a time, keeping the order. */
async function mapLimited<T, R>(items: readonly T[], limit: number, work: (item: T) => Promise<R>): Promise<R[]> {
  const results: R[] = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      results[i] = await work(items[i]!);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return results;
}

export async function hostsCount(ctx: CommandContext): Promise<ExitCode> {
  const { hosts } = await ctx.calls.unary<ledger.CountHostsResponse>('ledger', 'CountHosts', {
    kernelRelease: str(ctx.flags, 'kernel') ?? '',
    labels: parseLabels(list(ctx.flags, 'label')),
    carriesPatchId: str(ctx.flags, 'patch') ?? '',
    exposedToCveId: str(ctx.flags, 'exposed-to') ?? '',
  });
  ctx.answer(`${hosts} host(s)`, () => ({ hosts }));
  return ExitCode.Ok;
}

export async function hostsList(ctx: CommandContext): Promise<ExitCode> {
  const at = instantFlag(ctx, 'at');
  const hosts = await allPages(undefined, async (pageToken, pageSize) => {
    const page = await ctx.calls.unary<ledger.ListHostsResponse>('ledger', 'ListHosts', {
      pageSize,
      pageToken,
      kernelRelease: str(ctx.flags, 'kernel') ?? '',
      labels: parseLabels(list(ctx.flags, 'label')),
      carriesPatchId: str(ctx.flags, 'patch') ?? '',
      exposedToCveId: str(ctx.flags, 'exposed-to') ?? '',
      verdictDeadlineDays: optionalCount(ctx.flags, 'deadline-days', 1) ?? 0,
    });
    return { items: page.hosts, next: page.nextPageToken };
  });
  if (!at) {
    const rows: HostRow[] = hosts.map((h) => ({
      hostId: h.facts?.hostId ?? '',
      kernel: h.facts?.kernelRelease ?? '',
      stack: h.stack,
      rebootRequired: h.rebootRequired,
      lastSeen: h.lastSeenAt,
      verdict: h.verdict,
    }));
    ctx.answer(hostsTable(rows), () => ({ hosts: hosts.map((h) => ctx.view(`${L}.Host`, h)) }));
    return ExitCode.Ok;
  }
  // The filters select today's hosts; each one's stack is then read as it was at the instant.
  const past = await mapLimited(hosts, 8, async (host) => {
    const hostId = host.facts?.hostId ?? '';
    try {
      const answer = await ctx.calls.unary<ledger.GetHostStackAtResponse>('ledger', 'GetHostStackAt', {
        hostId,
        at: toTimestamp(at),
      });
      return { hostId, answer };
    } catch (error) {
      if (error instanceof CliError && error.exitCode === ExitCode.NotFound) return undefined; // not enrolled yet
      throw error;
    }
  });
  const found = past.filter((p): p is NonNullable<typeof p> => p !== undefined);
  const rows: HostRow[] = found.map((p) => ({
    hostId: p.hostId,
    kernel: p.answer.stack?.kernelRelease ?? '',
    stack: p.answer.stack,
    rebootRequired: p.answer.stack?.entries.some((e) => e.forced) ?? false,
    lastSeen: undefined,
  }));
  ctx.answer(hostsTable(rows, at), () => ({
    at: at.toISOString(),
    hosts: found.map((p) => ({ hostId: p.hostId, ...(ctx.view(`${L}.GetHostStackAtResponse`, p.answer) as object) })),
  }));
  return ExitCode.Ok;
}

export async function hostsShow(ctx: CommandContext): Promise<ExitCode> {
  const hostId = ctx.positionals['HOST']!;
  const at = instantFlag(ctx, 'at');
  const history = bool(ctx.flags, 'history')
    ? await allPages(undefined, async (pageToken, pageSize) => {
        const page = await ctx.calls.unary<ledger.GetHostHistoryResponse>('ledger', 'GetHostHistory', {
          hostId,
          pageSize,
          pageToken,
          ...(at ? { to: toTimestamp(at) } : {}),
        });
        return { items: page.records, next: page.nextPageToken };
      })
    : undefined;
  const historyText = history ? `\n\nhistory:\n${auditTable(history)}` : '';
  const historyJson = () => (history ? { history: history.map((r) => ctx.view(`${L}.AuditRecord`, r)) } : {});
  if (at) {
    const answer = await ctx.calls.unary<ledger.GetHostStackAtResponse>('ledger', 'GetHostStackAt', {
      hostId,
      at: toTimestamp(at),
    });
    ctx.answer(stackAtDetail(hostId, at, answer) + historyText, () => ({
      hostId,
      at: at.toISOString(),
      ...(ctx.view(`${L}.GetHostStackAtResponse`, answer) as object),
      ...historyJson(),
    }));
    return ExitCode.Ok;
  }
  const { host } = await ctx.calls.unary<ledger.GetHostResponse>('ledger', 'GetHost', { hostId });
  if (!host) throw new CliError('the ledger answered GetHost without a host', ExitCode.Internal);
  ctx.answer(hostDetail(host) + historyText, () => ({ ...(ctx.view(`${L}.Host`, host) as object), ...historyJson() }));
  return ExitCode.Ok;
}

export async function audit(ctx: CommandContext): Promise<ExitCode> {
  const from = instantFlag(ctx, 'from');
  const to = instantFlag(ctx, 'to');
  if (from && to && from > to) {
    throw new UsageError(`--from ${from.toISOString()} is after --to ${to.toISOString()}: swap them`);
  }
  const request: ledger.QueryAuditRequest = {
    from: from && toTimestamp(from),
    to: to && toTimestamp(to),
    hostId: str(ctx.flags, 'host') ?? '',
    actorId: str(ctx.flags, 'actor') ?? '',
    types: list(ctx.flags, 'type'),
    correlationId: str(ctx.flags, 'correlation') ?? '',
    producerId: str(ctx.flags, 'producer') ?? '',
    includeEnvelopes: bool(ctx.flags, 'envelopes'),
  };
  const records: ledger.AuditRecord[] = [];
  await ctx.calls.stream<ledger.QueryAuditResponse>('ledger', 'QueryAudit', request, (m) => {
    if (m.record) records.push(m.record);
  });
  ctx.answer(auditTable(records), () => ({ records: records.map((r) => ctx.view(`${L}.AuditRecord`, r)) }));
  return ExitCode.Ok;
}

export async function reportPci(ctx: CommandContext): Promise<ExitCode> {
  const format = str(ctx.flags, 'format') ?? (ctx.json ? 'json' : 'table');
  if (!['table', 'json', 'csv'].includes(format)) {
    throw new UsageError(`--format "${format}" is not one of: table, json, csv`);
  }
  if (ctx.json && format !== 'json')
    throw new UsageError(`--json and --format ${format} contradict each other: give one`);
  const asOf = instantFlag(ctx, 'as-of') ?? ctx.now();
  const from = instantFlag(ctx, 'from');
  if (from && from > asOf) throw new UsageError(`--from ${from.toISOString()} is after --as-of ${asOf.toISOString()}`);
  const deadlineDays = optionalCount(ctx.flags, 'deadline-days', 1) ?? 30;
  const scope = hostSelector(ctx.flags);
  const severityText = str(ctx.flags, 'min-severity');
  const request: ledger.ComplianceReportRequest = {
    from: from && toTimestamp(from),
    to: toTimestamp(asOf),
    asOf: toTimestamp(asOf),
    scope: isEmptySelector(scope) ? undefined : scope,
    minSeverity:
      severityText === undefined ? events.Severity.SEVERITY_CRITICAL : parseSeverity(severityText, '--min-severity'),
    deadlineDays,
    format: REPORT_FORMATS[format]!,
    exemptHostIds: list(ctx.flags, 'exempt'),
  };
  const report = await ctx.calls.unary<ledger.ComplianceReportResponse>('ledger', 'ComplianceReport', request);
  if (format === 'json') {
    ctx.document({
      asOf: asOf.toISOString(),
      deadlineDays,
      ...(ctx.view(`${L}.ComplianceReportResponse`, report) as object),
    });
  } else if (report.rendered) {
    // The ledger's own rendering: the same report the dashboard and an auditor's export show.
    ctx.raw(report.rendered.endsWith('\n') ? report.rendered : `${report.rendered}\n`);
  } else if (format === 'csv') {
    ctx.raw(
      report.hosts.length ? renderCsv(PCI_HOST_HEADERS, pciHostRows(report)) : renderCsv(PCI_HEADERS, pciRows(report)),
    );
  } else {
    ctx.answer(pciReport(report, asOf, deadlineDays), () => undefined);
  }
  return ExitCode.Ok;
}

export async function reportVex(ctx: CommandContext): Promise<ExitCode> {
  const hostIds = list(ctx.flags, 'host');
  const labels = parseLabels(list(ctx.flags, 'label'));
  if (hostIds.length === 0 && Object.keys(labels).length === 0)
    throw new UsageError(
      'report vex needs the hosts: --host HOST or --label KEY=VALUE (repeatable; all given must match)',
    );
  const asOf = instantFlag(ctx, 'as-of');
  const outDir = str(ctx.flags, 'out-dir');
  const report = await ctx.calls.unary<ledger.VexReportResponse>('ledger', 'VexReport', {
    hostIds,
    labels,
    asOf: asOf && toTimestamp(asOf),
  });
  const without = report.hostsWithoutStatements.length
    ? `no statement (no CVE with a published fix for their kernel): ${report.hostsWithoutStatements.join(', ')}`
    : '';
  if (!outDir) {
    if (report.documents.length > 1)
      throw new UsageError(
        `${report.documents.length} hosts match: give --out-dir DIR to write one document per host, or one --host`,
      );
    const [doc] = report.documents;
    if (!doc) throw new CliError(without || 'no host matches the selection', ExitCode.NotFound);
    // The document is the answer, with or without --json: a scanner reads it as it is.
    ctx.raw(doc.openvexJson.endsWith('\n') ? doc.openvexJson : `${doc.openvexJson}\n`);
    return ExitCode.Ok;
  }
  mkdirSync(outDir, { recursive: true });
  const written = report.documents.map((d) => {
    const file = join(outDir, `${d.hostId}.openvex.json`);
    writeFileSync(file, d.openvexJson.endsWith('\n') ? d.openvexJson : `${d.openvexJson}\n`);
    return { hostId: d.hostId, file, fixed: d.fixed, affected: d.affected };
  });
  ctx.answer(
    [
      renderTable(
        [
          { header: 'HOST' },
          { header: 'FIXED', align: 'right' },
          { header: 'AFFECTED', align: 'right' },
          { header: 'FILE' },
        ],
        written.map((w) => [w.hostId, String(w.fixed), String(w.affected), w.file]),
      ),
      without,
    ]
      .filter(Boolean)
      .join('\n'),
    () => ({ documents: written, hostsWithoutStatements: report.hostsWithoutStatements }),
  );
  return ExitCode.Ok;
}

export async function ledgerVerify(ctx: CommandContext): Promise<ExitCode> {
  const result = await ctx.calls.unary<ledger.VerifyIntegrityResponse>('ledger', 'VerifyIntegrity', {
    producerId: str(ctx.flags, 'producer') ?? '',
  });
  ctx.answer(integrityDetail(result), () => ctx.view(`${L}.VerifyIntegrityResponse`, result));
  return result.findings.length === 0 ? ExitCode.Ok : ExitCode.OperationFailed;
}
