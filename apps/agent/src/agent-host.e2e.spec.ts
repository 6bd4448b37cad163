// The agent as deployed on a host, as a real process started with `rebootless-agent run`:
// AgentControl on its root-only Unix socket and on its TCP port over TLS, and the status and
// uname commands reaching it both ways with the host's own settings. The kernel is a simulated
// one served from this test process, with a live patch an administrator loaded by hand.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { TEST_RELEASE, serveKernelPort, type KernelServer } from '@rebootless/agent-runtime';
import { SimulatedKernel } from '@rebootless/kernel-model';
import { builtEntry, freshEventsTopic, startNode, type RunningProcess } from '@rebootless/testing';
import { ensureCertificateAuthority, issueCertificate } from '@rebootless/trust';

const CLI = builtEntry('apps/agent/dist/cli.js');
const HOST = 'e2e-host-01';
const BY_HAND = 'livepatch_local_fix';

let tmp: string;
let pki: string;
let controlSocket: string;
let port: number;
let kernelServer: KernelServer;
let agent: RunningProcess;
let topic: string;
const processes: RunningProcess[] = [];

async function freePort(): Promise<number> {
  const net = await import('node:net');
  const server = net.createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const p = (server.address() as import('node:net').AddressInfo).port;
  await new Promise<void>((r) => server.close(() => r()));
  return p;
}

/** The agent's own settings, as /etc/rebootless/agent.env gives them to both the daemon and the commands. */
function hostEnv(): NodeJS.ProcessEnv {
  return {
    AGENT_HOST_ID: HOST,
    AGENT_GRPC_ADDRESS: `127.0.0.1:${port}`,
    AGENT_CONTROL_SOCKET: controlSocket,
    REBOOTLESS_PKI_DIR: pki,
  };
}

async function command(args: string[], env: NodeJS.ProcessEnv) {
  // Not the test runner's environment: only what the host's settings say.
  const run = startNode(CLI, { AGENT_CONTROL_SOCKET: '', AGENT_GRPC_ADDRESS: '', ...env }, args);
  processes.push(run);
  const { code } = await run.exited();
  return { code, output: run.output() };
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'agent-host-e2e-'));
  pki = path.join(tmp, 'pki');
  await ensureCertificateAuthority(pki);
  await issueCertificate(pki, { kind: 'service', id: 'agent' });
  await issueCertificate(pki, { kind: 'host', id: HOST });
  topic = await freshEventsTopic('agent-host-e2e', 1);
  const kernel = new SimulatedKernel({ release: TEST_RELEASE, transitionMs: 0 });
  await kernel.loadModule({
    path: `/lib/modules/${TEST_RELEASE}/extra/${BY_HAND}.ko`,
    moduleName: BY_HAND,
    functions: [{ object: 'vmlinux', name: 'cmdline_proc_show', sympos: 0 }],
    replace: false,
  });
  kernelServer = await serveKernelPort(kernel, path.join(tmp, 'kernel.sock'));
  port = await freePort();
  controlSocket = path.join(tmp, 'run', 'rebootless', 'agent.sock');
  agent = startNode(
    CLI,
    {
      ...hostEnv(),
      AGENT_KERNEL_SOCKET: path.join(tmp, 'kernel.sock'),
      REBOOTLESS_DATA_DIR: path.join(tmp, 'data'),
      EVENTS_TOPIC: topic,
    },
    ['run', '--json'],
  );
  processes.push(agent);
  await agent.waitFor(/agent ready on/, 30_000);
});

