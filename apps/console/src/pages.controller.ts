// The pages: server-rendered HTML (html.ts), a form per action carrying the session's CSRF token,
// and one small script (assets.ts) for the fleet counts, the time control and the live rollout.
// Buttons are shown by the signed-in person's roles; the services decide what is allowed.
import { Controller, Get, Inject, Param, Post, Req, Res } from '@nestjs/common';
import type { Request, Response } from 'express';
import { ApiError, badRequest } from './api-error';
import { auditFilter, fleetFilter, param, rolloutInput, streamEvents } from './api.controller';
import { CONSOLE_SCRIPT } from './assets';
import { asker } from './auth';
import { CONSOLE_OPTIONS, type ConsoleOptions } from './console-options';
import { exposureOf, ROLLOUT_ACTIONS, type Message, type RolloutAction } from './console-data';
import { html, layout, query, type Html, type PageUser } from './html';
import { localPath, parseChoice, parseCve, parseId, parseInstant } from './instant';
import { timestampToIso } from './plain';
import { clearedCookie, sessionCookie } from './sessions';
import { VERDICT_LABEL, VERDICTS, verdictOf, type HostVerdict } from './verdict';

const iso = (ts: Message) => timestampToIso(ts) ?? '';
const short = (value: string | undefined, prefix: string) =>
  (value ?? '').replace(prefix, '').toLowerCase().replace(/_/g, ' ');
const canAct = (user: PageUser) => user.roles.includes('operator');
const canApprove = (user: PageUser) => user.roles.includes('approver');

function verdictBadge(v: HostVerdict): Html {
  return html`<span class="verdict v-${v.verdict}" data-verdict="${v.verdict}">${VERDICT_LABEL[v.verdict]}</span>`;
}

function patchRef(p: Message): string {
  return p?.patchId ? `${p.patchId} ${p.version}` : '';
}

function stackTable(stack: Message): Html {
  const entries: Message[] = stack?.entries ?? [];
  if (entries.length === 0) return html`<p class="stack-empty">No live patches: the original kernel code runs.</p>`;
  return html`<table class="stack">
      <thead>
        <tr>
          <th>#</th>
          <th>module</th>
          <th>patch</th>
          <th>state</th>
          <th>CVEs</th>
          <th>applied by</th>
          <th>rollout</th>
        </tr>
      </thead>
      <tbody>
        ${entries.map(
          (e) =>
            html`<tr>
              <td>${e.position}</td>
              <td>${e.moduleName}</td>
              <td class="patch">${patchRef(e.patch) || '(not published by rebootless)'}</td>
              <td>
                ${short(e.state, 'STACK_ENTRY_STATE_')}${e.forced ? ' (forced)' : ''}${e.replace ? ' (replace)' : ''}
              </td>
              <td>${(e.cveIds ?? []).join(', ')}</td>
              <td>${e.appliedBy?.id ?? ''}</td>
              <td>${e.rolloutId ? html`<a href="/rollouts/${e.rolloutId}">${e.rolloutId}</a>` : ''}</td>
            </tr>`,
        )}
      </tbody>
    </table>
    <h3>Whose code runs, per function</h3>
    <table class="functions">
      <thead>
        <tr>
          <th>function</th>
          <th>object</th>
          <th>runs</th>
        </tr>
      </thead>
      <tbody>
        ${(stack.functions ?? []).map(
          (f: Message) =>
            html`<tr>
              <td>${f.function?.name}</td>
              <td>${f.function?.object}</td>
              <td>
                ${f.runs?.moduleName ? `${f.runs.moduleName}${f.runs.patch ? ` (${patchRef(f.runs.patch)})` : ''}` : 'original kernel code'}
              </td>
            </tr>`,
        )}
      </tbody>
    </table>`;
}

