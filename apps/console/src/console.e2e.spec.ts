// The console as people use it: `npm start`'s stack (scripts/stack.mjs up: Kafka topic, the four
// services, the console over HTTPS, a demo fleet and the story told on it) as real processes, and
// Debian's chromium driven by playwright-core signing in as an operator, an approver and an
// auditor. Then the API's bad input, its OpenAPI document validated, and every documented route
// called. Build first (`npm run build`). Screenshots: apps/console/test-artifacts/.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, X509Certificate } from 'node:crypto';
import * as fs from 'node:fs';
import * as https from 'node:https';
import * as os from 'node:os';
import * as path from 'node:path';
import SwaggerParser from '@apidevtools/swagger-parser';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { credentialPaths, mintToken, readTokenPrivateKey, type Role } from '@rebootless/trust';
import { freePort, freshEventsTopic, REPO_ROOT } from '@rebootless/testing';

jest.setTimeout(15 * 60_000);

const ARTIFACTS = path.join(REPO_ROOT, 'apps', 'console', 'test-artifacts');
const CHROMIUM = process.env['CHROMIUM_PATH'] ?? '/usr/bin/chromium';

let dir: string;
let stack: ChildProcess | undefined;
let stderr = '';
// eslint-disable-next-line @typescript-eslint/no-explicit-any
let result: any;
let url: string;
let pki: string;
let ca: Buffer;
let browser: Browser;
const contexts: BrowserContext[] = [];

function token(sub: string, roles: Role[], ttlSeconds = 3600, nowMs = Date.now()): string {
  return mintToken(readTokenPrivateKey(pki), { sub, roles, ttlSeconds }, nowMs);
}

interface Reply {
  status: number;
  type: string;
  text: string;
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  json: any;
}

/** One HTTPS request that trusts only the stack's CA. */
function call(
  method: string,
  route: string,
  opts: { token?: string; cookie?: string; csrf?: string; body?: unknown; firstChunkOnly?: boolean } = {},
): Promise<Reply> {
  const headers: Record<string, string> = {};
  if (opts.token) headers['authorization'] = `Bearer ${opts.token}`;
  if (opts.cookie) headers['cookie'] = opts.cookie;
  if (opts.csrf) headers['x-csrf-token'] = opts.csrf;
  const body = opts.body === undefined ? undefined : JSON.stringify(opts.body);
  if (body) headers['content-type'] = 'application/json';
  return new Promise((resolve, reject) => {
    const req = https.request(`${url}${route}`, { method, headers, ca, servername: 'localhost' }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      const done = () => {
        let json: unknown;
        try {
          json = JSON.parse(text);
        } catch {
          json = undefined;
        }
        resolve({ status: res.statusCode ?? 0, type: String(res.headers['content-type'] ?? ''), text, json });
      };
      res.on('data', (chunk: string) => {
        text += chunk;
        if (opts.firstChunkOnly && text.includes('\n\n')) {
          req.destroy();
          done();
        }
      });
      res.on('end', done);
    });
    req.on('error', (error) => (opts.firstChunkOnly ? undefined : reject(error)));
    if (body) req.write(body);
    req.end();
  });
}

function expectError(reply: Reply, status: number): void {
  expect(reply.status).toBe(status);
  expect(reply.type).toMatch(/application\/json/);
  expect(reply.json).toEqual({ error: { status, code: expect.any(String), message: expect.any(String) } });
  expect(reply.text).not.toMatch(/\n\s+at |\.ts:\d+|node_modules/);
}

async function signedIn(sub: string, roles: Role[]): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
  contexts.push(context);
  const page = await context.newPage();
  await page.goto(`${url}/fleet`);
  expect(new URL(page.url()).pathname).toBe('/signin');
  await page.fill('textarea[name=token]', token(sub, roles));
  await Promise.all([page.waitForURL(/\/fleet/), page.click('button[type=submit]')]);
  return page;
}

