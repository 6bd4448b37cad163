// The HTTP/JSON API under /api/v1: the pages' data and actions for tools that do not speak gRPC,
// described by openapi.ts (served at /api/v1/openapi.json). Errors: api-error.ts.
import { Controller, Delete, Get, HttpCode, Inject, Param, Post, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { badRequest } from './api-error';
import { asker } from './auth';
import { CONSOLE_OPTIONS, type ConsoleOptions } from './console-options';
import { exposureOf, ROLLOUT_ACTIONS, type ConsoleData, type FleetFilter, type RolloutAction } from './console-data';
import { parseChoice, parseCve, parseId, parseInstant, parseKernel, parseLabels } from './instant';
import { openApiDocument } from './openapi';
import { plain } from './plain';
import { clearedCookie, sessionCookie } from './sessions';
import { VERDICTS } from './verdict';

type Query = Record<string, unknown>;

/** One query parameter as a string; repeated or nested parameters are malformed. */
export function param(query: Query, name: string): string | undefined {
  const value = query[name];
  if (value === undefined) return undefined;
  if (typeof value !== 'string') throw badRequest(`${name} must be given once, as a plain value`);
  return value;
}

export function fleetFilter(query: Query): FleetFilter {
  const verdict = parseChoice('verdict', param(query, 'verdict'), VERDICTS);
  return {
    labels: parseLabels('label', param(query, 'label')),
    kernel: parseKernel('kernel', param(query, 'kernel')),
    cve: parseCve('cve', param(query, 'cve')),
    ...(verdict ? { verdict } : {}),
  };
}

function positiveInt(name: string, raw: string | undefined, fallback: number, max: number, min = 1): number {
  if (raw === undefined || raw === '') return fallback;
  if (!/^\d+$/.test(raw) || Number(raw) < min || Number(raw) > max) {
    throw badRequest(`${name} "${raw}" is not a whole number from ${min} to ${max}`);
  }
  return Number(raw);
}

export function rolloutInput(body: Record<string, unknown>) {
  const str = (name: string): string => {
    const v = body[name];
    if (v === undefined || v === null) return '';
    if (typeof v !== 'string') throw badRequest(`${name} must be a string`);
    return v.trim();
  };
  const list = (name: string): string[] => {
    const v = body[name];
    if (v === undefined || v === '') return [];
    if (typeof v === 'string')
      return v
        .split(',')
        .map((s) => s.trim())
        .filter(Boolean);
    if (Array.isArray(v) && v.every((s) => typeof s === 'string')) return v as string[];
    throw badRequest(`${name} must be a list of strings (or one comma-separated string)`);
  };
  const patchId = str('patch_id');
  const version = str('version');
  if (!patchId) throw badRequest('patch_id is required');
  if (!version) throw badRequest('version is required');
  const labels =
    typeof body['labels'] === 'object' && body['labels'] !== null
      ? (body['labels'] as Record<string, string>)
      : parseLabels('labels', str('labels'));
  const hostIds = list('host_ids').map((h) => parseId('host_ids', h));
  const kernelReleases = list('kernel_releases').map((k) => parseKernel('kernel_releases', k));
  if (hostIds.length === 0 && Object.keys(labels).length === 0 && kernelReleases.length === 0) {
    throw badRequest(
      'name the hosts: host_ids, labels or kernel_releases (a rollout never targets the whole fleet by omission)',
    );
  }
  const approval = body['approval_before_first_wave'];
  const soak = body['soak_seconds'];
  return {
    patchId,
    version,
    hostIds,
    labels,
    kernelReleases,
    approvalBeforeFirstWave:
      approval === undefined ? true : approval === true || approval === 'on' || approval === 'true',
    soakSeconds: soak === undefined || soak === '' ? 0 : positiveInt('soak_seconds', String(soak), 0, 86_400, 0),
  };
}

@Controller('api/v1')
export class ApiController {
  constructor(@Inject(CONSOLE_OPTIONS) private readonly options: ConsoleOptions) {}

  private get data(): ConsoleData {
    return this.options.data;
  }

  @Get('openapi.json')
  openapi(): unknown {
    return openApiDocument();
  }

  @Post('session')
  @HttpCode(201)
  signIn(@Req() req: Request, @Res({ passthrough: true }) res: Response): unknown {
    const token = (req.body as Record<string, unknown> | undefined)?.['token'];
    if (typeof token !== 'string' || token.trim() === '')
      throw badRequest('token is required: an operator token from node scripts/pki.mjs token');
    const session = this.options.sessions.signIn(token);
    res.setHeader('Set-Cookie', sessionCookie(session, this.options.secure));
    return {
      subject: session.subject,
      roles: session.roles,
      expires_at: session.expiresAt.toISOString(),
      csrf_token: session.csrf,
    };
  }

  @Get('session')
  whoAmI(@Req() req: Request): unknown {
    const { user } = asker(this.options.sessions, req, { action: false });
    return { subject: user.subject, roles: user.roles, csrf_token: user.csrf || undefined };
  }

  @Delete('session')
  @HttpCode(204)
  signOut(@Req() req: Request, @Res({ passthrough: true }) res: Response): void {
    const { sessionId } = asker(this.options.sessions, req, { action: true });
    this.options.sessions.signOut(sessionId);
    res.setHeader('Set-Cookie', clearedCookie(this.options.secure));
  }

  @Get('hosts')
  async hosts(@Req() req: Request): Promise<unknown> {
    const { caller } = asker(this.options.sessions, req, { action: false });
    const page = await this.data.fleetPage(caller, fleetFilter(req.query), param(req.query, 'page_token'));
    return {
      hosts: page.rows.map((r) => ({
        host_id: r.host.facts?.hostId,
        verdict: r.verdict.verdict,
        verdict_reasons: r.verdict.reasons,
        missing: plain(r.verdict.missing),
        host: plain(r.host),
      })),
      next_page_token: page.nextPageToken,
    };
  }

  @Get('fleet/counts')
  async counts(@Req() req: Request): Promise<unknown> {
    const { caller } = asker(this.options.sessions, req, { action: false });
    return this.data.fleetCounts(caller, fleetFilter(req.query));
  }

  @Get('hosts/:hostId')
  async host(@Req() req: Request, @Param('hostId') hostId: string): Promise<unknown> {
    const { caller } = asker(this.options.sessions, req, { action: false });
    return plain(await this.data.host(caller, parseId('hostId', hostId)));
  }

  @Get('hosts/:hostId/stack')
  async stack(@Req() req: Request, @Param('hostId') hostId: string): Promise<unknown> {
    const { caller } = asker(this.options.sessions, req, { action: false });
    const at = parseInstant('at', param(req.query, 'at')) ?? new Date();
    return plain(await this.data.stackAt(caller, parseId('hostId', hostId), at));
  }

  @Get('hosts/:hostId/history')
  async history(@Req() req: Request, @Param('hostId') hostId: string): Promise<unknown> {
    const { caller } = asker(this.options.sessions, req, { action: false });
    const id = parseId('hostId', hostId);
    await this.data.host(caller, id); // 404 for a host the ledger does not know
    return plain(await this.data.history(caller, id, param(req.query, 'page_token') ?? ''));
  }

  @Get('rollouts')
  async rollouts(@Req() req: Request): Promise<unknown> {
    const { caller } = asker(this.options.sessions, req, { action: false });
    return plain(await this.data.rollouts(caller, param(req.query, 'page_token') ?? ''));
  }

  @Post('rollouts')
  @HttpCode(201)
  async create(@Req() req: Request): Promise<unknown> {
    const { caller } = asker(this.options.sessions, req, { action: true });
    return plain(await this.data.createRollout(caller, rolloutInput((req.body ?? {}) as Record<string, unknown>)));
  }

  @Get('rollouts/:rolloutId')
  async rollout(@Req() req: Request, @Param('rolloutId') rolloutId: string): Promise<unknown> {
    const { caller } = asker(this.options.sessions, req, { action: false });
    const id = parseId('rolloutId', rolloutId);
    const rollout = await this.data.rollout(caller, id);
    return plain({ rollout, timeline: await this.data.rolloutTimeline(caller, id) });
  }

  /** Server-Sent Events: one `rollout` event per change, as the dispatcher tells it. */
  @Get('rollouts/:rolloutId/events')
  async events(@Req() req: Request, @Res() res: Response, @Param('rolloutId') rolloutId: string): Promise<void> {
    const { caller } = asker(this.options.sessions, req, { action: false });
    const id = parseId('rolloutId', rolloutId);
    await this.data.rollout(caller, id); // the errors (404, 403) before the stream starts
    streamEvents(res, req, (send) =>
      this.data.watchRollout(caller, id, (m) => send('rollout', JSON.stringify(plain(m)))),
    );
  }

  @Post('rollouts/:rolloutId/:action')
  async act(
    @Req() req: Request,
    @Param('rolloutId') rolloutId: string,
    @Param('action') action: string,
  ): Promise<unknown> {
    const what = parseChoice('action', action, ROLLOUT_ACTIONS) as RolloutAction;
    const { caller } = asker(this.options.sessions, req, { action: true });
    const body = (req.body ?? {}) as Record<string, unknown>;
    const wave = body['wave_index'];
    return plain(
      await this.data.act(caller, parseId('rolloutId', rolloutId), what, {
        reason: typeof body['reason'] === 'string' ? body['reason'] : '',
        comment: typeof body['comment'] === 'string' ? body['comment'] : '',
        waveIndex: wave === undefined || wave === '' ? 0 : positiveInt('wave_index', String(wave), 0, 1000, 0),
      }),
    );
  }

  @Get('exposure')
  async exposure(@Req() req: Request): Promise<unknown> {
    const { caller } = asker(this.options.sessions, req, { action: false });
    const cve = parseCve('cve', param(req.query, 'cve'));
    const report = await this.data.complianceReport(caller, { deadlineDays: this.data.deadlineDays, format: 'json' });
    return { cves: exposureOf(report).filter((e) => !cve || e.cveId === cve) };
  }

  @Get('compliance')
  async compliance(@Req() req: Request, @Res() res: Response): Promise<void> {
    const { caller } = asker(this.options.sessions, req, { action: false });
    const asOf = parseInstant('as_of', param(req.query, 'as_of'));
    const format = parseChoice('format', param(req.query, 'format'), ['json', 'csv'] as const) ?? 'json';
    const deadlineDays = positiveInt('deadline_days', param(req.query, 'deadline_days'), this.data.deadlineDays, 365);
    const report = await this.data.complianceReport(caller, { ...(asOf ? { asOf } : {}), deadlineDays, format });
    if (format === 'csv') {
      res.type('text/csv').setHeader('Content-Disposition', 'attachment; filename="pci-dss-6.3.3.csv"');
      res.send(report.rendered);
    } else {
      // `rendered` repeats the structured fields as text: the JSON keeps only the fields.
      res.json(plain({ ...report, rendered: undefined }));
    }
  }

  @Get('audit')
  async audit(@Req() req: Request): Promise<unknown> {
    const { caller } = asker(this.options.sessions, req, { action: false });
    return { records: plain(await this.data.audit(caller, auditFilter(req.query))) };
  }

  @Get('patches')
  async patches(@Req() req: Request): Promise<unknown> {
    const { caller } = asker(this.options.sessions, req, { action: false });
    return { patches: plain(await this.data.patches(caller, true)) };
  }

  @Get('builds')
  async builds(@Req() req: Request): Promise<unknown> {
    const { caller } = asker(this.options.sessions, req, { action: false });
    return { builds: plain(await this.data.builds(caller)) };
  }

  @Get('builds/:buildId')
  async build(@Req() req: Request, @Param('buildId') buildId: string): Promise<unknown> {
    const { caller } = asker(this.options.sessions, req, { action: false });
    return plain(await this.data.build(caller, parseId('buildId', buildId)));
  }
}

const EVENT_TYPE = /^[A-Z][A-Za-z]{1,63}$/;

export function auditFilter(query: Query) {
  const type = param(query, 'type');
  const types = type ? type.split(',').map((t) => t.trim()) : [];
  for (const t of types)
    if (!EVENT_TYPE.test(t)) throw badRequest(`type "${t}" is not an event type name, e.g. PatchApplied`);
  const hostId = param(query, 'host_id');
  const actorId = param(query, 'actor_id');
  const correlationId = param(query, 'correlation_id');
  const from = parseInstant('from', param(query, 'from'));
  const to = parseInstant('to', param(query, 'to'));
  if (from && to && from > to) throw badRequest('from is after to');
  return {
    ...(from ? { from } : {}),
    ...(to ? { to } : {}),
    hostId: hostId ? parseId('host_id', hostId) : '',
    actorId: actorId ? parseId('actor_id', actorId) : '',
    correlationId: correlationId ? parseId('correlation_id', correlationId) : '',
    types,
    limit: positiveInt('limit', param(query, 'limit'), 500, 5000),
  };
}

/** Holds an SSE response open while `open` streams into it; ends the stream when the viewer leaves. */
export function streamEvents(
  res: Response,
  req: Request,
  open: (send: (event: string, data: string) => void) => { done: Promise<void>; cancel: () => void },
): void {
  res.status(200);
  res.setHeader('Content-Type', 'text/event-stream');
  res.setHeader('Cache-Control', 'no-store');
  res.setHeader('X-Accel-Buffering', 'no');
  res.flushHeaders();
  const send = (event: string, data: string) =>
    res.write(`event: ${event}\ndata: ${data.replace(/\n/g, '\ndata: ')}\n\n`);
  const stream = open(send);
  const keepAlive = setInterval(() => res.write(': keep-alive\n\n'), 15_000);
  req.on('close', () => stream.cancel());
  stream.done
    // "end" tells the page the stream is over (the rollout ended): EventSource must not reconnect.
    .then(() => send('end', '{}'))
    .catch((error: Error) => send('failed', JSON.stringify({ message: error.message })))
    .finally(() => {
      clearInterval(keepAlive);
      res.end();
    });
}