function waveTable(rollout: Message): Html {
  return html`<div class="rollout-state" data-state="${rollout.state}">
      State:
      <strong>${short(rollout.state, 'ROLLOUT_STATE_')}</strong>
      ${rollout.stateReason ? html` — ${rollout.stateReason}` : ''}
    </div>
    ${(rollout.waves ?? []).map(
      (w: Message) =>
        html`<fieldset class="wave" data-wave="${w.index}" data-state="${w.state}">
          <legend>${w.name}: ${short(w.state, 'WAVE_STATE_')}</legend>
          <table>
            <thead>
              <tr>
                <th>host</th>
                <th>state</th>
                <th>error</th>
                <th>updated</th>
              </tr>
            </thead>
            <tbody>
              ${(w.hosts ?? []).map(
                (h: Message) =>
                  html`<tr data-host="${h.hostId}" data-state="${h.state}">
                    <td><a href="/hosts/${h.hostId}">${h.hostId}</a></td>
                    <td>${short(h.state, 'HOST_ROLLOUT_STATE_')}${h.forced ? ' (forced)' : ''}</td>
                    <td>${h.error}</td>
                    <td>${iso(h.updatedAt)}</td>
                  </tr>`,
              )}
            </tbody>
          </table>
        </fieldset>`,
    )}`;
}

function actionForms(rollout: Message, user: PageUser): Html {
  const state = rollout.state as string;
  const waiting = (rollout.waves ?? []).find((w: Message) => w.state === 'WAVE_STATE_AWAITING_APPROVAL');
  const form = (action: RolloutAction, label: string, extra: Html | string = '') =>
    html`<form class="inline action" method="post" action="/rollouts/${rollout.rolloutId}/${action}">
      <input type="hidden" name="_csrf" value="${user.csrf}" />${extra}<button type="submit" data-action="${action}">
        ${label}
      </button>
    </form>`;
  const buttons: Html[] = [];
  if (canAct(user)) {
    if (state === 'ROLLOUT_STATE_RUNNING') buttons.push(form('pause', 'Pause'));
    if (state === 'ROLLOUT_STATE_PAUSED') buttons.push(form('resume', 'Resume'));
    if (['ROLLOUT_STATE_RUNNING', 'ROLLOUT_STATE_PAUSED', 'ROLLOUT_STATE_AWAITING_APPROVAL'].includes(state))
      buttons.push(form('abort', 'Abort'));
    if (['ROLLOUT_STATE_COMPLETED', 'ROLLOUT_STATE_PAUSED', 'ROLLOUT_STATE_ABORTED'].includes(state))
      buttons.push(form('rollback', 'Roll back'));
  }
  if (canApprove(user) && waiting) {
    buttons.push(
      form(
        'approve',
        `Approve ${waiting.name}`,
        html`<input type="hidden" name="wave_index" value="${waiting.index}" />`,
      ),
    );
  }
  return html`<div class="actions">${buttons}</div>`;
}

/** The audit log around a verdict's evidence (exposure opened, fix applied), narrowed to one event. */
function evidenceQuery(row: Message, eventId: string): string {
  const from = Date.parse(iso(row.exposedSince)) - 1000;
  const to = Date.parse(iso(row.fixedAt) || new Date().toISOString()) + 1000;
  return query({
    event_id: eventId,
    ...(Number.isNaN(from) ? {} : { from: new Date(from).toISOString() }),
    to: new Date(to).toISOString(),
  });
}

function sparkline(series: { at: string; exposed: number }[]): Html {
  const w = 480;
  const h = 80;
  const max = Math.max(1, ...series.map((p) => p.exposed));
  const step = w / Math.max(1, series.length - 1);
  const points = series
    .map((p, i) => `${(i * step).toFixed(1)},${(h - (p.exposed / max) * (h - 4) - 2).toFixed(1)}`)
    .join(' ');
  return html`<svg
      class="chart"
      width="${w}"
      height="${h}"
      viewBox="0 0 ${w} ${h}"
      role="img"
      aria-label="hosts exposed over time, at most ${max}"
    >
      <polyline fill="none" stroke="#c00" stroke-width="2" points="${points}" />
    </svg>
    <div><small>${series[0]?.at ?? ''} … ${series.at(-1)?.at ?? ''}; peak ${max} host(s)</small></div>`;
}

