// `--version` on every service's main and the agent, as an operator checks what a host runs:
// the built entry point, with nothing configured (no Kafka, no data dir, no certificates).
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { REPO_ROOT, builtEntry } from '@rebootless/testing';

const run = promisify(execFile);

const PROGRAMS = [
  { app: 'builder', entry: 'main.js', program: 'rebootless-builder' },
  { app: 'dispatcher', entry: 'main.js', program: 'rebootless-dispatcher' },
  { app: 'ledger', entry: 'main.js', program: 'rebootless-ledger' },
  { app: 'console', entry: 'main.js', program: 'rebootless-console' },
];

// Only PATH: a setting read before --version is answered would fail the run.
const BARE_ENV = { PATH: process.env['PATH'] ?? '' };

describe.each(PROGRAMS)('$program --version', ({ app, entry, program }) => {
  const version = (
    JSON.parse(readFileSync(join(REPO_ROOT, 'apps', app, 'package.json'), 'utf8')) as { version: string }
  ).version;
  const main = builtEntry(`apps/${app}/dist/${entry}`);

  it('prints the program and its package version and exits 0, configured or not', async () => {
    const { stdout, stderr } = await run(process.execPath, [main, '--version'], { env: BARE_ENV });
    expect([stdout, stderr]).toEqual([`${program} ${version}\n`, '']);
  });

  it('with --json, one JSON object', async () => {
    const { stdout } = await run(process.execPath, [main, '--version', '--json'], { env: BARE_ENV });
    expect(JSON.parse(stdout)).toEqual({ program, version });
  });
});
