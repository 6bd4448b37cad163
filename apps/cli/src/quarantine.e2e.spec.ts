// Clearing a quarantine (issue 21) as an operator does it: the built CLI as a process against the
// built builder, dispatcher and ledger as processes over TLS with tokens, and a real agent (on a
// simulated kernel) connected over TLS with its host certificate. A patch is rolled out, the host
// dies seconds later and boots again: the agent's crash-loop guard quarantines the patch and a
// rollout of it fails there. An auditor may not clear it (refused, and the refusal is in the log
// as CallDenied); an operator clears it with a reason; the ledger shows it cleared, with who and
// why; a later rollout applies the patch again. Build first (`npm run build`).
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { Agent, GatewayRelaySink } from '@rebootless/agent-runtime';
import { ChainStateFile } from '@rebootless/kafka';
import { SimulatedKernel } from '@rebootless/kernel-model';
import { currentDebianCloudRelease, livepatchSample } from '@rebootless/kernel-toolchain';
import { builtEntry, freePort, freshEventsTopic, startNode, type RunningProcess } from '@rebootless/testing';
import {
  channelCredentials,
  ensureCertificateAuthority,
  issueCertificate,
  loadTlsMaterial,
  mintToken,
  readTokenPrivateKey,
  type Role,
} from '@rebootless/trust';

// Bounds on waiting for real processes (a module compile, a rollout); they measure nothing.
jest.setTimeout(10 * 60_000);

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

const HOST = 'q-01';
const PATCH = 'crashy';
const EVERY_DAY = 'Mon,Tue,Wed,Thu,Fri,Sat,Sun 00:00-23:59';

