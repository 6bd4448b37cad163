// deploy/systemd as systemd reads it: each unit starts a real built entry point of its app,
// stops restarting on the exit codes that mean "fix the configuration" (the constants the
// services exit with), and passes `systemd-analyze verify`.
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { EXIT_CANTCREAT, EXIT_CONFIG, EXIT_UNAVAILABLE } from './boot-service';

const ROOT = path.resolve(__dirname, '../../..');
const UNITS = path.join(ROOT, 'deploy/systemd');
const INSTALLED = '/opt/rebootless';
const APPS = ['agent', 'builder', 'console', 'dispatcher', 'ledger'] as const;

/** [Section] Key=Value, repeated keys kept in order; comments and blank lines skipped. */
function parseUnit(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  let section = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line === '' || line.startsWith('#') || line.startsWith(';')) continue;
    const header = /^\[(.+)\]$/.exec(line);
    if (header) {
      section = header[1]!;
      continue;
    }
    const at = line.indexOf('=');
    const key = `${section}.${line.slice(0, at)}`;
    out.set(key, [...(out.get(key) ?? []), line.slice(at + 1)]);
  }
  return out;
}

const unit = (app: string) => parseUnit(fs.readFileSync(path.join(UNITS, `rebootless-${app}.service`), 'utf8'));

describe('the systemd units in deploy/systemd', () => {
  it('are one per service (the console too) and one for the agent', () => {
    expect(
      fs
        .readdirSync(UNITS)
        .filter((f) => f.endsWith('.service'))
        .sort(),
    ).toEqual(APPS.map((a) => `rebootless-${a}.service`));
  });

  it.each(APPS)('rebootless-%s starts the entry point its package declares, built in this tree', (app) => {
    const [exec] = unit(app).get('Service.ExecStart')!;
    const [node, script, ...args] = exec!.split(/\s+/);
    expect(node).toBe('/usr/bin/node');
    expect(script!.startsWith(`${INSTALLED}/apps/${app}/`)).toBe(true);
    const relative = path.relative(path.join(INSTALLED, 'apps', app), script!);
    const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'apps', app, 'package.json'), 'utf8')) as {
      main: string;
      bin?: Record<string, string>;
    };
    if (app === 'agent') {
      expect(relative).toBe(pkg.bin!['rebootless-agent']);
      expect(args).toEqual(['run', '--json']);
    } else {
      expect(relative).toBe(pkg.main);
      expect(args).toEqual([]);
    }
    expect(fs.existsSync(path.join(ROOT, 'apps', app, relative))).toBe(true);
  });

  it.each(APPS)('rebootless-%s does not restart on a configuration exit, and does on the others', (app) => {
    const codes = unit(app).get('Service.RestartPreventExitStatus')!.join(' ').split(/\s+/).map(Number);
    expect(codes.sort()).toEqual([EXIT_CANTCREAT, EXIT_CONFIG].sort());
    expect(codes).not.toContain(EXIT_UNAVAILABLE);
    expect(unit(app).get('Service.Restart')).toEqual(['on-failure']);
  });

  it('runs the agent as root with its control socket in a 0700 runtime directory', () => {
    const agent = unit('agent');
    expect(agent.get('Service.User')).toEqual(['root']);
    expect(agent.get('Service.RuntimeDirectory')).toEqual(['rebootless']);
    expect(agent.get('Service.RuntimeDirectoryMode')).toEqual(['0700']);
    expect(agent.get('Service.Environment')).toContain('AGENT_CONTROL_SOCKET=/run/rebootless/agent.sock');
  });

  it('pass systemd-analyze verify (with /opt/rebootless pointing at this tree)', () => {
    const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'rebootless-units-'));
    try {
      const files = APPS.map((app) => {
        const name = `rebootless-${app}.service`;
        const text = fs.readFileSync(path.join(UNITS, name), 'utf8').replaceAll(INSTALLED, ROOT);
        fs.writeFileSync(path.join(tmp, name), text);
        return path.join(tmp, name);
      });
      // systemd-analyze exits 0 on an unknown key or a value it cannot parse, and only says so:
      // what it says is the verdict. systemd is in scripts/setup-debian.sh.
      const run = spawnSync('systemd-analyze', ['verify', ...files], { encoding: 'utf8' });
      expect(run.error).toBeUndefined();
      expect({ status: run.status, said: `${run.stdout}${run.stderr}` }).toEqual({ status: 0, said: '' });
    } finally {
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  });
});