@Controller()
export class PagesController {
  constructor(@Inject(CONSOLE_OPTIONS) private readonly options: ConsoleOptions) {}

  private send(res: Response, title: string, user: PageUser | undefined, body: Html): void {
    res.type('html').send(layout(title, user, body).text);
  }

  @Get('assets/console.js')
  script(@Res() res: Response): void {
    res.type('application/javascript').setHeader('Cache-Control', 'no-cache');
    res.send(CONSOLE_SCRIPT);
  }

  @Get()
  root(@Res() res: Response): void {
    res.redirect(303, '/fleet');
  }

  @Get('signin')
  signInPage(@Req() req: Request, @Res() res: Response): void {
    const next = param(req.query, 'next') ?? '/fleet';
    this.send(
      res,
      'Sign in',
      undefined,
      html`<form method="post" action="/signin">
        <p>Paste your token (<code>node scripts/pki.mjs token --sub NAME --roles operator</code>).</p>
        <input type="hidden" name="next" value="${localPath(next)}" />
        <textarea name="token" rows="4" cols="80" required></textarea><br /><button type="submit">Sign in</button>
      </form>`,
    );
  }

  @Post('signin')
  signIn(@Req() req: Request, @Res() res: Response): void {
    const body = (req.body ?? {}) as Record<string, unknown>;
    const token = typeof body['token'] === 'string' ? body['token'] : '';
    try {
      const session = this.options.sessions.signIn(token);
      res.setHeader('Set-Cookie', sessionCookie(session, this.options.secure));
      const next = localPath(typeof body['next'] === 'string' ? body['next'] : '');
      res.redirect(303, next);
    } catch (error) {
      if (!(error instanceof ApiError)) throw error;
      res.status(error.status);
      this.send(
        res,
        'Sign in',
        undefined,
        html`<p class="error">${error.message}</p>
          <p><a href="/signin">Try again</a></p>`,
      );
    }
  }

  @Post('signout')
  signOut(@Req() req: Request, @Res() res: Response): void {
    const { sessionId } = asker(this.options.sessions, req, { action: true });
    this.options.sessions.signOut(sessionId);
    res.setHeader('Set-Cookie', clearedCookie(this.options.secure));
    res.redirect(303, '/signin');
  }

  @Get('fleet')
  async fleet(@Req() req: Request, @Res() res: Response): Promise<void> {
    const { caller, user } = asker(this.options.sessions, req, { action: false });
    const filter = fleetFilter(req.query);
    const raw = {
      label: param(req.query, 'label'),
      kernel: param(req.query, 'kernel'),
      cve: param(req.query, 'cve'),
      verdict: param(req.query, 'verdict'),
    };
    const page = await this.options.data.fleetPage(caller, filter, param(req.query, 'page_token'));
    const countsQuery = query({ label: raw.label, kernel: raw.kernel, cve: raw.cve });
    this.send(
      res,
      'Fleet',
      user,
      html`<form class="filters" method="get" action="/fleet">
          <label>label <input name="label" value="${raw.label}" placeholder="fleet=demo" /></label>
          <label>kernel <input name="kernel" value="${raw.kernel}" /></label>
          <label>CVE <input name="cve" value="${raw.cve}" placeholder="CVE-2024-1086" /></label>
          <label
            >verdict
            <select name="verdict">
              <option value="">any</option>
              ${VERDICTS.map(
                (v) =>
                  html`<option value="${v}" ${v === raw.verdict ? html`selected` : ''}>${VERDICT_LABEL[v]}</option>`,
              )}
            </select></label
          >
          <button type="submit">Filter</button>
        </form>
        <p class="counts" id="counts" data-src="/api/v1/fleet/counts${countsQuery}">counting hosts…</p>
        <table class="fleet">
          <thead>
            <tr>
              <th>host</th>
              <th>verdict</th>
              <th>kernel</th>
              <th>live patches</th>
              <th>missing</th>
              <th>last seen</th>
            </tr>
          </thead>
          <tbody>
            ${page.rows.map(
              (r) =>
                html`<tr data-host="${r.host.facts?.hostId}">
                  <td><a href="/hosts/${r.host.facts?.hostId}">${r.host.facts?.hostId}</a></td>
                  <td>${verdictBadge(r.verdict)}</td>
                  <td>${r.host.facts?.kernelRelease}</td>
                  <td>
                    ${(r.host.stack?.entries ?? [])
                      .filter((e: Message) => e.state !== 'STACK_ENTRY_STATE_DISABLED')
                      .map((e: Message) => patchRef(e.patch) || e.moduleName)
                      .join(', ')}
                  </td>
                  <td>${r.verdict.missing.map((m) => `${m.patchId} ${m.version}`).join(', ')}</td>
                  <td>${iso(r.host.lastSeenAt)}</td>
                </tr>`,
            )}
          </tbody>
        </table>
        ${page.rows.length === 0 ? html`<p>No host matches.</p>` : ''}
        ${page.nextPageToken ? html`<p><a rel="next" href="/fleet${query({ ...raw, page_token: page.nextPageToken })}">Next page</a></p>` : ''}
        <script src="/assets/console.js" defer></script>`,
    );
  }