async function shot(page: Page, name: string): Promise<void> {
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  process.stdout.write(`console e2e: screenshot ${file}\n`);
}

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 120_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what} did not happen within ${timeoutMs / 1000} s`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

beforeAll(async () => {
  fs.mkdirSync(ARTIFACTS, { recursive: true });
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-console-e2e-'));
  const ports = [await freePort(), await freePort(), await freePort(), await freePort(), await freePort()];
  const topic = await freshEventsTopic('console', 6);
  const inherited = Object.fromEntries(
    Object.entries(process.env).filter(
      ([key]) => !/^(BUILDER|DISPATCHER|LEDGER|AGENT|CONSOLE)_/.test(key) && !key.startsWith('REBOOTLESS_'),
    ),
  );
  stack = spawn(process.execPath, [path.join(REPO_ROOT, 'scripts', 'stack.mjs'), 'up', '--agents', '6', '--json'], {
    cwd: REPO_ROOT,
    env: {
      ...inherited,
      REBOOTLESS_STACK_DIR: path.join(dir, 'data'),
      EVENTS_TOPIC: topic,
      EVENTS_TOPIC_PARTITIONS: '6',
      BUILDER_GRPC_PORT: String(ports[0]),
      DISPATCHER_GRPC_PORT: String(ports[1]),
      LEDGER_GRPC_PORT: String(ports[2]),
      AGENT_GRPC_PORT: String(ports[3]),
      CONSOLE_HTTP_PORT: String(ports[4]),
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  stack.stdout!.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  stack.stderr!.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const deadline = Date.now() + 12 * 60_000;
  while (!stdout.includes('\n')) {
    if (stack.exitCode !== null) throw new Error(`the stack exited (${stack.exitCode}):\n${stderr}`);
    if (Date.now() > deadline) throw new Error(`no story within 12 minutes:\n${stderr}`);
    await new Promise((r) => setTimeout(r, 250));
  }
  result = JSON.parse(stdout.split('\n')[0]!);
  url = `https://localhost:${ports[4]}`;
  pki = path.join(dir, 'data', 'pki');
  ca = fs.readFileSync(path.join(pki, 'ca.crt'));
  // Chromium trusts exactly the console's certificate (its key pinned), nothing else unverified.
  const cert = new X509Certificate(fs.readFileSync(credentialPaths(pki, { kind: 'service', id: 'console' }).cert));
  const spki = createHash('sha256')
    .update(cert.publicKey.export({ type: 'spki', format: 'der' }))
    .digest('base64');
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      `--ignore-certificate-errors-spki-list=${spki}`,
    ],
  });
});

