import * as fs from 'node:fs';
import * as path from 'node:path';
import { findExecutable, minimalEnv, runProcess, SpawnError } from './process';

const env = minimalEnv('/tmp');

/** Running, as opposed to gone or a zombie nobody reaped yet (its parent died; init reaps it). */
function alive(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) !== 'Z';
  } catch {
    return false;
  }
}

// A child that starts a grandchild (in the child's process group), prints the grandchild's pid, and hangs.
const HANG = `
const { spawn } = require('node:child_process');
const g = spawn(process.execPath, ['-e', 'setInterval(() => {}, 1000)'], { stdio: 'ignore' });
console.log('grandchild ' + g.pid);
setInterval(() => {}, 1000);
`;

describe('runProcess', () => {
  it('passes arguments verbatim (no shell) and captures output by line', async () => {
    const tricky = ['a b', '$(id)', '; rm -rf /', '"q"', '*'];
    const result = await runProcess(
      process.execPath,
      ['-e', 'for (const a of process.argv.slice(1)) console.log(a); console.error("err")', ...tricky],
      {
        cwd: '/tmp',
        env,
        timeoutMs: 30_000,
      },
    );
    expect(result.code).toBe(0);
    expect(result.stdout.trimEnd().split('\n')).toEqual(tricky);
    expect(result.lines).toEqual(expect.arrayContaining([...tricky, 'err']));
  });

  it('runs with only the environment it is given, in the C locale', async () => {
    const result = await runProcess(process.execPath, ['-e', 'console.log(JSON.stringify(process.env))'], {
      cwd: '/tmp',
      env: minimalEnv('/tmp/x', { EXTRA: '1' }),
      timeoutMs: 30_000,
    });
    const seen = JSON.parse(result.stdout) as Record<string, string>;
    expect(seen['LANG']).toBe('C');
    expect(seen['TMPDIR']).toBe('/tmp/x');
    expect(seen['EXTRA']).toBe('1');
    expect(Object.keys(seen).sort()).toEqual(['EXTRA', 'HOME', 'LANG', 'LC_ALL', 'PATH', 'TMPDIR']);
  });

  it('kills the whole process group when the time limit passes', async () => {
    const started = Date.now();
    const result = await runProcess(process.execPath, ['-e', HANG], {
      cwd: '/tmp',
      env,
      timeoutMs: 1500,
      killGraceMs: 500,
    });
    expect(result.timedOut).toBe(true);
    expect(Date.now() - started).toBeLessThan(10_000);
    const grandchild = Number(/grandchild (\d+)/.exec(result.stdout)?.[1]);
    expect(grandchild).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 200));
    expect(alive(grandchild)).toBe(false);
  });

  it('kills the group on abort', async () => {
    const controller = new AbortController();
    const running = runProcess(process.execPath, ['-e', HANG], {
      cwd: '/tmp',
      env,
      timeoutMs: 60_000,
      signal: controller.signal,
      onLine: (line) => {
        if (line.startsWith('grandchild')) controller.abort();
      },
    });
    const result = await running;
    expect(result.aborted).toBe(true);
    expect(result.timedOut).toBe(false);
    const grandchild = Number(/grandchild (\d+)/.exec(result.stdout)?.[1]);
    await new Promise((r) => setTimeout(r, 200));
    expect(alive(grandchild)).toBe(false);
  });

  it('rejects with SpawnError when the executable does not exist', async () => {
    await expect(runProcess('/nonexistent/tool', [], { cwd: '/tmp', env, timeoutMs: 1000 })).rejects.toBeInstanceOf(
      SpawnError,
    );
  });

  it('finds executables on a search path', () => {
    expect(findExecutable(path.basename(process.execPath), path.dirname(process.execPath))).toBe(process.execPath);
    expect(findExecutable('definitely-not-a-tool-xyz')).toBeUndefined();
    expect(fs.existsSync(findExecutable('sh')!)).toBe(true);
  });
});