  @Get('hosts/:hostId')
  async host(@Req() req: Request, @Res() res: Response, @Param('hostId') rawId: string): Promise<void> {
    const { caller, user } = asker(this.options.sessions, req, { action: false });
    const hostId = parseId('host', rawId);
    const at = parseInstant('at', param(req.query, 'at'));
    const host = await this.options.data.host(caller, hostId);
    const history = await this.options.data.history(caller, hostId);
    const records: Message[] = history.records ?? [];
    const stackAt = at ? await this.options.data.stackAt(caller, hostId, at) : undefined;
    const verdict = verdictOf(host);
    const times = records.map((r) => iso(r.body?.occurredAt)).filter(Boolean);
    const facts = host.facts ?? {};
    this.send(
      res,
      `Host ${hostId}`,
      user,
      html`<p>
          ${verdictBadge(verdict)} ${host.online ? 'online' : 'offline'}; last seen ${iso(host.lastSeenAt)}; enrolled
          ${iso(host.enrolledAt)}
        </p>
        ${
          verdict.reasons.length
            ? html`<ul class="verdict-reasons">
                ${verdict.reasons.map((r) => html`<li>${r}</li>`)}
              </ul>`
            : ''
        }
        <table class="facts">
          <tbody>
            <tr>
              <th>kernel</th>
              <td>${facts.kernelRelease} ${facts.kernelVersion}</td>
            </tr>
            <tr>
              <th>effective kernel</th>
              <td>${host.stack?.effectiveKernel}</td>
            </tr>
            <tr>
              <th>hostname</th>
              <td>${facts.hostname}</td>
            </tr>
            <tr>
              <th>distro</th>
              <td>${facts.distro} ${facts.arch}</td>
            </tr>
            <tr>
              <th>boot id</th>
              <td>${facts.bootId}</td>
            </tr>
            <tr>
              <th>labels</th>
              <td>
                ${Object.entries(facts.labels ?? {})
                  .map(([k, v]) => `${k}=${String(v)}`)
                  .join(', ')}
              </td>
            </tr>
            <tr>
              <th>tainted</th>
              <td>${facts.tainted} ${(facts.taintFlags ?? []).join(' ')}</td>
            </tr>
            <tr>
              <th>reboot required</th>
              <td>${host.rebootRequired ? 'yes (a forced patch)' : 'no'}</td>
            </tr>
          </tbody>
        </table>
        <h2>Patch stack now</h2>
        ${stackTable(host.stack)}
        <h2>Time control: the stack at any instant</h2>
        <form id="time-control" method="get" action="/hosts/${hostId}">
          <input
            type="range"
            id="time-slider"
            min="0"
            max="${Math.max(0, times.length - 1)}"
            value="${Math.max(0, times.length - 1)}"
            data-times="${JSON.stringify(times)}"
          />
          <input name="at" id="at" size="32" value="${at?.toISOString() ?? ''}" placeholder="2026-12-06T04:30:00Z" />
          <button type="submit">Show the stack then</button>
        </form>
        ${
          stackAt
            ? html`<section id="stack-at" data-at="${at!.toISOString()}">
                <h3>As of ${at!.toISOString()}</h3>
                <p>
                  Evidence: ${stackAt.asOf?.summary ?? ''} (${stackAt.asOf?.body?.type ?? ''},
                  ${iso(stackAt.asOf?.body?.occurredAt)})
                </p>
                ${stackTable(stackAt.stack)}
              </section>`
            : ''
        }
        <h2>Timeline and event history</h2>
        <table class="history">
          <thead>
            <tr>
              <th>when</th>
              <th>event</th>
              <th>by</th>
              <th>what</th>
              <th></th>
            </tr>
          </thead>
          <tbody>
            ${records
              .slice()
              .reverse()
              .map(
                (r) =>
                  html`<tr>
                    <td>${iso(r.body?.occurredAt)}</td>
                    <td>${r.body?.type}</td>
                    <td>${r.body?.actor?.id}</td>
                    <td>${r.summary}</td>
                    <td><a href="/hosts/${hostId}?at=${encodeURIComponent(iso(r.body?.occurredAt))}">stack then</a></td>
                  </tr>`,
              )}
          </tbody>
        </table>
        <script src="/assets/console.js" defer></script>`,
    );
  }

