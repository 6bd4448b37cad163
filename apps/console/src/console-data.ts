// What the pages and the API show, asked of the services as the caller. No state of its own but
// a few seconds' cache of fleet counts: the ledger stays the one source of truth.
import { toTimestamp } from '@rebootless/contracts';
import { badRequest } from './api-error';
import type { Backends, Caller } from './backends';
import { timestampToIso } from './plain';
import { verdictOf, VERDICTS, type HostVerdict, type Verdict } from './verdict';

/* eslint-disable @typescript-eslint/no-explicit-any -- messages as proto-loader hands them out */
export type Message = any;

export interface FleetFilter {
  readonly labels: Record<string, string>;
  readonly kernel: string;
  readonly cve: string;
  readonly verdict?: Verdict;
}

export interface FleetRow {
  readonly host: Message;
  readonly verdict: HostVerdict;
}

export const ROLLOUT_ACTIONS = ['pause', 'resume', 'approve', 'abort', 'rollback'] as const;
export type RolloutAction = (typeof ROLLOUT_ACTIONS)[number];

const ACTION_RPC: Readonly<Record<RolloutAction, string>> = {
  pause: 'PauseRollout',
  resume: 'ResumeRollout',
  approve: 'ApproveRollout',
  abort: 'AbortRollout',
  rollback: 'RollbackRollout',
};

const LEDGER_PAGE = 500;
const COUNTS_TTL_MS = 10_000;

function encodeCursor(ledgerToken: string, skip: number): string {
  return Buffer.from(JSON.stringify({ t: ledgerToken, s: skip })).toString('base64url');
}

function decodeCursor(raw: string | undefined): { t: string; s: number } {
  if (!raw) return { t: '', s: 0 };
  try {
    const value = JSON.parse(Buffer.from(raw, 'base64url').toString('utf8')) as { t?: unknown; s?: unknown };
    if (typeof value.t === 'string' && Number.isInteger(value.s) && (value.s as number) >= 0) {
      return { t: value.t, s: value.s as number };
    }
  } catch {
    // falls through to the error below
  }
  throw badRequest(`page_token "${raw.slice(0, 40)}" is not a page token this console handed out`);
}

export class ConsoleData {
  private readonly counts = new Map<string, { at: number; value: Promise<Record<string, number>> }>();

  constructor(
    private readonly backends: Backends,
    readonly deadlineDays: number,
    readonly pageSize: number,
  ) {}

  async patches(caller: Caller, includeRetracted = true): Promise<Message[]> {
    const out: Message[] = [];
    let pageToken = '';
    do {
      const page = await this.backends.unary<Message>(caller, 'ledger', 'ListPatches', {
        pageSize: 500,
        pageToken,
        includeRetracted,
      });
      out.push(...page.patches);
      pageToken = page.nextPageToken;
    } while (pageToken);
    return out;
  }

  private listHosts(caller: Caller, filter: FleetFilter, pageToken: string, pageSize: number): Promise<Message> {
    return this.backends.unary<Message>(caller, 'ledger', 'ListHosts', {
      pageSize,
      pageToken,
      kernelRelease: filter.kernel,
      labels: filter.labels,
      carriesPatchId: '',
      exposedToCveId: filter.cve,
      // The ledger judges each host (ADR 0019); the console's deadline is the one it judges by.
      verdictDeadlineDays: this.deadlineDays,
    });
  }

  /**
   * One page of the fleet with each host's verdict, as the ledger gives it. The ledger's ListHosts
   * does not filter by verdict, so filtering reads its pages until one page of matches is found;
   * the cursor remembers where in the ledger's page it stopped.
   */
  async fleetPage(
    caller: Caller,
    filter: FleetFilter,
    cursor: string | undefined,
  ): Promise<{ rows: FleetRow[]; nextPageToken: string }> {
    let { t, s } = decodeCursor(cursor);
    const rows: FleetRow[] = [];
    const ledgerPage = filter.verdict ? LEDGER_PAGE : this.pageSize;
    let next: Message | undefined = await this.listHosts(caller, filter, t, ledgerPage);
    for (;;) {
      const page: Message = next ?? (await this.listHosts(caller, filter, t, ledgerPage));
      next = undefined;
      const hosts: Message[] = page.hosts;
      for (let i = s; i < hosts.length; i++) {
        const verdict = verdictOf(hosts[i]);
        if (filter.verdict && verdict.verdict !== filter.verdict) continue;
        rows.push({ host: hosts[i], verdict });
        if (rows.length === this.pageSize) {
          const more = i + 1 < hosts.length || page.nextPageToken;
          return {
            rows,
            nextPageToken: more
              ? encodeCursor(i + 1 < hosts.length ? t : page.nextPageToken, i + 1 < hosts.length ? i + 1 : 0)
              : '',
          };
        }
      }
      if (!page.nextPageToken) return { rows, nextPageToken: '' };
      t = page.nextPageToken;
      s = 0;
    }
  }

