// `npm start` as a user runs it: scripts/stack.mjs up as a real process, against the test broker
// (KAFKA_BROKERS from the global setup) on a fresh topic, in a fresh stack dir, on free ports,
// with a small demo fleet. It must tell the whole story, stay up, and stop everything on Ctrl-C.
// Build first (`npm run build`); the kernel headers come from the shared cache (fetched once).
import { spawn, type ChildProcess } from 'node:child_process';
import * as fs from 'node:fs';
import { createServer } from 'node:net';
import * as path from 'node:path';
import { REPO_ROOT } from '../process';
import { type StoryStack, startStoryStack } from './story-stack';

jest.setTimeout(15 * 60_000);

const AGENTS = 6;

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const server = createServer();
    server.once('error', () => resolve(false));
    server.listen(port, '127.0.0.1', () => server.close(() => resolve(true)));
  });
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe('npm start: the story', () => {
  let story: StoryStack;
  let dir: string;
  let stack: ChildProcess;
  let stderr = '';
  let ports: number[];
  // eslint-disable-next-line @typescript-eslint/no-explicit-any
  let result: any;

  beforeAll(async () => {
    story = await startStoryStack({ name: 'story', agents: AGENTS });
    ({ dir, child: stack, ports } = story);
    result = await story.result();
    stderr = story.stderr();
    if (!result.ok) throw new Error(`the stack failed: ${result.error}\n${stderr}`);
  });

  afterAll(async () => {
    if (stack && stack.exitCode === null) {
      stack.kill('SIGINT');
      await new Promise((r) => stack!.once('exit', r));
    }
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
  });

  it('reaches the end of the story on two kernel releases', () => {
    expect(result.ok).toBe(true);
    expect(result.story.hosts).toBe(AGENTS);
    expect(result.story.releases).toHaveLength(2);
    expect(result.story.patch.modules.map((m: { kernelRelease: string }) => m.kernelRelease).sort()).toEqual(
      [...result.story.releases].sort(),
    );
    expect(stderr).toContain('== 8. The ledger verified');
    expect(stderr).toContain('== The story ended');
  });

  it('reports the stalled host: the rollout paused on it, then completed without it', () => {
    const { rollout, stall_host: stalled } = result.story;
    expect(rollout.pausedBecause).toContain(`${stalled}: transition stalled`);
    expect(rollout.stalledHost).toMatchObject({ hostId: stalled, state: 'failed' });
    expect(rollout.state).toBe('completed');
    expect(rollout.succeeded).toBe(AGENTS - 1);
  });

  it('undoes the patch on one host', () => {
    expect(result.story.undo).toMatchObject({ hostId: result.story.undo_host, state: 'completed' });
  });

  it('the PCI report goes from non-compliant to compliant for the patched hosts', () => {
    const { pciBefore, pciAfter, stall_host: stalled, undo_host: undone } = result.story;
    expect(pciBefore).toMatchObject({ hostsInScope: AGENTS, hostsCompliant: 0 });
    expect(pciBefore.nonCompliantHostIds).toHaveLength(AGENTS);
    expect(pciAfter).toMatchObject({ hostsInScope: AGENTS, hostsCompliant: AGENTS - 2 });
    expect(pciAfter.nonCompliantHostIds).toEqual([stalled, undone].sort());
  });

  it('verifies the ledger with 0 findings', () => {
    expect(result.story.verify.details).toEqual([]);
    expect(result.story.verify.findings).toBe(0);
    expect(Number(result.story.verify.eventsChecked)).toBeGreaterThan(20);
  });

  it('prints the CLI commands to try, with their environment', () => {
    expect(result.cli.commands).toContain(
      `node ${path.join('apps', 'cli', 'dist', 'main.js')} hosts list --label fleet=demo`,
    );
    expect(result.cli.env).toContain(`export REBOOTLESS_LEDGER=127.0.0.1:${ports[2]}`);
  });

  it("prints the agent's status command, which answers over the agent's Unix socket with the effective kernel", async () => {
    const hint = (result.cli.commands as string[]).find((c) => c.includes('apps/agent/dist/cli.js status'))!;
    const [assignment, , script, ...args] = hint.split(' ');
    const [name, value] = assignment!.split('=') as [string, string];
    const run = spawn(process.execPath, [script!, ...args], {
      cwd: REPO_ROOT,
      env: { PATH: process.env['PATH'], [name]: value },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    run.stdout!.on('data', (d: Buffer) => (out += d.toString()));
    run.stderr!.on('data', (d: Buffer) => (out += d.toString()));
    const code = await new Promise((r) => run.once('exit', r));
    expect(out).toContain('effective kernel: ');
    expect(code).not.toBe(4);
  });

  it('runs each service with its own pki directory: its key and certificate, no CA key, no token key (ADR 0013)', () => {
    const pkiDir = path.join(dir, 'data', 'pki');
    const secrets = ['ca.key', 'token.key'].map((f) => fs.readFileSync(path.join(pkiDir, f)));
    for (const name of ['builder', 'dispatcher', 'ledger', 'agent']) {
      const pid = Number(fs.readFileSync(path.join(dir, 'data', 'run', `${name}.pid`), 'utf8').trim());
      const environ = fs.readFileSync(`/proc/${pid}/environ`, 'utf8').split('\0');
      const own = path.join(dir, 'data', 'identities', `service-${name}`);
      expect(environ).toContain(`REBOOTLESS_PKI_DIR=${own}`);
      // The stack's agent also holds its host's certificate: the gateway binds its key by it (ADR 0012).
      const host = name === 'agent' ? fs.readdirSync(own).filter((f) => /^host-[^/]+\.(crt|key)$/.test(f)) : [];
      expect(host).toHaveLength(name === 'agent' ? 2 : 0);
      expect(fs.readdirSync(own).sort()).toEqual(
        ['ca.crt', ...host, `service-${name}.crt`, `service-${name}.key`, 'token.pub'].sort(),
      );
      for (const key of [`service-${name}.key`, ...host.filter((f) => f.endsWith('.key'))])
        expect(fs.statSync(path.join(own, key)).mode & 0o777).toBe(0o600);
      for (const f of fs.readdirSync(own)) {
        const bytes = fs.readFileSync(path.join(own, f));
        for (const secret of secrets) expect(bytes.includes(secret)).toBe(false);
      }
    }
    // The simulated fleet holds its hosts' keys and the builder's public key, not the CA's.
    expect(fs.readdirSync(path.join(dir, 'data', 'identities', 'fleet'))).not.toEqual(
      expect.arrayContaining(['ca.key']),
    );
    expect(result.cli.env).toContain(`export REBOOTLESS_PKI_DIR=${path.join(dir, 'data', 'identities', 'user-cli')}`);
  });

  it('stops everything on Ctrl-C: services, fleet, ports free', async () => {
    const pids: number[] = [
      ...result.services.map((s: { pid: number }) => s.pid),
      result.console.pid,
      result.story.fleet_pid,
    ];
    expect(pids.every(alive)).toBe(true);
    stack!.kill('SIGINT');
    const code = await new Promise((r) => stack!.once('exit', r));
    expect(code).toBe(0);
    expect(story.stderr()).toContain('stack: everything stopped');
    expect(pids.filter(alive)).toEqual([]);
    for (const port of ports) expect(await portFree(port)).toBe(true);
  });
});