  @Get('rollouts')
  async rollouts(@Req() req: Request, @Res() res: Response): Promise<void> {
    const { caller, user } = asker(this.options.sessions, req, { action: false });
    const list = await this.options.data.rollouts(caller, param(req.query, 'page_token') ?? '');
    const patches = canAct(user) ? await this.options.data.patches(caller, false) : [];
    this.send(
      res,
      'Rollouts',
      user,
      html`${
          canAct(user)
            ? html`<form id="new-rollout" method="post" action="/rollouts">
                <fieldset>
                  <legend>New rollout</legend>
                  <input type="hidden" name="_csrf" value="${user.csrf}" />
                  <label
                    >patch
                    <select name="patch">
                      ${patches.map((p: Message) => html`<option value="${p.patchId}@${p.version}">${p.patchId} ${p.version}</option>`)}
                    </select></label
                  >
                  <label>hosts <input name="host_ids" placeholder="web-1,web-2" /></label>
                  <label>labels <input name="labels" placeholder="fleet=demo" /></label>
                  <label
                    ><input type="checkbox" name="approval_before_first_wave" checked /> approval before the first
                    wave</label
                  >
                  <button type="submit" data-action="create">Create</button>
                </fieldset>
              </form>`
            : ''
        }
        <table class="rollouts">
          <thead>
            <tr>
              <th>rollout</th>
              <th>patch</th>
              <th>state</th>
              <th>waves</th>
              <th>created by</th>
              <th>created</th>
            </tr>
          </thead>
          <tbody>
            ${(list.rollouts ?? []).map(
              (r: Message) =>
                html`<tr data-rollout="${r.rolloutId}">
                  <td>
                    <a href="/rollouts/${r.rolloutId}">${r.rolloutId}</a
                    >${r.kind === 'ROLLOUT_KIND_UNDO' ? ' (undo)' : ''}
                  </td>
                  <td>${r.patchId} ${r.version}</td>
                  <td>${short(r.state, 'ROLLOUT_STATE_')}</td>
                  <td>${(r.waves ?? []).length}</td>
                  <td>${r.createdBy?.id}</td>
                  <td>${iso(r.createdAt)}</td>
                </tr>`,
            )}
          </tbody>
        </table>
        ${list.nextPageToken ? html`<p><a rel="next" href="/rollouts?page_token=${list.nextPageToken}">Next page</a></p>` : ''}`,
    );
  }