  /** Hosts per verdict over the whole filtered fleet; cached briefly, fetched after the first screen. */
  fleetCounts(caller: Caller, filter: FleetFilter): Promise<Record<string, number>> {
    const key = JSON.stringify([filter.labels, filter.kernel, filter.cve]);
    const cached = this.counts.get(key);
    if (cached && Date.now() - cached.at < COUNTS_TTL_MS) return cached.value;
    const value = (async () => {
      const counts: Record<string, number> = { total: 0, ...Object.fromEntries(VERDICTS.map((v) => [v, 0])) };
      let token = '';
      do {
        const page = await this.listHosts(caller, { ...filter }, token, 1000);
        for (const host of page.hosts as Message[]) {
          counts[verdictOf(host).verdict]! += 1;
          counts['total']! += 1;
        }
        token = page.nextPageToken;
      } while (token);
      return counts;
    })();
    this.counts.set(key, { at: Date.now(), value });
    value.catch(() => this.counts.delete(key));
    return value;
  }

  async host(caller: Caller, hostId: string): Promise<Message> {
    return (
      await this.backends.unary<Message>(caller, 'ledger', 'GetHost', {
        hostId,
        verdictDeadlineDays: this.deadlineDays,
      })
    ).host;
  }

  stackAt(caller: Caller, hostId: string, at: Date): Promise<Message> {
    return this.backends.unary<Message>(caller, 'ledger', 'GetHostStackAt', { hostId, at: toTimestamp(at) });
  }

  history(caller: Caller, hostId: string, pageToken = '', pageSize = 200): Promise<Message> {
    return this.backends.unary<Message>(caller, 'ledger', 'GetHostHistory', { hostId, pageSize, pageToken });
  }

  rollouts(caller: Caller, pageToken = ''): Promise<Message> {
    return this.backends.unary<Message>(caller, 'dispatcher', 'ListRollouts', {
      pageSize: 50,
      pageToken,
      states: [],
      patchId: '',
    });
  }

  async rollout(caller: Caller, rolloutId: string): Promise<Message> {
    return (await this.backends.unary<Message>(caller, 'dispatcher', 'GetRollout', { rolloutId })).rollout;
  }

  /** The rollout's events as the ledger tells them (empty until the ledger has seen it). */
  async rolloutTimeline(caller: Caller, rolloutId: string): Promise<Message[]> {
    try {
      return (await this.backends.unary<Message>(caller, 'ledger', 'GetRollout', { rolloutId })).timeline;
    } catch (error) {
      if ((error as { code?: string }).code === 'NOT_FOUND') return [];
      throw error;
    }
  }

  watchRollout(
    caller: Caller,
    rolloutId: string,
    onUpdate: (m: Message) => void,
  ): { done: Promise<void>; cancel: () => void } {
    return this.backends.stream<Message>(caller, 'dispatcher', 'WatchRollout', { rolloutId }, (m) => {
      onUpdate(m);
    });
  }

  async act(
    caller: Caller,
    rolloutId: string,
    action: RolloutAction,
    input: { reason?: string; waveIndex?: number; comment?: string },
  ): Promise<Message> {
    const request =
      action === 'approve'
        ? { rolloutId, waveIndex: input.waveIndex ?? 0, comment: input.comment ?? '' }
        : action === 'resume'
          ? { rolloutId }
          : { rolloutId, reason: input.reason ?? '' };
    return (await this.backends.unary<Message>(caller, 'dispatcher', ACTION_RPC[action], request)).rollout;
  }

