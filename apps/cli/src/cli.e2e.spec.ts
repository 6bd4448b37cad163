// The rebootless command as an operator runs it: the built apps/cli/dist/main.js as a process,
// against the built builder, dispatcher and ledger as processes, over TLS with the CLI's
// certificate (user:cli) and operator tokens, with a fleet of three simulated hosts (real agents
// on simulated kernels, connected to the dispatcher over TLS with their host certificates).
// It builds a real livepatch module (the cmdline_proc_show sample) for the current Debian cloud
// kernel, follows it, retracts it, rolls a second one out in waves with an approval, undoes it on
// one host, reads hosts (now and in the past), the audit log, the PCI report and the integrity
// check, and checks every kind of bad input gets a clear message on stderr and the documented
// exit code. Build first (`npm run build`); the kernel headers are fetched from Debian into the
// shared cache on the first run.
import { spawn } from 'node:child_process';
import Ajv from 'ajv';
import addFormats from 'ajv-formats';
import * as fs from 'node:fs';
import { createServer } from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { Agent, GatewayRelaySink } from '@rebootless/agent-runtime';
import { ChainStateFile } from '@rebootless/kafka';
import { SimulatedKernel } from '@rebootless/kernel-model';
import { currentDebianCloudRelease, livepatchSample } from '@rebootless/kernel-toolchain';
import {
  builtEntry,
  freshEventsTopic,
  startNode,
  startPrometheus,
  type RunningProcess,
  type RunningPrometheus,
} from '@rebootless/testing';
import {
  channelCredentials,
  ensureCertificateAuthority,
  issueCertificate,
  loadTlsMaterial,
  mintToken,
  readTokenPrivateKey,
  type Role,
} from '@rebootless/trust';

jest.setTimeout(12 * 60_000);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function freePort(): Promise<number> {
  return new Promise((resolve) => {
    const server = createServer().listen(0, '127.0.0.1', () => {
      const port = (server.address() as { port: number }).port;
      server.close(() => resolve(port));
    });
  });
}

let diagnostics: () => string = () => '';

/** Polls `probe` until it returns a value (not undefined), for what the ledger projects asynchronously. */
async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 90_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms\n${diagnostics()}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

const HOSTS = ['web-01', 'web-02', 'web-03'];
const EVERY_DAY = 'Mon,Tue,Wed,Thu,Fri,Sat,Sun 00:00-23:59';