  @Post('rollouts')
  async createRollout(@Req() req: Request, @Res() res: Response): Promise<void> {
    const { caller } = asker(this.options.sessions, req, { action: true });
    const body = { ...((req.body ?? {}) as Record<string, unknown>) };
    const [patchId, version] = String(body['patch'] ?? '').split('@');
    const input = rolloutInput({
      ...body,
      patch_id: patchId,
      version,
      approval_before_first_wave: body['approval_before_first_wave'] === 'on',
    });
    const rollout = await this.options.data.createRollout(caller, input);
    res.redirect(303, `/rollouts/${rollout.rolloutId}`);
  }

  @Get('rollouts/:rolloutId')
  async rollout(@Req() req: Request, @Res() res: Response, @Param('rolloutId') rawId: string): Promise<void> {
    const { caller, user } = asker(this.options.sessions, req, { action: false });
    const id = parseId('rollout', rawId);
    const rollout = await this.options.data.rollout(caller, id);
    const timeline = await this.options.data.rolloutTimeline(caller, id);
    this.send(
      res,
      `Rollout ${id}`,
      user,
      html`<p>
          ${rollout.kind === 'ROLLOUT_KIND_UNDO' ? 'Undo of ' : 'Patch '}<strong
            >${rollout.patchId} ${rollout.version}</strong
          >, created by ${rollout.createdBy?.id} at ${iso(rollout.createdAt)}
        </p>
        <div id="live" data-src="/rollouts/${id}/live">
          <div id="live-body">${actionForms(rollout, user)}${waveTable(rollout)}</div>
        </div>
        <p id="live-status"></p>
        <h2>Timeline</h2>
        <table class="timeline">
          <tbody>
            ${timeline.map(
              (r: Message) =>
                html`<tr>
                  <td>${iso(r.body?.occurredAt)}</td>
                  <td>${r.body?.type}</td>
                  <td>${r.body?.actor?.id}</td>
                  <td>${r.summary}</td>
                </tr>`,
            )}
          </tbody>
        </table>
        <script src="/assets/console.js" defer></script>`,
    );
  }

  /** The live view's feed: the waves and the allowed actions, rendered again on every change. */
  @Get('rollouts/:rolloutId/live')
  async live(@Req() req: Request, @Res() res: Response, @Param('rolloutId') rawId: string): Promise<void> {
    const { caller, user } = asker(this.options.sessions, req, { action: false });
    const id = parseId('rollout', rawId);
    await this.options.data.rollout(caller, id);
    streamEvents(res, req, (send) =>
      this.options.data.watchRollout(caller, id, (m) =>
        send(
          'rollout',
          JSON.stringify({
            html: html`${actionForms(m.rollout, user)}${waveTable(m.rollout)}`.text,
            event: m.eventType,
          }),
        ),
      ),
    );
  }

  @Post('rollouts/:rolloutId/:action')
  async act(
    @Req() req: Request,
    @Res() res: Response,
    @Param('rolloutId') rawId: string,
    @Param('action') action: string,
  ): Promise<void> {
    const what = parseChoice('action', action, ROLLOUT_ACTIONS) as RolloutAction;
    const { caller } = asker(this.options.sessions, req, { action: true });
    const id = parseId('rollout', rawId);
    const body = (req.body ?? {}) as Record<string, unknown>;
    const wave =
      typeof body['wave_index'] === 'string' && /^\d+$/.test(body['wave_index']) ? Number(body['wave_index']) : 0;
    await this.options.data.act(caller, id, what, {
      reason: `${what} from the console`,
      waveIndex: wave,
      comment: 'approved in the console',
    });
    res.redirect(303, `/rollouts/${id}`);
  }