  async createRollout(caller: Caller, input: CreateRolloutInput): Promise<Message> {
    const response = await this.backends.unary<Message>(caller, 'dispatcher', 'CreateRollout', {
      patchId: input.patchId,
      version: input.version,
      selector: { kernelReleases: input.kernelReleases, labels: input.labels, hostIds: input.hostIds },
      strategy: {
        canaryHostIds: [],
        canaryCount: 0,
        waves: [],
        maxInFlight: 0,
        soakSeconds: input.soakSeconds,
        waveFailureBudget: 0,
        totalFailureBudget: 0,
        approvalBeforeFirstWave: input.approvalBeforeFirstWave,
        approvalBetweenWaves: false,
        onFailure: 'FAILURE_POLICY_PAUSE',
        applyTimeoutSeconds: 0,
        offlineDeadlineSeconds: 0,
      },
      allowForce: false,
      allowDowngrade: false,
      dryRun: false,
    });
    return response.rollout;
  }

  complianceReport(
    caller: Caller,
    input: { asOf?: Date; deadlineDays: number; format: 'json' | 'csv' },
  ): Promise<Message> {
    return this.backends.unary<Message>(caller, 'ledger', 'ComplianceReport', {
      ...(input.asOf ? { asOf: toTimestamp(input.asOf) } : {}),
      minSeverity: 'SEVERITY_UNSPECIFIED',
      deadlineDays: input.deadlineDays,
      format: input.format === 'csv' ? 'REPORT_FORMAT_CSV' : 'REPORT_FORMAT_JSON',
      exemptHostIds: [],
    });
  }

  audit(caller: Caller, filter: AuditFilter): Promise<Message[]> {
    return this.backends
      .collect<Message>(
        caller,
        'ledger',
        'QueryAudit',
        {
          ...(filter.from ? { from: toTimestamp(filter.from) } : {}),
          ...(filter.to ? { to: toTimestamp(filter.to) } : {}),
          hostId: filter.hostId,
          actorId: filter.actorId,
          types: filter.types,
          correlationId: filter.correlationId,
          producerId: '',
          includeEnvelopes: false,
        },
        filter.limit,
      )
      .then((messages) => messages.map((m) => m.record));
  }

  async builds(caller: Caller): Promise<Message[]> {
    return (
      await this.backends.unary<Message>(caller, 'builder', 'ListBuilds', {
        pageSize: 200,
        pageToken: '',
        patchId: '',
        states: [],
      })
    ).builds;
  }

  async build(caller: Caller, buildId: string): Promise<Message> {
    return (await this.backends.unary<Message>(caller, 'builder', 'GetBuild', { buildId })).build;
  }
}

export interface CreateRolloutInput {
  readonly patchId: string;
  readonly version: string;
  readonly hostIds: string[];
  readonly labels: Record<string, string>;
  readonly kernelReleases: string[];
  readonly approvalBeforeFirstWave: boolean;
  readonly soakSeconds: number;
}

export interface AuditFilter {
  readonly from?: Date;
  readonly to?: Date;
  readonly hostId: string;
  readonly actorId: string;
  readonly types: string[];
  readonly correlationId: string;
  readonly limit: number;
}

/** Per CVE: hosts exposed and since when, and how many were exposed at each instant. */
export function exposureOf(report: Message, points = 24, now = new Date()): ExposureView[] {
  const byCve = new Map<string, Message[]>();
  for (const row of report.hosts as Message[]) {
    if (row.status === 'COMPLIANCE_STATUS_EXEMPT') continue;
    byCve.set(row.cveId, [...(byCve.get(row.cveId) ?? []), row]);
  }
  return [...byCve.entries()].map(([cveId, rows]) => {
    const spans = rows
      .map((r) => ({
        hostId: r.hostId as string,
        since: timestampToIso(r.exposedSince),
        until: timestampToIso(r.fixedAt),
      }))
      .filter((s): s is { hostId: string; since: string; until: string | undefined } => s.since !== undefined);
    const start = Math.min(...spans.map((s) => Date.parse(s.since)), now.getTime());
    const step = Math.max(1, (now.getTime() - start) / Math.max(1, points - 1));
    const series = Array.from({ length: points }, (_, i) => {
      const t = start + i * step;
      return {
        at: new Date(t).toISOString(),
        exposed: spans.filter((s) => Date.parse(s.since) <= t && (!s.until || Date.parse(s.until) > t)).length,
      };
    });
    return {
      cveId,
      exposedNow: spans.filter((s) => !s.until).map((s) => ({ hostId: s.hostId, since: s.since })),
      series,
    };
  });
}

export interface ExposureView {
  readonly cveId: string;
  readonly exposedNow: { hostId: string; since: string }[];
  readonly series: { at: string; exposed: number }[];
}