describe('hosts clear-quarantine: the operator’s way out of the crash-loop guard, audited', () => {
  const cliMain = builtEntry('apps/cli/dist/main.js');
  let work: string;
  let pki: string;
  let builderAddress: string;
  let dispatcherAddress: string;
  let ledgerAddress: string;
  const services: RunningProcess[] = [];
  let kernel: SimulatedKernel;
  let agent: Agent | undefined;
  let agentOptions: ConstructorParameters<typeof Agent>[0];

  const token = (sub: string, roles: Role[]) => mintToken(readTokenPrivateKey(pki), { sub, roles, ttlSeconds: 3600 });

  function cli(args: string[], tokenValue = token('alice', ['operator', 'auditor'])): Promise<Run> {
    const inherited = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('REBOOTLESS_')));
    const child = spawn(process.execPath, [cliMain, ...args], {
      env: {
        ...inherited,
        REBOOTLESS_PKI_DIR: pki,
        REBOOTLESS_BUILDER: builderAddress,
        REBOOTLESS_DISPATCHER: dispatcherAddress,
        REBOOTLESS_LEDGER: ledgerAddress,
        REBOOTLESS_TOKEN: tokenValue,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    return new Promise((resolve) => child.on('close', (code) => resolve({ code, stdout, stderr })));
  }

  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  async function json(args: string[], tokenValue?: string): Promise<any> {
    const run = await cli([...args, '--json'], tokenValue);
    if (run.code !== 0) throw new Error(`rebootless ${args.join(' ')}: exit ${run.code}\n${run.stderr}`);
    return JSON.parse(run.stdout);
  }

  async function eventually<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 90_000): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const value = await probe();
      if (value !== undefined) return value;
      if (Date.now() > deadline) {
        const logs = services.map((p) => p.output().split('\n').slice(-15).join('\n')).join('\n---\n');
        throw new Error(`${what}: not within ${timeoutMs} ms\n${logs}`);
      }
      await new Promise((r) => setTimeout(r, 500));
    }
  }

  /** A rollout of the patch to the host by a release manager (no approval), followed to its end. */
  function rollOut(): Promise<Run> {
    return cli(
      [
        'rollout',
        'create',
        '--patch',
        PATCH,
        '--version',
        '1.0.0',
        '--host',
        HOST,
        '--window',
        EVERY_DAY,
        '--on-failure',
        'abort',
        '--skip-approval',
        '--watch',
        '--json',
      ],
      token('rita', ['operator', 'auditor', 'release-manager']),
    );
  }

  beforeAll(async () => {
    work = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-quarantine-e2e-'));
    pki = path.join(work, 'pki');
    await ensureCertificateAuthority(pki);
    for (const id of ['builder', 'dispatcher', 'ledger']) await issueCertificate(pki, { kind: 'service', id });
    await issueCertificate(pki, { kind: 'user', id: 'cli' });
    await issueCertificate(pki, { kind: 'host', id: HOST });
    const [topic, release, ports] = await Promise.all([
      freshEventsTopic('quarantine', 3),
      currentDebianCloudRelease(),
      Promise.all([freePort(), freePort(), freePort()]),
    ]);
    [builderAddress, dispatcherAddress, ledgerAddress] = ports.map((p) => `127.0.0.1:${p}`) as [string, string, string];
    const dataDir = (name: string) => path.join(work, name);
    const common = { REBOOTLESS_PKI_DIR: pki, EVENTS_TOPIC: topic, NO_COLOR: '1' };
    const builder = startNode(builtEntry('apps/builder/dist/main.js'), {
      ...common,
      BUILDER_GRPC_ADDRESS: builderAddress,
      REBOOTLESS_DATA_DIR: dataDir('builder'),
    });
    const dispatcher = startNode(builtEntry('apps/dispatcher/dist/main.js'), {
      ...common,
      DISPATCHER_GRPC_ADDRESS: dispatcherAddress,
      DISPATCHER_LEDGER_ADDRESS: ledgerAddress,
      DISPATCHER_TICK_INTERVAL_MS: '200',
      DISPATCHER_TRUSTED_DATA_DIRS: dataDir('builder'),
      REBOOTLESS_DATA_DIR: dataDir('dispatcher'),
    });
    services.push(builder, dispatcher);
    await Promise.all([builder.waitFor(/builder ready on/), dispatcher.waitFor(/dispatcher ready on/)]);
    const ledger = startNode(builtEntry('apps/ledger/dist/main.js'), {
      ...common,
      LEDGER_GRPC_ADDRESS: ledgerAddress,
      LEDGER_TRUSTED_DATA_DIRS: `${dataDir('builder')},${dataDir('dispatcher')}`,
      REBOOTLESS_DATA_DIR: dataDir('ledger'),
    });
    services.push(ledger);
    await ledger.waitFor(/ledger ready on/);

    kernel = new SimulatedKernel({ release });
    fs.mkdirSync(dataDir(HOST));
    agentOptions = {
      kernel,
      dataDir: dataDir(HOST),
      hostId: HOST,
      dispatcherAddress,
      builderAddress,
      builderPublicKey: new ChainStateFile(path.join(dataDir('builder'), 'chain'), 'builder').readKey().rawPublicKey,
      sink: new GatewayRelaySink(),
      credentials: channelCredentials(loadTlsMaterial(pki, { kind: 'host', id: HOST }), [
        { kind: 'service', id: 'dispatcher' },
        { kind: 'service', id: 'builder' },
      ]),
    };
    agent = new Agent(agentOptions);
    await agent.start();

    fs.writeFileSync(
      path.join(work, 'crashy.c'),
      livepatchSample({ moduleName: 'lp_crashy', replacementText: 'patched by the quarantine e2e' }),
    );
    const built = await cli([
      'build',
      'submit',
      '--name',
      PATCH,
      '--version',
      '1.0.0',
      '--source',
      path.join(work, 'crashy.c'),
      '--kernel',
      release,
      '--watch',
    ]);
    if (built.code !== 0) throw new Error(`the build failed: ${built.stdout}\n${built.stderr}`);
  });

  afterAll(async () => {
    await agent?.stop();
    for (const service of services.reverse()) service.child.kill('SIGTERM');
    await Promise.all(services.map((service) => service.exited()));
    if (work) fs.rmSync(work, { recursive: true, force: true });
  });

  it('the host goes down seconds after the patch went live: after the boot its agent quarantines it, and the ledger shows so', async () => {
    const first = await rollOut();
    expect([first.code, JSON.parse(first.stdout).state]).toEqual([0, 'ROLLOUT_STATE_COMPLETED']);
    await agent!.drain();
    await agent!.stop({ clean: false }); // the host dies with it
    kernel.reboot();
    agent = new Agent(agentOptions);
    await agent.start();

    const host = await eventually('the ledger shows the quarantine', async () => {
      const shown = await json(['hosts', 'show', HOST]);
      return shown.quarantined.length > 0 ? shown : undefined;
    });
    expect(host.quarantined).toEqual([
      expect.objectContaining({
        patch: { patchId: PATCH, version: '1.0.0' },
        reason: expect.stringMatching(/^the host went down \d+ s after it was applied, without a planned stop$/),
      }),
    ]);
    // The host still lacks the fix, and says why; `upgrade` would not send what the agent refuses.
    expect(host).toMatchObject({
      verdict: 'HOST_VERDICT_PATCH_MISSING',
      verdictReasons: [
        `quarantined by its agent, refused until an operator clears it (rebootless hosts clear-quarantine): ${PATCH} 1.0.0`,
      ],
      missingPatches: [],
    });
    const text = await cli(['hosts', 'show', HOST]);
    expect(text.stdout).toMatch(new RegExp(`quarantined: +${PATCH} 1\\.0\\.0 since \\S+: the host went down`));
  });

  it('while quarantined, a rollout of the patch fails on the host: its agent refuses it', async () => {
    const refused = await rollOut();
    expect(refused.code).toBe(1);
    const rollout = JSON.parse(refused.stdout);
    expect(rollout.state).toBe('ROLLOUT_STATE_ABORTED');
    expect(rollout.waves[0].hosts[0]).toMatchObject({
      hostId: HOST,
      state: 'HOST_ROLLOUT_STATE_FAILED',
      error: expect.stringContaining(`patch ${PATCH} 1.0.0 is quarantined on this host`),
    });
  });

  it('an auditor may not clear it: refused (exit 5), nothing cleared, and the refusal is a CallDenied in the log', async () => {
    const carol = token('carol', ['auditor']);
    const run = await cli(
      ['hosts', 'clear-quarantine', HOST, '--patch', PATCH, '--version', '1.0.0', '--reason', 'looks fine'],
      carol,
    );
    expect(run.code).toBe(5);
    expect(run.stderr).toMatch(/RolloutService\/ClearQuarantine/);
    const denied = await eventually('the CallDenied in the ledger', async () => {
      const records = (await json(['audit', '--type', 'CallDenied'])).records as {
        body: { callDenied: { method: string; subject: string } };
      }[];
      const found = records.filter((r) => r.body.callDenied.method.endsWith('/ClearQuarantine'));
      return found.length > 0 ? found : undefined;
    });
    expect(denied.map((r) => r.body.callDenied.subject)).toEqual(['user:carol']);
    expect((await json(['hosts', 'show', HOST])).quarantined).toHaveLength(1);
    expect((await json(['audit', '--type', 'QuarantineClearRequested'])).records).toEqual([]);
  });

  it('an operator clears it with a reason: the ledger shows it cleared, with who and why', async () => {
    const noReason = await cli(['hosts', 'clear-quarantine', HOST, '--patch', PATCH, '--version', '1.0.0']);
    expect(noReason.code).toBe(2);
    expect(noReason.stderr).toContain('--reason');

    const cleared = await json([
      'hosts',
      'clear-quarantine',
      HOST,
      '--patch',
      PATCH,
      '--version',
      '1.0.0',
      '--reason',
      'the crash was a PSU fault (INC-4711)',
    ]);
    expect(cleared).toMatchObject({ hostId: HOST, patchId: PATCH, version: '1.0.0', cleared: true });
    expect((await agent!.status()).quarantined).toEqual([]);

    const after = await eventually('the ledger shows it cleared', async () => {
      const shown = await json(['hosts', 'show', HOST]);
      return shown.quarantined.length === 0 ? shown : undefined;
    });
    expect(after.missingPatches).toEqual([{ patchId: PATCH, version: '1.0.0' }]);
    const trail = (await json(['audit', '--host', HOST])).records as {
      body: {
        type: string;
        actor: { id: string };
        causationId: string;
        quarantineClearRequested?: { commandId: string; reason: string };
        patchQuarantineCleared?: { commandId: string; reason: string; quarantineReason: string };
      };
    }[];
    const asked = trail.filter((r) => r.body.type === 'QuarantineClearRequested');
    const done = trail.filter((r) => r.body.type === 'PatchQuarantineCleared');
    expect(asked.map((r) => [r.body.actor.id, r.body.quarantineClearRequested])).toEqual([
      [
        'alice',
        expect.objectContaining({ commandId: cleared.commandId, reason: 'the crash was a PSU fault (INC-4711)' }),
      ],
    ]);
    expect(done.map((r) => [r.body.actor.id, r.body.patchQuarantineCleared])).toEqual([
      [
        HOST,
        expect.objectContaining({
          commandId: cleared.commandId,
          reason: 'the crash was a PSU fault (INC-4711)',
          quarantineReason: expect.stringMatching(/^the host went down/),
        }),
      ],
    ]);

    // Once cleared there is nothing left to clear: the agent says so (exit 6).
    const again = await cli([
      'hosts',
      'clear-quarantine',
      HOST,
      '--patch',
      PATCH,
      '--version',
      '1.0.0',
      '--reason',
      'twice',
    ]);
    expect(again.code).toBe(6);
    expect(again.stderr).toContain(`patch ${PATCH} 1.0.0 is not quarantined on this host`);
  });

  it('a later rollout applies the patch again', async () => {
    const run = await rollOut();
    expect([run.code, JSON.parse(run.stdout).state]).toEqual([0, 'ROLLOUT_STATE_COMPLETED']);
    const host = await eventually('the ledger shows the patch live again', async () => {
      const shown = await json(['hosts', 'show', HOST]);
      return shown.stack.entries.some((e: { moduleName: string }) => e.moduleName.startsWith('lp_crashy'))
        ? shown
        : undefined;
    });
    expect(host.quarantined).toEqual([]);
    expect((await kernel.listPatches()).map((p) => [p.moduleName, p.enabled])).toEqual([
      [expect.stringMatching(/^lp_crashy/), true],
    ]);
  });
});