  @Get('exposure')
  async exposure(@Req() req: Request, @Res() res: Response): Promise<void> {
    const { caller, user } = asker(this.options.sessions, req, { action: false });
    const cve = parseCve('cve', param(req.query, 'cve'));
    const report = await this.options.data.complianceReport(caller, {
      deadlineDays: this.options.data.deadlineDays,
      format: 'json',
    });
    const views = exposureOf(report).filter((e) => !cve || e.cveId === cve);
    this.send(
      res,
      'Exposure',
      user,
      html`<form method="get">
          <label>CVE <input name="cve" value="${cve}" /></label> <button>Show</button>
        </form>
        ${views.length === 0 ? html`<p>No host is or was exposed to a CVE with a published fix.</p>` : ''}
        ${views.map(
          (v) =>
            html`<section class="cve" data-cve="${v.cveId}">
              <h2>${v.cveId}: ${v.exposedNow.length} host(s) exposed now</h2>
              ${sparkline(v.series)}
              <table>
                <thead>
                  <tr>
                    <th>host</th>
                    <th>exposed since</th>
                  </tr>
                </thead>
                <tbody>
                  ${v.exposedNow.map(
                    (h) =>
                      html`<tr>
                        <td><a href="/hosts/${h.hostId}">${h.hostId}</a></td>
                        <td>${h.since}</td>
                      </tr>`,
                  )}
                </tbody>
              </table>
            </section>`,
        )}`,
    );
  }

  @Get('compliance')
  async compliance(@Req() req: Request, @Res() res: Response): Promise<void> {
    const { caller, user } = asker(this.options.sessions, req, { action: false });
    const asOfRaw = param(req.query, 'as_of');
    const asOf = parseInstant('as_of', asOfRaw);
    const report = await this.options.data.complianceReport(caller, {
      ...(asOf ? { asOf } : {}),
      deadlineDays: this.options.data.deadlineDays,
      format: 'json',
    });
    const q = query({ as_of: asOfRaw });
    this.send(
      res,
      'Compliance: PCI-DSS 6.3.3',
      user,
      html`<form method="get">
          <label>as of <input name="as_of" value="${asOfRaw}" placeholder="2026-12-06T04:30:00Z" /></label>
          <button>Report</button> <a href="/api/v1/compliance${query({ as_of: asOfRaw, format: 'csv' })}">CSV</a>
          <a href="/api/v1/compliance${q}">JSON</a>
        </form>
        <p class="summary">
          As of ${iso(report.asOf)}: <strong>${report.hostsCompliant}/${report.hostsInScope}</strong> hosts compliant;
          integrity findings: ${report.integrityFindings}
        </p>
        <table class="compliance">
          <thead>
            <tr>
              <th>host</th>
              <th>CVE</th>
              <th>status</th>
              <th>exposed since</th>
              <th>deadline</th>
              <th>fixed at</th>
              <th>evidence</th>
            </tr>
          </thead>
          <tbody>
            ${(report.hosts ?? []).map(
              (h: Message) =>
                html`<tr data-host="${h.hostId}" data-cve="${h.cveId}" data-status="${h.status}">
                  <td><a href="/hosts/${h.hostId}">${h.hostId}</a></td>
                  <td>${h.cveId}</td>
                  <td>${short(h.status, 'COMPLIANCE_STATUS_')}</td>
                  <td>${iso(h.exposedSince)}</td>
                  <td>${iso(h.deadline)}</td>
                  <td>${iso(h.fixedAt)}</td>
                  <td>
                    ${(h.evidenceEventIds ?? []).map(
                      (e: string) =>
                        html`<a class="evidence" href="/audit${evidenceQuery(h, e)}">${e.slice(0, 13)}…</a> `,
                    )}
                  </td>
                </tr>`,
            )}
          </tbody>
        </table>`,
    );
  }