afterAll(async () => {
  for (const context of contexts) await context.close().catch(() => undefined);
  await browser?.close();
  if (stack && stack.exitCode === null) {
    stack.kill('SIGINT');
    await new Promise((r) => stack!.once('exit', r));
  }
  if (dir) {
    const logs = path.join(dir, 'data', 'logs');
    if (fs.existsSync(logs)) fs.cpSync(logs, path.join(ARTIFACTS, 'logs'), { recursive: true });
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

describe('the console in a browser', () => {
  it('prints its address when the stack starts and serves HTTPS only with the stack certificate', () => {
    expect(result.console.url).toMatch(/^https:\/\/127\.0\.0\.1:\d+$/);
    expect(result.story.rollout.state).toBe('completed');
  });

  it('signs an operator in and the fleet page shows each host its verdict after the rollout', async () => {
    const page = await signedIn('alice', ['operator']);
    await page.goto(`${url}/fleet?label=fleet%3Ddemo`);
    const verdicts = await page.$$eval('table.fleet tbody tr', (rows) =>
      Object.fromEntries(
        rows.map((r) => [r.getAttribute('data-host'), r.querySelector('[data-verdict]')?.getAttribute('data-verdict')]),
      ),
    );
    const { stall_host: stall, undo_host: undone } = result.story;
    expect(Object.keys(verdicts)).toHaveLength(result.story.hosts);
    for (const [host, verdict] of Object.entries(verdicts)) {
      expect([host, verdict]).toEqual([host, host === stall || host === undone ? 'patch-missing' : 'up-to-date']);
    }
    await page.waitForSelector('#counts [data-count=total]');
    expect(await page.textContent('#counts [data-count=patch-missing]')).toBe('2 patch missing');
    await shot(page, 'fleet');
    await page.goto(`${url}/fleet?verdict=patch-missing`);
    const missing = await page.$$eval('table.fleet tbody tr', (rows) =>
      rows.map((r) => r.getAttribute('data-host')).sort(),
    );
    expect(missing).toEqual([result.story.stall_host, result.story.undo_host].sort());
  });

  it("the host page's time control shows the stack before and after the patch", async () => {
    const page = await signedIn('alice', ['auditor']);
    const host = result.story.undo_host;
    const history = await call('GET', `/api/v1/hosts/${host}/history`, { token: token('alice', ['auditor']) });
    const applied = history.json.records.find((r: { body: { type: string } }) => r.body.type === 'PatchApplied');
    const first = history.json.records[0];
    expect(applied).toBeDefined();
    await page.goto(`${url}/hosts/${host}`);
    await page.fill('#at', first.body.occurredAt);
    await Promise.all([page.waitForURL(/at=/), page.click('#time-control button')]);
    expect(await page.textContent('#stack-at')).toContain('No live patches');
    await page.fill('#at', applied.body.occurredAt);
    await Promise.all([
      page.waitForURL(new RegExp(encodeURIComponent(applied.body.occurredAt))),
      page.click('#time-control button'),
    ]);
    const after = await page.textContent('#stack-at table.stack');
    expect(after).toContain(`${result.story.patch.patchId} ${result.story.patch.version}`);
    expect(await page.textContent('#stack-at table.functions')).toContain('cmdline_proc_show');
    // And now, after the undo: nothing again.
    expect(await page.textContent('h2 + p.stack-empty, h2 + table.stack')).toContain('No live patches');
    await shot(page, 'host-time-control');
  });

  it("a rollout's live view changes while it runs, and an approver other than its creator approves it", async () => {
    const alice = await signedIn('alice', ['operator']);
    await alice.goto(`${url}/rollouts`);
    await shot(alice, 'rollouts');
    const { patchId, version } = result.story.patch;
    await alice.selectOption('select[name=patch]', `${patchId}@${version}`);
    await alice.fill('input[name=host_ids]', result.story.undo_host);
    await Promise.all([alice.waitForURL(/\/rollouts\/[^/]+$/), alice.click('button[data-action=create]')]);
    const rolloutId = alice.url().split('/').pop()!;
    await alice.waitForSelector('#live[data-updates]');
    expect(await alice.getAttribute('.rollout-state', 'data-state')).toBe('ROLLOUT_STATE_AWAITING_APPROVAL');
    // The creator holds no approver role: no approve button for her.
    expect(await alice.$('button[data-action=approve]')).toBeNull();
    await shot(alice, 'rollout-awaiting-approval');

    const bob = await signedIn('bob', ['approver']);
    await bob.goto(`${url}/rollouts/${rolloutId}`);
    await Promise.all([
      bob.waitForURL(new RegExp(`/rollouts/${rolloutId}$`)),
      bob.click('button[data-action=approve]'),
    ]);

    // Alice's page was not reloaded: the live view follows the rollout to its end.
    const navigations: string[] = [];
    alice.on('framenavigated', (f) => navigations.push(f.url()));
    await alice.waitForSelector('.rollout-state[data-state=ROLLOUT_STATE_COMPLETED]', { timeout: 180_000 });
    expect(navigations).toEqual([]);
    // The feed says when the rollout is over, and the page stops listening rather than reconnecting.
    await alice.waitForSelector('#live-status:has-text("the rollout has ended")');
    expect(await alice.getAttribute(`tr[data-host="${result.story.undo_host}"]`, 'data-state')).toBe(
      'HOST_ROLLOUT_STATE_SUCCEEDED',
    );
    expect(Number(await alice.getAttribute('#live', 'data-updates'))).toBeGreaterThan(2);
    await shot(alice, 'rollout-live-completed');

    const detail = await until('the ledger tells the approval', async () => {
      const r = await call('GET', `/api/v1/rollouts/${rolloutId}`, { token: token('carol', ['auditor']) });
      return r.json.timeline?.some((e: { body: { type: string } }) => e.body.type === 'RolloutApproved')
        ? r.json
        : undefined;
    });
    expect(detail.rollout.createdBy.id).toBe('alice');
    const approved = detail.timeline.find((e: { body: { type: string } }) => e.body.type === 'RolloutApproved');
    expect(approved.body.actor.id).toBe('bob');
    result.consoleRollout = rolloutId;
  });

  it("an auditor's pages offer no action, and a forged action from them is refused and audited", async () => {
    const carol = await signedIn('carol', ['auditor']);
    await carol.goto(`${url}/rollouts`);
    expect(await carol.$('#new-rollout')).toBeNull();
    await carol.goto(`${url}/rollouts/${result.story.rollout.rolloutId}`);
    expect(await carol.$$('form.action button')).toHaveLength(0);
    await shot(carol, 'rollout-as-auditor');
    // Forged from the auditor's own page, with her session and its CSRF token: the dispatcher refuses.
    const forged = await carol.evaluate(async (rolloutId) => {
      const csrf = document.querySelector('meta[name=csrf-token]')!.getAttribute('content')!;
      const r = await fetch(`/api/v1/rollouts/${rolloutId}/rollback`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-csrf-token': csrf },
        body: JSON.stringify({ reason: 'forged' }),
      });
      return { status: r.status, body: await r.json() };
    }, result.story.rollout.rolloutId);
    expect(forged).toEqual({
      status: 403,
      body: { error: { status: 403, code: 'FORBIDDEN', message: expect.stringContaining('carol') } },
    });
    // Without the CSRF token the console itself refuses, before any service is asked.
    const noCsrf = await carol.evaluate(async (rolloutId) => {
      const r = await fetch(`/api/v1/rollouts/${rolloutId}/pause`, { method: 'POST' });
      return r.status;
    }, result.story.rollout.rolloutId);
    expect(noCsrf).toBe(403);
    const denied = await until('the CallDenied in the log', async () => {
      const r = await call('GET', '/api/v1/audit?type=CallDenied&actor_id=user:carol', {
        token: token('dave', ['auditor']),
      });
      return r.json.records?.length ? r.json.records : undefined;
    });
    expect(denied.map((d: { body: { callDenied: { method: string } } }) => d.body.callDenied.method)).toEqual([
      '/rebootless.dispatcher.v1.RolloutService/RollbackRollout',
    ]);
    await carol.goto(`${url}/audit?type=CallDenied&actor_id=user:carol`);
    expect(await carol.$$('table.audit tr[data-type=CallDenied]')).toHaveLength(1);
    await shot(carol, 'audit-call-denied');
  });

  it('shows exposure, compliance with its evidence, and builds', async () => {
    const page = await signedIn('erin', ['auditor']);
    await page.goto(`${url}/exposure`);
    expect(await page.$('section.cve[data-cve=CVE-2024-1086] svg.chart polyline')).not.toBeNull();
    await shot(page, 'exposure');
    await page.goto(`${url}/compliance?as_of=${encodeURIComponent(result.story.pciAfter.asOf)}`);
    // The stalled host never got the fix: past the deadline it is non-compliant, with its evidence.
    const stalled = `table.compliance tr[data-host="${result.story.stall_host}"][data-cve=CVE-2024-1086]`;
    expect(await page.getAttribute(stalled, 'data-status')).toBe('COMPLIANCE_STATUS_NON_COMPLIANT');
    expect(await page.textContent('p.summary')).toMatch(/\d+\/\d+ hosts compliant/);
    await shot(page, 'compliance');
    await Promise.all([page.waitForURL(/\/audit/), page.click(`${stalled} a.evidence >> nth=0`)]);
    expect(await page.$$('table.audit tbody tr')).toHaveLength(1);
    await shot(page, 'compliance-evidence');
    await page.goto(`${url}/builds`);
    expect(await page.textContent('table.builds')).toContain(result.story.patch.buildId);
    await shot(page, 'builds-and-patches');
    const csv = await call('GET', '/api/v1/compliance?format=csv', { token: token('erin', ['auditor']) });
    expect(csv.type).toMatch(/text\/csv/);
    expect(csv.text.split('\n')[0]).toMatch(/host/i);
  });
});

describe('the API over HTTP', () => {
  it('answers bad input with the documented error shape', async () => {
    const t = token('alice', ['operator', 'auditor']);
    expectError(await call('GET', '/api/v1/hosts/no-such-host', { token: t }), 404);
    expectError(await call('GET', '/api/v1/rollouts/no-such-rollout', { token: t }), 404);
    expectError(await call('GET', '/api/v1/hosts/bad%20id', { token: t }), 400);
    expectError(await call('GET', `/api/v1/hosts/${result.story.undo_host}/stack?at=yesterday`, { token: t }), 400);
    expectError(
      await call('GET', `/api/v1/hosts/${result.story.undo_host}/stack?at=2026-13-45T00:00:00Z`, { token: t }),
      400,
    );
    expectError(await call('GET', '/api/v1/compliance?as_of=1733400000', { token: t }), 400);
    expectError(await call('GET', '/api/v1/hosts?label=fleet', { token: t }), 400);
    expectError(await call('GET', '/api/v1/hosts?verdict=fine', { token: t }), 400);
    expectError(await call('GET', '/api/v1/hosts?cve=1086', { token: t }), 400);
    expectError(await call('GET', '/api/v1/hosts?page_token=garbage', { token: t }), 400);
    expectError(await call('GET', '/api/v1/hosts?kernel=a&kernel=b', { token: t }), 400);
    expectError(
      await call('GET', '/api/v1/audit?from=2026-12-06T00:00:00Z&to=2026-12-05T00:00:00Z', { token: t }),
      400,
    );
    expectError(await call('POST', '/api/v1/rollouts', { token: t, body: { patch_id: 'x' } }), 400);
    expectError(await call('GET', '/api/v1/no-such-route', { token: t }), 404);
  });

  it('refuses a missing, forged or expired session with 401 and a wrong role with 403', async () => {
    expectError(await call('GET', '/api/v1/hosts'), 401);
    expectError(await call('GET', '/api/v1/hosts', { cookie: 'rebootless_session=forged' }), 401);
    expectError(await call('GET', '/api/v1/hosts', { token: 'rbl1.e30.AAAA' }), 401);
    const expired = token('alice', ['auditor'], 60, Date.now() - 3600_000);
    expectError(await call('POST', '/api/v1/session', { body: { token: expired } }), 401);
    expectError(await call('GET', '/api/v1/hosts', { token: expired }), 401);
    // A session whose token expires while it is open ends with it.
    const session = await signInCookie(token('alice', ['auditor'], 2));
    expect((await call('GET', '/api/v1/session', { cookie: session.cookie })).status).toBe(200);
    await new Promise((r) => setTimeout(r, 2500));
    expectError(await call('GET', '/api/v1/session', { cookie: session.cookie }), 401);
    const auditor = await signInCookie(token('frank', ['auditor']));
    expectError(
      await call('POST', `/api/v1/rollouts/${result.story.rollout.rolloutId}/pause`, {
        cookie: auditor.cookie,
        csrf: auditor.csrf,
      }),
      403,
    );
    expectError(
      await call('POST', '/api/v1/rollouts', {
        token: token('frank', ['auditor']),
        body: {
          patch_id: result.story.patch.patchId,
          version: result.story.patch.version,
          host_ids: [result.story.undo_host],
        },
      }),
      403,
    );
  });

  it('sets the session cookie HttpOnly, SameSite=Strict and Secure', async () => {
    const reply = await rawSignIn(token('alice', ['auditor']));
    expect(reply.setCookie).toMatch(
      /^rebootless_session=[A-Za-z0-9_-]{40,}; Path=\/; HttpOnly; SameSite=Strict; Max-Age=\d+; Secure$/,
    );
  });
});

describe('the OpenAPI document', () => {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let doc: any;

  it('validates', async () => {
    const reply = await call('GET', '/api/v1/openapi.json');
    expect(reply.status).toBe(200);
    doc = reply.json;
    await expect(SwaggerParser.validate(structuredClone(doc))).resolves.toBeDefined();
  });

  it('every documented route answers as documented', async () => {
    const ids: Record<string, string> = {
      hostId: result.story.undo_host,
      rolloutId: result.consoleRollout ?? result.story.rollout.rolloutId,
      buildId: result.story.patch.buildId,
    };
    const reader = token('grace', ['auditor']);
    const called: string[] = [];
    for (const [route, item] of Object.entries<
      Record<string, { responses: Record<string, unknown>; security?: unknown[] }>
    >(doc.paths)) {
      for (const [method, op] of Object.entries(item)) {
        const concrete = route.replace(/\{(\w+)\}/g, (_, name: string) => ids[name]!);
        // Reads as an auditor; writes as an auditor too, so the walk changes nothing: 403 is documented for each.
        const body =
          method === 'post'
            ? route === '/session'
              ? { token: reader }
              : route === '/rollouts'
                ? {
                    patch_id: result.story.patch.patchId,
                    version: result.story.patch.version,
                    host_ids: [ids['hostId']],
                  }
                : {}
            : undefined;
        const reply = await call(method.toUpperCase(), `/api/v1${concrete}`, {
          ...(op.security && (op.security as unknown[]).length === 0 ? {} : { token: reader }),
          ...(body ? { body } : {}),
          firstChunkOnly: route.endsWith('/events'),
        });
        called.push(`${method.toUpperCase()} ${route} ${reply.status}`);
        expect([`${method} ${route}`, Object.keys(op.responses)]).toEqual([
          `${method} ${route}`,
          expect.arrayContaining([String(reply.status)]),
        ]);
        if (reply.status >= 400) expectError(reply, reply.status);
        else if (reply.status !== 204) {
          const content = (op.responses[String(reply.status)] as { content: Record<string, unknown> }).content;
          expect(Object.keys(content).some((type) => reply.type.startsWith(type))).toBe(true);
        }
      }
    }
    process.stdout.write(`console e2e: contract walk\n  ${called.join('\n  ')}\n`);
    expect(called.length).toBeGreaterThanOrEqual(20);
  });
});

async function rawSignIn(t: string): Promise<{ setCookie: string; csrf: string }> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${url}/api/v1/session`,
      { method: 'POST', headers: { 'content-type': 'application/json' }, ca, servername: 'localhost' },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => (text += c));
        res.on('end', () =>
          resolve({ setCookie: String(res.headers['set-cookie']?.[0] ?? ''), csrf: JSON.parse(text).csrf_token }),
        );
      },
    );
    req.on('error', reject);
    req.end(JSON.stringify({ token: t }));
  });
}

async function signInCookie(t: string): Promise<{ cookie: string; csrf: string }> {
  const reply = await rawSignIn(t);
  return { cookie: reply.setCookie.split(';')[0]!, csrf: reply.csrf };
}