describe('the rebootless CLI against the builder, dispatcher and ledger (TLS, tokens)', () => {
  const cliMain = builtEntry('apps/cli/dist/main.js');
  let work: string;
  let pki: string;
  let address: string;
  let dispatcherAddress: string;
  let ledgerAddress: string;
  let builder: RunningProcess;
  let dispatcher: RunningProcess;
  let ledger: RunningProcess;
  const agents: Agent[] = [];
  let release: string;
  let operator: string;
  let auditor: string;
  let approver: string;
  let prometheus: RunningPrometheus;
  const metricsAddress: Record<string, string> = {};

  const token = (sub: string, roles: Role[]) => mintToken(readTokenPrivateKey(pki), { sub, roles, ttlSeconds: 3600 });

  /**
   * Runs the CLI with a clean REBOOTLESS_* environment plus `env`. With `terminal`, stderr is a
   * pseudo-terminal (util-linux script) and stdout a file, as for a person redirecting the answer.
   */
  function cli(args: string[], env: Record<string, string> = {}, terminal = false): Promise<Run> {
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REBOOTLESS_')));
    const answer = path.join(work, `stdout-${Date.now()}`);
    const quote = (word: string) => `'${word.replace(/'/g, `'\\''`)}'`;
    const [command, argv] = terminal
      ? [
          'script',
          ['-qec', `${[process.execPath, cliMain, ...args].map(quote).join(' ')} > ${quote(answer)}`, '/dev/null'],
        ]
      : [process.execPath, [cliMain, ...args]];
    const child = spawn(command, argv, {
      env: {
        ...inherited,
        REBOOTLESS_PKI_DIR: pki,
        REBOOTLESS_BUILDER: address,
        REBOOTLESS_DISPATCHER: dispatcherAddress,
        REBOOTLESS_LEDGER: ledgerAddress,
        REBOOTLESS_TOKEN: operator,
        ...env,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (terminal ? (stderr += d) : (stdout += d)));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    return new Promise((resolve) =>
      child.on('close', (code) =>
        resolve({ code, stdout: terminal ? fs.readFileSync(answer, 'utf8') : stdout, stderr }),
      ),
    );
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  const json = (run: Run): any => {
    expect(run.stderr).toBe('');
    return JSON.parse(run.stdout);
  };

  /** Waits for a scrape of every service that started after `since`, all up; then its values are current. */
  async function scrapedSince(since: number): Promise<void> {
    await eventually('a Prometheus scrape of every service after the scenario settled', async () => {
      const scrapes = await prometheus.query('timestamp(up)');
      return scrapes.length === 3 && scrapes.every((s) => s.value * 1000 > since) ? true : undefined;
    });
    expect((await prometheus.query('up')).map((u) => [u.labels['job'], u.value]).sort()).toEqual([
      ['builder', 1],
      ['dispatcher', 1],
      ['ledger', 1],
    ]);
  }

  /** One series' value, by a PromQL expression that selects exactly one (0 when it selects none). */
  async function metric(expr: string): Promise<number> {
    const found = await prometheus.query(expr);
    if (found.length > 1) throw new Error(`${expr} selects ${found.length} series: ${JSON.stringify(found)}`);
    return found[0]?.value ?? 0;
  }

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-cli-e2e-'));
    pki = path.join(work, 'pki');
    await ensureCertificateAuthority(pki);
    for (const id of ['builder', 'dispatcher', 'ledger']) await issueCertificate(pki, { kind: 'service', id });
    await issueCertificate(pki, { kind: 'user', id: 'cli' });
    for (const id of HOSTS) await issueCertificate(pki, { kind: 'host', id });
    operator = token('alice', ['operator', 'auditor']);
    auditor = token('carol', ['auditor']);
    approver = token('bob', ['approver']);
    const [topic, current, ports, scrapePorts] = await Promise.all([
      freshEventsTopic('cli', 3),
      currentDebianCloudRelease(),
      Promise.all([freePort(), freePort(), freePort()]),
      Promise.all([freePort(), freePort(), freePort()]),
    ]);
    for (const [i, job] of ['builder', 'dispatcher', 'ledger'].entries())
      metricsAddress[job] = `127.0.0.1:${scrapePorts[i]!}`;
    release = current;
    [address, dispatcherAddress, ledgerAddress] = ports.map((p) => `127.0.0.1:${p}`) as [string, string, string];
    const dataDir = (name: string) => path.join(work, name);
    const common = { REBOOTLESS_PKI_DIR: pki, EVENTS_TOPIC: topic, NO_COLOR: '1' };
    builder = startNode(builtEntry('apps/builder/dist/main.js'), {
      ...common,
      BUILDER_GRPC_ADDRESS: address,
      REBOOTLESS_METRICS_ADDRESS: metricsAddress['builder']!,
      REBOOTLESS_DATA_DIR: dataDir('builder'),
    });
    dispatcher = startNode(builtEntry('apps/dispatcher/dist/main.js'), {
      ...common,
      DISPATCHER_GRPC_ADDRESS: dispatcherAddress,
      DISPATCHER_LEDGER_ADDRESS: ledgerAddress,
      DISPATCHER_TICK_INTERVAL_MS: '200',
      DISPATCHER_TRUSTED_DATA_DIRS: dataDir('builder'),
      REBOOTLESS_METRICS_ADDRESS: metricsAddress['dispatcher']!,
      REBOOTLESS_DATA_DIR: dataDir('dispatcher'),
    });
    await Promise.all([builder.waitFor(/builder ready on/), dispatcher.waitFor(/dispatcher ready on/)]);
    // The ledger vouches for the builder's and the dispatcher's chains by their keys on this machine.
    ledger = startNode(builtEntry('apps/ledger/dist/main.js'), {
      ...common,
      LEDGER_GRPC_ADDRESS: ledgerAddress,
      LEDGER_TRUSTED_DATA_DIRS: `${dataDir('builder')},${dataDir('dispatcher')}`,
      // Idle simulated agents send nothing: keep them online for the whole run (verdicts).
      LEDGER_ONLINE_WINDOW_SECONDS: '3600',
      REBOOTLESS_METRICS_ADDRESS: metricsAddress['ledger']!,
      REBOOTLESS_DATA_DIR: dataDir('ledger'),
    });
    await ledger.waitFor(/ledger ready on/);
    // Debian's Prometheus scraping the three services, as an operator's monitoring would.
    prometheus = await startPrometheus(Object.entries(metricsAddress).map(([job, a]) => ({ job, address: a })));
    diagnostics = () => [ledger, dispatcher].map((p) => p.output().split('\n').slice(-25).join('\n')).join('\n---\n');

    const builderKey = new ChainStateFile(path.join(dataDir('builder'), 'chain'), 'builder').readKey().rawPublicKey;
    for (const [i, hostId] of HOSTS.entries()) {
      fs.mkdirSync(dataDir(hostId));
      const agent = new Agent({
        kernel: new SimulatedKernel({ release }),
        dataDir: dataDir(hostId),
        hostId,
        labels: { env: i === 0 ? 'canary' : 'prod' },
        dispatcherAddress,
        builderAddress: address,
        builderPublicKey: builderKey,
        sink: new GatewayRelaySink(),
        credentials: channelCredentials(loadTlsMaterial(pki, { kind: 'host', id: hostId }), [
          { kind: 'service', id: 'dispatcher' },
          { kind: 'service', id: 'builder' },
        ]),
      });
      await agent.start();
      agents.push(agent);
    }

    fs.writeFileSync(
      path.join(work, 'fix.c'),
      livepatchSample({ moduleName: 'lp_cli_e2e', replacementText: 'patched by the rebootless CLI e2e' }),
    );
    fs.writeFileSync(
      path.join(work, 'fleet.c'),
      livepatchSample({ moduleName: 'lp_cli_fleet', replacementText: 'rolled out by the rebootless CLI e2e' }),
    );
    fs.writeFileSync(
      path.join(work, 'broken.c'),
      '#include <linux/module.h>\n#include <linux/livepatch.h>\nstatic struct klp_func f[] = {{ .old_name = "x", .new_func = nothing }, { }};\nMODULE_LICENSE("GPL");\n',
    );
  });

  afterAll(async () => {
    await prometheus?.stop();
    for (const agent of agents) await agent.stop();
    for (const service of [ledger, dispatcher, builder]) service?.child.kill('SIGTERM');
    await Promise.all([ledger, dispatcher, builder].map((service) => service?.exited()));
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('build list --json: one JSON document, no builds yet', async () => {
    const run = await cli(['build', 'list', '--json']);
    expect(run.code).toBe(0);
    expect(json(run)).toEqual({ builds: [] });
  });

  let buildId: string;

  it('build submit then build watch: the livepatch builds for the current kernel, stage by stage, exit 0', async () => {
    const submitted = await cli([
      'build',
      'submit',
      '--name',
      'cli-e2e',
      '--version',
      '1.0.0',
      '--source',
      path.join(work, 'fix.c'),
      '--kernel',
      release,
      '--cve',
      'CVE-2024-1086:high:7.8',
      '--description',
      'reading /proc/cmdline shows a fixed text',
      '--json',
    ]);
    expect(submitted.code).toBe(0);
    const answer = json(submitted);
    expect(answer.patchId).toBe('cli-e2e');
    buildId = answer.buildId;

    // Without --json and without a terminal: the final build on stdout, each stage as a line on stderr.
    const watched = await cli(['build', 'watch', buildId]);
    expect(watched.code).toBe(0);
    expect(watched.stderr.trim().split('\n')).toEqual(
      [
        'queued',
        'analyse running',
        'fetch-headers running',
        'compile running',
        'sign running',
        'store running',
        'store succeeded',
      ].map((s) => `${release}: ${s}`),
    );
    expect(watched.stdout).toContain(`build:       ${buildId}`);
    expect(watched.stdout).toContain('state:       succeeded');
    expect(watched.stdout).toMatch(
      new RegExp(`${release.replace(/\./g, '\\.')}\\s+succeeded\\s+store\\s+lp_cli_e2e__v1_0_0\\s+sha256:[0-9a-f]{64}`),
    );
    expect(watched.stdout).toContain('changed functions: cmdline_proc_show');

    // Watching a finished build replays it; --json gives the Build with enum names and times.
    const again = await cli(['build', 'watch', buildId, '--json']);
    expect(again.code).toBe(0);
    expect(json(again)).toMatchObject({
      buildId,
      patchId: 'cli-e2e',
      state: 'BUILD_STATE_SUCCEEDED',
      cves: [{ id: 'CVE-2024-1086', severity: 'SEVERITY_HIGH', cvssScore: '7.8' }],
      submittedAt: expect.stringMatching(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$/),
      kernels: [
        {
          kernelRelease: release,
          state: 'BUILD_STATE_SUCCEEDED',
          artifactDigest: expect.stringMatching(/^[0-9a-f]{64}$/),
          manifest: expect.objectContaining({ moduleName: 'lp_cli_e2e__v1_0_0', severity: 'SEVERITY_HIGH' }),
        },
      ],
    });
  });

  it('at a terminal, build watch redraws one progress bar per kernel release on stderr', async () => {
    const run = await cli(['build', 'watch', buildId], {}, true);
    expect(run.code).toBe(0);
    // Each frame moves the cursor up over the previous one and clears it before drawing.
    expect(run.stderr).toContain('\x1b[2A\r\x1b[0J');
    expect(run.stderr).toContain(`build ${buildId}`);
    expect(run.stderr).toMatch(new RegExp(`  ${release.replace(/\./g, '\\.')}  \\[#{24}\\] 7/7  store succeeded`));
    expect(run.stdout).toContain('state:       succeeded');
  });

  it('build list and build show find it, as a table and as JSON', async () => {
    const listed = await cli(['build', 'list', '--json']);
    expect(json(listed).builds.map((b: { buildId: string }) => b.buildId)).toEqual([buildId]);
    const table = await cli(['build', 'list', '--state', 'succeeded']);
    expect(table.code).toBe(0);
    const [header, row] = table.stdout.trim().split('\n');
    expect(header).toMatch(/^BUILD\s+PATCH\s+VERSION\s+STATE\s+KERNELS\s+SUBMITTED\s+BY$/);
    expect(row).toMatch(new RegExp(`^${buildId}\\s+cli-e2e\\s+1\\.0\\.0\\s+succeeded\\s+1/1\\s`));
    expect((await cli(['build', 'list', '--state', 'failed'])).stdout).toBe('no builds\n');
    const shown = await cli(['build', 'show', buildId, '--json']);
    expect(json(shown)).toMatchObject({ buildId, state: 'BUILD_STATE_SUCCEEDED' });
  });

  it('a build that fails to compile: watch shows the compiler’s words and exits 1', async () => {
    const submitted = await cli([
      'build',
      'submit',
      '--name',
      'cli-broken',
      '--version',
      '1',
      '--source',
      path.join(work, 'broken.c'),
      '--kernel',
      release,
      '--watch',
    ]);
    expect(submitted.code).toBe(1);
    expect(submitted.stdout).toContain('state:       failed');
    expect(submitted.stdout).toMatch(/diagnostics for .* \(compile\):\n.*error: .*nothing/);
    expect(submitted.stderr).toMatch(/^submitted build \S+ \(patch cli-broken\)\n/);
  });

  it('patch retract: refused for an auditor (exit 5), done for an operator, and the version cannot be built again (exit 6)', async () => {
    const denied = await cli(['patch', 'retract', 'cli-e2e', '--version', '1.0.0', '--reason', 'wrong text'], {
      REBOOTLESS_TOKEN: auditor,
    });
    expect(denied.code).toBe(5);
    expect(denied.stdout).toBe('');
    expect(denied.stderr).toBe(
      `rebootless: permission denied by the builder at ${address}: carol holds auditor; /rebootless.builder.v1.BuildService/RetractPatch needs operator. ` +
        'Use a token that carries the role the call needs: node scripts/pki.mjs token --sub NAME --roles operator|approver|auditor\n',
    );

    const missing = await cli(['patch', 'retract', 'cli-e2e', '--version', '9.9', '--reason', 'x']);
    expect(missing.code).toBe(4);
    expect(missing.stderr).toBe('rebootless: not found: no artifact of patch cli-e2e version 9.9 was built here\n');

    const retracted = await cli([
      'patch',
      'retract',
      'cli-e2e',
      '--version',
      '1.0.0',
      '--reason',
      'wrong text',
      '--json',
    ]);
    expect(retracted.code).toBe(0);
    expect(json(retracted)).toEqual({ patchId: 'cli-e2e', version: '1.0.0', reason: 'wrong text', retracted: true });

    const again = await cli([
      'build',
      'submit',
      '--name',
      'cli-e2e',
      '--version',
      '1.0.0',
      '--source',
      path.join(work, 'fix.c'),
      '--kernel',
      release,
    ]);
    expect(again.code).toBe(6);
    expect(again.stderr).toMatch(
      /^rebootless: the builder at .* cannot do BuildService\/SubmitBuild now: patch cli-e2e version 1\.0\.0 was retracted at .*\(wrong text\); submit a new version\n$/,
    );
  });

  describe('the fleet: rollout, hosts, undo, audit, report, verify (dispatcher and ledger)', () => {
    let beforeRollout: Date;
    let rolloutId: string;

    it('hosts list: the three agents enrolled, as the ledger projects them', async () => {
      const hosts = await eventually('three hosts in the ledger', async () => {
        const run = await cli(['hosts', 'list', '--json']);
        const found = json(run).hosts as { facts: { hostId: string; kernelRelease: string } }[];
        return found.length === HOSTS.length ? found : undefined;
      });
      expect(hosts.map((h) => h.facts.hostId).sort()).toEqual(HOSTS);
      expect(hosts.every((h) => h.facts.kernelRelease === release)).toBe(true);
      const table = await cli(['hosts', 'list', '--label', 'env=prod']);
      expect(table.code).toBe(0);
      expect(table.stdout.split('\n').filter((l) => l.startsWith('web-'))).toEqual([
        expect.stringMatching(new RegExp(`^web-02\\s+${release.replace(/\./g, '\\.')}\\s+-\\s+-\\s`)),
        expect.stringMatching(/^web-03\s/),
      ]);
    });

    it('rollout create --dry-run plans the waves and creates nothing', async () => {
      const submitted = await cli([
        'build',
        'submit',
        '--name',
        'cli-fleet',
        '--version',
        '1',
        '--source',
        path.join(work, 'fleet.c'),
        '--kernel',
        release,
        '--cve',
        'CVE-2024-26581:critical',
        '--watch',
        '--json',
      ]);
      expect(submitted.code).toBe(0);
      expect(json(submitted).build.state).toBe('BUILD_STATE_SUCCEEDED');

      const planned = await cli([
        'rollout',
        'create',
        '--patch',
        'cli-fleet',
        '--version',
        '1',
        '--kernel',
        release,
        '--canary-host',
        'web-01',
        '--waves',
        '100%',
        '--dry-run',
        '--window',
        EVERY_DAY,
        '--json',
      ]);
      expect(planned.code).toBe(0);
      const plan = json(planned);
      expect(
        plan.waves.map((w: { name: string; hosts: { hostId: string }[] }) => [
          w.name,
          w.hosts.map((h) => h.hostId).sort(),
        ]),
      ).toEqual([
        ['canary', ['web-01']],
        ['wave 1', ['web-02', 'web-03']],
      ]);
      expect(json(await cli(['rollout', 'list', '--json']))).toEqual({ rollouts: [] });
    });

    it('rollout create with an approval: an operator cannot approve (exit 5), an approver can; watch follows it to completed (exit 0)', async () => {
      beforeRollout = new Date();
      await new Promise((r) => setTimeout(r, 20));
      const created = await cli([
        'rollout',
        'create',
        '--patch',
        'cli-fleet',
        '--version',
        '1',
        '--kernel',
        release,
        '--canary-host',
        'web-01',
        '--waves',
        '100%',
        '--soak',
        '1s',
        '--require-approval',
        '--on-failure',
        'pause',
        '--window',
        EVERY_DAY,
        '--json',
      ]);
      expect(created.code).toBe(0);
      const rollout = json(created);
      rolloutId = rollout.rolloutId;
      expect(rollout).toMatchObject({
        kind: 'ROLLOUT_KIND_APPLY',
        patchId: 'cli-fleet',
        version: '1',
        state: 'ROLLOUT_STATE_AWAITING_APPROVAL',
        selector: { kernelReleases: [release], hostIds: [] },
        strategy: {
          canaryHostIds: ['web-01'],
          waves: [{ percent: 100 }],
          soakSeconds: 1,
          approvalBeforeFirstWave: true,
          onFailure: 'FAILURE_POLICY_PAUSE',
        },
        createdBy: { id: 'alice' },
      });

      const byOperator = await cli(['rollout', 'approve', rolloutId]);
      expect(byOperator.code).toBe(5);
      expect(byOperator.stderr).toContain(
        'alice holds operator, auditor; /rebootless.dispatcher.v1.RolloutService/ApproveRollout needs approver',
      );

      // Two-person rule: alice holding the approver role too still cannot approve her own rollout.
      const bySelf = await cli(['rollout', 'approve', rolloutId], {
        REBOOTLESS_TOKEN: token('alice', ['operator', 'approver']),
      });
      expect(bySelf.code).toBe(5);
      expect(bySelf.stderr).toContain(`alice created rollout ${rolloutId} and cannot approve it too`);

      const approved = await cli(['rollout', 'approve', rolloutId, '--comment', 'canary first'], {
        REBOOTLESS_TOKEN: approver,
      });
      expect(approved.code).toBe(0);
      expect(approved.stdout).toBe(`rollout ${rolloutId} (cli-fleet 1) is running\n`);

      const watched = await cli(['rollout', 'watch', rolloutId]);
      expect(watched.code).toBe(0);
      expect(watched.stdout).toContain('state:    completed');
      expect(watched.stdout).toMatch(/canary\s+web-01\s+succeeded/);
      expect(watched.stdout).toMatch(/wave 1\s+web-02\s+succeeded/);
      expect(watched.stdout).toMatch(/wave 1\s+web-03\s+succeeded/);
      // Without a terminal, progress is plain lines on stderr, ending with the wave that completed it.
      expect(watched.stderr).toMatch(/: wave 1: 2\/2 hosts completed\n$/);
    });

    it('hosts show: the patch is live on web-01 now, and was not before the rollout (--at)', async () => {
      const carrying = await eventually('three hosts carry cli-fleet', async () => {
        const hosts = json(await cli(['hosts', 'list', '--patch', 'cli-fleet', '--json'])).hosts;
        return hosts.length === 3 ? hosts : undefined;
      });
      expect(carrying).toHaveLength(3);
      const now = await cli(['hosts', 'show', 'web-01']);
      expect(now.code).toBe(0);
      expect(now.stdout).toContain(`kernel:    ${release}`);
      expect(now.stdout).toMatch(/\s1\s+lp_cli_fleet__v1\s+cli-fleet 1\s+enabled\s+CVE-2024-26581\s/);
      expect(now.stdout).toMatch(/cmdline_proc_show\s+lp_cli_fleet__v1 \(cli-fleet 1\)/);

      const past = await cli(['hosts', 'show', 'web-01', '--at', beforeRollout.toISOString(), '--json']);
      expect(past.code).toBe(0);
      expect(json(past)).toMatchObject({ hostId: 'web-01', at: beforeRollout.toISOString(), stack: { entries: [] } });
      const pastList = await cli(['hosts', 'list', '--at', beforeRollout.toISOString()]);
      expect(pastList.stdout).toMatch(/^HOST\s+KERNEL\s+LIVE PATCHES\s+REBOOT\s+OBSERVED\n/);
      expect(pastList.stdout.split('\n').filter((l) => /^web-\d\d\s/.test(l) && !/\s-\s+-\s+\S+$/.test(l))).toEqual([]);

      const tooEarly = await cli(['hosts', 'show', 'web-01', '--at', '2020-01-01']);
      expect(tooEarly.code).toBe(4);
      expect(tooEarly.stderr).toMatch(/^rebootless: not found: /);
    });

    it('undo --plan shows the steps and what each function falls back to; undo carries it out on one host', async () => {
      const plan = await cli(['undo', 'web-02', 'cli-fleet', '--plan', '--json']);
      expect(plan.code).toBe(0);
      expect(json(plan)).toMatchObject({
        disableOrder: 'DISABLE_ORDER_ANY',
        steps: [
          {
            kind: 'UNDO_STEP_KIND_REVERT',
            moduleName: 'lp_cli_fleet__v1',
            patch: { patchId: 'cli-fleet', version: '1' },
          },
        ],
        functions: [{ function: { name: 'cmdline_proc_show' }, runsAfter: { moduleName: '' } }],
      });
      const text = await cli(['undo', 'web-02', 'cli-fleet', '--plan']);
      expect(text.stdout).toMatch(/cmdline_proc_show\s+lp_cli_fleet__v1 \(cli-fleet 1\)\s+original kernel code/);

      const undone = await cli(['undo', 'web-02', 'cli-fleet', '--reason', 'customer asked', '--watch', '--json']);
      expect(undone.code).toBe(0);
      expect(JSON.parse(undone.stdout)).toMatchObject({ kind: 'ROLLOUT_KIND_UNDO', state: 'ROLLOUT_STATE_COMPLETED' });
      const left = await eventually('web-02 no longer carries cli-fleet', async () => {
        const hosts = json(await cli(['hosts', 'list', '--patch', 'cli-fleet', '--json'])).hosts;
        return hosts.length === 2 ? hosts : undefined;
      });
      expect(left.map((h: { facts: { hostId: string } }) => h.facts.hostId).sort()).toEqual(['web-01', 'web-03']);
      // The same figures counted by the ledger, without listing a host.
      expect(json(await cli(['hosts', 'count', '--patch', 'cli-fleet', '--json']))).toEqual({ hosts: 2 });
      const prod = await cli(['hosts', 'count', '--patch', 'cli-fleet', '--label', 'env=prod']);
      expect(prod).toMatchObject({ code: 0, stdout: '1 host(s)\n' });
      expect(json(await cli(['hosts', 'count', '--json']))).toEqual({ hosts: 3 });
    });

    it('rollout list and rollout show --timeline: both rollouts, and the events behind one', async () => {
      const listed = json(await cli(['rollout', 'list', '--json'])).rollouts;
      expect(listed.map((r: { kind: string }) => r.kind).sort()).toEqual(['ROLLOUT_KIND_APPLY', 'ROLLOUT_KIND_UNDO']);
      const shown = await eventually('the rollout’s timeline in the ledger', async () => {
        const run = await cli(['rollout', 'show', rolloutId, '--timeline', '--json']);
        const doc = JSON.parse(run.stdout);
        return doc.timeline?.some((r: { body: { type: string } }) => r.body.type === 'RolloutCompleted')
          ? doc
          : undefined;
      });
      const types = shown.timeline.map((r: { body: { type: string } }) => r.body.type);
      expect(types).toEqual(
        expect.arrayContaining(['RolloutCreated', 'RolloutApproved', 'WaveStarted', 'RolloutCompleted']),
      );
      expect(types.indexOf('RolloutCreated')).toBeLessThan(types.indexOf('RolloutCompleted'));
    });

    it('audit: who did what, filtered by type', async () => {
      const run = await cli(['audit', '--type', 'RolloutApproved', '--from', '-1h', '--json']);
      expect(run.code).toBe(0);
      const records = json(run).records;
      expect(records).toHaveLength(1);
      expect(records[0]).toMatchObject({ body: { type: 'RolloutApproved', actor: { id: 'bob' } } });
      const table = await cli(['audit', '--host', 'web-02', '--type', 'PatchReverted']);
      expect(table.stdout).toMatch(
        /^TIME\s+TYPE\s+ACTOR\s+STREAM\s+SUMMARY\n\S+\s+PatchReverted\s+web-02\s+host\/web-02\s/,
      );
    });

    it('report pci as of now: the critical CVE, one row per host, fixed where the patch is live; CSV and JSON', async () => {
      const csv = await cli(['report', 'pci', '--as-of', 'now', '--format', 'csv']);
      expect(csv.code).toBe(0);
      const [header, ...rows] = csv.stdout.trim().split(/\r?\n/);
      expect(header).toMatch(/^host,cve,severity,status,exposed_since,deadline,fixed_at,fixed_by,/);
      const cells = rows.map((l) => l.split(','));
      expect(cells.map((c) => `${c[0]} ${c[1]} ${c[2]}`)).toEqual(HOSTS.map((h) => `${h} CVE-2024-26581 critical`));
      // web-01 and web-03 carry the fix; web-02 had it undone and is exposed again.
      expect(cells.map((c) => c[7])).toEqual(['cli-fleet 1', '', 'cli-fleet 1']);

      const report = await cli(['report', 'pci', '--json']);
      expect(report.code).toBe(0);
      expect(json(report)).toMatchObject({
        deadlineDays: 30,
        hostsInScope: 3,
        integrityFindings: 0,
        cves: [{ cve: { id: 'CVE-2024-26581', severity: 'SEVERITY_CRITICAL' }, fixedBy: [{ patchId: 'cli-fleet' }] }],
      });
    });

    it('patch list: published patches, retracted ones on request', async () => {
      const all = json(await cli(['patch', 'list', '--include-retracted', '--json'])).patches;
      expect(all.map((p: { patchId: string; retracted: boolean }) => [p.patchId, p.retracted]).sort()).toEqual([
        ['cli-e2e', true],
        ['cli-fleet', false],
      ]);
    });

    it('ledger verify: every chain intact (exit 0)', async () => {
      const run = await cli(['ledger', 'verify', '--json'], { REBOOTLESS_TOKEN: auditor });
      expect(run.code).toBe(0);
      const result = json(run);
      expect(result.findings ?? []).toEqual([]);
      expect(Number(result.eventsChecked)).toBeGreaterThan(20);
      expect((await cli(['ledger', 'verify'], { REBOOTLESS_TOKEN: auditor })).stdout).toMatch(
        /^intact: \d+ events of \d+ producers checked at /,
      );
    });

    it('a rollout that does not exist: exit 4; a write on a finished one: refused (exit 6)', async () => {
      const missing = await cli(['rollout', 'abort', 'no-such-rollout', '--reason', 'x']);
      expect(missing.code).toBe(4);
      expect(missing.stderr).toMatch(/^rebootless: not found: .*no-such-rollout/);
      const finished = await cli(['rollout', 'pause', rolloutId, '--reason', 'too late']);
      expect(finished.code).toBe(6);
      expect(finished.stderr).toContain(
        `the dispatcher at ${dispatcherAddress} cannot do RolloutService/PauseRollout now`,
      );
    });

    it('pause, resume and abort a rollout waiting for approval; roll back a completed one (exit 1)', async () => {
      const create = (...extra: string[]) =>
        cli([
          'rollout',
          'create',
          '--patch',
          'cli-fleet',
          '--version',
          '1',
          '--host',
          'web-02',
          '--window',
          EVERY_DAY,
          ...extra,
        ]);
      const waiting = json(await create('--require-approval', '--json'));
      const id = waiting.rolloutId;
      expect(waiting.state).toBe('ROLLOUT_STATE_AWAITING_APPROVAL');

      const paused = await cli(['rollout', 'pause', id, '--reason', 'change freeze']);
      expect([paused.code, paused.stdout]).toEqual([0, `rollout ${id} (cli-fleet 1) is paused: change freeze\n`]);
      const resumed = await cli(['rollout', 'resume', id, '--json']);
      expect(resumed.code).toBe(0);
      expect(json(resumed).state).not.toBe('ROLLOUT_STATE_PAUSED');
      const aborted = await cli(['rollout', 'abort', id, '--reason', 'wrong host']);
      expect([aborted.code, aborted.stdout]).toEqual([0, `rollout ${id} (cli-fleet 1) is aborted: wrong host\n`]);
      const again = await cli(['rollout', 'resume', id]);
      expect(again.code).toBe(6);
      expect(again.stderr).toContain('cannot do RolloutService/ResumeRollout now');

      const refused = await create('--skip-approval', '--json');
      expect(refused.code).toBe(5);
      expect(refused.stderr).toContain(
        'alice may not start a rollout without an approval: skip_approval needs the release-manager role',
      );
      // A release manager may start one without a second person, saying so explicitly (ADR 0013).
      const applied = await cli(
        [
          'rollout',
          'create',
          '--patch',
          'cli-fleet',
          '--version',
          '1',
          '--host',
          'web-02',
          '--window',
          EVERY_DAY,
          '--soak',
          '1s',
          '--skip-approval',
          '--watch',
          '--json',
        ],
        { REBOOTLESS_TOKEN: token('rita', ['operator', 'auditor', 'release-manager']) },
      );
      expect(applied.code).toBe(0);
      const appliedId = JSON.parse(applied.stdout).rolloutId;
      const rolledBack = await cli([
        'rollout',
        'rollback',
        appliedId,
        '--reason',
        'undo the whole rollout',
        '--watch',
        '--json',
      ]);
      expect(rolledBack.code).toBe(1);
      expect(JSON.parse(rolledBack.stdout)).toMatchObject({
        state: 'ROLLOUT_STATE_ROLLED_BACK',
        stateReason: 'undo the whole rollout',
      });
    });
  });

  it('hosts list shows each verdict; hosts check answers as a Nagios plugin; upgrade brings web-02 up to date', async () => {
    // web-02 had cli-fleet undone and rolled back: the patch is missing there, nowhere else.
    const verdicts = await eventually('web-02 misses cli-fleet', async () => {
      const hosts = json(await cli(['hosts', 'list', '--json'])).hosts as {
        facts: { hostId: string };
        verdict: string;
        missingPatches?: { patchId: string; version: string }[];
      }[];
      const byHost = Object.fromEntries(hosts.map((h) => [h.facts.hostId, h.verdict]));
      return byHost['web-02'] === 'HOST_VERDICT_PATCH_MISSING' ? { byHost, hosts } : undefined;
    });
    expect(verdicts.byHost).toEqual({
      'web-01': 'HOST_VERDICT_UP_TO_DATE',
      'web-02': 'HOST_VERDICT_PATCH_MISSING',
      'web-03': 'HOST_VERDICT_UP_TO_DATE',
    });
    const table = await cli(['hosts', 'list']);
    expect(table.stdout).toMatch(/^HOST\s+KERNEL\s+LIVE PATCHES\s+REBOOT\s+LAST SEEN\s+VERDICT\n/);
    expect(table.stdout).toMatch(/\nweb-02\s.*\spatch missing\n/);
    expect(table.stdout).toMatch(/\nweb-03\s.*\sup to date\n/);

    // The same facts through Prometheus, scraped from the services' own metrics.
    await scrapedSince(Date.now());
    // The ledger computes its verdicts once per 2 s (ADR 0019): a scrape may still carry the
    // snapshot from before the last facts. Wait for it, never past the deadline; then the same checks.
    await eventually('Prometheus sees the ledger verdicts of the hosts listed above', async () =>
      (await metric('rebootless_hosts{verdict="patch_missing"}')) === 1 &&
      (await metric('rebootless_hosts{verdict="up_to_date"}')) === 2
        ? true
        : undefined,
    );
    expect(await metric('rebootless_hosts{verdict="patch_missing"}')).toBe(1);
    expect(await metric('rebootless_hosts{verdict="up_to_date"}')).toBe(2);
    expect(await metric('sum(rebootless_hosts)')).toBe(3);
    expect(await metric('rebootless_cve_exposed_hosts{cve="CVE-2024-26581"}')).toBe(1);
    // Two kernel builds succeeded (cli-e2e, cli-fleet), one failed to compile.
    expect(await metric('sum(rebootless_builds{state="succeeded"})')).toBe(2);
    expect(await metric('sum(rebootless_builds{state="failed"})')).toBe(1);
    // The auditor's retraction was the builder's one denied call; alice's approval the dispatcher's.
    expect(await metric('sum(rebootless_calls_denied_total{job="builder"})')).toBe(1);
    expect(
      await metric(
        'sum(rebootless_calls_denied_total{job="dispatcher",method="/rebootless.dispatcher.v1.RolloutService/ApproveRollout"})',
      ),
    ).toBeGreaterThanOrEqual(1);
    expect(await metric('rebootless_ledger_records_projected_total')).toBeGreaterThan(20);
    await eventually('the ledger caught up with the log', async () =>
      (await metric('rebootless_ledger_consumer_lag')) === 0 ? true : undefined,
    );

    const warning = await cli(['hosts', 'check']);
    expect([warning.code, warning.stderr]).toEqual([1, '']);
    expect(warning.stdout).toBe(
      'REBOOTLESS WARNING - 1 of 3 hosts need attention: web-02 patch missing | exposed_past_deadline=0 drift=0 offline=0 reboot_required=0 patch_missing=1 up_to_date=2\n' +
        `web-02: patch missing; published for ${release} and not live: cli-fleet 1\n`,
    );
    expect((await cli(['hosts', 'check', '--host', 'web-01'])).code).toBe(0);
    // A check that cannot run is UNKNOWN, not CRITICAL, with the reason on stderr.
    const down = await cli(['hosts', 'check'], { REBOOTLESS_LEDGER: '127.0.0.1:1' });
    expect(down.code).toBe(3);
    expect(down.stdout).toMatch(/^REBOOTLESS UNKNOWN - the check could not run/);
    expect(down.stderr).toContain('127.0.0.1:1');
    const typo = await cli(['hosts', 'check', '--host', 'web-99']);
    expect(typo.code).toBe(3);
    expect(typo.stderr).toMatch(/web-99/);

    const versionRun = await cli(['hosts', 'list', '--version']);
    expect(versionRun).toEqual({ code: 0, stdout: 'rebootless 0.1.0\n', stderr: '' });

    // What a scanner is told: web-02 is affected by the CVE, web-01 has it fixed live, with the
    // events that prove it; both documents valid OpenVEX.
    const ajv = new Ajv({ allErrors: true, strict: true, strictRequired: false, strictTypes: false });
    addFormats(ajv);
    const validate = ajv.compile(
      JSON.parse(
        fs.readFileSync(builtEntry('libs/ledger-model/test-data/openvex-v0.2.0.schema.json'), 'utf8'),
      ) as object,
    );
    const vexOf = async (hostId: string) => {
      const run = await cli(['report', 'vex', '--host', hostId]);
      expect([run.code, run.stderr]).toEqual([0, '']);
      const doc = JSON.parse(run.stdout);
      expect(validate(doc) ? [] : validate.errors).toEqual([]);
      return doc;
    };
    const web01 = await vexOf('web-01');
    expect(web01.statements).toEqual([
      expect.objectContaining({
        vulnerability: { name: 'CVE-2024-26581' },
        status: 'fixed',
        products: [expect.objectContaining({ '@id': expect.stringMatching(`^pkg:deb/debian/linux-image-${release}`) })],
      }),
    ]);
    const web02 = await vexOf('web-02');
    expect(web02.statements).toEqual([
      expect.objectContaining({
        vulnerability: { name: 'CVE-2024-26581' },
        status: 'affected',
        action_statement: 'apply the live patch cli-fleet 1: rebootless upgrade --host web-02',
      }),
    ]);
    const evidence = (web01.statements[0].status_notes as string).split('evidence events: ')[1]!.split(', ');
    const applied = json(await cli(['audit', '--host', 'web-01', '--type', 'PatchApplied', '--json'])).records;
    expect(applied.map((r: { body: { eventId: string } }) => r.body.eventId)).toContain(evidence[evidence.length - 1]);
    const vexDir = path.join(work, 'vex');
    const many = await cli(['report', 'vex', '--label', 'env=prod', '--out-dir', vexDir, '--json']);
    expect(
      json(many).documents.map((d: { hostId: string; fixed: number; affected: number }) => [
        d.hostId,
        d.fixed,
        d.affected,
      ]),
    ).toEqual([
      ['web-02', 0, 1],
      ['web-03', 1, 0],
    ]);
    expect(validate(JSON.parse(fs.readFileSync(path.join(vexDir, 'web-03.openvex.json'), 'utf8')))).toBe(true);
    const noDir = await cli(['report', 'vex', '--label', 'env=prod']);
    expect([noDir.code, noDir.stdout]).toEqual([2, '']);
    expect(noDir.stderr).toMatch(/2 hosts match: give --out-dir DIR/);

    const dry = await cli(['upgrade', '--label', 'env=prod', '--dry-run', '--json']);
    expect(dry.code).toBe(0);
    expect(json(dry)).toEqual({
      dryRun: true,
      hosts: [
        {
          hostId: 'web-02',
          kernelRelease: release,
          verdict: 'HOST_VERDICT_PATCH_MISSING',
          patches: [{ patchId: 'cli-fleet', version: '1' }],
        },
        { hostId: 'web-03', kernelRelease: release, verdict: 'HOST_VERDICT_UP_TO_DATE', patches: [] },
      ],
      rollouts: [{ patchId: 'cli-fleet', version: '1', hostIds: ['web-02'] }],
    });
    expect((await cli(['upgrade', '--label', 'env=prod', '--dry-run'])).stdout).toMatch(
      /\nweb-02\s+\S+\s+patch missing\s+cli-fleet 1\nweb-03\s+\S+\s+up to date\s+- \(up to date\)\n$/,
    );
    const unselected = await cli(['upgrade', '--dry-run']);
    expect(unselected.code).toBe(2);
    expect(unselected.stderr).toMatch(/^rebootless: upgrade needs the hosts to bring up to date/);

    // Through the usual approval: an approver opens it, then it runs to completed.
    const upgraded = await cli([
      'upgrade',
      '--label',
      'env=prod',
      '--require-approval',
      '--soak',
      '1s',
      '--window',
      EVERY_DAY,
      '--json',
    ]);
    expect(upgraded.code).toBe(0);
    const [created] = json(upgraded).rollouts;
    expect(created).toMatchObject({
      patchId: 'cli-fleet',
      version: '1',
      state: 'ROLLOUT_STATE_AWAITING_APPROVAL',
      hostIds: ['web-02'],
    });
    // The rollout under way, host by host, before its approval.
    await scrapedSince(Date.now());
    expect(await metric(`rebootless_rollout_hosts{rollout="${created.rolloutId}",state="pending"}`)).toBe(1);
    expect(await metric('rebootless_rollouts{state="running"}')).toBe(1);
    expect((await cli(['rollout', 'approve', created.rolloutId], { REBOOTLESS_TOKEN: approver })).code).toBe(0);
    expect((await cli(['rollout', 'watch', created.rolloutId])).code).toBe(0);
    const ok = await eventually('every host up to date', async () => {
      const run = await cli(['hosts', 'check']);
      return run.code === 0 ? run : undefined;
    });
    expect(ok.stdout).toMatch(/^REBOOTLESS OK - 3 of 3 hosts up to date \|/);
    await scrapedSince(Date.now());
    // The ledger's verdict gauge follows its read models a scrape or two later: wait for it, never
    // past the deadline (a wrong value still fails).
    await eventually('Prometheus sees 3 hosts up to date', async () =>
      (await metric('rebootless_hosts{verdict="up_to_date"}')) === 3 ? true : undefined,
    );
    expect(await metric('rebootless_cve_exposed_hosts{cve="CVE-2024-26581"}')).toBe(0);
    // The finished rollout's series hold its final counts, every state present: none is left
    // stale at the value it had while the rollout ran.
    const finalCounts = await prometheus.query(`rebootless_rollout_hosts{rollout="${created.rolloutId}"}`);
    expect(Object.fromEntries(finalCounts.map((f) => [f.labels['state'], f.value]))).toEqual({
      pending: 0,
      'in-progress': 0,
      succeeded: 1,
      failed: 0,
      'timed-out': 0,
      skipped: 0,
      reverting: 0,
      reverted: 0,
    });
    expect(await metric('rebootless_rollouts{state="running"}')).toBe(0);
    expect(await metric('rebootless_rollouts{state="completed"}')).toBeGreaterThanOrEqual(1);

    const nothing = await cli(['upgrade', '--label', 'env=prod']);
    expect([nothing.code, nothing.stdout]).toEqual([
      0,
      '2 host(s) selected, every one up to date: nothing to roll out\n',
    ]);
  });

  describe('bad input: a clear message on stderr, nothing on stdout, the documented exit code', () => {
    it.each<[string, string[], number, RegExp]>([
      [
        'an unknown subcommand lists the valid ones',
        ['build', 'lsit'],
        2,
        /^rebootless: unknown subcommand "build lsit" \(did you mean "list"\?\); build takes: submit, watch, list, show/,
      ],
      [
        'an unknown command lists the commands',
        ['deploy'],
        2,
        /^rebootless: unknown command "deploy"; the commands are: build, patch, rollout, hosts, upgrade, undo, audit, report, ledger/,
      ],
      [
        'a missing flag is named',
        ['build', 'submit', '--name', 'x', '--version', '1', '--kernel', 'k'],
        2,
        /^rebootless: build submit needs the fix: --source FILE \(livepatch module C source\) or --diff FILE \(unified diff\)\n$/,
      ],
      [
        'a missing required flag is named with what it is for',
        ['patch', 'retract', 'cli-e2e', '--version', '1'],
        2,
        /^rebootless: patch retract needs --reason TEXT: why, for the audit trail\n$/,
      ],
      [
        'an unreadable fix file says which and why',
        ['build', 'submit', '--name', 'x', '--version', '1', '--kernel', 'k', '--diff', '/nonexistent/fix.diff'],
        2,
        /^rebootless: cannot read --diff \/nonexistent\/fix\.diff: no such file\n$/,
      ],
      [
        'an invalid instant names the flag and the accepted forms',
        ['hosts', 'show', 'web-01', '--at', 'yesterday'],
        2,
        /^rebootless: --at "yesterday" is not an instant: use RFC 3339 like 2026-11-22T08:00:00Z .*"now", or a time ago like -30m, -2h, -7d\n$/,
      ],
      [
        'an invalid --as-of too',
        ['report', 'pci', '--as-of', '2026-13-45'],
        2,
        /^rebootless: --as-of "2026-13-45" is not an instant \(no such day\): use RFC 3339/,
      ],
    ])('%s', async (_, args, code, message) => {
      const run = await cli(args);
      expect(run.stderr).toMatch(message);
      expect(run.stdout).toBe('');
      expect(run.code).toBe(code);
    });

    it('an unreachable service: the message names the address and how to change it (exit 3)', async () => {
      const port = await freePort();
      const run = await cli(['build', 'list', '--builder', `127.0.0.1:${port}`]);
      expect(run.code).toBe(3);
      expect(run.stdout).toBe('');
      expect(run.stderr).toMatch(
        new RegExp(
          `^rebootless: cannot reach the builder at 127\\.0\\.0\\.1:${port}: .*ECONNREFUSED.*Point the CLI at it with --builder or REBOOTLESS_BUILDER`,
        ),
      );
      // The ledger too, by its own variable.
      const ledger = await cli(['ledger', 'verify'], { REBOOTLESS_LEDGER: `127.0.0.1:${port}` });
      expect(ledger.code).toBe(3);
      expect(ledger.stderr).toContain(`cannot reach the ledger at 127.0.0.1:${port}`);
      expect(ledger.stderr).toContain('--ledger or REBOOTLESS_LEDGER');
    });

    it('plaintext against a TLS service cannot connect, and says to check --insecure/--pki (exit 3)', async () => {
      const run = await cli(['build', 'list', '--insecure']);
      expect(run.code).toBe(3);
      expect(run.stderr).toContain(`cannot reach the builder at ${address}`);
      expect(run.stderr).toContain('if it runs with TLS, pass --pki DIR instead of --insecure');
    });

    it('no token, or a token that is not one: exit 5 with how to get one', async () => {
      const none = await cli(['build', 'list'], { REBOOTLESS_TOKEN: '' });
      expect(none.code).toBe(5);
      expect(none.stderr).toMatch(
        /needs an operator token for BuildService\/ListBuilds: .*; mint one with node scripts\/pki\.mjs token/,
      );
      const garbage = await cli(['build', 'list', '--token', 'rbl1.not.valid']);
      expect(garbage.code).toBe(5);
      expect(garbage.stderr).toMatch(/refused your token for BuildService\/ListBuilds/);
    });

    it('reads the token from REBOOTLESS_TOKEN_FILE', async () => {
      const file = path.join(work, 'token');
      fs.writeFileSync(file, `${auditor}\n`);
      const run = await cli(['build', 'list', '--json'], { REBOOTLESS_TOKEN: '', REBOOTLESS_TOKEN_FILE: file });
      expect(run.code).toBe(0);
    });

    it('a missing CLI certificate says how to mint it (exit 2)', async () => {
      const empty = path.join(work, 'empty-pki');
      fs.mkdirSync(empty);
      const run = await cli(['build', 'list'], { REBOOTLESS_PKI_DIR: empty });
      expect(run.code).toBe(2);
      expect(run.stderr).toMatch(
        /^rebootless: the CLI's certificate: .*ca\.crt is missing: mint it with "node scripts\/pki\.mjs issue user cli --dir/,
      );
    });
  });
});