  @Get('audit')
  async audit(@Req() req: Request, @Res() res: Response): Promise<void> {
    const { caller, user } = asker(this.options.sessions, req, { action: false });
    const { event_id: eventId, ...rest } = req.query as Record<string, unknown>;
    if (eventId !== undefined && (typeof eventId !== 'string' || !/^[0-9a-f-]{36}$/.test(eventId)))
      throw badRequest('event_id is not an event id');
    const filter = auditFilter(rest);
    const records = (
      await this.options.data.audit(caller, { ...filter, limit: eventId ? 5000 : Math.min(filter.limit, 500) })
    ).filter((r: Message) => !eventId || r.body?.eventId === eventId);
    const v = (name: string) => (typeof rest[name] === 'string' ? (rest[name] as string) : '');
    this.send(
      res,
      'Audit log',
      user,
      html`<form method="get" class="filters">
          <label>from <input name="from" value="${v('from')}" /></label
          ><label>to <input name="to" value="${v('to')}" /></label>
          <label>host <input name="host_id" value="${v('host_id')}" /></label
          ><label>actor <input name="actor_id" value="${v('actor_id')}" /></label>
          <label>type <input name="type" value="${v('type')}" placeholder="CallDenied" /></label
          ><label>rollout/build <input name="correlation_id" value="${v('correlation_id')}" /></label>
          <button>Search</button>
        </form>
        <p>${records.length} record(s)</p>
        <table class="audit">
          <thead>
            <tr>
              <th>when</th>
              <th>type</th>
              <th>actor</th>
              <th>stream</th>
              <th>what</th>
              <th>position</th>
            </tr>
          </thead>
          <tbody>
            ${records.map(
              (r: Message) =>
                html`<tr data-type="${r.body?.type}" data-event="${r.body?.eventId}">
                  <td>${iso(r.body?.occurredAt)}</td>
                  <td>${r.body?.type}</td>
                  <td>${r.body?.actor?.id}</td>
                  <td>${r.body?.stream}</td>
                  <td>${r.summary}</td>
                  <td>
                    ${r.position?.producerId} #${r.position?.seq} (p${r.position?.partition}@${r.position?.offset})
                  </td>
                </tr>`,
            )}
          </tbody>
        </table>`,
    );
  }

  @Get('builds')
  async builds(@Req() req: Request, @Res() res: Response): Promise<void> {
    const { caller, user } = asker(this.options.sessions, req, { action: false });
    const [builds, patches] = await Promise.all([
      this.options.data.builds(caller),
      this.options.data.patches(caller, true),
    ]);
    this.send(
      res,
      'Builds and patches',
      user,
      html`<h2>Patches</h2>
        <table class="patches">
          <thead>
            <tr>
              <th>patch</th>
              <th>CVEs</th>
              <th>kernels</th>
              <th>published</th>
              <th>hosts carrying</th>
              <th>status</th>
            </tr>
          </thead>
          <tbody>
            ${patches.map(
              (p: Message) =>
                html`<tr>
                  <td>${p.patchId} ${p.version}</td>
                  <td>${(p.cves ?? []).map((c: Message) => c.id).join(', ')}</td>
                  <td>${(p.artifacts ?? []).map((a: Message) => a.kernelRelease).join(', ')}</td>
                  <td>${iso(p.publishedAt)}</td>
                  <td>${p.hostsCarrying}</td>
                  <td>${p.retracted ? `retracted: ${p.retractionReason}` : 'published'}</td>
                </tr>`,
            )}
          </tbody>
        </table>
        <h2>Builds</h2>
        <table class="builds">
          <thead>
            <tr>
              <th>build</th>
              <th>patch</th>
              <th>state</th>
              <th>per kernel: stage and diagnostics</th>
              <th>by</th>
              <th>submitted</th>
            </tr>
          </thead>
          <tbody>
            ${builds.map(
              (b: Message) =>
                html`<tr>
                  <td>${b.buildId}</td>
                  <td>${b.patchId} ${b.version}</td>
                  <td>${short(b.state, 'BUILD_STATE_')}</td>
                  <td>
                    ${(b.kernels ?? []).map((k: Message) => html`<div>${k.kernelRelease}: ${k.stage} ${short(k.state, 'BUILD_STATE_')} ${(k.diagnostics ?? []).join(' ')}</div>`)}
                  </td>
                  <td>${b.submittedBy?.id}</td>
                  <td>${iso(b.submittedAt)}</td>
                </tr>`,
            )}
          </tbody>
        </table>`,
    );
  }
}