afterAll(async () => {
  for (const p of processes) if (p.child.exitCode === null && p.child.signalCode === null) p.child.kill('SIGTERM');
  await Promise.all(processes.map((p) => p.exited()));
  await kernelServer?.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('rebootless-agent run', () => {
  it('writes one JSON object a line with --json', () => {
    const lines = agent
      .output()
      .split('\n')
      .filter((l) => l.trim() !== '');
    expect(lines.length).toBeGreaterThan(1);
    for (const l of lines) expect(JSON.parse(l)).toMatchObject({ service: 'agent', msg: expect.any(String) });
    expect(agent.output()).toContain(`AgentControl on unix:${controlSocket}`);
  });

  it('makes its socket 0600 in a 0700 directory', () => {
    expect(fs.statSync(controlSocket).mode & 0o777).toBe(0o600);
    expect(fs.statSync(controlSocket).isSocket()).toBe(true);
    expect(fs.statSync(path.dirname(controlSocket)).mode & 0o777).toBe(0o700);
  });

  it('refuses a socket directory others may enter, exiting 78 and saying why', async () => {
    const open = path.join(tmp, 'open');
    fs.mkdirSync(open, { mode: 0o755 });
    fs.chmodSync(open, 0o755);
    const refused = await command(['run'], {
      ...hostEnv(),
      AGENT_GRPC_ADDRESS: `127.0.0.1:${await freePort()}`,
      AGENT_CONTROL_SOCKET: path.join(open, 'agent.sock'),
      AGENT_KERNEL_SOCKET: path.join(tmp, 'kernel.sock'),
      REBOOTLESS_DATA_DIR: path.join(tmp, 'data-open'),
      EVENTS_TOPIC: topic,
    });
    expect(refused.code).toBe(78);
    expect(refused.output).toContain(`AGENT_CONTROL_SOCKET: ${open} is mode 755`);
  });

  it('prints its version, also as JSON', async () => {
    expect(await command(['--version'], {})).toEqual({ code: 0, output: 'rebootless-agent 0.1.0\n' });
    const json = await command(['run', '--version', '--json'], {});
    expect(JSON.parse(json.output)).toEqual({ name: 'rebootless-agent', version: '0.1.0' });
  });
});

describe('rebootless-agent status and uname, as deployed', () => {
  it('over the Unix socket named by the host settings: the stack and the effective kernel', async () => {
    const { code, output } = await command(['status'], { AGENT_CONTROL_SOCKET: controlSocket });
    expect(output).toContain(`kernel:  ${TEST_RELEASE}`);
    expect(output).toContain(`effective kernel: ${TEST_RELEASE}+${BY_HAND}`);
    expect(output).toMatch(new RegExp(`1\\. ${BY_HAND} \\[enabled\\] not installed by this agent`));
    // Nothing desired and a patch live: kcarectl's "all applied".
    expect(code).toBe(0);
  });

  it('uname prints the effective kernel alone, as uptrack-uname -r does', async () => {
    expect(await command(['uname'], { AGENT_CONTROL_SOCKET: controlSocket })).toEqual({
      code: 0,
      output: `${TEST_RELEASE}+${BY_HAND}\n`,
    });
    const json = JSON.parse((await command(['uname', '--json'], { AGENT_CONTROL_SOCKET: controlSocket })).output);
    expect(json).toEqual({
      release: TEST_RELEASE,
      livePatches: [{ moduleName: BY_HAND }],
      effective: `${TEST_RELEASE}+${BY_HAND}`,
    });
  });

  it("over TLS on the TCP port with the host's own certificate, from the same settings as the agent", async () => {
    const { code, output } = await command(['status', '--json', '--address', `127.0.0.1:${port}`], hostEnv());
    expect(code).toBe(0);
    const answer = JSON.parse(output);
    expect(answer.facts.hostId).toBe(HOST);
    expect(answer.effectiveKernel).toBe(`${TEST_RELEASE}+${BY_HAND}`);
  });

  it('in plaintext against the TLS port: no answer, exit 4, saying how it tried', async () => {
    const { code, output } = await command(['status', '--address', `127.0.0.1:${port}`], {
      AGENT_HOST_ID: HOST,
      REBOOTLESS_INSECURE: 'true',
    });
    expect(code).toBe(4);
    expect(output).toContain(`no agent answers on 127.0.0.1:${port} (plaintext)`);
  });

  it('with a certificate of another CA: refused, exit 4', async () => {
    const other = path.join(tmp, 'other-pki');
    await ensureCertificateAuthority(other);
    await issueCertificate(other, { kind: 'host', id: HOST });
    const { code, output } = await command(['status', '--address', `127.0.0.1:${port}`], {
      AGENT_HOST_ID: HOST,
      REBOOTLESS_PKI_DIR: other,
    });
    expect(code).toBe(4);
    expect(output).toContain(`(TLS as host:${HOST})`);
  });

  it('with neither a socket nor transport settings: exit 78 naming what to set', async () => {
    const { code, output } = await command(['status'], { AGENT_HOST_ID: HOST, REBOOTLESS_INSECURE: '' });
    expect(code).toBe(78);
    expect(output).toContain('REBOOTLESS_PKI_DIR');
  });
});
